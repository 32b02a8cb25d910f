"""The stage plan: learning-rate schedule values by hand, steps per epoch, stages, trainable parameters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training import plan


def test_linear_schedule_warms_up_then_decays_to_zero() -> None:
    # warmup 2 of 10 steps: (step + 1) / (warmup + 1) during warmup, then 1 - (step - 2) / 8
    values = [plan.lr_factor(s, "linear", 2, 10) for s in range(11)]
    expected = [1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]
    assert values == pytest.approx(expected)
    assert plan.lr_factor(12, "linear", 2, 10) == 0.0  # never negative past the end


def test_cosine_and_constant_schedules() -> None:
    assert plan.lr_factor(0, "cosine", 0, 4) == pytest.approx(1.0)
    assert plan.lr_factor(1, "cosine", 0, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert plan.lr_factor(2, "cosine", 0, 4) == pytest.approx(0.5)
    assert plan.lr_factor(4, "cosine", 0, 4) == pytest.approx(0.0)
    assert plan.lr_factor(9, "cosine", 0, 4) == pytest.approx(0.0)  # stays at the end value
    assert [plan.lr_factor(s, "constant", 1, 5) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_transformers_warmup_rule_starts_at_zero() -> None:
    # transformers' get_linear_schedule_with_warmup: step / warmup during warmup, then the same decay
    values = [plan.lr_factor(s, "linear", 3, 30, "transformers") for s in range(5)]
    assert values == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 26 / 27])
    assert [plan.lr_factor(s, "linear", 3, 30) for s in range(5)] == pytest.approx([1 / 4, 2 / 4, 3 / 4, 1.0, 26 / 27])
    assert [plan.lr_factor(s, "constant", 2, 5, "transformers") for s in range(3)] == [0.0, 0.5, 1.0]
    assert plan.lr_factor(0, "linear", 0, 4, "transformers") == 1.0  # no warmup: no step at lr 0


def test_warmup_steps_round_down_or_up_by_rule() -> None:
    assert [plan.warmup_steps(0.1, n) for n in (9, 10, 30, 31)] == [0, 1, 3, 3]
    assert [plan.warmup_steps(0.1, n, "transformers") for n in (9, 10, 30, 31)] == [1, 1, 3, 4]
    assert plan.warmup_steps(0.0, 30, "transformers") == 0


def test_an_unknown_warmup_rule_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    raw = tiny_config(tmp_path, tiny_model_dir, scheduler={"warmup_rule": "hf"})
    with pytest.raises(ValueError, match="warmup_rule") as err:
        Config.model_validate(raw)
    assert "'polyhead' or 'transformers'" in str(err.value)


def test_lr_lambda_drives_lambdalr_through_the_same_values() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.lr_lambda("linear", 1, 4))
    seen = []
    for _ in range(5):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.1 * plan.lr_factor(s, "linear", 1, 4) for s in range(5)])
    assert seen == pytest.approx([0.05, 0.1, 0.1 * 2 / 3, 0.1 / 3, 0.0])


def test_epoch_steps_is_one_pass_over_the_largest_group() -> None:
    # 100 examples, batch 8 x accumulation 2 -> 7 steps per pass; drawn half the time -> 14 steps
    assert plan.epoch_steps({"big": 100, "small": 10}, {"big": 0.5, "small": 0.5}, 8, 2) == 14
    assert plan.epoch_steps({"big": 100}, {"big": 1.0}, 32, 1) == 4
    assert plan.epoch_steps({"one": 1}, {"one": 1.0}, 32, 4) == 1


def test_stages_default_to_one_stage_of_every_task(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = Config.model_validate(tiny_config(tmp_path, tiny_model_dir))
    (stage,) = plan.resolve_stages(cfg)
    assert (stage.name, stage.tasks, stage.epochs) == ("train", ["topic", "sentiment", "entities"], 2)
    stages = [{"tasks": ["topic"], "epochs": 1}, {"name": "rest", "epochs": 3, "optimizer": {"lr": 5e-5}}]
    cfg = Config.model_validate(tiny_config(tmp_path, tiny_model_dir, stages=stages))
    first, second = plan.resolve_stages(cfg)
    assert (first.name, first.tasks, first.optimizer.lr) == ("stage1", ["topic"], cfg.training.optimizer.lr)
    assert (second.name, second.tasks, second.epochs, second.optimizer.lr) == (
        "rest", ["topic", "sentiment", "entities"], 3, 5e-5,
    )  # fmt: skip


def test_a_stage_trains_only_its_heads_and_what_is_not_frozen(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = MultiTaskModel(
        SentenceEncoder.from_pretrained(tiny_model_dir),
        {"topic": TaskSpec("classification", ["a", "b"]), "mood": TaskSpec("classification", ["x", "y"])},
    )
    cfg = Config.model_validate(
        tiny_config(tmp_path, tiny_model_dir, stages=[{"tasks": ["topic"], "epochs": 1, "freeze": {"mode": "encoder"}}])
    )
    (stage,) = plan.resolve_stages(cfg)
    frozen = plan.frozen_names(model, stage)
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    names = {n for n, _ in plan.trainable_in(model, stage, frozen)}
    assert names == {n for n, _ in model.named_parameters() if n.startswith("heads.topic.")}
    stage.freeze.heads = ["topic"]
    with pytest.raises(PolyheadError, match="stage 'stage1': freezing .* leaves nothing to train for tasks"):
        plan.check_stages(model, [stage])
