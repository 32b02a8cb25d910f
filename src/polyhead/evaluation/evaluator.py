"""Per-task evaluation of a MultiTaskModel on examples, via the same predict() users call."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from polyhead.evaluation.metrics import compute_metrics
from polyhead.modeling.multitask import MultiTaskModel

logger = logging.getLogger(__name__)


def evaluate_task(
    model: MultiTaskModel, task: str, examples: Sequence[Any], batch_size: int = 64, precision: str = "fp32"
) -> dict[str, float]:
    """Metrics of one head on examples (readers' Example objects); see evaluation/metrics.py for names."""
    gold, pred = predict_task(model, task, examples, batch_size, precision)
    return task_metrics(model, task, gold, pred)


def task_metrics(model: MultiTaskModel, task: str, gold: Sequence[Any], pred: Sequence[Any]) -> dict[str, float]:
    """Metrics of one head from (gold, predicted) values as :func:`predict_task` returns them."""
    spec = model.tasks[task]
    return compute_metrics(spec.type, list(gold), list(pred), labels=spec.labels or None)


def predict_task(
    model: MultiTaskModel, task: str, examples: Sequence[Any], batch_size: int = 64, precision: str = "fp32"
) -> tuple[list[Any], list[Any]]:
    """Gold and predicted values of one head on examples, in example order, ready for compute_metrics.

    Labels for classification, label lists for multilabel, scores for regression, tag lists for token
    classification, gold score and cosine of the two sentences' embeddings for similarity.
    """
    spec = model.tasks[task]
    if not examples:
        return [], []
    if spec.type == "similarity":
        a, b = (
            np.asarray(model.encode(texts, batch_size=batch_size, normalize=True, precision=precision))
            for texts in ([ex.text for ex in examples], [ex.text_pair for ex in examples])
        )
        return [float(ex.label) for ex in examples], (a * b).sum(axis=1).tolist()
    inputs = [ex.words if spec.level == "token" else ex.text for ex in examples]
    results = model.predict(inputs, tasks=[task], batch_size=batch_size, precision=precision)
    outputs = [r[task] for r in results]
    if spec.type == "classification":
        pred: list[Any] = [o["label"] for o in outputs]
    elif spec.type == "multilabel":
        pred = [o["labels"] for o in outputs]
    elif spec.type == "regression":
        pred = [o["score"] for o in outputs]
    else:
        pred = [o["tags"] for o in outputs]
    gold = [float(ex.label) if spec.type == "regression" else ex.label for ex in examples]
    return gold, pred


def sts_spearman(model: MultiTaskModel, pairs: Sequence[tuple[str, str, float]], batch_size: int = 64) -> float:
    """Spearman (x100 is the usual report) between cosine of the shared embedding and gold scores."""
    from scipy.stats import spearmanr

    a = np.asarray(model.encode([p[0] for p in pairs], batch_size=batch_size, normalize=True))
    b = np.asarray(model.encode([p[1] for p in pairs], batch_size=batch_size, normalize=True))
    return float(spearmanr((a * b).sum(axis=1), [p[2] for p in pairs]).statistic)
