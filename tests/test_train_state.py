"""TrainState: state_dict round trip, and checkpoints written before it existed (an untyped dict) still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config
from polyhead.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from polyhead.training.sampling import TaskSampler
from polyhead.training.state import TrainState
from polyhead.training.trainer import Trainer, TrainingInterrupted

# The keys of state.json in the order polyhead wrote them before TrainState (``unfreezer`` only for a stage
# with gradual unfreezing; ``optimizer`` and ``step`` come from save_checkpoint).
OLD_KEYS = [
    "stage", "epoch", "step_in_epoch", "stage_step", "global_step", "positions", "best", "best_epoch",
    "bad_epochs", "elapsed", "sampler", "unfreezer", "metrics_lines", "optimizer", "step",
]  # fmt: skip


def sampler_state() -> dict:
    sampler = TaskSampler({"a+b": 48, "c": 24}, "proportional", seed=4)
    for _ in range(5):
        sampler.sample()
    return sampler.state_dict()


def old_style_state() -> dict:
    """What the trainer's ``st`` dict held when it wrote a checkpoint (stage 2, mid-epoch, after resuming
    once: that dict also carried the loaded ``step``)."""
    return {
        "stage": 1,
        "epoch": 2,
        "step_in_epoch": 3,
        "stage_step": 11,
        "global_step": 19,
        "positions": {"a+b": [1, 2], "c": [3, 0]},
        "best": 0.8125,
        "best_epoch": 1,
        "bad_epochs": 1,
        "elapsed": 12.5,
        "sampler": sampler_state(),
        "unfreezer": {"unfrozen": 2},
        "metrics_lines": 7,
        "step": 19,
    }


def test_state_dict_round_trip() -> None:
    state = TrainState(
        stage=1, epoch=2, step_in_epoch=3, stage_step=11, global_step=19, positions={"a+b": (1, 2), "c": (3, 0)},
        best=0.8125, best_epoch=1, bad_epochs=1, elapsed=12.5, sampler=sampler_state(), unfreezer={"unfrozen": 2},
        metrics_lines=7,
    )  # fmt: skip
    again = TrainState.from_state_dict(json.loads(json.dumps(state.state_dict())))
    assert again == state
    assert list(state.state_dict()) == [k for k in OLD_KEYS if k not in ("optimizer", "step")]


def test_unfreezer_key_only_with_gradual_unfreezing_and_fresh_defaults() -> None:
    state = TrainState.start(2, 40, ["a+b", "c"])
    assert (state.stage, state.global_step, state.positions) == (2, 40, {"a+b": (0, 0), "c": (0, 0)})
    assert "unfreezer" not in state.state_dict()
    assert state.best is None and state.metrics_lines is None
    # a run's top-level state before it has a checkpoint
    early = TrainState.from_state_dict({"stage": 0, "global_step": 0, "elapsed": 0.0})
    assert early == TrainState()


def test_a_checkpoint_written_with_the_old_dict_loads(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    old = old_style_state()
    save_checkpoint(tmp_path, old["global_step"], model, optimizer, {}, old)  # as the old trainer called it
    path = latest_checkpoint(tmp_path)
    assert path is not None
    assert set(json.loads((path / "state.json").read_text())) == set(OLD_KEYS)
    state = TrainState.from_state_dict(load_checkpoint(path, model, optimizer, {}))
    assert state.positions == {"a+b": (1, 2), "c": (3, 0)}
    assert (state.stage, state.epoch, state.step_in_epoch, state.stage_step, state.global_step) == (1, 2, 3, 11, 19)
    assert (state.best, state.best_epoch, state.bad_epochs, state.elapsed) == (0.8125, 1, 1, 12.5)
    assert (state.unfreezer, state.metrics_lines) == ({"unfrozen": 2}, 7)
    sampler = TaskSampler({"a+b": 48, "c": 24}, "proportional", seed=0)
    assert state.sampler is not None
    sampler.load_state_dict(state.sampler)
    reference = TaskSampler({"a+b": 48, "c": 24}, "proportional", seed=4)
    for _ in range(5):
        reference.sample()
    assert [sampler.sample() for _ in range(20)] == [reference.sample() for _ in range(20)]
    # written back: the same JSON the old code wrote (but for the checkpoint's own keys)
    del old["step"]
    assert json.dumps(state.state_dict()) == json.dumps(old)


@pytest.mark.parametrize("extra", [{}, {"gradual_unfreezing": {"every": 2, "unit": "steps"}}])
def test_trainer_checkpoints_keep_the_old_keys(tmp_path: Path, tiny_model_dir: Path, extra: dict) -> None:
    cfg = Config.model_validate(tiny_config(tmp_path, tiny_model_dir, **extra))
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, tmp_path / "run").run(stop_after_steps=3)
    path = latest_checkpoint(tmp_path / "run")
    assert path is not None
    saved = json.loads((path / "state.json").read_text())
    assert list(saved) == [k for k in OLD_KEYS if extra or k != "unfreezer"]
    # the values the code before TrainState wrote at this point (captured from it)
    expected = {
        "stage": 0, "epoch": 0, "step_in_epoch": 3, "stage_step": 3, "global_step": 3,
        "positions": {"topic+sentiment": [0, 3], "entities": [0, 0]}, "best": None, "best_epoch": None,
        "bad_epochs": 0, "metrics_lines": 0, "step": 3, **({"unfreezer": {"unfrozen": 2}} if extra else {}),
    }  # fmt: skip
    assert {k: saved[k] for k in expected} == expected
    assert saved["sampler"]["draws"] == 3
