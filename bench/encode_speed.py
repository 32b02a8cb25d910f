"""Encoding speed on this CPU: polyhead vs sentence-transformers, same model, same sentences, same process.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/encode_speed.py [--n 5000] [--runs 3]

Variants, each run alternately (run 1 of every variant, then run 2, ...), medians reported:
  st_torch        sentence-transformers `encode` (batch 32, fp32): the reference
  polyhead_fp32   SentenceEncoder.encode (token-sorted batches, token budget, eager attention)
  polyhead_bf16   the same with precision="bf16" (only on CPUs with AVX512-BF16/AMX)
Also: cosine of every polyhead vector to sentence-transformers' (mean and min), sentences/s at batch 1 on
a smaller sample, and peak RSS. Writes bench/results/encode_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def real_sentences(n: int) -> list[str]:
    """Texts from several shared datasets (SST-5, TREC, Banking77, STS-B), in a fixed order."""
    texts: list[str] = []
    for file, column in (
        ("sst5/train.tsv", "text"),
        ("trec/train.tsv", "text"),
        ("banking77/train.tsv", "text"),
        ("stsb/train.tsv", "sentence1"),
    ):
        lines = (DATA / file).read_text(encoding="utf-8").splitlines()
        idx = lines[0].split("\t").index(column)
        texts += [line.split("\t")[idx] for line in lines[1:]]
    return texts[:n]


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path
    from polyhead.runtime import cpu_supports_bf16

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch1-n", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encode_speed.json")
    args = parser.parse_args()
    texts = real_sentences(args.n)
    path = str(resolve_model_path("default"))
    st = SentenceTransformer(path, device="cpu")
    ours = SentenceEncoder.from_pretrained("default")
    variants: dict[str, Callable[[list[str], int], np.ndarray]] = {
        "st_torch": lambda t, b: st.encode(t, batch_size=b, normalize_embeddings=True),
        "polyhead_fp32": lambda t, b: np.asarray(ours.encode(t, batch_size=b)),
    }
    if cpu_supports_bf16():
        variants["polyhead_bf16"] = lambda t, b: np.asarray(ours.encode(t, batch_size=b, precision="bf16"))
    for fn in variants.values():  # warm-up
        fn(texts[:64], 32)
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, np.ndarray] = {}
    for r in range(args.runs):
        for name, fn in variants.items():
            seconds, outputs[name] = timed(lambda fn=fn: fn(texts, 32))
            times[name].append(seconds)
            print(f"run {r} {name}: {len(texts) / seconds:.1f} sent/s", file=sys.stderr)
    batch1: dict[str, float] = {}
    for name, fn in variants.items():
        sample = texts[: args.batch1_n]
        seconds, _ = timed(lambda fn=fn, sample=sample: np.stack([fn([t], 1)[0] for t in sample]))
        batch1[name] = len(sample) / seconds
    ref = outputs["st_torch"]
    result = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "bf16": cpu_supports_bf16(),
        },
        "command": "python bench/encode_speed.py " + " ".join(sys.argv[1:]),
        "sentences": len(texts),
        "mean_tokens": float(np.mean([len(ours.tokenizer(t)["input_ids"]) for t in texts[:2000]])),
        "batch32_sent_per_s": {k: len(texts) / statistics.median(v) for k, v in times.items()},
        "batch32_runs_s": times,
        "batch1_sent_per_s": batch1,
        "cosine_to_st": {
            k: {"mean": float((v * ref).sum(1).mean()), "min": float((v * ref).sum(1).min())}
            for k, v in outputs.items()
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    base = result["batch32_sent_per_s"]["st_torch"]
    result["ratio_vs_st_torch"] = {k: v / base for k, v in result["batch32_sent_per_s"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
