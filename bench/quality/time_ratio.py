"""Training time of a quality benchmark with and without a setting, measured alternately in one sitting.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/quality/time_ratio.py multi_absa --seed 42 \\
        --set training.preserve_embedding.weight=1.0 --tag preserve-1 [--rounds 2]

Training times of runs made hours apart on this shared CPU differ by up to 8x (BENCHMARKS.md's quality
rows: multi_absa seed 42 trained in 97 s, seed 2 in 817 s), so a time ratio between a variant and the
benchmark's own rows says nothing. This runs `polyhead train` on the benchmark's config, same seed, without
and with the ``--set`` overrides, alternating (the order reversed every other round), each run its own
process; the time is results.json's ``wall_time_s`` (setup, the reference embeddings of preservation,
training steps and per-epoch dev evaluation; not the final test evaluation). Records each run's time and
test metrics, the median per side, each round's ratio, and the machine (bench/roofline.py's GEMM rates).
Merges into bench/results/quality_time_ratio.json under "NAME-TAG-seedS".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "quality_time_ratio.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "bench"))

from run import BENCHMARKS  # noqa: E402


def train_once(name: str, seed: int, overrides: list[str]) -> dict[str, Any]:
    """One `polyhead train` in its own process: its wall_time_s and test metrics (x100)."""
    with tempfile.TemporaryDirectory(prefix="polyhead-time-") as tmp:
        out = Path(tmp) / "run"
        sets = [x for o in [f"training.seed={seed}", *overrides] for x in ("--set", o)]
        cmd = [sys.executable, "-m", "polyhead", "train", BENCHMARKS[name], "--output", str(out), "--quiet", *sets]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        results = json.loads((out / "results.json").read_text())
    test = {
        f"{task} {key}": round(100 * value, 2)
        for task, metrics in results["test"].items()
        for key, value in metrics.items()
        if key in ("accuracy", "macro_f1", "f1")
    }
    print(json.dumps({"overrides": overrides, "wall_time_s": results["wall_time_s"], "test": test}), flush=True)
    return {"wall_time_s": results["wall_time_s"], "test": test}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=list(BENCHMARKS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", dest="overrides", action="append", required=True)
    parser.add_argument("--tag", required=True, help="names the variant in the results file")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (without, with)")
    args = parser.parse_args()
    from train_speed import machine

    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    ratios = []
    for r in range(args.rounds):
        sides = ["without", "with"] if r % 2 == 0 else ["with", "without"]
        for side in sides:
            runs[side].append(train_once(args.name, args.seed, args.overrides if side == "with" else []))
        ratios.append(runs["with"][-1]["wall_time_s"] / runs["without"][-1]["wall_time_s"])
    median = {side: statistics.median(x["wall_time_s"] for x in runs[side]) for side in runs}
    record = {
        "command": "python bench/quality/time_ratio.py " + " ".join(sys.argv[1:]),
        "benchmark": args.name,
        "seed": args.seed,
        "overrides": args.overrides,
        "runs": runs,
        "median_wall_time_s": median,
        "ratio_per_round": [round(x, 3) for x in ratios],
        "ratio_of_medians": round(median["with"] / median["without"], 3),
        "machine": machine(),
    }
    existing = json.loads(OUT.read_text()) if OUT.is_file() else {}
    existing[f"{args.name}-{args.tag}-seed{args.seed}"] = record
    OUT.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
