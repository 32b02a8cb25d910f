"""Calibration arithmetic (polyhead.evaluation.calibration): temperature fit, ECE, dev-tuned thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, log_softmax
from sklearn.metrics import f1_score

from polyhead.evaluation import calibration as cal


def overconfident(n: int = 400, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose argmax is right ~70% of the time, scaled x5: far too confident."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), targets] += 1.5
    return logits * 5, targets


def test_fitted_temperature_minimises_the_dev_nll() -> None:
    logits, targets = overconfident()
    t = cal.fit_temperature(logits, targets, "softmax")
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 2001))
    by_hand = [-log_softmax(logits / g, axis=1)[np.arange(len(targets)), targets].mean() for g in grid]
    assert t > 2  # the logits were blown up x5: the fit cools them down
    assert abs(np.log(t) - np.log(grid[int(np.argmin(by_hand))])) < 0.01
    assert cal.nll(logits, targets, "softmax", t) < cal.nll(logits, targets, "softmax", 1.0)


def test_temperature_for_sigmoid_heads_and_ece_halves() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (300, 5)).astype(float)
    logits = (rng.normal(size=(300, 5)) + (y * 2 - 1)) * 6  # right ~84% of the time, x6 overconfident
    t = cal.fit_temperature(logits, y, "sigmoid")
    before = cal.expected_calibration_error(*cal.confidences(cal.probabilities(logits, "sigmoid"), y, "sigmoid"))
    after = cal.expected_calibration_error(*cal.confidences(cal.probabilities(logits, "sigmoid", t), y, "sigmoid"))
    assert t > 2 and after < before / 2


def test_ece_by_hand() -> None:
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.55])
    correct = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    # bin (0.9, 0.967]: accuracy 0.5 vs 0.95 -> 2/6 x 0.45; bin (0.533, 0.6]: 0.75 vs 0.55 -> 4/6 x 0.2
    assert cal.expected_calibration_error(confidence, correct) == pytest.approx(2 / 6 * 0.45 + 4 / 6 * 0.2)
    curve = cal.reliability(confidence, correct)
    assert curve["count"] == [4.0, 2.0] and curve["accuracy"] == [0.75, 0.5]


def test_softmax_temperature_never_changes_the_argmax() -> None:
    logits, _ = overconfident()
    assert (cal.probabilities(logits, "softmax", 7.0).argmax(1) == logits.argmax(1)).all()


def test_binary_threshold_is_the_best_macro_f1_of_every_cut() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(500) < 0.08).astype(int)  # 8% positives
    p = expit(rng.normal(size=500) + 1.2 * y - 1.0)
    t = cal.binary_threshold(p, y == 1)
    assert 0 < t < 1
    best = max(f1_score(y, (p >= c).astype(int), average="macro") for c in np.unique(p))
    assert f1_score(y, (p >= t).astype(int), average="macro") == pytest.approx(best)
    assert best > f1_score(y, (p >= 0.5).astype(int), average="macro")  # the default cut is worse here


def test_label_threshold_is_the_best_f1_of_that_label() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.2).astype(int)
    p = expit(rng.normal(size=300) + 1.5 * y - 0.5)
    t = cal.label_threshold(p, y)
    assert t is not None
    best = max(f1_score(y, (p >= c).astype(int)) for c in np.unique(p))
    assert f1_score(y, (p >= t).astype(int)) == pytest.approx(best)
    assert cal.label_threshold(p, np.zeros(300)) is None  # no positives on dev: nothing to tune
