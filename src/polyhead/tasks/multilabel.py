"""Multi-label classification: an independent yes/no per label (sigmoid, binary cross-entropy, a threshold)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from polyhead.errors import DataError
from polyhead.evaluation import calibration
from polyhead.tasks import register
from polyhead.tasks.base import DecodeInput, TaskType
from polyhead.tasks.classification import label_index, weight_tensor

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec


@register
class MultiLabel(TaskType):
    """(batch, dim) -> logits (batch, labels); labels whose probability reaches their threshold are predicted
    (``spec.thresholds[label]``, tuned on dev, else ``spec.threshold``)."""

    name = "multilabel"
    few_shot = True
    metric_names: ClassVar[tuple[str, ...]] = ("micro_f1", "macro_f1", "subset_accuracy")
    primary_metric = "micro_f1"
    min_labels = 1
    options = frozenset({"pos_weight", "tune_thresholds", "calibrate"})

    def parse_label(self, raw: Any, source: str, column: str, separator: str | None) -> Any:
        if isinstance(raw, list):
            return [str(x) for x in raw]
        if isinstance(raw, str):
            parts = [x.strip() for x in raw.split(separator)] if separator else [raw.strip()]
            return [x for x in parts if x]
        raise DataError(f"{source}: multilabel label must be a list or a separated string, got {raw!r}")

    def label_counts(self, labels: Sequence[Any]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for label in labels:
            counts.update(label)
        return counts

    def build_labels(self, labels: Sequence[Any], source: str) -> list[str]:
        return sorted(self.label_counts(labels))

    def class_weight_values(
        self, setting: Any, labels: list[str], train: Sequence[Any], where: str
    ) -> dict[str, float]:
        """``pos_weight``: ``balanced`` is negatives / positives per label in train (BCEWithLogitsLoss's
        convention; labels without positives, or on every row, weigh 1), or a {label: weight} mapping."""
        if setting != "balanced":
            return super().class_weight_values(setting, labels, train, where)
        counts, n = self.label_counts(train), len(train)
        return {label: (n - counts[label]) / counts[label] if 0 < counts[label] < n else 1.0 for label in labels}

    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
        return [label_index(spec, x, source) for x in label]

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        import torch

        hot = torch.zeros((len(values), len(spec.labels)))  # (batch, labels) multi-hot
        for row, ids in enumerate(values):
            hot[row, ids] = 1.0
        return hot

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import torch.nn.functional as F

        output = output.float()
        return F.binary_cross_entropy_with_logits(output, target, pos_weight=weight_tensor(spec.pos_weight, spec.labels,
                                                                                             output))

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        probs = (1.0 / (1.0 + np.exp(-np.asarray(output, dtype=np.float64) / spec.temperature))).tolist()
        cut = spec.thresholds
        return {
            "labels": [lab for lab, p in zip(spec.labels, probs, strict=True) if p >= cut.get(lab, spec.threshold)],
            "probabilities": dict(zip(spec.labels, probs, strict=True)),
        }

    def summary(self, decoded: dict[str, Any]) -> str:
        return ", ".join(decoded["labels"]) or "(none)"

    def decisions(self, decoded: dict[str, Any]) -> list[Any]:
        return [tuple(decoded["labels"])]

    def prediction_value(self, decoded: dict[str, Any]) -> Any:
        return decoded["labels"]

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        from polyhead.evaluation.metrics import multilabel_metrics

        return multilabel_metrics(gold, pred, labels or None)

    def report(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, Any] | None:
        from polyhead.evaluation.report import multilabel_report

        return multilabel_report(gold, pred, labels)

    # ------------------------------------------------------------------ thresholds and calibration
    def target_array(self, spec: TaskSpec, labels: Sequence[Any]) -> np.ndarray:
        hot = np.zeros((len(labels), len(spec.labels)))  # (n, labels) multi-hot
        for row, label in enumerate(labels):
            hot[row, [label_index(spec, x, "calibration") for x in label]] = 1.0
        return hot

    def fit_temperature(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> float:
        return calibration.fit_temperature(logits, targets, "sigmoid")

    def calibration(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = calibration.probabilities(logits, "sigmoid", spec.temperature)
        return calibration.confidences(probs, targets, "sigmoid")

    def tune_thresholds(self, spec: TaskSpec, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Per label, the threshold with the best dev F1 of that label (labels without dev positives keep
        ``spec.threshold``)."""
        probs = calibration.probabilities(logits, "sigmoid", spec.temperature)
        found = {label: calibration.label_threshold(probs[:, i], targets[:, i]) for i, label in enumerate(spec.labels)}
        return {label: t for label, t in found.items() if t is not None}
