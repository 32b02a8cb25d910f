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
            table.add_row(task, name, f"{value:.4f}")
    return table


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

