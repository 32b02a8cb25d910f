"""Metric families as plain functions: dict[str, float] out, in [0, 1] (mse excepted). Task types pick theirs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from polyhead.errors import DataError

# Metrics where lower is better (model selection negates them).
LOWER_IS_BETTER = frozenset({"mse"})


def finite(value: float) -> float:
    """Correlations of constant predictions are undefined (nan): report 0.0."""
    return 0.0 if value is None or math.isnan(value) else float(value)


def check_lengths(gold: Sequence[Any], pred: Sequence[Any]) -> None:
    if not gold or len(gold) != len(pred):
        raise DataError(
            f"metrics need equal, non-empty gold and predictions (got {len(gold)} and {len(pred)})"
        )


def label_metrics(gold: list[str], pred: list[str], labels: list[str] | None = None) -> dict[str, float]:
    """Single-label classes: accuracy, macro_f1 (over ``labels``, else the gold classes)."""
    from sklearn.metrics import accuracy_score, f1_score

    check_lengths(gold, pred)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels or sorted(set(gold)), average="macro", zero_division=0)),
    }


def multilabel_metrics(
    gold: list[list[str]], pred: list[list[str]], labels: list[str] | None = None
) -> dict[str, float]:
    """Label sets: micro_f1, macro_f1, subset_accuracy."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    check_lengths(gold, pred)
    mlb = MultiLabelBinarizer(classes=labels or sorted({x for g in gold for x in g}))
    y_true, y_pred = mlb.fit_transform(gold), mlb.transform([[x for x in p if x in mlb.classes_] for p in pred])
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "subset_accuracy": sum(set(g) == set(p) for g, p in zip(gold, pred, strict=True)) / len(gold),
    }


def correlation_metrics(gold: list[float], pred: list[float]) -> dict[str, float]:
    """Scores: pearson, spearman, mse (correlations of a constant are 0.0)."""
    from scipy.stats import pearsonr, spearmanr

    check_lengths(gold, pred)
    g, p = [float(x) for x in gold], [float(x) for x in pred]
    constant = len(set(p)) < 2 or len(set(g)) < 2
    return {
        "pearson": 0.0 if constant else finite(pearsonr(g, p).statistic),
        "spearman": 0.0 if constant else finite(spearmanr(g, p).statistic),
        "mse": sum((a - b) ** 2 for a, b in zip(g, p, strict=True)) / len(g),
    }


def entity_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Word-level BIO tag lists: entity-level f1, precision, recall (seqeval) and word accuracy."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    check_lengths(gold, pred)
    words = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    return {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "accuracy": correct / words if words else 0.0,
    }


def entity_type_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, dict[str, float]]:
    """Word-level BIO tag lists -> {entity type: precision, recall, f1, support} (seqeval), types by support."""
    from seqeval.metrics import classification_report

    check_lengths(gold, pred)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    types = {
        kind: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for kind, v in report.items()
        if not kind.endswith(" avg")
    }
    return dict(sorted(types.items(), key=lambda item: (-item[1]["support"], item[0])))
