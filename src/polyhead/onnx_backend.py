"""Inference on onnxruntime without torch or transformers: the `backend="onnx"` of SentenceEncoder and
MultiTaskModel. Tokenisation uses the `tokenizers` package on the directory's tokenizer.json.

    model = MultiTaskModel.from_pretrained("runs/demo/model", backend="onnx")   # after `polyhead export`
    model.predict(["..."]); model.encode(["..."]); model.similarity(["a"], ["b"])
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeldir.format import ONNX_META
from polyhead.modeldir.format import ONNX_VARIANTS as VARIANTS
from polyhead.numpy_backend import SOURCE_FILES, TokenizersBackend, physical_cores, sha256, source_hashes

logger = logging.getLogger(__name__)

__all__ = ["ONNX_META", "SOURCE_FILES", "VARIANTS", "OnnxModel", "create_session", "sha256", "source_hashes"]


# Graph rewrites onnxruntime would apply that make our graphs slower. SkipLayerNormFusion merges the bias
# Add, the residual Add and LayerNormalization into one SkipLayerNormalization kernel, which on onnxruntime
# 1.31 (x86-64, AVX512) takes several times longer than the three ops it replaces: leaving it out makes
# MiniLM 16% faster in fp32 and 17% faster with the `dynamic` int8 recipe, with the same arithmetic
# (docs/export.md, "The ONNX backend").
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def create_session(file: Path, threads: int, optimized_file: Path | None = None) -> Any:
    """An onnxruntime CPU session: ``threads`` intra-op threads, sequential execution, all graph
    optimisations except DISABLED_OPTIMIZERS (``optimized_file``: where to write the optimised graph)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_file is not None:
        options.optimized_model_filepath = str(optimized_file)
    return ort.InferenceSession(
        str(file), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS)
    )


class OnnxModel(TokenizersBackend):
    """Same encode / similarity / predict API and outputs as MultiTaskModel, on onnxruntime (the pipeline in
    polyhead.predict; this class only tokenises with ``tokenizers`` and runs a batch)."""

    def __init__(self, path: str | Path, variant: str = "fp32", threads: int | None = None) -> None:
        path = Path(path)
        from polyhead.extras import require

        require("onnx", "the onnx backend", ["onnxruntime"])  # before anything is read: the install hint first
        if variant not in VARIANTS:
            raise PolyheadError(f"unknown ONNX variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self.read_directory(path, "onnx")
        meta_file = path / ONNX_META
        quantize = " --quantize int8" if variant == "int8" else ""
        if not meta_file.is_file() or not (path / VARIANTS[variant]).is_file():
            raise ModelDirError(
                f"{path} has no {VARIANTS[variant]}: run `polyhead export {path} --format onnx{quantize}`"
            )
        meta = json.loads(meta_file.read_text())
        if variant not in meta.get("files", {}):
            raise ModelDirError(
                f"{meta_file} lists no {variant} export: run `polyhead export {path} --format onnx{quantize}`"
            )
        if meta.get("source_sha256") != source_hashes(path):
            raise ModelDirError(
                f"{path / VARIANTS[variant]} was exported from other weights than the directory holds "
                f"now (stale export): run `polyhead export {path} --format onnx` again"
            )
        self.pad_id = int(meta.get("pad_token_id", 0))
        self.session = create_session(path / VARIANTS[variant], threads or physical_cores())
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.variant = variant

    @property
    def dim(self) -> int:
        return int(self.session.get_outputs()[0].shape[-1] or super().dim)

    # ----------------------------------------------------------------- polyhead.predict's Backend
    def run_batch(
        self, encodings: Sequence[dict[str, Any]], outputs: Sequence[str], precision: str
    ) -> dict[str, np.ndarray]:
        """Pad one batch and run the session (``precision`` is the graph's own: fp32 or int8)."""
        padded = self.pad(encodings, self.pad_id)
        feeds = {name: padded[name] for name in self.inputs}
        return dict(zip(outputs, self.session.run(list(outputs), feeds), strict=True))
