"""Losses and loss weighting: hand-checked values, uncertainty weights learn."""

from __future__ import annotations

import math

import torch

from polyhead.modeldir import TaskSpec
from polyhead.tasks.similarity import cosent_loss
from polyhead.tokens import IGNORE_INDEX
from polyhead.training.losses import StaticWeighting, UncertaintyWeighting


def task_loss(spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, score_scale: float = 1.0) -> torch.Tensor:
    return spec.task.loss(spec, output, target, score_scale)


def test_token_loss_ignores_unaligned_positions() -> None:
    spec = TaskSpec("token_classification", ["O", "B-X", "I-X"])
    logits = torch.zeros((1, 3, 3))
    logits[0, 1, 1] = 100.0  # only position 1 is labelled, and it is right
    target = torch.tensor([[IGNORE_INDEX, 1, IGNORE_INDEX]])
    assert float(task_loss(spec, logits, target)) < 1e-6


def test_cosent_is_zero_when_ranking_is_right_and_positive_when_wrong() -> None:
    scores = torch.tensor([1.0, 0.0])
    good = cosent_loss(torch.tensor([0.9, 0.1]), scores)
    bad = cosent_loss(torch.tensor([0.1, 0.9]), scores)
    assert float(good) < 1e-3
    assert math.isclose(float(bad), math.log(1 + math.exp(20 * 0.8)), rel_tol=1e-5)


def test_similarity_cosine_loss_scales_scores() -> None:
    spec = TaskSpec("similarity", loss="cosine")
    a = torch.tensor([[1.0, 0.0]])
    out = torch.cat([a, a])  # cosine 1
    assert float(task_loss(spec, out, torch.tensor([5.0]), score_scale=5.0)) < 1e-9


def test_static_weighting_is_the_weighted_sum() -> None:
    w = StaticWeighting({"a": 2.0, "b": 0.5})
    total = w({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    assert float(total) == 4.0


def test_uncertainty_weighting_learns_smaller_weight_for_the_noisier_task() -> None:
    w = UncertaintyWeighting({"easy": 1.0, "noisy": 1.0})
    opt = torch.optim.SGD(w.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        w({"easy": torch.tensor(0.1), "noisy": torch.tensor(3.0)}).backward()
        opt.step()
    weights = w.weights()
    # the optimum of exp(-s) * L + s is s = log L: weight 1 / L
    assert math.isclose(weights["easy"], 1 / 0.1, rel_tol=0.05)
    assert math.isclose(weights["noisy"], 1 / 3.0, rel_tol=0.05)
