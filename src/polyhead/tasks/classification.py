"""Single-label classification: one class per text (softmax over the labels, cross-entropy)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from polyhead.errors import DataError, PolyheadError
from polyhead.evaluation import calibration
from polyhead.tasks import register
from polyhead.tasks.base import DecodeInput, TaskType, softmax

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec

logger = logging.getLogger(__name__)


def label_index(spec: TaskSpec, label: str, source: str) -> int:
    try:
        return spec.labels.index(label)
    except ValueError:
        raise DataError(f"{source}: label {label!r} is not in the label list {spec.labels[:10]}") from None


NEGATIONS = ("not", "non", "no", "un", "in", "mis")  # "not_entailment", "non-toxic", "unrelated", "incorrect"


def positive_label(labels: list[str]) -> str:
    """The positive class of a two-class task (whose F1 a binary pair task reports, whose probability a tuned
    threshold applies to): of a label and its negation, the label ("entailment" of entailment/not_entailment,
    "duplicate" of duplicate/not_duplicate, "related" of related/unrelated); otherwise the last label in
    sorted order ("1" of 0/1, "yes", "true", "positive", "paraphrase" of not_paraphrase/paraphrase)."""
    ordered = sorted(labels)
    if len(ordered) == 2:
        plain = [label.lower().replace("-", "_").replace(" ", "_") for label in ordered]
        for i in (0, 1):  # is the other label this one negated?
            if any(plain[1 - i] in (f"{word}{plain[i]}", f"{word}_{plain[i]}") for word in NEGATIONS):
                return ordered[i]
    return ordered[-1]


def weight_tensor(weights: dict[str, float], labels: list[str], like: torch.Tensor) -> torch.Tensor | None:
    """(labels,) per-label weights on ``like``'s device, or None when there are none."""
    return like.new_tensor([weights.get(label, 1.0) for label in labels]) if weights else None


def weighted_cross_entropy(
    spec: TaskSpec, logits: torch.Tensor, target: torch.Tensor, ignore: int = -100
) -> torch.Tensor:
    """logits (n, classes), target (n,) -> the mean over labelled rows of each row's cross-entropy times its
    class weight (with ``spec.label_smoothing``). The mean is over rows, not over weights (unlike
    ``F.cross_entropy(weight=...)``): balanced weights average 1 over the training data, so the loss keeps
    its scale, and a shard's mean over its rows stays what distributed loss scaling expects."""
    import torch.nn.functional as F

    logits = logits.float()
    weight = weight_tensor(spec.class_weights, spec.labels, logits)
    per_row = F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore, label_smoothing=spec.label_smoothing, reduction="none"
    )
    return per_row.sum() / (target != ignore).sum().clamp(min=1)


@register
class Classification(TaskType):
    """(batch, dim) -> logits (batch, labels); predictions carry the label, its score and every probability."""

    name = "classification"
    few_shot = True
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    primary_metric = "accuracy"
    min_labels = 2
    options = frozenset({"class_weights", "label_smoothing", "tune_thresholds", "calibrate"})

    def label_counts(self, labels: Sequence[Any]) -> Counter[str]:
        return Counter(labels)

    def build_labels(self, labels: Sequence[Any], source: str) -> list[str]:
        found = sorted(self.label_counts(labels))
        if len(found) < 2:
            raise DataError(f"{source}: a {self.name} task needs at least 2 labels in train, found {found}")
        return found

    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
        return label_index(spec, label, source)

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        import torch

        return torch.tensor(values, dtype=torch.long)  # (batch,) class ids

    def check_spec(self, spec: TaskSpec) -> None:
        super().check_spec(spec)
        if spec.thresholds and (len(spec.labels) != 2 or len(spec.thresholds) != 1):
            raise PolyheadError(
                f"a {spec.type} head takes one threshold (its positive class's) and only with two labels; got "
                f"{spec.thresholds} for labels {spec.labels[:10]}"
            )

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import torch.nn.functional as F

        if spec.class_weights:
            return weighted_cross_entropy(spec, output, target)
        return F.cross_entropy(output.float(), target, label_smoothing=spec.label_smoothing)

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        probs = softmax(np.asarray(output, dtype=np.float64) / spec.temperature).tolist()
        best = int(np.argmax(probs))
        if spec.thresholds and len(spec.labels) == 2:  # the positive class when its probability reaches its threshold
            (label, threshold), = spec.thresholds.items()
            positive = spec.labels.index(label)
            best = positive if probs[positive] >= threshold else 1 - positive
        return {
            "label": spec.labels[best],
            "score": probs[best],
            "probabilities": dict(zip(spec.labels, probs, strict=True)),
        }

    def summary(self, decoded: dict[str, Any]) -> str:
        return f"{decoded['label']} ({decoded['score']:.3f})"

    def decisions(self, decoded: dict[str, Any]) -> list[Any]:
        return [decoded["label"]]

    def prediction_value(self, decoded: dict[str, Any]) -> Any:
        return decoded["label"]

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        from polyhead.evaluation.metrics import label_metrics

        return label_metrics(gold, pred, labels or None)

    def report(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, Any] | None:
        from polyhead.evaluation.report import label_report

        return label_report(gold, pred, labels)

    # ------------------------------------------------------------------ thresholds and calibration
    def threshold_problem(self, spec: TaskSpec) -> str | None:
        if len(spec.labels) != 2:
            return f"thresholds are tuned for two-class tasks; this one has {len(spec.labels)} labels"
        return None

    def target_array(self, spec: TaskSpec, labels: Sequence[Any]) -> np.ndarray:
        return np.array([label_index(spec, label, "calibration") for label in labels])  # (n,) class ids

    def fit_temperature(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> float:
        return calibration.fit_temperature(logits, targets, "softmax")

    def calibration(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = calibration.probabilities(logits, "softmax", spec.temperature)
        return calibration.confidences(probs, targets, "softmax")

    def tune_thresholds(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """The positive class's threshold with the best dev macro F1."""
        positive = positive_label(spec.labels)
        index = spec.labels.index(positive)
        if np.unique(targets).size < 2:
            logger.warning("thresholds: the dev examples are all of one class; kept the head's own decisions")
            return {}
        probs = calibration.probabilities(logits, "softmax", spec.temperature)
        return {positive: calibration.binary_threshold(probs[:, index], targets == index)}
