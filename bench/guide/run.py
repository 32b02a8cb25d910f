"""Training-guide runs: train configs/guide/<strategy>.yaml with a seed, keep results.json + config.yaml.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/guide/run.py STRATEGY [--seed 42]
    .venv/bin/polyhead compare bench/results/guide/* --markdown docs/guide-results.md --plot docs/img/guide.png

The run directory (with the model) goes to runs/guide/; its results.json and config.yaml are copied to
bench/results/guide/<strategy>-seed<seed>/ so the guide's table is regenerated from committed files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    strategies = sorted(p.stem for p in (ROOT / "configs" / "guide").glob("*.yaml"))
    parser = argparse.ArgumentParser()
    parser.add_argument("strategy", choices=strategies)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    run = ROOT / "runs" / "guide" / f"{args.strategy}-seed{args.seed}"
    if run.exists():
        shutil.rmtree(run)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "polyhead",
            "train",
            f"configs/guide/{args.strategy}.yaml",
            "--output",
            str(run),
            "--quiet",
            "--set",
            f"training.seed={args.seed}",
        ],
        check=True,
        cwd=ROOT,
    )
    keep = ROOT / "bench" / "results" / "guide" / run.name
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "config.yaml"):
        shutil.copy(run / name, keep / name)
    print(keep)


if __name__ == "__main__":
    main()
