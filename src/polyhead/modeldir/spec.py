"""TaskSpec: what a model directory records about one task (its type, labels and head shape)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from polyhead.tasks.base import TaskType


OPTIONAL = ("class_weights", "pos_weight", "label_smoothing", "thresholds", "temperature")


@dataclass
class TaskSpec:
    """Everything needed to rebuild and decode a head: its type, label list and layer shape.

    ``labels`` is the vocabulary (class names, or BIO tags for token tasks); ``hidden`` the MLP layer
    sizes (empty: one Linear layer); ``threshold`` the multilabel decision threshold; ``loss`` the
    similarity loss (``cosine`` or ``cosent``). What the type means lives in :attr:`task`.

    Skewed classes and calibration (all optional; directories written before them load with the defaults):
    ``class_weights`` (label -> weight of its examples in the loss; labels left out weigh 1),
    ``pos_weight`` (multilabel: label -> weight of its positive examples), ``label_smoothing``,
    ``thresholds`` (label -> decision threshold tuned on dev: the positive class of a two-class task, each
    label of a multilabel task) and ``temperature`` (logits are divided by it before softmax / sigmoid).
    """

    type: str
    labels: list[str] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    activation: str = "gelu"
    dropout: float = 0.1
    threshold: float = 0.5
    loss: str = "cosent"
    class_weights: dict[str, float] = field(default_factory=dict)
    pos_weight: dict[str, float] = field(default_factory=dict)
    label_smoothing: float = 0.0
    thresholds: dict[str, float] = field(default_factory=dict)
    temperature: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the optional training / calibration fields only when set (older readers load it)."""
        data = asdict(self)
        defaults = TaskSpec(self.type, [])
        return {k: v for k, v in data.items() if k not in OPTIONAL or v != getattr(defaults, k)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**data)

    @property
    def task(self) -> TaskType:
        """The registered task type (polyhead.tasks) that owns this spec's behaviour."""
        from polyhead.tasks import get_task_type

        return get_task_type(self.type)

    @property
    def level(self) -> Literal["sentence", "token"]:
        """What the head reads: the sentence embedding or the token vectors."""
        return self.task.level
