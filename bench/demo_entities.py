"""Tune the demo's entity head on the dev split only: entity-only training runs of the demo recipe with
settings changed by ``--set``; dev entity F1 / precision / recall with BIO-constrained (Viterbi) decoding and
with plain per-word argmax, from the same trained model.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/demo_entities.py --tag base
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/demo_entities.py --tag full \\
        --set training.freeze.layers_below=0 --set training.epochs=6

Appends one JSON line per run to bench/results/demo_entities.jsonl. The test split is never read here: the
demo's settings were chosen on dev (BENCHMARKS.md, "The demo").
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.runtime import configure_cpu_runtime

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "demo_entities.jsonl"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def argmax_path(labels: Any, log_probs: np.ndarray) -> list[int]:
    return [int(i) for i in np.asarray(log_probs).argmax(axis=-1)]


def dev_metrics(model: Any, examples: list[Any]) -> dict[str, dict[str, float]]:
    """Dev entity metrics with the shipped (constrained) decoding and with per-word argmax."""
    import polyhead.tasks.token_classification as tc
    from polyhead.evaluation.evaluator import evaluate_task

    out = {"viterbi": evaluate_task(model, "entities", examples)}
    constrained = tc.bio_viterbi
    tc.bio_viterbi = argmax_path  # type: ignore[assignment]
    try:
        out["argmax"] = evaluate_task(model, "entities", examples)
    finally:
        tc.bio_viterbi = constrained
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override KEY=VALUE")
    parser.add_argument("--tasks", default="entities", help="comma-separated demo tasks to train")
    args = parser.parse_args()
    configure_cpu_runtime()

    from polyhead.config import Config, load_config
    from polyhead.demo import demo_config_file
    from polyhead.demo_data import write_demo_data
    from polyhead.training.setup import load_all_data
    from polyhead.training.trainer import Trainer

    keep = args.tasks.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        write_demo_data(data_dir, seed=13)
        with demo_config_file() as path:
            base = load_config(path)
            overrides = [
                f"tasks.{name}.data.{split}={data_dir / Path(getattr(task.data, split)).name}"
                for name, task in base.tasks.items()
                for split in ("train", "dev", "test")
            ]
            config = load_config(path, overrides + ["training.log_with=[]", *args.overrides])
        dumped = config.model_dump()
        dumped["tasks"] = {k: v for k, v in dumped["tasks"].items() if k in keep}
        for task in dumped["tasks"].values():
            task["data"]["test"] = None  # tuning never looks at the test split
        config = Config.model_validate(dumped)
        started = time.time()
        trainer = Trainer(config, Path(tmp) / "run", show_progress=False, report=lambda item: None)
        trainer.run()
        train_s = time.time() - started
        dev = load_all_data(config)["entities"].dev
        metrics = dev_metrics(trainer.model, dev)
    record = {
        "tag": args.tag,
        "overrides": args.overrides,
        "tasks": keep,
        "dev": metrics,
        "train_s": round(train_s, 1),
        "cpu": cpu_name(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    v, a = metrics["viterbi"], metrics["argmax"]
    print(
        f"{args.tag}: dev F1 {v['f1']:.3f} P {v['precision']:.3f} R {v['recall']:.3f} (argmax F1 {a['f1']:.3f} "
        f"P {a['precision']:.3f}) in {train_s:.0f} s"
    )


if __name__ == "__main__":
    main()
