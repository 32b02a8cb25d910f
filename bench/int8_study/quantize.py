"""Apply one of export/onnx.py's int8 recipes to a graph (heads stay fp32, as in the export).

.venv/bin/python bench/int8_study/quantize.py SRC.onnx {dynamic,blockwise,blockwise-half} DST.onnx
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import onnx

from polyhead.export.onnx import quantize_with, split_matmuls


def main() -> None:
    src, recipe, dst = sys.argv[1:4]
    graph = onnx.load(src)
    del graph.graph.value_info[:]
    encoder_mm, heads = split_matmuls(graph.graph)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.onnx"
        onnx.save(graph, str(plain))
        if recipe == "dynamic" and any(n.domain == "com.microsoft" for n in graph.graph.node):
            # fused graphs: the quantiser can't type-infer contrib ops' outputs without a default
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                str(plain),
                dst,
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=heads + [f"{h}_MatMul" for h in heads],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            return
        quantize_with(recipe, plain, Path(dst), encoder_mm, heads)


if __name__ == "__main__":
    main()
