"""Per-task losses and their combination (static weights or learned uncertainty weighting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polyhead.modeling.heads import TaskSpec
from polyhead.tokens import IGNORE_INDEX

COSENT_SCALE = 20.0  # as in sentence-transformers' CoSENTLoss


def task_loss(spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, score_scale: float = 1.0) -> torch.Tensor:
    """The loss of one head on one batch.

    output/target by type: classification (batch, labels)/(batch,); multilabel (batch, labels)/(batch,
    labels); regression (batch,)/(batch,); token_classification (batch, seq, tags)/(batch, seq) with
    IGNORE_INDEX; similarity (2 * batch, dim) embeddings of both sides/(batch,) gold scores.
    """
    output = output.float()
    if spec.type == "classification":
        return F.cross_entropy(output, target)
    if spec.type == "multilabel":
        return F.binary_cross_entropy_with_logits(output, target)
    if spec.type == "regression":
        return F.mse_loss(output, target)
    if spec.type == "token_classification":
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)
    a, b = output.chunk(2)  # (batch, dim) each
    cosine = F.cosine_similarity(a, b, dim=-1)
    if spec.loss == "cosine":
        return F.mse_loss(cosine, target / score_scale)
    return cosent_loss(cosine, target)


def cosent_loss(cosine: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """CoSENT (Su 2022): log(1 + sum over pairs with s_i > s_j of exp(scale * (cos_j - cos_i)))."""
    diff = COSENT_SCALE * (cosine[None, :] - cosine[:, None])  # diff[i, j] = scale * (cos_j - cos_i)
    keep = scores[:, None] > scores[None, :]
    diff = diff.masked_fill(~keep, float("-inf"))
    zero = torch.zeros(1, dtype=diff.dtype, device=diff.device)
    return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)


class StaticWeighting(nn.Module):
    """total = sum_t w_t * L_t with fixed weights from the config."""

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.fixed = dict(weights)

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.fixed[t] * loss for t, loss in losses.items()]).sum()

    def weights(self) -> dict[str, float]:
        return dict(self.fixed)


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal & Cipolla 2018: learned s_t = log sigma_t^2; total = sum_t exp(-s_t) * L_t + s_t.

    Tasks with noisier losses learn a larger s_t and so a smaller weight exp(-s_t); the +s_t term stops
    every weight from collapsing to zero. Static weights from the config still multiply each loss.
    """

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.fixed = dict(weights)
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in weights})

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = [torch.exp(-self.log_vars[t]) * self.fixed[t] * loss + self.log_vars[t] for t, loss in losses.items()]
        return torch.stack(terms).sum()

    def weights(self) -> dict[str, float]:
        return {t: float(torch.exp(-s.detach())) * self.fixed[t] for t, s in self.log_vars.items()}


def build_weighting(kind: str, weights: dict[str, float]) -> StaticWeighting | UncertaintyWeighting:
    return UncertaintyWeighting(weights) if kind == "uncertainty" else StaticWeighting(weights)
