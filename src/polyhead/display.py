"""Rich tables shared by the CLI and the demo: similarity pairs and per-text predictions.

User text is put in tables as ``rich.text.Text``, never as markup, so text like "[/]" shows as written.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


def short(text: str, width: int = 60) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(text: str, width: int = 60) -> Text:
    """User text for a Rich table: cut, and never read as markup."""
    return Text(short(text, width))


def similarity_table(texts: list[str], vectors: Any) -> Table:
    """Pairwise cosine similarities of ``vectors`` (n, dim), highest first (at most 50 pairs)."""
    import numpy as np

    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    sims = v @ v.T  # (n, n)
    pairs = sorted(((sims[i, j], i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))), reverse=True)
    table = Table(title="Cosine similarity, high to low")
    table.add_column("text A")
    table.add_column("text B")
    table.add_column("cosine", justify="right")
    for score, i, j in pairs[:50]:
        table.add_row(cell(texts[i], 45), cell(texts[j], 45), f"{score:.4f}")
    return table


def prediction_table(text: str, result: dict[str, Any], tasks: dict[str, Any]) -> Table:
    """One text's predictions: a row per task, in the one line its task type writes (``TaskType.summary``)."""
    table = Table(title=cell(text, 100), title_justify="left")
    table.add_column("task")
    table.add_column("prediction")
    for task, out in result.items():
        table.add_row(Text(task), Text(tasks[task].task.summary(out)))
    return table


def metrics_table(title: str, metrics: dict[str, dict[str, float]]) -> Table:
    """Task x metric -> value (``polyhead evaluate``)."""
    table = Table(title=title)
    for name, justify in (("task", "left"), ("metric", "left"), ("value", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for task, values in metrics.items():
        for name, value in values.items():
            if isinstance(value, int | float):  # a task's ``report`` has tables of its own (report_tables)
                table.add_row(task, name, f"{value:.4f}")
    return table


def evaluation_tables(title: str, results: dict[str, dict[str, Any]]) -> list[Table]:
    """What ``polyhead evaluate`` prints: the metrics table, then each task's report tables."""
    tables = [metrics_table(title, results)]
    for task, values in results.items():
        tables += report_tables(task, values["report"]) if "report" in values else []
    return tables


def report_tables(task: str, report: dict[str, Any], max_matrix: int = 15) -> list[Table]:
    """A task's per-class report (``polyhead evaluate``): precision / recall / F1 / support per class, the
    confusion matrix (up to ``max_matrix`` classes; rows gold, columns predicted), the worst-confused pairs."""
    tables = []
    per_class = Table(title=f"{task}: per class")
    for name in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(name, justify="left" if name == "class" else "right")
    for label, row in report["per_class"].items():
        scores = (f"{row[k]:.4f}" for k in ("precision", "recall", "f1"))
        per_class.add_row(cell(label, 40), *scores, str(row["support"]))
    tables.append(per_class)
    confusion = report.get("confusion")
    if confusion is not None and len(confusion["labels"]) <= max_matrix:
        unit = f", {confusion['unit']}" if "unit" in confusion else ""
        matrix = Table(title=f"{task}: confusion matrix (rows gold, columns predicted{unit})")
        matrix.add_column("gold \\ predicted")
        for label in confusion["labels"]:
            matrix.add_column(cell(label, 12), justify="right")
        for label, row in zip(confusion["labels"], confusion["matrix"], strict=True):
            matrix.add_row(cell(label, 30), *(str(n) for n in row))
        tables.append(matrix)
    counts = report.get("label_counts")  # multilabel: each label's 2x2 counts instead of a matrix
    if counts is not None and len(counts) <= max_matrix:
        table = Table(title=f"{task}: per label decisions")
        for name in ("label", "true pos.", "false pos.", "false neg.", "true neg."):
            table.add_column(name, justify="left" if name == "label" else "right")
        for label, c in counts.items():
            table.add_row(cell(label, 40), *(str(c[k]) for k in ("tp", "fp", "fn", "tn")))
        tables.append(table)
    if report.get("worst_labels"):
        table = Table(title=f"{task}: labels with the most errors")
        for name in ("label", "false positives", "false negatives"):
            table.add_column(name, justify="left" if name == "label" else "right")
        for row in report["worst_labels"]:
            table.add_row(cell(row["label"], 40), str(row["false_positives"]), str(row["false_negatives"]))
        tables.append(table)
    pairs = report.get("worst_confused") or []
    if pairs:
        worst = Table(title=f"{task}: most confused (gold -> predicted)")
        for name in ("gold", "predicted", "count", "share of gold"):
            worst.add_column(name, justify="right" if name in ("count", "share of gold") else "left")
        for pair in pairs:
            worst.add_row(cell(pair["gold"], 30), cell(pair["predicted"], 30), str(pair["count"]),
                          f"{pair['share_of_gold']:.1%}")
        tables.append(worst)
    return tables


def export_report_lines(report: dict[str, Any]) -> list[str]:
    """What ``polyhead export`` prints: the files written, the int8 recipe, each variant's parity gate."""
    lines = [f"wrote {file}" for file in report["files"]]
    if "int8_recipe" in report:
        lines.append(f"int8 recipe: {report['int8_recipe']}")
    for variant, res in report.get("gate", {}).items():
        labels = f", label agreement {res['label_agreement']:.2%}" if res["decisions"] else ""
        sts_moved = (
            f", STS Spearman {res['sts_spearman_torch']:.2f} -> {res['sts_spearman_onnx']:.2f}"
            if "sts_spearman_onnx" in res
            else ""
        )
        lines.append(
            f"parity {variant}: cosine mean {res['cosine_mean']:.6f} min {res['cosine_min']:.6f}"
            f"{labels}{sts_moved} - {'measured (a run-time choice, not gated)' if res.get('measured') else 'passed'}"
        )
    return lines

