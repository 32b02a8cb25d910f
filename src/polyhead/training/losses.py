"""How per-task losses combine: static weights or learned uncertainty weighting (each task type owns its own
loss: polyhead.tasks)."""

from __future__ import annotations

import torch
from torch import nn


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
