"""Calibration and decision thresholds from a head's logits on dev: temperature scaling, expected calibration
error, reliability curves, F1-tuned thresholds. numpy and scipy only (the task types call these; no torch).

``kind`` says how logits become probabilities: ``softmax`` (one class per row; ``targets`` are class ids,
shape (n,)) or ``sigmoid`` (independent labels; ``targets`` are 0/1, shape (n, labels)).

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar T per head,
logits / T, fitted by minimising the negative log-likelihood on dev. It never changes the argmax, so a
softmax head's accuracy is unchanged; only its probabilities move.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Kind = Literal["softmax", "sigmoid"]
BINS = 15  # equal-width confidence bins of the ECE (Guo et al. use 15)
MIN_T, MAX_T = 0.01, 100.0


def probabilities(logits: np.ndarray, kind: Kind, temperature: float = 1.0) -> np.ndarray:
    """logits (n, classes) / temperature -> probabilities (n, classes): softmax rows or elementwise sigmoid."""
    from scipy.special import expit, softmax

    z = np.asarray(logits, dtype=np.float64) / temperature
    return softmax(z, axis=-1) if kind == "softmax" else expit(z)


def nll(logits: np.ndarray, targets: np.ndarray, kind: Kind, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` under logits / temperature."""
    from scipy.special import log_expit, log_softmax

    z = np.asarray(logits, dtype=np.float64) / temperature
    if kind == "softmax":
        return float(-log_softmax(z, axis=-1)[np.arange(len(z)), targets].mean())
    y = np.asarray(targets, dtype=np.float64)
    return float(-(y * log_expit(z) + (1 - y) * log_expit(-z)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, kind: Kind) -> float:
    """The temperature minimising the dev NLL (L-BFGS-B on log T, within [0.01, 100])."""
    from scipy.optimize import minimize

    result = minimize(
        lambda log_t: nll(logits, targets, kind, float(np.exp(log_t[0]))),
        x0=np.zeros(1),
        method="L-BFGS-B",
        bounds=[(np.log(MIN_T), np.log(MAX_T))],
    )
    best = float(np.exp(result.x[0]))
    # never worse than no scaling (a flat objective can stop the optimiser early)
    return best if nll(logits, targets, kind, best) <= nll(logits, targets, kind, 1.0) else 1.0


def confidences(probs: np.ndarray, targets: np.ndarray, kind: Kind) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) per decision: the top class of each softmax row; each label of a sigmoid row
    decided at 0.5 (confidence max(p, 1 - p))."""
    if kind == "softmax":
        return probs.max(axis=-1), (probs.argmax(axis=-1) == targets).astype(np.float64)
    p, y = probs.reshape(-1), np.asarray(targets).reshape(-1)
    return np.maximum(p, 1 - p), ((p >= 0.5) == (y > 0.5)).astype(np.float64)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> dict[str, list[float]]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        mask = which == b
        if mask.any():
            out["confidence"].append(float(confidence[mask].mean()))
            out["accuracy"].append(float(correct[mask].mean()))
            out["count"].append(float(mask.sum()))
    return out


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """ECE: sum over bins of (bin share) x |accuracy - mean confidence| (0 is perfectly calibrated)."""
    if len(confidence) == 0:
        return 0.0
    curve = reliability(confidence, correct, bins)
    n = len(confidence)
    return float(sum(c / n * abs(a - m) for m, a, c in zip(curve["confidence"], curve["accuracy"], curve["count"],
                                                           strict=True)))


def ranked_counts(scores: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores sorted high to low; for each distinct score, predicting "positive" for every score >= it:
    (that threshold, true positives, predicted positives)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], gold[order].astype(np.float64)
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    return s[last], np.cumsum(y)[last], (np.arange(len(s)) + 1.0)[last]


def between(thresholds: np.ndarray, index: int) -> float:
    """A threshold halfway between the chosen score and the next lower one, inside (0, 1)."""
    t = thresholds[index] if index + 1 == len(thresholds) else (thresholds[index] + thresholds[index + 1]) / 2
    return float(np.clip(t, 1e-6, 1 - 1e-6))


def binary_threshold(p_positive: np.ndarray, is_positive: np.ndarray) -> float:
    """The threshold on the positive class's probability with the best macro F1 (of both classes) on dev."""
    t, tp, k = ranked_counts(np.asarray(p_positive, dtype=np.float64), np.asarray(is_positive))
    n, pos = len(p_positive), float(np.sum(is_positive))
    fp, fn = k - tp, pos - tp
    tn = n - k - fn
    f1_pos = 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)
    f1_neg = 2 * tn / np.maximum(2 * tn + fn + fp, 1e-12)
    return between(t, int(np.argmax((f1_pos + f1_neg) / 2)))


def label_threshold(p: np.ndarray, y: np.ndarray) -> float | None:
    """The threshold on one label's probability with the best F1 of that label (None: no positives)."""
    pos = float(np.sum(y))
    if pos == 0:
        return None
    t, tp, k = ranked_counts(np.asarray(p, dtype=np.float64), np.asarray(y))
    f1 = 2 * tp / (k + pos)
    return between(t, int(np.argmax(f1)))


def entity_threshold(scores: np.ndarray, correct: np.ndarray, gold: int) -> float | None:
    """The minimum score with the best F1 when only predictions scoring at least it are kept: ``scores`` and
    ``correct`` of each prediction (an entity), ``gold`` how many there are to find. None when keeping every
    prediction is best (or there are none)."""
    if len(scores) == 0:
        return None
    t, tp, k = ranked_counts(np.asarray(scores, dtype=np.float64), np.asarray(correct))
    f1 = 2 * tp / np.maximum(k + gold, 1e-12)
    best = len(f1) - 1 - int(np.argmax(f1[::-1]))  # of equal F1s the loosest cut: keep what costs nothing
    return None if best + 1 == len(t) else between(t, best)
