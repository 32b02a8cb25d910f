"""Task heads: small modules on the sentence embedding or on token vectors.

Every head reads the features dict produced by the encoder (``pooled_embedding``: (batch, dim), the
sentence vector before L2 normalisation; ``token_embeddings``: (batch, seq_len, hidden)) and returns raw
outputs (logits or scores); losses and decoding live elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, get_args

import torch
from torch import nn

from polyhead.config import SimilarityLoss
from polyhead.errors import PolyheadError
from polyhead.registry import lookup, register

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}
TASK_TYPES = ("classification", "multilabel", "regression", "token_classification", "similarity")


@dataclass
class TaskSpec:
    """Everything needed to rebuild a head: its type, label list and layer shape.

    ``labels`` is the vocabulary (class names, or BIO tags for token tasks); ``hidden`` the MLP layer
    sizes (empty: one Linear layer); ``threshold`` the multilabel decision threshold; ``loss`` the
    similarity loss (``cosine`` or ``cosent``).
    """

    type: str
    labels: list[str] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    activation: str = "gelu"
    dropout: float = 0.1
    threshold: float = 0.5
    loss: str = "cosent"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**data)

    @property
    def level(self) -> str:
        return "token" if self.type == "token_classification" else "sentence"


def mlp(
    in_features: int, out_features: int, hidden: list[int], activation: str, dropout: float
) -> nn.Sequential:
    """Dropout -> [Linear -> activation -> Dropout]* -> Linear."""
    if activation not in ACTIVATIONS:
        raise PolyheadError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    size = in_features
    for width in hidden:
        layers += [nn.Linear(size, width), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        size = width
    layers.append(nn.Linear(size, out_features))
    return nn.Sequential(*layers)


class Head(nn.Module):
    """Base class. ``level`` says whether it reads the sentence embedding or the token vectors."""

    level: ClassVar[str] = "sentence"
    min_labels: ClassVar[int] = 0

    def __init__(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> None:
        super().__init__()
        if len(spec.labels) < self.min_labels:
            raise PolyheadError(
                f"a {spec.type} head needs at least {self.min_labels} labels, "
                f"got {len(spec.labels)}: {spec.labels}"
            )
        self.spec = spec
        in_features = token_dim if self.level == "token" else sentence_dim
        self.net = mlp(in_features, self.num_outputs(spec), spec.hidden, spec.activation, spec.dropout)

    def num_outputs(self, spec: TaskSpec) -> int:
        return len(spec.labels)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.level == "token":
            return self.net(features["token_embeddings"])
        # the pooled vector before L2 normalisation (see SentenceEncoder.forward); features that only
        # carry `sentence_embedding` (e.g. from another producer) work too
        return self.net(features.get("pooled_embedding", features["sentence_embedding"]))


@register("head", "classification")
class ClassificationHead(Head):
    """Single-label classification: (batch, dim) -> logits (batch, num_labels)."""

    min_labels = 2


@register("head", "multilabel")
class MultiLabelHead(Head):
    """Independent yes/no per label: (batch, dim) -> logits (batch, num_labels), sigmoid at prediction."""

    min_labels = 1


@register("head", "regression")
class RegressionHead(Head):
    """One score per sentence: (batch, dim) -> (batch,)."""

    def num_outputs(self, spec: TaskSpec) -> int:
        return 1

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(features).squeeze(-1)


@register("head", "token_classification")
class TokenClassificationHead(Head):
    """BIO tagging: token vectors (batch, seq_len, hidden) -> logits (batch, seq_len, num_tags)."""

    level = "token"
    min_labels = 2

    def __init__(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> None:
        check_bio_labels(spec.labels)
        super().__init__(spec, sentence_dim, token_dim)


@register("head", "similarity")
class SimilarityHead(nn.Module):
    """No parameters: the task trains the shared sentence embedding itself on scored pairs.

    Returns the sentence embedding (batch, dim); the pair loss (cosine or CoSENT) is in training/.
    """

    level: ClassVar[str] = "sentence"

    def __init__(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> None:
        super().__init__()
        if spec.loss not in get_args(SimilarityLoss):
            raise PolyheadError(f"unknown similarity loss {spec.loss!r}; valid: {', '.join(get_args(SimilarityLoss))}")
        self.spec = spec

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return features["sentence_embedding"]


def check_bio_labels(labels: list[str]) -> None:
    """BIO tags: 'O' plus 'B-X'/'I-X'; every I-X needs its B-X."""
    bad = [t for t in labels if t != "O" and not (t[:2] in ("B-", "I-") and len(t) > 2)]
    if bad:
        raise PolyheadError(f"token labels must be BIO tags ('O', 'B-TYPE', 'I-TYPE'); invalid: {bad[:5]}")
    orphans = [t for t in labels if t.startswith("I-") and "B-" + t[2:] not in labels]
    if orphans:
        raise PolyheadError(f"BIO tags {orphans[:5]} have no matching B- tag in the label list")


def build_head(spec: TaskSpec, sentence_dim: int, token_dim: int) -> nn.Module:
    """Construct the head registered for ``spec.type``."""
    return lookup("head", spec.type)(spec, sentence_dim, token_dim)
