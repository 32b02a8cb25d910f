"""Pooling, projection and normalisation: token vectors -> one fixed-length sentence vector."""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from polyhead.config import PoolingMode
from polyhead.errors import PolyheadError

POOLING_MODES: tuple[str, ...] = get_args(PoolingMode)


class Pooling(nn.Module):
    """Masked pooling of token embeddings.

    Args:
        mode: one of ``mean`` (masked average), ``cls`` (first token), ``max`` (masked max: padding
            never wins) or ``mean_sqrt_len`` (masked sum divided by sqrt of the token count).
    """

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            valid = ", ".join(POOLING_MODES)
            raise PolyheadError(f"unknown pooling {mode!r}; valid pooling modes are: {valid}")
        self.mode = mode

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """token_embeddings: (batch, seq_len, hidden); attention_mask: (batch, seq_len) -> (batch, hidden)."""
        if self.mode == "cls":
            return token_embeddings[:, 0]
        mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)  # (batch, seq_len, 1)
        if self.mode == "max":
            # Padding gets the lowest finite value, so it can't win even where every real value is negative.
            floor = torch.finfo(token_embeddings.dtype).min
            return token_embeddings.masked_fill(mask == 0, floor).max(dim=1).values
        # masked_fill, not multiplication: inf/nan in padded positions (possible in low precision) must not
        # leak in, since inf * 0 is nan.
        summed = token_embeddings.masked_fill(mask == 0, 0.0).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)  # same clamp as sentence-transformers' Pooling
        if self.mode == "mean":
            return summed / counts
        return summed / counts.sqrt()


class Dense(nn.Module):
    """Linear projection of the pooled vector (no activation), e.g. 384 -> 256.

    Laid out like sentence-transformers' ``Dense`` (``linear.weight``) so its loader reads our files.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dimension."""
    return F.normalize(x, p=2, dim=-1)
