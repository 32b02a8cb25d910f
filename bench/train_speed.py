"""Training speed on this CPU: padding/bucketing, bf16 autocast, and the cached-embedding fast path.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/train_speed.py [--steps 20] [--runs 3]

1. Full fine-tuning of the default encoder with a classification head, batch 32, on real sentences
   (SST-2 train): fixed 64-token padding with random batches (the HF Trainer default with
   padding="max_length") vs token-sorted buckets with dynamic padding (polyhead) vs the same with bf16
   autocast. Steps/s, median of alternating runs.
2. Frozen encoder: one epoch of heads-only training through the Trainer with and without
   `cache_embeddings` (same seed, same batches), wall time of the epoch.
Writes bench/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def load_sentences(n: int) -> tuple[list[str], list[str]]:
    lines = (DATA / "sst2" / "train.tsv").read_text().splitlines()[1 : n + 1]
    labels, texts = zip(*(line.split("\t", 1) for line in lines), strict=True)
    return list(texts), list(labels)


def fine_tune_steps(mode: str, steps: int, texts: list[str], labels: list[str]) -> float:
    """Steps/s of full fine-tuning; mode in fixed64 | bucketed | bucketed_bf16."""
    from polyhead.data.collate import epoch_batches
    from polyhead.modeling.batching import pad_batch
    from polyhead.modeling.encoder import SentenceEncoder, autocast
    from polyhead.modeling.heads import TaskSpec
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained("default", max_length=64)
    model = MultiTaskModel(encoder, {"label": TaskSpec("classification", sorted(set(labels)))})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    encs = encoder.tokenize_lists(texts)
    index = {lab: i for i, lab in enumerate(model.tasks["label"].labels)}
    y = torch.tensor([index[lab] for lab in labels])
    bucket = mode != "fixed64"
    batches = epoch_batches([len(e["input_ids"]) for e in encs], 32, 0, 0, "bench", bucket)
    precision = "bf16" if mode.endswith("bf16") else "fp32"

    def step(batch: list[int]) -> None:
        items = [encs[i] for i in batch]
        if not bucket:  # pad every batch to 64 tokens
            items = [{**e, "input_ids": e["input_ids"] + [0] * (64 - len(e["input_ids"])),
                      "attention_mask": e["attention_mask"] + [0] * (64 - len(e["attention_mask"])),
                      "token_type_ids": e["token_type_ids"] + [0] * (64 - len(e["token_type_ids"]))} for e in items]
        features = pad_batch(items, 0)
        with autocast(precision):
            logits = model(features, ["label"])["label"]
            loss = torch.nn.functional.cross_entropy(logits.float(), y[batch])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches[1 : steps + 1]:
        step(batch)
    return steps / (time.perf_counter() - start)


def cached_epoch(cache: bool, n: int) -> float:
    """Seconds for one heads-only epoch (encoder frozen) through the Trainer, with or without the cache."""
    from polyhead.config import Config
    from polyhead.training.trainer import Trainer

    cfg = Config.model_validate({
        "encoder": {"model": "default", "max_length": 64},
        "tasks": {"sentiment": {"type": "classification", "data": {"train": str(DATA / "sst2" / "train.tsv"), "limit": n}}},
        "training": {"epochs": 1, "batch_size": 32, "freeze": {"mode": "encoder"}, "cache_embeddings": cache,
                     "log_with": [], "optimizer": {"lr": 1e-3}},
    })
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run")
        trainer.prepare_output()
        trainer.setup()
        trainer.log = __import__("polyhead.training.metrics_log", fromlist=["MetricsLog"]).MetricsLog(Path(tmp) / "run", [])
        trainer.stop_after = None
        start = time.perf_counter()
        trainer.run_stage(0, None)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache-examples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_speed.json")
    args = parser.parse_args()
    texts, labels = load_sentences(32 * (args.steps + 2))
    modes = ["fixed64", "bucketed"] + (["bucketed_bf16"] if "avx512_bf16" in Path("/proc/cpuinfo").read_text() else [])
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.runs):
        for mode in modes:
            runs[mode].append(fine_tune_steps(mode, args.steps, texts, labels))
            print(f"run {r} {mode}: {runs[mode][-1]:.3f} steps/s", file=sys.stderr)
    fine = {m: statistics.median(v) for m, v in runs.items()}
    cache_runs: dict[str, list[float]] = {"uncached": [], "cached": []}
    for _ in range(max(1, args.runs - 1)):
        cache_runs["uncached"].append(cached_epoch(False, args.cache_examples))
        cache_runs["cached"].append(cached_epoch(True, args.cache_examples))
        print(f"epoch uncached {cache_runs['uncached'][-1]:.1f}s cached {cache_runs['cached'][-1]:.1f}s", file=sys.stderr)
    cached = {k: statistics.median(v) for k, v in cache_runs.items()}
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
        "fine_tuning_steps_per_s": {"median": fine, "runs": runs,
                                     "ratio_vs_fixed64": {m: fine[m] / fine["fixed64"] for m in fine}},
        "frozen_encoder_epoch_s": {"median": cached, "runs": cache_runs, "examples": args.cache_examples,
                                   "speedup": cached["uncached"] / cached["cached"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
