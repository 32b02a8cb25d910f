"""Per-task evaluation of a model (any predictor) on examples, via the same predict() users call, and the STS
Spearman of the shared embedding."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.errors import PolyheadError

logger = logging.getLogger(__name__)


def evaluate_task(
    model: Any, task: str, examples: Sequence[Any], batch_size: int = 64, precision: str = "fp32"
) -> dict[str, float]:
    """Metrics of one head on examples (readers' Example objects); names are the task type's metric_names."""
    gold, pred = predict_task(model, task, examples, batch_size, precision)
    return task_metrics(model, task, gold, pred)


def task_metrics(model: Any, task: str, gold: Sequence[Any], pred: Sequence[Any]) -> dict[str, float]:
    """Metrics of one head from (gold, predicted) values as :func:`predict_task` returns them."""
    spec = model.tasks[task]
    return spec.task.metrics(list(gold), list(pred), spec.labels)  # type: ignore[no-any-return]


def predict_task(
    model: Any, task: str, examples: Sequence[Any], batch_size: int = 64, precision: str = "fp32"
) -> tuple[list[Any], list[Any]]:
    """Gold and predicted values of one head on examples, in example order, ready for :func:`task_metrics`
    (what they are is the task type's choice: labels, label lists, scores, tag lists, cosines)."""
    if not examples:
        return [], []
    spec = model.tasks[task]
    return spec.task.predict_examples(model, task, examples, batch_size, precision)  # type: ignore[no-any-return]


def read_sts_pairs(
    file: str | Path, sentence1: str = "sentence1", sentence2: str = "sentence2", score: str = "score",
    where: str = "--sts",
) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, gold score) rows of an STS file (TSV/CSV/JSONL), read like a similarity task's
    data; ``where`` names the option or config key in the error for a missing file."""
    from polyhead.config import resolve_path
    from polyhead.data.readers import ReaderOptions, read_examples

    path = resolve_path(str(file))
    if not path.is_file():
        raise PolyheadError(f"{where}: {str(file)!r} not found (a file with {sentence1}, {sentence2}, {score} columns)")
    options = ReaderOptions(text_column=sentence1, pair_column=sentence2, label_column=score)
    return [(ex.text, ex.text_pair or "", float(ex.label)) for ex in read_examples(path, "similarity", options)]  # type: ignore[arg-type]


def sts_spearman(model: Any, pairs: Sequence[tuple[str, str, float]], batch_size: int = 64) -> float:
    """Spearman (x100 is the usual report) between cosine of the shared embedding and gold scores."""
    from scipy.stats import spearmanr

    a = np.asarray(model.encode([p[0] for p in pairs], batch_size=batch_size, normalize=True))
    b = np.asarray(model.encode([p[1] for p in pairs], batch_size=batch_size, normalize=True))
    return float(spearmanr((a * b).sum(axis=1), [p[2] for p in pairs]).statistic)
