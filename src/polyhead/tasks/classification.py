"""Single-label classification: one class per text (softmax over the labels, cross-entropy)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from polyhead.errors import DataError
from polyhead.tasks import register
from polyhead.tasks.base import DecodeInput, TaskType, softmax

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec


def label_index(spec: TaskSpec, label: str, source: str) -> int:
    try:
        return spec.labels.index(label)
    except ValueError:
        raise DataError(f"{source}: label {label!r} is not in the label list {spec.labels[:10]}") from None


@register
class Classification(TaskType):
    """(batch, dim) -> logits (batch, labels); predictions carry the label, its score and every probability."""

    name = "classification"
    few_shot = True
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    primary_metric = "accuracy"
    min_labels = 2

    def label_counts(self, labels: Sequence[Any]) -> Counter[str]:
        return Counter(labels)

    def build_labels(self, labels: Sequence[Any], source: str) -> list[str]:
        found = sorted(self.label_counts(labels))
        if len(found) < 2:
            raise DataError(f"{source}: a classification task needs at least 2 labels in train, found {found}")
        return found

    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
        return label_index(spec, label, source)

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        import torch

        return torch.tensor(values, dtype=torch.long)  # (batch,) class ids

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(output.float(), target)

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        probs = softmax(np.asarray(output, dtype=np.float64)).tolist()
        best = int(np.argmax(probs))
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
