"""Reports people read, from (gold, predicted) values: per-class precision / recall / F1 / support, the
confusion matrix and the worst-confused pairs (scikit-learn's arithmetic; seqeval's for entity types).
Task types pick theirs (``TaskType.report``); ``polyhead evaluate`` prints them and ``--json`` carries them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyhead.evaluation.metrics import check_lengths

WORST = 10  # worst-confused pairs listed


def per_class(labels: Sequence[str], p: Any, r: Any, f: Any, s: Any) -> dict[str, dict[str, float]]:
    return {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, label in enumerate(labels)
    }


def worst_confused(labels: Sequence[str], matrix: np.ndarray, top: int = WORST) -> list[dict[str, Any]]:
    """The largest off-diagonal cells of a confusion matrix (rows gold): gold, predicted, count, and the
    share of the gold class's examples that went there."""
    rows = matrix.sum(axis=1)
    cells = [(int(matrix[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j]
    cells = sorted((c for c in cells if c[0] > 0), key=lambda c: (-c[0], c[1], c[2]))[:top]
    return [
        {"gold": labels[i], "predicted": labels[j], "count": n, "share_of_gold": n / int(rows[i])}
        for n, i, j in cells
    ]


def label_report(gold: list[str], pred: list[str], labels: list[str]) -> dict[str, Any]:
    """Single-label classes: per class P/R/F1/support, the confusion matrix over ``labels`` (plus gold
    labels the head doesn't have), the worst-confused pairs."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    check_lengths(gold, pred)
    names = list(labels) + sorted({g for g in gold if g not in labels})
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=names, zero_division=0)
    matrix = confusion_matrix(gold, pred, labels=names)
    return {
        "per_class": per_class(names, p, r, f, s),
        "confusion": {"labels": names, "matrix": matrix.tolist()},
        "worst_confused": worst_confused(names, matrix),
    }


def multilabel_report(gold: list[list[str]], pred: list[list[str]], labels: list[str]) -> dict[str, Any]:
    """Label sets: per label P/R/F1/support and its 2x2 counts (true/false positives/negatives); the labels
    with the most errors first under ``worst_labels``."""
    from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    check_lengths(gold, pred)
    names = list(labels) + sorted({x for g in gold for x in g if x not in labels})
    mlb = MultiLabelBinarizer(classes=names)
    y_true, y_pred = mlb.fit_transform(gold), mlb.transform([[x for x in p if x in names] for p in pred])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    cells = multilabel_confusion_matrix(y_true, y_pred)  # (labels, 2, 2): [[tn, fp], [fn, tp]]
    counts = {
        label: {"tn": int(c[0, 0]), "fp": int(c[0, 1]), "fn": int(c[1, 0]), "tp": int(c[1, 1])}
        for label, c in zip(names, cells, strict=True)
    }
    worst = sorted(names, key=lambda label: -(counts[label]["fp"] + counts[label]["fn"]))
    return {
        "per_class": per_class(names, p, r, f, s),
        "label_counts": counts,
        "worst_labels": [
            {"label": label, "false_positives": counts[label]["fp"], "false_negatives": counts[label]["fn"]}
            for label in worst[:WORST]
            if counts[label]["fp"] + counts[label]["fn"]
        ],
    }


def entity_type(tag: str) -> str:
    return "O" if tag == "O" else tag[2:]


def entity_report(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """BIO tag lists: per entity type P/R/F1/support over whole entities (seqeval), and a word-level confusion
    matrix over entity types ("O" and each type, B-/I- merged) with its worst-confused pairs."""
    from seqeval.metrics import classification_report
    from sklearn.metrics import confusion_matrix

    check_lengths(gold, pred)
    table = classification_report(gold, pred, output_dict=True, zero_division=0)
    types = sorted(k for k in table if not k.endswith(" avg"))
    flat_gold = [entity_type(t) for tags in gold for t in tags]
    flat_pred = [entity_type(t) for tags in pred for t in tags]
    names = ["O"] + sorted({t for t in flat_gold + flat_pred if t != "O"})
    matrix = confusion_matrix(flat_gold, flat_pred, labels=names)
    return {
        "per_class": {
            t: {
                "precision": float(table[t]["precision"]),
                "recall": float(table[t]["recall"]),
                "f1": float(table[t]["f1-score"]),
                "support": int(table[t]["support"]),
            }
            for t in types
        },
        "confusion": {"labels": names, "matrix": matrix.tolist(), "unit": "words"},
        "worst_confused": worst_confused(names, matrix),
    }
