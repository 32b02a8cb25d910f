"""Quality benchmarks: train with `polyhead train` on a shipped config, evaluate, write one JSON result.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/quality/run.py NAME [--seed 42] [--set key=value ...]
    .venv/bin/python bench/quality/run.py --list
    # longer than one lock acquisition: stop after S seconds (a checkpoint is saved), then continue
    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/quality/run.py rte --seed 42 --output runs/bench/rte \
        --time-limit 780 [--resume]

Each run writes bench/results/quality/<NAME>-seed<SEED>.json: the benchmark, config file and resolved
config, seed, dev and test metrics per task, STS-B test Spearman of the shared embedding after training,
wall time, library versions and the command. `bench/quality/table.py` turns those files into the
quality section of BENCHMARKS.md. `sts_zero_shot` trains nothing: it compares polyhead's and
sentence-transformers' STS-B test Spearman of the default encoder in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from polyhead.runtime import configure_cpu_runtime  # noqa: E402

configure_cpu_runtime()  # as `polyhead` commands do: oneDNN's kernel caches capped (BENCHMARKS.md, Serving)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "quality"
STS_TEST = ROOT.parent / "shared" / "data" / "stsb" / "test.tsv"

# name -> config file (relative to the repository root)
BENCHMARKS = {
    "sst2": "configs/single/sst2.yaml",
    "trec": "configs/single/trec.yaml",
    "banking77": "configs/single/banking77.yaml",
    "snips_intent": "configs/single/snips_intent.yaml",
    "snips_slots": "configs/single/snips_slots.yaml",
    "absa_category": "configs/single/absa_category.yaml",
    "absa_polarity": "configs/single/absa_polarity.yaml",
    "wikiann": "configs/single/wikiann.yaml",
    "wnut17": "configs/single/wnut17.yaml",
    "mrpc": "configs/single/mrpc.yaml",
    "rte": "configs/single/rte.yaml",
    "stsb": "configs/single/stsb.yaml",
    "multi_glue": "configs/glue_mix.yaml",
    "glue_pairs": "configs/glue_pairs.yaml",
    "glue_joint": "configs/glue_joint.yaml",
    "multi_absa": "configs/absa_restaurants.yaml",
    "multi_snips": "configs/snips_intent_slots.yaml",
    "multi_mix": "configs/mix_trec_sst2_wikiann.yaml",
}


def read_sts(path: Path) -> list[tuple[str, str, float]]:
    from polyhead.evaluation.evaluator import read_sts_pairs

    return read_sts_pairs(path)


def sts_zero_shot() -> dict:
    """STS-B test Spearman x100 of the default encoder: polyhead vs sentence-transformers, same run."""
    import numpy as np
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path

    pairs = read_sts(STS_TEST)
    gold = [p[2] for p in pairs]
    ours = SentenceEncoder.from_pretrained("default", pooling="mean", normalize=True)
    a, b = (np.asarray(ours.encode([p[i] for p in pairs])) for i in (0, 1))
    st = SentenceTransformer(str(resolve_model_path("default")), device="cpu")
    sa, sb = (st.encode([p[i] for p in pairs], normalize_embeddings=True) for i in (0, 1))
    return {
        "test": {
            "sts": {
                "spearman_polyhead": 100 * float(spearmanr((a * b).sum(1), gold).statistic),
                "spearman_sentence_transformers": 100 * float(spearmanr((sa * sb).sum(1), gold).statistic),
                "pairs": len(pairs),
            }
        },
        "dev": {},
    }


def train_and_evaluate(
    name: str, seed: int, overrides: list[str], out: Path | None, resume: bool, time_limit: float | None
) -> dict:
    """Train (continuing ``out`` when ``resume``), then evaluate; exit 1 when ``time_limit`` seconds pass
    first: the trainer gets Ctrl-C, saves a checkpoint, and the run continues with --resume."""
    from polyhead.evaluation.evaluator import sts_spearman
    from polyhead.modeling.multitask import MultiTaskModel

    out = (out or ROOT / "runs" / "bench" / f"{name}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    cmd = [
        sys.executable,
        "-m",
        "polyhead",
        "train",
        BENCHMARKS[name],
        "--output",
        str(out),
        "--quiet",
        "--set",
        f"training.seed={seed}",
        *[x for o in overrides for x in ("--set", o)],
        *(["--resume"] if resume else []),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the trainer finishes its step and saves a checkpoint
        proc.wait()
    if proc.returncode == 130:
        sys.exit(f"stopped after --time-limit {time_limit:g} s; continue with --output {out} --resume")
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    results = json.loads((out / "results.json").read_text())
    model = MultiTaskModel.from_pretrained(out / "model")
    results["sts_spearman_after"] = 100 * sts_spearman(model, read_sts(STS_TEST))
    results["run_dir"] = os.path.relpath(out, ROOT)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", nargs="?", choices=["sts_zero_shot", *BENCHMARKS])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--tag", help="a variant tried beside the benchmark's own settings (with --set): kept apart in the table"
    )
    parser.add_argument("--output", type=Path, help="the run directory (default runs/bench/NAME-seedS-TIME)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint")
    parser.add_argument(
        "--time-limit", type=float, help="stop training after this many seconds, saving a checkpoint (exit 1)"
    )
    args = parser.parse_args()
    if args.resume and args.output is None:
        parser.error("--resume needs --output: the run directory to continue")
    if args.list or not args.name:
        print("\n".join(["sts_zero_shot", *BENCHMARKS]))
        return
    started = time.time()
    if args.name == "sts_zero_shot":
        result = sts_zero_shot()
    else:
        result = train_and_evaluate(args.name, args.seed, args.overrides, args.output, args.resume, args.time_limit)
    import polyhead
    from polyhead.modeldir import library_versions

    record = {
        "benchmark": args.name,
        "config": BENCHMARKS.get(args.name),
        "overrides": args.overrides,
        "tag": args.tag,
        "seed": args.seed,
        "dev": result.get("dev", {}),
        "test": result.get("test", {}),
        "sts_spearman_after": result.get("sts_spearman_after"),
        "wall_time_s": round(time.time() - started, 1),
        "train_wall_time_s": result.get("wall_time_s"),
        "trainable_params": result.get("trainable_params"),
        "library_versions": library_versions(),
        "polyhead_version": polyhead.__version__,
        "command": "python bench/quality/run.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.name}{'-' + args.tag if args.tag else ''}-seed{args.seed}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
