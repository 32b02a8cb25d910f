"""This machine's GEMM roofline for MiniLM encoding, and each encode_speed.py variant's share of it.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/roofline.py [--n 5000]

The roof: the encoder's multiply-adds for the corpus (real tokens only, no padding: per layer
24 h^2 per token for Q/K/V/output/FFN with a 4h intermediate size, plus 4 L^2 h per sentence of L tokens for
attention scores and the weighted sum), divided by the fastest GEMM rate measured on this machine for each
number format, at the shapes encoding runs (rows = 32 sentences x ~25 tokens; 384 x 384, 384 x 1536,
1536 x 384 weights):
  fp32  max of torch's nn.Linear (MKL), oneDNN with a prepacked weight, onnxruntime MatMul (MLAS)
  bf16  oneDNN with a prepacked bf16 weight (AVX512-BF16/AMX only)
  int8  onnxruntime MatMulInteger, uint8 x int8 (VNNI where the CPU has it)
Everything else (embeddings, layer norms, softmax, GELU, pooling, tokenisation) is taken as free, so the
roof is an upper bound no implementation reaches. Reads bench/results/encode_speed.json (run first, same
--n) and writes bench/results/roofline.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import ROOT, cpu_model, real_sentences  # noqa: E402

SHAPES = ((384, 384), (384, 1536), (1536, 384))  # (in, out) of MiniLM's linear layers
ROWS = 800  # 32 sentences x 25 tokens


def best_ms(fn: Callable[[], object], repeats: int = 40) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def gflops(ms_by_shape: dict[tuple[int, int], float]) -> float:
    """GFLOP/s over the three shapes, weighted as in a layer (4 x 384x384, 1 each of the FFN shapes)."""
    weights = {(384, 384): 4, (384, 1536): 1, (1536, 384): 1}
    flops = sum(w * 2 * ROWS * k * n for (k, n), w in weights.items())
    return flops / sum(w * ms_by_shape[s] for s, w in weights.items()) / 1e6


def torch_rates() -> dict[str, float]:
    import torch

    from polyhead.runtime import cpu_supports_bf16

    torch.set_num_threads(2)
    out: dict[str, dict[tuple[int, int], float]] = {"fp32_mkl": {}, "fp32_onednn": {}, "bf16_onednn": {}}
    with torch.inference_mode():
        for k, n in SHAPES:
            x, w, b = torch.randn(ROWS, k), torch.randn(n, k), torch.randn(n)
            out["fp32_mkl"][(k, n)] = best_ms(lambda x=x, w=w, b=b: torch.nn.functional.linear(x, w, b))
            packed = torch.ops.mkldnn._reorder_linear_weight(w, 1024)
            out["fp32_onednn"][(k, n)] = best_ms(
                lambda x=x, p=packed, b=b: torch.ops.mkldnn._linear_pointwise(x, p, b, "none", [], ""))
            if cpu_supports_bf16():
                xb, pb = x.bfloat16(), torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), 1024)
                out["bf16_onednn"][(k, n)] = best_ms(
                    lambda x=xb, p=pb, b=b.bfloat16(): torch.ops.mkldnn._linear_pointwise(x, p, b, "none", [], ""))
    return {name: gflops(ms) for name, ms in out.items() if ms}


def onnx_rates() -> dict[str, float]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def session(op: str, a_type: int, b_type: int, out_type: int, k: int, n: int) -> ort.InferenceSession:
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
            [helper.make_tensor_value_info("a", a_type, [ROWS, k]), helper.make_tensor_value_info("b", b_type, [k, n])],
            [helper.make_tensor_value_info("y", out_type, [ROWS, n])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        return ort.InferenceSession(model.SerializeToString(), options)

    out: dict[str, dict[tuple[int, int], float]] = {"fp32_mlas": {}, "int8_mlas": {}}
    rng = np.random.default_rng(0)
    for k, n in SHAPES:
        s = session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT, k, n)
        feeds = {"a": rng.standard_normal((ROWS, k), dtype=np.float32),
                 "b": rng.standard_normal((k, n), dtype=np.float32)}
        out["fp32_mlas"][(k, n)] = best_ms(lambda s=s, f=feeds: s.run(None, f))
        s = session("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, k, n)
        feeds = {"a": rng.integers(0, 255, (ROWS, k), dtype=np.uint8),
                 "b": rng.integers(-127, 127, (k, n), dtype=np.int8)}
        out["int8_mlas"][(k, n)] = best_ms(lambda s=s, f=feeds: s.run(None, f))
    return {name: gflops(ms) for name, ms in out.items()}


def corpus_gflop(texts: list[str]) -> float:
    """Multiply-add FLOPs (x2) of MiniLM-L6 over the corpus, real tokens only."""
    from tokenizers import Tokenizer

    from polyhead.modeling.encoder import resolve_model_path

    tok = Tokenizer.from_file(str(resolve_model_path("default") / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.no_padding()  # tokenizer.json may carry a fixed padding length
    lengths = np.array([len(e.ids) for e in tok.encode_batch(texts)], dtype=np.float64)
    h, layers = 384, 6
    per_layer = 2 * (12 * h * h * lengths + 2 * lengths**2 * h)  # 24 h^2 L + 4 L^2 h
    return float((layers * per_layer).sum()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--speeds", type=Path, default=ROOT / "bench" / "results" / "encode_speed.json")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "roofline.json")
    args = parser.parse_args()
    texts = real_sentences(args.n)
    work = corpus_gflop(texts)
    rates = {**torch_rates(), **onnx_rates()}
    roof = {
        "fp32": max(v for k, v in rates.items() if k.startswith("fp32")),
        "bf16": rates.get("bf16_onednn", 0.0),
        "int8": rates["int8_mlas"],
    }
    roof_sent_s = {fmt: len(texts) / (work / rate) if rate else None for fmt, rate in roof.items()}
    speeds = json.loads(args.speeds.read_text())["batch32_sent_per_s"] if args.speeds.is_file() else {}
    roof_of = {name: roof_sent_s["bf16" if "bf16" in name else "int8" if "int8" in name else "fp32"] for name in speeds}
    share = {name: speed / roof_of[name] for name, speed in speeds.items() if roof_of[name]}
    result = {
        "machine": {"cpu": cpu_model()},
        "command": "python bench/roofline.py " + " ".join(sys.argv[1:]),
        "sentences": len(texts),
        "corpus_gflop": work,
        "gemm_gflop_per_s": rates,
        "roof_sent_per_s": roof_sent_s,
        "share_of_roof": share,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
