"""Training speed on this CPU against the Hugging Face Trainer, and the cached-embedding fast path.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/train_speed.py [--modes a,b,...] [--steps 40] [--runs 2]
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/train_speed.py --section frozen|processes

1. ``--section anchor`` (the default; issue 24): full fine-tuning of all-MiniLM-L6-v2 with a classification
   head on SST-2 train, batch 32, max length 64, lr 1e-4, in each of ``--modes`` (see ``MODES``): the HF
   Trainer (transformers 5: ``DataCollatorWithPadding``, ``train_sampling_strategy="group_by_length"`` or
   random batches, its default fused AdamW and SDPA attention) against ``polyhead train`` as the CLI runs it
   (the Trainer with configs/single/sst2.yaml's settings), plus bf16, two heads, frozen lower layers, the
   cached-embedding path, POLYHEAD_ONEDNN=0, or the code of ``--base-src``. Each run is its own process, the
   modes alternate (order reversed every other round); steps/s between step 10 and step ``--steps``, and each
   round's ratio to the HF Trainer with group_by_length. Records the CPU, its bf16 support and its GEMM
   GFLOP/s at the encoder's shapes (bench/roofline.py's ``torch_rates``). Results under "anchor[_TAG]".
2. ``--section frozen``: heads-only training through the Trainer (3 epochs) with and without
   ``cache_embeddings`` (same seed, same batches): time per step of the loop, and of the whole stage
   including building the cache.
3. ``--section processes``: ``polyhead train`` in 1 and in 2 processes (``--num-processes``, gloo on this CPU),
   full fine-tuning on SST-2 at global batch 32; examples/s of the training steps alone, from the difference
   in wall time between a short and a long run (so start-up and evaluation cancel out). Median of
   ``--runs`` alternating runs.
Each section merges its results into bench/results/train_speed.json, keeping the others'.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
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


# --------------------------------------------------------------------------- 1. against the HF Trainer
ANCHOR = "hf_grouped"
ATTENTION: list[str] = []  # the attention implementation the child's model ran with (recorded at its first step)
TOKENS: list[int] = []  # padded tokens (batch x length) of each batch collated, in order
MODES = {
    "hf_random": "HF Trainer, DataCollatorWithPadding, random batches",
    "hf_grouped": 'HF Trainer, DataCollatorWithPadding, train_sampling_strategy="group_by_length"',
    "polyhead": "polyhead Trainer, configs/single/sst2.yaml settings (fp32)",
    "polyhead_base": "the same on the code before issue 24 (--base-src)",
    "polyhead_base_bf16": "polyhead_bf16 on the code of --base-src",
    "polyhead_mkl": "polyhead, POLYHEAD_ONEDNN=0 (torch's nn.Linear everywhere)",
    "polyhead_bf16": "polyhead, training.precision: bf16",
    "polyhead_multi": "polyhead, two classification heads on the same sentences",
    "polyhead_lower3": "polyhead, training.freeze.layers_below: 3 (embeddings + 3 of 6 layers frozen)",
    "polyhead_cached": "polyhead, encoder frozen, cache_embeddings (heads only)",
    "hf_grouped_bf16": "the anchor with TrainingArguments(bf16=True) (CPU autocast)",
    "polyhead_multi_bf16": "polyhead_multi with training.precision: bf16",
    "polyhead_lower3_bf16": "polyhead_lower3 with training.precision: bf16",
    "polyhead_cached_bf16": "polyhead_cached with training.precision: bf16",
    "polyhead_eager": "polyhead with eager attention named explicitly (the library's default)",
    "polyhead_eager_bf16": "polyhead_eager with training.precision: bf16",
    "polyhead_sdpa": "polyhead with SDPA attention (transformers' default; measured against eager for issue 24)",
    "polyhead_sdpa_bf16": "polyhead_sdpa with training.precision: bf16",
    "hf_grouped_eager": 'the anchor with attn_implementation="eager"',
}


def hf_steps(
    strategy: str, steps: int, texts: list[str], labels: list[str], bf16: bool = False, attention: str | None = None
) -> list[float]:
    """Step end times of the HF Trainer: AutoModelForSequenceClassification on the default encoder, batch 32,
    max length 64, lr 1e-4, fused AdamW (its default), dynamic padding; ``strategy`` random | group_by_length;
    ``bf16``: its CPU autocast; ``attention``: its attn_implementation (None: its default, SDPA)."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from polyhead.modeldir.hub import resolve_model_path

    path = str(resolve_model_path("default"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    names = sorted(set(labels))
    enc = tokenizer(texts, truncation=True, max_length=64)
    data = Dataset.from_dict({**enc, "labels": [names.index(lab) for lab in labels]})
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), attn_implementation=attention
    )
    pad = DataCollatorWithPadding(tokenizer)

    def collator(rows: list[dict[str, Any]]) -> Any:
        batch = pad(rows)
        TOKENS.append(batch["input_ids"].numel())
        return batch

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter())
            ATTENTION[:] = [kwargs["model"].config._attn_implementation]

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=32, learning_rate=1e-4, max_steps=steps, seed=42,
            train_sampling_strategy=strategy, use_cpu=True, report_to="none", save_strategy="no",
            eval_strategy="no", disable_tqdm=True, logging_steps=10_000, bf16=bf16,
        )  # fmt: skip
        Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                callbacks=[Clock()]).train()  # fmt: skip
    return times


def polyhead_config(mode: str) -> dict[str, Any]:
    """configs/single/sst2.yaml's settings (lr 1e-4, head_lr 2e-3, layer_decay 0.9, batch 32, max length 64) for
    ``mode`` (a ``_bf16`` suffix adds ``precision: bf16``); no dev set (the timed steps are within the first
    epoch)."""
    task = {"type": "classification", "data": {"train": str(DATA / "sst2" / "train.tsv")}}
    training: dict[str, Any] = {
        "seed": 42, "epochs": 1, "batch_size": 32, "log_with": [],
        "optimizer": {"lr": 1e-4, "head_lr": 2e-3, "layer_decay": 0.9},
    }  # fmt: skip
    tasks = {"sentiment": task}
    if mode.endswith("_bf16"):
        training["precision"] = "bf16"
        mode = mode.removesuffix("_bf16")
    if mode == "polyhead_multi":  # a second head on the same sentences (one group: one encoder pass)
        tasks["sentiment_b"] = {**task, "data": {**task["data"]}}
    elif mode == "polyhead_lower3":
        training["freeze"] = {"layers_below": 3}
    elif mode == "polyhead_cached":
        training["freeze"] = {"mode": "encoder"}
        training["optimizer"]["lr"] = 2e-3
    return {"encoder": {"model": "default", "max_length": 64}, "tasks": tasks, "training": training}


def polyhead_steps(mode: str, steps: int) -> list[float]:
    """Step end times of ``polyhead train`` (the Trainer, as the CLI runs it) for ``steps`` steps; an ``_eager`` or
    ``_sdpa`` mode loads the encoder with that attention implementation (else the library's default)."""
    from polyhead.config import Config
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.training import step as step_module
    from polyhead.training.trainer import Trainer, TrainerCallback, TrainingInterrupted

    named = [impl for impl in ("eager", "sdpa") if f"_{impl}" in mode]
    if named:  # this child process only: the Trainer's encoder load asks for that attention implementation
        load = SentenceEncoder.from_pretrained.__func__  # type: ignore[attr-defined]
        SentenceEncoder.from_pretrained = classmethod(  # type: ignore[method-assign, assignment]
            lambda cls, *a, **k: load(cls, *a, **{**k, "attn_implementation": named[0]})
        )
        mode = mode.replace(f"_{named[0]}", "")
    collate = step_module.collate

    def counted(*args: Any, **kwargs: Any) -> Any:
        features, targets = collate(*args, **kwargs)
        TOKENS.append(features["input_ids"].numel())
        return features, targets

    step_module.collate = counted  # type: ignore[assignment]

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, trainer: Any, run: Any, event: Any) -> None:
            times.append(time.perf_counter())
            ATTENTION[:] = [trainer.model.encoder.transformer.config._attn_implementation]

    with contextlib.suppress(ImportError):  # as `polyhead train` does (absent from the code of older --base-src)
        from polyhead.runtime import keep_freed_memory

        keep_freed_memory()
    cfg = Config.model_validate(polyhead_config(mode))
    # stop_after_steps stops as Ctrl-C does, after the timed steps
    with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(TrainingInterrupted):
        Trainer(cfg, Path(tmp) / "run", callbacks=[Clock()]).run(stop_after_steps=steps)
    return times


def child(mode: str, steps: int) -> None:
    """One measurement in this process: prints {"steps_per_s": ...} (steps 10 to ``steps``) on its last line,
    with ``to_first_step_s``: from here to the end of step 1 (loading, tokenising, the cache of cached runs)."""
    started = time.perf_counter()
    torch.manual_seed(0)
    if mode.startswith("hf_"):
        texts, labels = load_sentences(10**9)
        strategy = mode.removeprefix("hf_").removesuffix("_bf16").removesuffix("_eager")
        times = hf_steps(strategy.replace("grouped", "group_by_length"), steps, texts, labels,
                         bf16=mode.endswith("_bf16"), attention="eager" if "_eager" in mode else None)  # fmt: skip
    else:
        times = polyhead_steps(mode, steps)
    rate = (len(times) - 10) / (times[-1] - times[9])
    # the timed steps' batches: 11 to `steps` (the HF Trainer's loader may collate one batch ahead: a shift by one)
    tokens = statistics.mean(TOKENS[10 : len(times)])
    print(json.dumps({"mode": mode, "steps_per_s": rate, "steps": len(times), "to_first_step_s": times[0] - started,
                      "attention": ATTENTION[0], "padded_tokens_per_step": tokens,
                      "padded_tokens_per_s": tokens * rate}))  # fmt: skip


def machine() -> dict[str, Any]:
    """CPU model, bf16 support, threads, and this CPU's GEMM GFLOP/s at encoder shapes (bench/roofline.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from roofline import torch_rates

    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
        "gemm_gflop_per_s": {k: round(v, 1) for k, v in torch_rates().items()},
        "torch": torch.__version__, "load_average": os.getloadavg(),
    }  # fmt: skip


def anchor_speed(modes: list[str], runs: int, steps: int, base_src: Path | None) -> dict[str, Any]:
    """Each mode in its own process, the modes alternating (order reversed every other round); steps/s per run,
    median, and each round's ratio to the HF Trainer with group_by_length measured in the same round."""
    rates: dict[str, list[float]] = {m: [] for m in modes}
    first: dict[str, list[float]] = {m: [] for m in modes}
    attention: dict[str, str] = {}
    tokens: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(runs):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            env = dict(os.environ)
            if mode == "polyhead_mkl":
                env["POLYHEAD_ONEDNN"] = "0"
            if mode.startswith("polyhead_base"):
                assert base_src is not None, "polyhead_base needs --base-src"
                env["PYTHONPATH"] = str(base_src)
            cmd = [sys.executable, __file__, "--child", mode.replace("_base", ""), "--steps", str(steps)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rates[mode].append(result["steps_per_s"])
            first[mode].append(result["to_first_step_s"])
            attention[mode] = result["attention"]
            tokens[mode].append(result["padded_tokens_per_s"])
            print(f"round {r} {mode}: {rates[mode][-1]:.3f} steps/s", file=sys.stderr)
    anchor = rates.get(ANCHOR)
    ratios = {m: [a / b for a, b in zip(v, anchor, strict=True)] for m, v in rates.items()} if anchor else {}
    # multi-task target (issue 24): two heads on the same batches of 32 sentences vs one head, so the cost per
    # example is 1 / steps/s; per round, against the single-head run of the same round and precision
    cost = {m: [s / v for s, v in zip(rates[m.replace("_multi", "")], rates[m], strict=True)]
            for m in rates if "_multi" in m and m.replace("_multi", "") in rates}  # fmt: skip
    return {
        "modes": {m: MODES[m] for m in modes},
        "steps_per_s": {"runs": rates, "median": {m: statistics.median(v) for m, v in rates.items()}},
        "ratio_vs_hf_grouped_per_round": ratios,
        "multi_task_cost_per_example_vs_single_per_round": cost,
        "to_first_step_s": first,
        "attention": attention,
        "padded_tokens_per_s": tokens,
        "padded_tokens_ratio_vs_hf_grouped_per_round": (
            {m: [a / b for a, b in zip(v, tokens[ANCHOR], strict=True)] for m, v in tokens.items()}
            if ANCHOR in tokens else {}
        ),
        "window": f"steps 10 to {steps}",
    }


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


def frozen_speed(runs: int, examples: int, epochs: int) -> dict[str, Any]:
    """Section 2: heads-only training with and without the embedding cache, alternating, medians."""
    frozen: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
    for _ in range(runs):
        for mode in ("uncached", "cached"):
            frozen[mode].append(frozen_encoder_run(mode == "cached", examples, epochs))
            print(f"frozen encoder {mode}: {frozen[mode][-1]}", file=sys.stderr)
    cached = {
        mode: {k: statistics.median(r[k] for r in runs_) for k in ("stage_s", "step_ms")}
        for mode, runs_ in frozen.items()
    }
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "median": cached,
        "runs": frozen,
        "examples": examples,
        "epochs": epochs,
        "step_speedup": cached["uncached"]["step_ms"] / cached["cached"]["step_ms"],
        "stage_speedup": cached["uncached"]["stage_s"] / cached["cached"]["stage_s"],
    }


def merge(out: Path, key: str, value: dict[str, Any]) -> None:
    """Write ``value`` under ``key`` in the results file, keeping the other sections' results."""
    existing = json.loads(out.read_text()) if out.is_file() else {}
    existing[key] = {"command": "python bench/train_speed.py " + " ".join(sys.argv[1:]), **value}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(existing[key], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--section", choices=["anchor", "frozen", "processes"], default="anchor")
    parser.add_argument("--modes", default="hf_grouped,hf_random,polyhead,polyhead_bf16",
                        help=f"anchor section: comma-separated, of {', '.join(MODES)}")  # fmt: skip
    parser.add_argument("--steps", type=int, default=40, help="anchor section: steps per run (timed from step 10)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--base-src", type=Path, help="the src/ directory of the code polyhead_base runs")
    parser.add_argument("--tag", default="", help="anchor section: results under anchor_TAG")
    parser.add_argument("--cache-examples", type=int, default=2000)
    parser.add_argument("--cache-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
    elif args.section == "processes":
        merge(args.out, "processes", processes_speed(args.runs, 10, 40))
    elif args.section == "anchor":
        modes = args.modes.split(",")
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            parser.error(f"--modes: unknown {', '.join(unknown)}; valid: {', '.join(MODES)}")
        result = anchor_speed(modes, args.runs, args.steps, args.base_src)
        merge(args.out, "anchor" + (f"_{args.tag}" if args.tag else ""), {"machine": machine(), **result})
    else:
        merge(args.out, "frozen_encoder", frozen_speed(args.runs, args.cache_examples, args.cache_epochs))


if __name__ == "__main__":
    main()
