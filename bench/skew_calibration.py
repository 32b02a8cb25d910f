"""Skewed classes and calibration (issue #20, items 2 and 3), measured on shared data.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/skew_calibration.py --part skewed [--seeds 42]
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/skew_calibration.py --part ece
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/skew_calibration.py --part ece-finetune

skewed: a copy of SST-2 (train, dev, test; in a temporary directory) with the negative class down-sampled to 5%
  of its size, seeded. Full fine-tunes of the default encoder (1 epoch, batch 32, max length 64): the plain
  run, `class_weights: balanced`, and `class_weights: balanced` + `tune_thresholds: true`; test macro-F1 of each.
ece: heads on the frozen default encoder (cached embeddings; the linear head trained for 5 epochs) on SST-2,
  TREC (coarse) and Banking77 with `calibrate: true`: test expected calibration error before and after
  temperature scaling (15 bins), and test accuracy (unchanged by the temperature).
ece-finetune: the same on SST-2, TREC and Banking77 after a full fine-tune (1 epoch, the single-task recipe).

Writes bench/results/skew_calibration.json (each part under its own key, merged with what is there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "results" / "skew_calibration.json"


def machine() -> dict[str, Any]:
    """CPU model, cores, and a quick fp32 GEMM rate (torch.mm 1024^3, median of 20) beside the timings."""
    import torch

    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), "unknown")
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    times = []
    for _ in range(25):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    median = sorted(times[5:])[len(times[5:]) // 2]
    return {"cpu": name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gemm_fp32_gflop_s": round(2 * 1024**3 / median / 1e9, 1)}


def downsample(src: Path, dst: Path, label: str, share: float, seed: int) -> dict[str, int]:
    """Copy a TSV whose first column is the label, line by line (the text exactly as it was), keeping
    ``share`` of the rows labelled ``label`` (seeded); returns the class counts kept."""
    header, *rows = src.read_text(encoding="utf-8").splitlines()
    assert header.split("\t")[0] == "label", header
    minority = [i for i, row in enumerate(rows) if row.split("\t", 1)[0] == label]
    keep = set(random.Random(seed).sample(minority, max(1, round(share * len(minority)))))
    kept = [row for i, row in enumerate(rows) if row.split("\t", 1)[0] != label or i in keep]
    dst.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for row in kept:
        counts[row.split("\t", 1)[0]] = counts.get(row.split("\t", 1)[0], 0) + 1
    return counts


def train(config: dict[str, Any], out: Path) -> dict[str, Any]:
    from polyhead.config import Config
    from polyhead.training.trainer import Trainer

    started = time.time()
    results = Trainer(Config.model_validate(config), out).run()
    results["bench_wall_s"] = round(time.time() - started, 1)
    return results


def skewed(seeds: list[int], tmp: Path) -> dict[str, Any]:
    counts = {}
    for split in ("train", "dev", "test"):
        counts[split] = downsample(DATA / "sst2" / f"{split}.tsv", tmp / f"{split}.tsv", "negative", 0.05, 7)
    variants: dict[str, dict[str, Any]] = {
        "plain": {},
        "balanced": {"class_weights": "balanced"},
        "balanced+thresholds": {"class_weights": "balanced", "tune_thresholds": True},
    }
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for seed in seeds:
        for name, extra in variants.items():
            config = {
                "name": f"skewed-sst2-{name}",
                "encoder": {"model": "default", "max_length": 64},
                "tasks": {"sentiment": {
                    "type": "classification",
                    "data": {s: str(tmp / f"{s}.tsv") for s in ("train", "dev", "test")},
                    **extra,
                }},
                "training": {"seed": seed, "epochs": 1, "batch_size": 32, "log_with": [],
                             "optimizer": {"lr": 1e-4, "head_lr": 2e-3, "layer_decay": 0.9}},
            }
            res = train(config, tmp / f"run-{name}-{seed}")
            runs[name].append({"seed": seed, "test": res["test"]["sentiment"], "dev": res["dev"]["sentiment"],
                               "thresholds": res.get("calibration", {}).get("sentiment", {}).get("thresholds"),
                               "wall_s": res["bench_wall_s"]})
            print(name, seed, runs[name][-1], flush=True)
    return {"data": "sst2, negative class down-sampled to 5% in train/dev/test (seed 7)", "class_counts": counts,
            "runs": runs}


ECE_TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"label_column": "label", "dev": "dev.tsv"},
    "trec": {"label_column": "coarse_label", "dev_fraction": 0.1},
    "banking77": {"label_column": "label", "dev_fraction": 0.1},
}


def ece(tmp: Path, finetune: bool = False) -> dict[str, Any]:
    out = {}
    for name, spec in ECE_TASKS.items():
        data = {"train": str(DATA / name / "train.tsv"), "test": str(DATA / name / "test.tsv"),
                "label_column": spec["label_column"]}
        if "dev" in spec:
            data["dev"] = str(DATA / name / spec["dev"])
        else:
            data["dev_fraction"] = spec["dev_fraction"]
        config: dict[str, Any] = {
            "name": f"ece-{name}",
            "encoder": {"model": "default", "max_length": 64},
            "tasks": {name: {"type": "classification", "data": data, "calibrate": True}},
            "training": {"seed": 42, "epochs": 5, "batch_size": 32, "log_with": [], "freeze": {"mode": "encoder"},
                         "optimizer": {"lr": 1e-4, "head_lr": 1e-2}},
        }
        if finetune:  # the single-task recipe of configs/single/, one epoch
            config["training"].update(epochs=1, freeze={"mode": "none"},
                                      optimizer={"lr": 1e-4, "head_lr": 2e-3, "layer_decay": 0.9})
        res = train(config, tmp / f"ece-{name}")
        cal = {k: v for k, v in res["calibration"][name].items() if k != "reliability"}
        out[name] = {"test": res["test"][name], **cal, "wall_s": res["bench_wall_s"]}
        print(name, out[name], flush=True)
    setup = ("full fine-tune, 1 epoch, lr 1e-4, head lr 2e-3, LLRD 0.9" if finetune else
             "frozen default encoder, cached embeddings, linear head, 5 epochs, head lr 1e-2")
    return {"setup": setup, "tasks": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["skewed", "ece", "ece-finetune"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.part == "skewed":
            part = skewed(args.seeds, Path(tmp))
        else:
            part = ece(Path(tmp), finetune=args.part == "ece-finetune")
    part["machine"] = machine()
    part["command"] = "python bench/skew_calibration.py " + " ".join(sys.argv[1:])
    previous = results.get(args.part, {})
    if args.part == "skewed" and "runs" in previous:  # runs of other seeds are kept beside the new ones
        for variant, runs in part["runs"].items():
            seeds = {r["seed"] for r in runs}
            runs[:0] = [r for r in previous["runs"].get(variant, []) if r["seed"] not in seeds]
        part["earlier"] = [previous.get("command"), previous.get("machine")]
    results[args.part] = part
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
