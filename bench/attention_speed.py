"""Inference with SDPA against eager attention (issue 24): SentenceEncoder.encode on this CPU, same process.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/attention_speed.py [--n 5000] [--runs 3]

all-MiniLM-L6-v2 loaded twice, with ``attn_implementation="eager"`` (polyhead's default) and ``"sdpa"``
(transformers' default); both with polyhead's CPU path (oneDNN linears where the probe chose them). Variants
``{eager,sdpa}_{fp32,bf16}`` (bf16 only on CPUs with AVX512-BF16/AMX), each ``--runs`` times alternating
(order reversed every other run) over the same ``--n`` real sentences (bench/encode_speed.py's), batch 32 with
token-sorted batches, as ``encode`` runs by default; then each at batch 1 on ``--batch1-n`` sentences. Records
sentences/s per run, medians, each run's ratio sdpa / eager of the same precision, the cosine between the two
implementations' vectors, and the machine (CPU, threads, GEMM GFLOP/s from bench/roofline.py). Writes
bench/results/attention_speed.json (merged under ``--tag``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode_speed import ROOT, cpu_model, real_sentences  # noqa: E402

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()  # as `polyhead` commands do


def machine() -> dict[str, Any]:
    import torch
    import transformers
    from roofline import torch_rates

    from polyhead.runtime import cpu_supports_bf16

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "bf16": cpu_supports_bf16(), "torch": torch.__version__, "transformers": transformers.__version__,
        "gemm_gflop_per_s": {k: round(v, 1) for k, v in torch_rates().items()},
    }  # fmt: skip


def main() -> None:
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.runtime import cpu_supports_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch1-n", type=int, default=300)
    parser.add_argument("--tag", default="encode")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "attention_speed.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    texts = real_sentences(args.n)
    encoders = {"eager": SentenceEncoder.from_pretrained("default", attn_implementation="eager"),
                "sdpa": SentenceEncoder.from_pretrained("default", attn_implementation="sdpa")}  # fmt: skip
    attention = {k: e.transformer.config._attn_implementation for k, e in encoders.items()}
    assert attention == {"eager": "eager", "sdpa": "sdpa"}, attention
    precisions = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]
    variants = [f"{a}_{p}" for p in precisions for a in encoders]

    def run(name: str, batch: list[str], size: int) -> np.ndarray:
        impl, precision = name.split("_")
        return np.asarray(encoders[impl].encode(batch, batch_size=size, precision=precision))

    for name in variants:  # warm-up (oneDNN's kernels for the first shapes, the CPU-path probe)
        run(name, texts[:64], 32)
    rates: dict[str, list[float]] = {v: [] for v in variants}
    outputs: dict[str, np.ndarray] = {}
    for r in range(args.runs):
        for name in variants if r % 2 == 0 else variants[::-1]:
            start = time.perf_counter()
            outputs[name] = run(name, texts, 32)
            rates[name].append(len(texts) / (time.perf_counter() - start))
            print(f"run {r} {name}: {rates[name][-1]:.1f} sent/s", file=sys.stderr)
    batch1: dict[str, float] = {}
    sample = texts[: args.batch1_n]
    for name in variants:
        start = time.perf_counter()
        for text in sample:
            run(name, [text], 1)
        batch1[name] = len(sample) / (time.perf_counter() - start)
    result = {
        "command": "python bench/attention_speed.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": load_before,
        "sentences": len(texts),
        "batch32_sent_per_s": {"runs": rates, "median": {k: statistics.median(v) for k, v in rates.items()}},
        "sdpa_over_eager_per_run": {
            p: [s / e for s, e in zip(rates[f"sdpa_{p}"], rates[f"eager_{p}"], strict=True)] for p in precisions
        },
        "batch1_sent_per_s": batch1,
        "cosine_sdpa_to_eager_min": {
            p: float((outputs[f"sdpa_{p}"] * outputs[f"eager_{p}"]).sum(1).min()) for p in precisions
        },
        "max_abs_difference_fp32": float(np.abs(outputs["sdpa_fp32"] - outputs["eager_fp32"]).max()),
        "machine": machine(),
    }
    merged = json.loads(args.out.read_text()) if args.out.is_file() else {}
    merged[args.tag] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
