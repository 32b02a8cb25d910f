"""Batch-1 latency (one sentence per call): OpenVINO against torch, polyhead and without polyhead (issue #21).

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/latency_batch1.py [--n 300] [--rounds 3]

Variants, each called once per sentence on the same --n sentences (spread evenly over issue #21's 2,000 SST-2
and 2,000 STS-B sentences), alternating within each of --rounds rounds after a warm-up:
  st_torch                 sentence-transformers `encode([t])` (fp32)
  polyhead_torch_fp32      SentenceEncoder.encode([t]) with the linears polyhead chose (polyhead.cpupath)
  polyhead_torch_fp32_mkl  the same with torch's own nn.Linear
  polyhead_torch_bf16      precision="bf16" (CPUs with AVX512-BF16/AMX)
  polyhead_openvino_fp32 / _bf16   OpenVinoModel.encode([t]) on `export_encoder("default", format="openvino")`
  openvino_raw_fp32 / _bf16        OpenVINO without polyhead (bench/encode_speed.py's anchor: convert_model, the HF
                           tokenizer, `compiled_model(inputs)`)
  polyhead_openvino_infer_only     the same OpenVinoModel's `run_batch` on the sentence already tokenised: the
                           OpenVINO call alone, so polyhead's own per-call cost is the difference to _fp32
Per variant: median and 90th-percentile milliseconds per call (median over rounds), sentences/s, and the ratio
of the median latency to polyhead torch fp32's. Writes bench/results/latency_batch1.json (or --out) with the
machine's figures (CPU, GEMM GFLOP/s of each fp32 linear path).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import ROOT, add_raw_openvino, cpu_model, gemm_figures, issue_sentences  # noqa: E402

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()  # as `polyhead` commands do


def variants(tmp: Path) -> tuple[dict[str, Callable[[str], Any]], dict[str, Any]]:
    """The callables (one sentence in), and what was chosen/exported."""
    from sentence_transformers import SentenceTransformer

    from polyhead.export.onnx import export_encoder
    from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path
    from polyhead.modeling.onednn import use_plain_linears
    from polyhead.openvino_backend import OpenVinoModel
    from polyhead.runtime import cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    st = SentenceTransformer(str(resolve_model_path("default")), device="cpu")
    ours = SentenceEncoder.from_pretrained("default")
    mkl = use_plain_linears(copy.deepcopy(ours))
    export_encoder("default", tmp / "ov", format="openvino")
    ov = OpenVinoModel(tmp / "ov", "fp32")
    calls: dict[str, Callable[[str], Any]] = {
        "st_torch": lambda t: st.encode([t], batch_size=1, normalize_embeddings=True),
        "polyhead_torch_fp32": lambda t: ours.encode([t], batch_size=1),
        "polyhead_torch_fp32_mkl": lambda t: mkl.encode([t], batch_size=1),
        "polyhead_openvino_fp32": lambda t: ov.encode([t], batch_size=1),
        "polyhead_openvino_infer_only": lambda enc: ov.run_batch(enc, ["pooled_embedding"], "fp32"),
    }
    if bf16:
        calls["polyhead_torch_bf16"] = lambda t: ours.encode([t], batch_size=1, precision="bf16")
        calls["polyhead_openvino_bf16"] = lambda t: ov.encode([t], batch_size=1, precision="bf16")
    raw: dict[str, Callable[[list[str], int], np.ndarray]] = {}
    add_raw_openvino(raw, bf16)
    for name, fn in raw.items():
        calls[name] = lambda t, fn=fn: fn([t], 1)
    return calls, {"bf16": bf16, "linears_chosen": ours.linears, "openvino_threads": ov.threads, "ov_model": ov}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency_batch1.json")
    args = parser.parse_args()
    os.environ["POLYHEAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="latency-cpupaths-")  # this run probes itself
    pool = issue_sentences()
    texts = [pool[i * len(pool) // args.n] for i in range(args.n)]
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        calls, info = variants(Path(tmp))
        ov = info.pop("ov_model")
        pretokenised = [ov.tokenize_texts([t]) for t in texts]  # the infer-only variant's inputs
        inputs = {name: pretokenised if name.endswith("infer_only") else texts for name in calls}
        for name, fn in calls.items():  # warm-up (compiles, kernel caches)
            for item in inputs[name][:20]:
                fn(item)
        ms: dict[str, list[list[float]]] = {name: [] for name in calls}
        for r in range(args.rounds):
            for name, fn in calls.items():
                per_call = []
                for item in inputs[name]:
                    t0 = time.perf_counter()
                    fn(item)
                    per_call.append(1000 * (time.perf_counter() - t0))
                ms[name].append(per_call)
                print(f"round {r} {name}: median {statistics.median(per_call):.2f} ms", file=sys.stderr)
    summary = {
        name: {
            "median_ms_per_round": [round(statistics.median(x), 3) for x in rounds],
            "p90_ms_per_round": [round(float(np.percentile(x, 90)), 3) for x in rounds],
            "median_ms": round(statistics.median(statistics.median(x) for x in rounds), 3),
            "p90_ms": round(statistics.median(float(np.percentile(x, 90)) for x in rounds), 3),
            "sent_per_s_per_round": [round(len(x) / (sum(x) / 1000), 1) for x in rounds],
        }
        for name, rounds in ms.items()
    }
    ref = summary["polyhead_torch_fp32"]["median_ms"]
    for entry in summary.values():
        entry["latency_vs_polyhead_torch_fp32"] = round(entry["median_ms"] / ref, 3)
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gemm_gflops": gemm_figures(), **info},
        "command": "python bench/latency_batch1.py " + " ".join(sys.argv[1:]),
        "sentences": args.n,
        "rounds": args.rounds,
        "variants": summary,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
