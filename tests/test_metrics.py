"""Each task type's metrics against hand-computed values."""

from __future__ import annotations

import pytest

from polyhead.errors import DataError
from polyhead.tasks import get_task_type


def compute_metrics(task_type: str, gold: list, pred: list, labels: list[str] | None = None) -> dict[str, float]:
    return get_task_type(task_type).metrics(gold, pred, labels or [])


def test_classification_by_hand() -> None:
    # a: P=1 R=1/2 F1=2/3; b: P=1/2 R=1 F1=2/3; c: F1=1 -> macro 7/9; 3 of 4 right
    m = compute_metrics("classification", ["a", "a", "b", "c"], ["a", "b", "b", "c"], ["a", "b", "c"])
    assert m == pytest.approx({"accuracy": 0.75, "macro_f1": 7 / 9})


def test_token_classification_by_hand() -> None:
    # gold entities PER, LOC; predicted PER only -> P=1, R=1/2, F1=2/3; 3 of 4 words right
    m = compute_metrics("token_classification", [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert m == pytest.approx({"f1": 2 / 3, "precision": 1.0, "recall": 0.5, "accuracy": 0.75})


def test_multilabel_by_hand() -> None:
    # tp=2 fp=0 fn=1 -> micro P=1 R=2/3 F1=0.8; one of two sets exact
    m = compute_metrics("multilabel", [["x", "y"], ["y"]], [["x"], ["y"]], ["x", "y"])
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["subset_accuracy"] == pytest.approx(0.5)


def test_constant_predictions_give_zero_correlation() -> None:
    m = compute_metrics("similarity", [1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    assert m["pearson"] == 0.0 and m["spearman"] == 0.0
    assert m["mse"] == pytest.approx((0.25 + 2.25 + 6.25) / 3)
    assert get_task_type("similarity").primary_metric == "spearman"


def test_empty_input_is_data_error() -> None:
    with pytest.raises(DataError):
        compute_metrics("classification", [], [])


def test_entity_type_metrics_by_hand() -> None:
    from polyhead.evaluation.metrics import entity_type_metrics

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-PER", "O", "O"]]
    # PER: 2 gold, 3 predicted, 2 right; LOC: 1 gold, none predicted; ORG: 1 gold, none predicted
    m = entity_type_metrics(gold, pred)
    assert list(m) == ["PER", "LOC", "ORG"]  # by gold count, then name
    assert m["PER"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["LOC"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    with pytest.raises(DataError):
        entity_type_metrics([], [])
