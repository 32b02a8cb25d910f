"""Training speed on this CPU: padding/bucketing, bf16 autocast, and the cached-embedding fast path.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/train_speed.py [--steps 20] [--runs 3]

1. Full fine-tuning of the default encoder with a classification head, batch 32, on real sentences
   (SST-2 train): fixed 64-token padding with random batches (the HF Trainer default with
   padding="max_length", torch's nn.Linear) vs token-sorted buckets with dynamic padding (still torch's
   nn.Linear: `bucketed_mkl`) vs the same with polyhead's oneDNN linears (`bucketed`, the default) vs that
   with bf16 autocast. Steps/s, median of alternating runs.
2. Frozen encoder: heads-only training through the Trainer (3 epochs) with and without
   `cache_embeddings` (same seed, same batches): time per step of the loop, and of the whole stage
   including building the cache.
3. `--processes`: `polyhead train` in 1 and in 2 processes (`--num-processes`, gloo on this CPU), full
   fine-tuning on SST-2 at global batch 32; examples/s of the training steps alone, from the difference
   in wall time between a short and a long run (so start-up and evaluation cancel out). Median of
   ``--runs`` alternating runs; merged into the same JSON under "processes".
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
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()  # as `polyhead` commands do: oneDNN's kernel caches capped (BENCHMARKS.md, Serving)

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
    """Steps/s of full fine-tuning; mode in fixed64 | bucketed_mkl | bucketed | bucketed_bf16.

    ``fixed64`` (the HF Trainer's padding="max_length") and ``bucketed_mkl`` use torch's own nn.Linear
    (MKL GEMMs); ``bucketed`` and ``bucketed_bf16`` are polyhead's defaults (oneDNN linears).
    """
    from polyhead.data.collate import epoch_batches
    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.batching import pad_batch
    from polyhead.modeling.encoder import SentenceEncoder, autocast
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.modeling.onednn import use_plain_linears

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained("default", max_length=64)
    if mode in ("fixed64", "bucketed_mkl"):
        use_plain_linears(encoder)
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
            items = [
                {
                    **e,
                    "input_ids": e["input_ids"] + [0] * (64 - len(e["input_ids"])),
                    "attention_mask": e["attention_mask"] + [0] * (64 - len(e["attention_mask"])),
                    "token_type_ids": e["token_type_ids"] + [0] * (64 - len(e["token_type_ids"])),
                }
                for e in items
            ]
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


def frozen_encoder_run(cache: bool, n: int, epochs: int) -> dict[str, float]:
    """Heads-only training (encoder frozen) through the Trainer, with or without the embedding cache.

    Returns the wall time of the whole stage (cache building included) and the time per optimizer step
    of the training loop alone (from each epoch's start to its last step: no evaluation), both measured
    by a callback (the run's final save and evaluation are outside both).
    """
    from polyhead.config import Config
    from polyhead.training.trainer import Trainer, TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.stage_s = self.loop_s = self.mark = 0.0
            self.steps = 0

        def on_stage_start(self, trainer: Any, index: int) -> None:
            self.stage_s = -time.perf_counter()

        def on_epoch_start(self, trainer: Any, run: Any, state: Any) -> None:
            self.mark = time.perf_counter()

        def on_step_end(self, trainer: Any, run: Any, event: Any) -> None:
            now = time.perf_counter()
            self.loop_s, self.mark, self.steps = self.loop_s + now - self.mark, now, self.steps + 1

        def on_stage_end(self, trainer: Any, run: Any, state: Any) -> None:
            self.stage_s += time.perf_counter()

    cfg = Config.model_validate(
        {
            "encoder": {"model": "default", "max_length": 64},
            "tasks": {
                "sentiment": {
                    "type": "classification",
                    "data": {"train": str(DATA / "sst2" / "train.tsv"), "limit": n},
                }
            },
            "training": {
                "epochs": epochs,
                "batch_size": 32,
                "freeze": {"mode": "encoder"},
                "cache_embeddings": cache,
                "log_with": [],
                "optimizer": {"lr": 1e-3},
            },
        }
    )
    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(cfg, Path(tmp) / "run", callbacks=[timer]).run()
    return {"stage_s": timer.stage_s, "step_ms": 1000 * timer.loop_s / max(1, timer.steps)}


def polyhead_train_seconds(processes: int, steps: int, tmp: Path) -> float:
    """Wall time of `polyhead train` for ``steps`` steps of batch 32 on SST-2 (no dev set, no STS)."""
    import subprocess

    import yaml

    config = {
        "name": "speed",
        "encoder": {"model": "default", "max_length": 64},
        "tasks": {
            "sentiment": {
                "type": "classification",
                "data": {"train": str(DATA / "sst2" / "train.tsv"), "limit": 32 * steps},
            }
        },
        "training": {"epochs": 1, "steps_per_epoch": steps, "batch_size": 32, "log_with": [], "sts_eval": None},
    }
    path = tmp / f"speed-{processes}-{steps}.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp / f"run-{processes}-{steps}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "polyhead", "train", str(path), "--output", str(out), "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd + ["--num-processes", str(processes)], check=True, capture_output=True)
    return time.perf_counter() - start


def processes_speed(runs: int, short: int, long: int) -> dict[str, object]:
    """Examples/s of training steps for 1 vs 2 processes: (long - short) steps x 32 / extra wall time."""
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(runs):
            for n in (1, 2):
                extra = polyhead_train_seconds(n, long, Path(tmp)) - polyhead_train_seconds(n, short, Path(tmp))
                times[n].append(32 * (long - short) / extra)
                print(f"run {r}, {n} process(es): {times[n][-1]:.1f} examples/s", file=sys.stderr)
    median = {n: statistics.median(v) for n, v in times.items()}
    return {
        "examples_per_s": {"median": median, "runs": times, "ratio_2_vs_1": median[2] / median[1]},
        "steps": {"short": short, "long": long, "global_batch": 32},
        "threads_per_process": {1: torch.get_num_threads(), 2: max(1, (os.cpu_count() or 1) // 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache-examples", type=int, default=2000)
    parser.add_argument("--cache-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_speed.json")
    parser.add_argument("--processes", action="store_true", help="only 1 vs 2 processes (section 3)")
    args = parser.parse_args()
    if args.processes:
        existing = json.loads(args.out.read_text()) if args.out.is_file() else {}
        existing["processes"] = {
            "command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
            **processes_speed(args.runs, 10, 40),
        }
        args.out.write_text(json.dumps(existing, indent=2) + "\n")
        print(json.dumps(existing["processes"], indent=2))
        return
    texts, labels = load_sentences(32 * (args.steps + 2))
    modes = ["fixed64", "bucketed_mkl", "bucketed"]
    if "avx512_bf16" in Path("/proc/cpuinfo").read_text():
        modes.append("bucketed_bf16")
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.runs):
        for mode in modes:
            runs[mode].append(fine_tune_steps(mode, args.steps, texts, labels))
            print(f"run {r} {mode}: {runs[mode][-1]:.3f} steps/s", file=sys.stderr)
    fine = {m: statistics.median(v) for m, v in runs.items()}
    frozen: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
    for _ in range(max(1, args.runs - 1)):
        for mode in ("uncached", "cached"):
            frozen[mode].append(frozen_encoder_run(mode == "cached", args.cache_examples, args.cache_epochs))
            print(f"frozen encoder {mode}: {frozen[mode][-1]}", file=sys.stderr)
    cached = {
        mode: {k: statistics.median(r[k] for r in runs_) for k in ("stage_s", "step_ms")}
        for mode, runs_ in frozen.items()
    }
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
        "fine_tuning_steps_per_s": {
            "median": fine,
            "runs": runs,
            "ratio_vs_fixed64": {m: fine[m] / fine["fixed64"] for m in fine},
        },
        "frozen_encoder": {
            "median": cached,
            "runs": frozen,
            "examples": args.cache_examples,
            "epochs": args.cache_epochs,
            "step_speedup": cached["uncached"]["step_ms"] / cached["cached"]["step_ms"],
            "stage_speedup": cached["uncached"]["stage_s"] / cached["cached"]["stage_s"],
        },
    }
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "processes" in previous:  # section 3 is measured by its own command; keep it
        result["processes"] = previous["processes"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
