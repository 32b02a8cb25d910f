"""Metrics per task type: plain floats in [0, 1] (mse excepted), keyed by metric name."""

from __future__ import annotations

import math
from typing import Any

from polyhead.errors import DataError

PRIMARY_METRIC = {
    "classification": "accuracy",
    "multilabel": "micro_f1",
    "regression": "spearman",
    "token_classification": "f1",
    "similarity": "spearman",
}
# Every metric name compute_metrics returns, per task type.
METRIC_NAMES = {
    "classification": ("accuracy", "macro_f1"),
    "multilabel": ("micro_f1", "macro_f1", "subset_accuracy"),
    "regression": ("pearson", "spearman", "mse"),
    "token_classification": ("f1", "precision", "recall", "accuracy"),
    "similarity": ("pearson", "spearman", "mse"),
}


def finite(value: float) -> float:
    """Correlations of constant predictions are undefined (nan): report 0.0."""
    return 0.0 if value is None or math.isnan(value) else float(value)


def compute_metrics(
    task_type: str, gold: list[Any], pred: list[Any], labels: list[str] | None = None
) -> dict[str, float]:
    """Compare gold and predicted values of one task.

    classification: accuracy, macro_f1 (over ``labels``); multilabel (label lists): micro_f1, macro_f1,
    subset_accuracy; regression/similarity: pearson, spearman, mse; token_classification (word-level
    BIO tag lists): entity-level f1, precision, recall (seqeval) and word accuracy.
    """
    if not gold or len(gold) != len(pred):
        raise DataError(
            f"metrics need equal, non-empty gold and predictions (got {len(gold)} and {len(pred)})"
        )
    if task_type == "classification":
        from sklearn.metrics import accuracy_score, f1_score

        return {
            "accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(
                f1_score(gold, pred, labels=labels or sorted(set(gold)), average="macro", zero_division=0)
            ),
        }
    if task_type == "multilabel":
        from sklearn.metrics import f1_score
        from sklearn.preprocessing import MultiLabelBinarizer

        mlb = MultiLabelBinarizer(classes=labels or sorted({x for g in gold for x in g}))
        y_true, y_pred = (
            mlb.fit_transform(gold),
            mlb.transform([[x for x in p if x in mlb.classes_] for p in pred]),
        )
        return {
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "subset_accuracy": sum(set(g) == set(p) for g, p in zip(gold, pred, strict=True)) / len(gold),
        }
    if task_type in ("regression", "similarity"):
        from scipy.stats import pearsonr, spearmanr

        g, p = [float(x) for x in gold], [float(x) for x in pred]
        constant = len(set(p)) < 2 or len(set(g)) < 2
        return {
            "pearson": 0.0 if constant else finite(pearsonr(g, p).statistic),
            "spearman": 0.0 if constant else finite(spearmanr(g, p).statistic),
            "mse": sum((a - b) ** 2 for a, b in zip(g, p, strict=True)) / len(g),
        }
    if task_type == "token_classification":
        from seqeval.metrics import f1_score, precision_score, recall_score

        words = sum(len(g) for g in gold)
        correct = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
        return {
            "f1": float(f1_score(gold, pred, zero_division=0)),
            "precision": float(precision_score(gold, pred, zero_division=0)),
            "recall": float(recall_score(gold, pred, zero_division=0)),
            "accuracy": correct / words if words else 0.0,
        }
    raise DataError(f"no metrics for task type {task_type!r}")
