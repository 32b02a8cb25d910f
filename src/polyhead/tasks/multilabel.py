"""Multi-label classification: an independent yes/no per label (sigmoid, binary cross-entropy, a threshold)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from polyhead.errors import DataError
from polyhead.tasks import register
from polyhead.tasks.base import DecodeInput, TaskType
from polyhead.tasks.classification import label_index

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec


@register
class MultiLabel(TaskType):
    """(batch, dim) -> logits (batch, labels); labels whose probability reaches ``spec.threshold`` are predicted."""

    name = "multilabel"
    few_shot = True
    metric_names: ClassVar[tuple[str, ...]] = ("micro_f1", "macro_f1", "subset_accuracy")
    primary_metric = "micro_f1"
    min_labels = 1

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

        return F.binary_cross_entropy_with_logits(output.float(), target)

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        probs = (1.0 / (1.0 + np.exp(-np.asarray(output, dtype=np.float64)))).tolist()
        return {
            "labels": [lab for lab, p in zip(spec.labels, probs, strict=True) if p >= spec.threshold],
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
