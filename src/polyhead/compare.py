"""`polyhead compare`: finished runs side by side, and "did multi-task help?".

A run is a run directory (results.json + config.yaml, as `polyhead train` writes) or a quality-benchmark
JSON file (bench/results/quality/*.json). Runs with the same name (config `name`, or benchmark name) are
seeds of one strategy: their metrics are averaged and the sample standard deviation is shown.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polyhead.errors import PolyheadError

logger = logging.getLogger(__name__)
PRIMARY = ("accuracy", "f1", "micro_f1", "spearman")


@dataclass
class Run:
    name: str
    seed: int | None
    test: dict[str, dict[str, float]]
    wall_time_s: float | None = None
    trainable_params: int | None = None
    sts: float | None = None
    source: str = ""


@dataclass
class Strategy:
    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        return sorted({t for r in self.runs for t in r.test})

    def values(self, task: str) -> list[float]:
        return [100 * primary(r.test[task])[1] for r in self.runs if task in r.test]


def primary(metrics: dict[str, float]) -> tuple[str, float]:
    """The primary metric of the task type whose metric names these are (entity F1 for token tasks, which
    also report word accuracy), else the first of PRIMARY present."""
    from polyhead.tasks import get_task_type, task_type_names

    for name in task_type_names():
        task = get_task_type(name)
        if task.metric_names and set(task.metric_names) <= set(metrics):
            return task.primary_metric, metrics[task.primary_metric]
    for key in PRIMARY:
        if key in metrics:
            return key, metrics[key]
    raise PolyheadError(f"no primary metric among {sorted(metrics)}")


def readable_tasks(test: dict[str, dict[str, float]], source: Path) -> dict[str, dict[str, float]]:
    """Tasks with a metric compare can rank by; others (e.g. a zero-shot STS record) are left out, saying so."""
    kept = {}
    for task, metrics in test.items():
        try:
            primary(metrics)
            kept[task] = metrics
        except PolyheadError:
            logger.warning("%s: task %r has no metric compare ranks by (%s): left out", source, task,
                           ", ".join(sorted(metrics)))
    return kept


def load_run(path: Path) -> Run:
    """A run directory or a benchmark JSON file -> Run (one-line errors for anything else)."""
    if path.is_dir():
        results_file = path / "results.json"
        if not results_file.is_file():
            raise PolyheadError(f"{path}: no results.json (is the run finished?)")
        results = read_json(results_file)
        name = results.get("name")
        config_file = path / "config.yaml"
        if config_file.is_file():
            name = (yaml.safe_load(config_file.read_text()) or {}).get("name", name)
        sts = results.get("sts_spearman")
        return Run(
            str(name or path.name),
            results.get("seed"),
            readable_tasks(results.get("test") or {}, results_file),
            results.get("wall_time_s"),
            results.get("trainable_params"),
            100 * sts if sts is not None else None,
            str(path),
        )
    if path.suffix == ".json" and path.is_file():
        record = read_json(path)
        if "benchmark" not in record or "test" not in record:
            raise PolyheadError(f"{path}: not a polyhead run result (needs 'benchmark' and 'test')")
        overrides = record.get("overrides") or []  # runs with other overrides are another strategy, not a seed
        return Run(
            record["benchmark"] + (f" ({', '.join(map(str, overrides))})" if overrides else ""),
            record.get("seed"),
            readable_tasks(record["test"], path),
            record.get("train_wall_time_s"),
            record.get("trainable_params"),
            record.get("sts_spearman_after"),
            str(path),
        )
    raise PolyheadError(f"{path}: not a run directory or a result .json file")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolyheadError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PolyheadError(f"{path}: expected a JSON object")
    return data


def group(runs: list[Run]) -> list[Strategy]:
    strategies: dict[str, Strategy] = {}
    for run in runs:
        strategies.setdefault(run.name, Strategy(run.name)).runs.append(run)
    return list(strategies.values())


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def metric_name(strategies: list[Strategy], task: str) -> str:
    names = {primary(r.test[task])[0] for s in strategies for r in s.runs if task in r.test}
    return "/".join(sorted(names))


def comparison_rows(strategies: list[Strategy]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: strategy, seeds, one column per task (primary test metric x100), STS, params, time."""
    tasks = sorted({t for s in strategies for t in s.tasks})
    header = [
        "strategy",
        "seeds",
        *[f"{t} (test {metric_name(strategies, t)})" for t in tasks],
        "STS-B after",
        "trainable params",
        "wall time (s)",
    ]
    rows = []
    for s in strategies:
        sts = [r.sts for r in s.runs if r.sts is not None]
        params = [r.trainable_params for r in s.runs if r.trainable_params is not None]
        times = [r.wall_time_s for r in s.runs if r.wall_time_s is not None]
        rows.append(
            [
                s.name,
                str(len(s.runs)),
                *[fmt(s.values(t)) for t in tasks],
                fmt(sts),
                f"{params[0]:,}" if params else "-",
                f"{statistics.median(times):.0f}" if times else "-",
            ]
        )
    return header, rows


def multitask_rows(strategies: list[Strategy]) -> tuple[list[str], list[list[str]]]:
    """Each task of a multi-task strategy against single-task strategies of the same task name."""
    single = {s.tasks[0]: s for s in strategies if len(s.tasks) == 1}
    header = ["task", "multi-task run", "multi-task", "single-task run", "single-task", "difference"]
    rows = []
    for s in strategies:
        if len(s.tasks) < 2:
            continue
        for task in s.tasks:
            if task not in single:
                continue
            mt, st = s.values(task), single[task].values(task)
            spread = max(
                statistics.stdev(mt) if len(mt) > 1 else 0.0, statistics.stdev(st) if len(st) > 1 else 0.0
            )
            diff = statistics.mean(mt) - statistics.mean(st)
            verdict = (
                "no clear difference"
                if abs(diff) <= spread or (len(mt) < 2 and len(st) < 2)
                else ("multi-task helped" if diff > 0 else "multi-task hurt")
            )
            rows.append([task, s.name, fmt(mt), single[task].name, fmt(st), f"{diff:+.2f} ({verdict})"])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plot(strategies: list[Strategy], out: Path) -> Path:
    """Grouped bars: one group per task, one bar per strategy, error bars = std over seeds."""
    from polyhead.extras import require

    require("plots", "compare --plot", ["matplotlib"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for s in strategies for t in s.tasks})
    width = 0.8 / max(1, len(strategies))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(tasks) + 0.4 * len(strategies)), 4.5))
    for i, s in enumerate(strategies):
        means = [statistics.mean(s.values(t)) if s.values(t) else 0.0 for t in tasks]
        errs = [statistics.stdev(s.values(t)) if len(s.values(t)) > 1 else 0.0 for t in tasks]
        xs = [j + i * width for j in range(len(tasks))]
        ax.bar(xs, means, width, yerr=errs, label=s.name, capsize=2)
    ax.set_xticks([j + width * (len(strategies) - 1) / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("test metric x100 (accuracy or entity F1)")
    values = [v for s in strategies for t in s.tasks for v in s.values(t)]
    if values:
        ax.set_ylim(max(0, min(values) - 10), min(100, max(values) + 5))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def compare(paths: list[Path]) -> dict[str, Any]:
    if not paths:
        raise PolyheadError("give at least one run directory or result file")
    strategies = group([load_run(p) for p in paths])
    header, rows = comparison_rows(strategies)
    mt_header, mt_rows = multitask_rows(strategies)
    markdown = markdown_table(header, rows)
    if mt_rows:
        markdown += "\n\nDid multi-task help? (difference of means; spread = the larger std over seeds)\n\n"
        markdown += markdown_table(mt_header, mt_rows)
    return {
        "strategies": strategies,
        "table": (header, rows),
        "multitask": (mt_header, mt_rows),
        "markdown": markdown,
    }
