"""Regression: one score per text (mean squared error; Pearson / Spearman / MSE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from polyhead.errors import DataError
from polyhead.tasks import register
from polyhead.tasks.base import DecodeInput, TaskType

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec


def parse_score(raw: Any, source: str, column: str) -> float:
    """A finite number, or a one-line error naming the place."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{source}: label {raw!r} in {column!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DataError(f"{source}: label {raw!r} is not a finite number")
    return value


class ScoreTask(TaskType):
    """Shared by the types whose labels are numbers."""

    metric_names: ClassVar[tuple[str, ...]] = ("pearson", "spearman", "mse")
    primary_metric = "spearman"

    def parse_label(self, raw: Any, source: str, column: str, separator: str | None) -> Any:
        return parse_score(raw, source, column)

    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
        return float(label)

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        import torch

        return torch.tensor(values, dtype=torch.float32)  # (batch,)

    def gold_value(self, label: Any) -> Any:
        return float(label)

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        from polyhead.evaluation.metrics import correlation_metrics

        return correlation_metrics(gold, pred)


@register
class Regression(ScoreTask):
    """(batch, dim) -> (batch,) scores."""

    name = "regression"

    def num_outputs(self, spec: TaskSpec) -> int:
        return 1

    def build_head(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> Any:
        from polyhead.modeling.heads import MLPHead

        return MLPHead("sentence", sentence_dim, 1, spec.hidden, spec.activation, spec.dropout, squeeze=True)

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(output.float(), target)

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        return {"score": float(np.asarray(output, dtype=np.float64))}

    def summary(self, decoded: dict[str, Any]) -> str:
        return f"{decoded['score']:.4f}"

    def prediction_value(self, decoded: dict[str, Any]) -> Any:
        return decoded["score"]
