"""Generate the quality section of BENCHMARKS.md from bench/results/quality/*.json (never by hand).

.venv/bin/python bench/quality/table.py            # rewrite the section between the markers
.venv/bin/python bench/quality/table.py --check    # exit 1 if BENCHMARKS.md is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "quality"
TIME_RATIOS = ROOT / "bench" / "results" / "quality_time_ratio.json"  # bench/quality/time_ratio.py
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- quality:start -->", "<!-- quality:end -->"

# (benchmark, task, metric key, shown metric name, dataset): which number of a result file a row shows.
ROWS = [
    ("sst2", "sentiment", "accuracy", "accuracy", "SST-2"),
    ("trec", "question_type", "accuracy", "accuracy", "TREC coarse"),
    ("banking77", "intent", "accuracy", "accuracy", "Banking77"),
    ("snips_intent", "intent", "accuracy", "accuracy", "SNIPS intent"),
    ("snips_slots", "slots", "f1", "entity F1", "SNIPS slots"),
    ("absa_category", "category", "accuracy", "accuracy", "SemEval-14 rest. category"),
    ("absa_category", "category", "macro_f1", "macro-F1", "SemEval-14 rest. category"),
    ("absa_polarity", "polarity", "accuracy", "accuracy", "SemEval-14 rest. polarity"),
    ("absa_polarity", "polarity", "macro_f1", "macro-F1", "SemEval-14 rest. polarity"),
    ("wikiann", "entities", "f1", "entity F1", "WikiANN-en"),
    ("wnut17", "entities", "f1", "entity F1", "WNUT-17"),
    ("mrpc", "paraphrase", "accuracy", "accuracy", "MRPC (pairs)"),
    ("mrpc", "paraphrase", "f1", "F1 (paraphrase)", "MRPC (pairs)"),
    ("rte", "entailment", "accuracy", "accuracy", "RTE (pairs)"),
    ("stsb", "sts", "spearman", "Spearman", "STS-B (similarity)"),
]
# Multi-task runs: benchmark -> {task in the multi-task run: (single-task benchmark, task there)}
MULTI = {
    "multi_absa": {"category": ("absa_category", "category"), "polarity": ("absa_polarity", "polarity")},
    "multi_snips": {"intent": ("snips_intent", "intent"), "slots": ("snips_slots", "slots")},
    "multi_mix": {
        "question_type": ("trec", "question_type"),
        "sentiment": ("sst2", "sentiment"),
        "entities": ("wikiann", "entities"),
    },
    # sts (STS-B as a cross-encoded pair regression) has no single-task row
    "glue_pairs": {"entailment": ("rte", "entailment"), "paraphrase": ("mrpc", "paraphrase")},
    "glue_joint": {"entailment": ("rte", "entailment"), "paraphrase": ("mrpc", "paraphrase")},
}
SHOWN = {"accuracy": "accuracy", "macro_f1": "macro-F1", "f1": "entity F1", "spearman": "Spearman"}


def primary_keys(metrics: dict) -> list[str]:
    """The metrics a task's row shows: entity F1 for token tasks, Spearman for regression, else accuracy and
    macro-F1."""
    if "precision" in metrics:
        return ["f1"]
    return ["spearman"] if "spearman" in metrics else ["accuracy", "macro_f1"]
# Reference figures: what a comparable small model should reach, with where the figure comes from.
REFERENCES = {
    "sts_zero_shot": ("82.03", "MTEB STSBenchmark, all-MiniLM-L6-v2 (its own copy of the data)"),
    "sst2": ("90", "issue #6 target for all-MiniLM-L6-v2"),
    "trec": ("95", "issue #6 target"),
    "banking77": ("91", "issue #6 target"),
    "snips_intent": ("97", "issue #6 target"),
    "snips_slots": ("93", "issue #6 target"),
    "wikiann": ("78", "issue #6 target"),
    "mrpc": ("88 F1 / 84 acc.", "issue #19 target"),
    "rte": ("65", "issue #19 target"),
}


def load() -> dict[str, list[dict]]:
    """Results by benchmark; variants run with --tag go under "preserve" when they set
    training.preserve_embedding (their own table, against the same seeds without it), else under "tried"."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        key = record["benchmark"]
        if record.get("tag"):
            preserving = any(o.startswith("training.preserve_embedding") for o in record.get("overrides", []))
            key = "preserve" if preserving else "tried"
        runs.setdefault(key, []).append(record)
    return runs


def stat(values: list[float]) -> str:
    """'91.23' for one run, '91.23 ± 0.40 (n=3)' (mean ± sample std) for several."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def metric(records: list[dict], task: str, key: str) -> list[float]:
    return [100 * r["test"][task][key] for r in records if task in r.get("test", {})]


def verdict(multi: list[float], single: list[float]) -> str:
    """helped / hurt when Welch's t-test over seeds gives p < 0.05, else no clear difference; with fewer
    than two runs on a side, say that noise can't be told apart."""
    if not multi or not single:
        return "-"
    if len(multi) < 2 or len(single) < 2:
        return "one run on a side: can't tell from noise"
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():  # identical runs on a side (zero spread) make scipy warn
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(multi, single, equal_var=False).pvalue)
    if p < 0.05:
        return f"{'helped' if statistics.mean(multi) > statistics.mean(single) else 'hurt'} (p={p:.3f})"
    return f"no clear difference (p={p:.2f})"


def command(records: list[dict]) -> str:
    """The records' command without its seed (listed after it): a variant keeps its --set and --tag."""
    seeds = sorted({r["seed"] for r in records})
    base = re.sub(r" --seed \S+", "", records[0]["command"])
    return f"`{base}`" + (f" (seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else "")


def time_ratio(bench: str, tag: str, seeds: list[int]) -> str:
    """The variant's training time over the benchmark's, both measured alternately in one sitting
    (bench/quality/time_ratio.py): 'x1.04 (1.02-1.06, seed 42)', or '-' when not measured."""
    measured = json.loads(TIME_RATIOS.read_text()) if TIME_RATIOS.is_file() else {}
    shown = []
    for seed in seeds:
        if (m := measured.get(f"{bench}-{tag}-seed{seed}")) is not None:
            low, high = min(m["ratio_per_round"]), max(m["ratio_per_round"])
            shown.append(f"x{m['ratio_of_medians']:.2f} ({low:.2f}-{high:.2f}, seed {seed})")
    return "; ".join(shown) or "-"


def preservation(runs: dict[str, list[dict]]) -> list[str]:
    """Each preserve_embedding variant against the benchmark's own runs with the same seeds."""
    lines = [
        "### Embedding preservation, same seeds (test split, x100)",
        "",
        "Each `training.preserve_embedding` variant against the benchmark's own runs with the same seeds",
        '("without"); the time ratio is measured by `bench/quality/time_ratio.py`, both sides alternating in',
        "one sitting (median ratio, range over rounds), since run times hours apart on this shared CPU differ",
        "several-fold.",
        "",
        "| run | variant | task | metric | without | with | difference | verdict | STS-B after: without | "
        "with | train time with/without | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    variants: dict[tuple[str, str], list[dict]] = {}
    for r in runs["preserve"]:
        variants.setdefault((r["benchmark"], r["tag"]), []).append(r)
    for (bench, tag), recs in variants.items():
        seeds = sorted({r["seed"] for r in recs})
        base = [r for r in runs.get(bench, []) if r["seed"] in seeds]
        sts = {
            side: [r["sts_spearman_after"] for r in rs if r.get("sts_spearman_after") is not None]
            for side, rs in (("without", base), ("with", recs))
        }
        sts_text = " | ".join(stat(v) if v else "-" for v in sts.values())
        for task, metrics in recs[0]["test"].items():
            for key in primary_keys(metrics):
                without, with_ = metric(base, task, key), metric(recs, task, key)
                diff = f"{statistics.mean(with_) - statistics.mean(without):+.2f}" if without and with_ else "-"
                lines.append(
                    f"| {bench} | {tag} | {task} | {SHOWN[key]} | {stat(without) if without else '-'} | "
                    f"{stat(with_)} | {diff} | {verdict(with_, without)} | {sts_text} | "
                    f"{time_ratio(bench, tag, seeds)} | {command(recs)} |"
                )
    return [*lines, ""]


def render(runs: dict[str, list[dict]]) -> str:
    lines = [
        START,
        "",
        "Generated by `python bench/quality/table.py` from `bench/results/quality/*.json`.",
        "",
    ]
    if "sts_zero_shot" in runs:
        r = runs["sts_zero_shot"][-1]["test"]["sts"]
        ref, src = REFERENCES["sts_zero_shot"]
        lines += [
            "### Embeddings, no training: STS-B test (1,379 pairs), Spearman x100 of cosine",
            "",
            "| model | polyhead | sentence-transformers, same run | difference | published |",
            "| --- | --- | --- | --- | --- |",
            f"| all-MiniLM-L6-v2, mean pooling + normalise | {r['spearman_polyhead']:.2f} | "
            f"{r['spearman_sentence_transformers']:.2f} | "
            f"{abs(r['spearman_polyhead'] - r['spearman_sentence_transformers']):.4f} | {ref} ({src}) |",
            "",
            f"Command: {command(runs['sts_zero_shot'])}",
            "",
        ]
    single = [row for row in ROWS if row[0] in runs]
    if single:
        lines += [
            "### Single-task fine-tuning of all-MiniLM-L6-v2 (test split, x100)",
            "",
            "| dataset | metric | polyhead | reference | STS-B after | train time (s) | command |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for bench, task, key, shown, dataset in single:
            recs = runs[bench]
            ref = REFERENCES.get(bench, ("-", ""))
            ref_text = f"{ref[0]} ({ref[1]})" if ref[1] else ref[0]
            sts = [r["sts_spearman_after"] for r in recs if r.get("sts_spearman_after") is not None]
            time_s = statistics.median([r["train_wall_time_s"] for r in recs if r.get("train_wall_time_s")] or [0])
            lines.append(
                f"| {dataset} | {shown} | {stat(metric(recs, task, key))} | {ref_text} | "
                f"{stat(sts) if sts else '-'} | {time_s:.0f} | {command(recs)} |"
            )
        lines.append("")
    multi = [m for m in MULTI if m in runs]
    if multi:
        lines += [
            "### Multi-task (one shared encoder) vs single-task, same budget (test split, x100)",
            "",
            "| run | task | metric | multi-task | single-task | difference | verdict | STS-B after (multi) | command |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for m in multi:
            recs = runs[m]
            sts = [r["sts_spearman_after"] for r in recs if r.get("sts_spearman_after") is not None]
            for task, (single_bench, single_task) in MULTI[m].items():
                metrics = recs[0]["test"].get(task) or {}
                keys = ["f1"] if "precision" in metrics else ["accuracy", "macro_f1"]
                for key in keys:
                    mt = metric(recs, task, key)
                    st = metric(runs.get(single_bench, []), single_task, key)
                    diff = f"{statistics.mean(mt) - statistics.mean(st):+.2f}" if mt and st else "-"
                    lines.append(
                        f"| {m} | {task} | {SHOWN[key]} | {stat(mt) if mt else '-'} | {stat(st) if st else '-'} | "
                        f"{diff} | {verdict(mt, st)} | {stat(sts) if sts else '-'} | {command(recs)} |"
                    )
        lines.append("")
    if runs.get("preserve"):
        lines += preservation(runs)
    if runs.get("tried"):
        lines += [
            "### Other settings tried (not in the rows above)",
            "",
            "| benchmark | variant | overrides | test metrics (x100) | STS-B after | seed | command |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in runs["tried"]:
            metrics = ", ".join(
                f"{t} {k} {100 * v:.2f}" for t, m in r["test"].items() for k, v in m.items() if k in SHOWN
            )
            sts_after = f"{r['sts_spearman_after']:.2f}" if r.get("sts_spearman_after") is not None else "-"
            lines.append(
                f"| {r['benchmark']} | {r['tag']} | {' '.join(r['overrides'])} | {metrics} | {sts_after} | "
                f"{r['seed']} | `{r['command']}` |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def update(text: str, section: str) -> str:
    if START in text and END in text:
        return text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    return text.rstrip("\n") + "\n\n## Quality\n\n" + section + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    new = update(text, render(load()))
    if args.check:
        if new != text:
            print(
                "BENCHMARKS.md quality section is out of date: run python bench/quality/table.py",
                file=sys.stderr,
            )
            sys.exit(1)
        return
    BENCHMARKS_MD.write_text(new)


if __name__ == "__main__":
    main()
