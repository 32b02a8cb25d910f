"""Task heads: small modules on the sentence embedding or on token vectors.

Every head reads the features dict produced by the encoder (``pooled_embedding``: (batch, dim), the
sentence vector before L2 normalisation; ``token_embeddings``: (batch, seq_len, hidden)) and returns raw
outputs (logits or scores). Which head a task gets is its task type's choice (polyhead.tasks); losses and
decoding live there too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from polyhead.errors import PolyheadError

if TYPE_CHECKING:
    from polyhead.modeldir.spec import TaskSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(in_features: int, out_features: int, hidden: list[int], activation: str, dropout: float) -> nn.Sequential:
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


class MLPHead(nn.Module):
    """An MLP on the sentence vector, (batch, dim) -> (batch, outputs), or on every token vector,
    (batch, seq_len, hidden) -> (batch, seq_len, outputs). ``squeeze`` drops a last dimension of 1."""

    def __init__(
        self,
        level: Literal["sentence", "token"],
        in_features: int,
        out_features: int,
        hidden: list[int],
        activation: str = "gelu",
        dropout: float = 0.1,
        squeeze: bool = False,
    ) -> None:
        super().__init__()
        self.level = level
        self.squeeze = squeeze
        self.net = mlp(in_features, out_features, hidden, activation, dropout)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.level == "token":
            out = self.net(features["token_embeddings"])
        else:
            # the pooled vector before L2 normalisation (see SentenceEncoder.forward); features that only
            # carry `sentence_embedding` (e.g. from another producer) work too
            out = self.net(features.get("pooled_embedding", features["sentence_embedding"]))
        return out.squeeze(-1) if self.squeeze else out


class EmbeddingHead(nn.Module):
    """No parameters: returns the sentence embedding (batch, dim), for tasks that train the embedding itself."""

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return features["sentence_embedding"]


def build_head(spec: TaskSpec, sentence_dim: int, token_dim: int) -> nn.Module:
    """The head ``spec``'s task type builds."""
    return spec.task.build_head(spec, sentence_dim, token_dim)
