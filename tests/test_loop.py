"""The loop generator: the events it yields, the state it advances, stopping when the caller leaves,
resuming mid-epoch, gradual unfreezing on schedule, a frozen encoder without dropout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config
from polyhead.training.loop import EpochEnd, EpochStart, Event, StageRun, StepEnd, train_stage
from polyhead.training.state import TrainState
from polyhead.training.trainer import Trainer


def start(tmp_path: Path, model_dir: Path, **training: Any) -> tuple[StageRun, TrainState]:
    """Stage 0 of the tiny config (2 epochs x 3 steps unless overridden), set up but not run."""
    training = {"epochs": 2, "steps_per_epoch": 3, **training}
    tmp_path.mkdir(exist_ok=True)
    trainer = Trainer(Config.model_validate(tiny_config(tmp_path, model_dir, **training)), tmp_path / "run")
    trainer.setup()
    return trainer.start_stage(0, None)


def kinds(events: list[Event]) -> list[str]:
    return [{EpochStart: "start", StepEnd: "step", EpochEnd: "end"}[type(e)] for e in events]


def test_events_and_state_of_a_stage(tmp_path: Path, tiny_model_dir: Path) -> None:
    run, state = start(tmp_path, tiny_model_dir)
    events = []
    for event in train_stage(run, state):
        # record what the caller sees at each event (the state is live)
        events.append(event)
        if isinstance(event, StepEnd):
            assert len(event.batches) == 1 and event.losses
            assert all(math.isfinite(v) for values in event.losses.values() for v in values)
            assert event.state.global_step == event.state.stage_step == sum(isinstance(e, StepEnd) for e in events)
    assert kinds(events) == ["start", "step", "step", "step", "end", "start", "step", "step", "step", "end"]
    assert (state.epoch, state.step_in_epoch, state.stage_step, state.global_step) == (2, 0, 6, 6)
    assert run.step.scheduler.last_epoch == 6
    # every drawn batch moved its group's position: passes x batches per pass + position in the pass
    drawn = [b.group for e in events if isinstance(e, StepEnd) for b in e.batches]
    for group, (data_epoch, pos) in state.positions.items():
        per_pass = math.ceil(len(run.step.groups[group]) / run.batch_size)
        assert data_epoch * per_pass + pos == drawn.count(group)


def test_the_loop_stops_when_the_caller_leaves_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    run, state = start(tmp_path, tiny_model_dir)
    loop = train_stage(run, state)
    for event in loop:
        if isinstance(event, StepEnd) and event.state.global_step == 4:
            break
    weights = {k: v.clone() for k, v in run.step.model.state_dict().items()}
    loop.close()
    assert next(loop, None) is None
    assert (state.epoch, state.step_in_epoch, state.global_step, run.step.scheduler.last_epoch) == (1, 1, 4, 4)
    assert all(torch.equal(weights[k], v) for k, v in run.step.model.state_dict().items())


def test_a_resumed_state_runs_the_rest_of_its_epoch(tmp_path: Path, tiny_model_dir: Path) -> None:
    run, state = start(tmp_path, tiny_model_dir, gradient_accumulation=2)
    state.step_in_epoch = state.stage_step = state.global_step = 2
    events = list(train_stage(run, state))
    assert kinds(events) == ["start", "step", "end", "start", "step", "step", "step", "end"]
    assert all(len(e.batches) == 2 for e in events if isinstance(e, StepEnd))  # accumulation: 2 micro-batches
    assert state.global_step == 6


def test_gradual_unfreezing_happens_on_schedule(tmp_path: Path, tiny_model_dir: Path) -> None:
    run, state = start(tmp_path / "a", tiny_model_dir, gradual_unfreezing={"every": 2, "unit": "steps"})
    unfrozen = [e.unfrozen for e in train_stage(run, state) if isinstance(e, StepEnd)]
    assert unfrozen == [[], ["layer 1"], [], ["embeddings"], [], []]  # layer 2 (the top) trains from the start
    run, state = start(tmp_path / "b", tiny_model_dir, gradual_unfreezing={"every": 1, "unit": "epochs"})
    assert [e.unfrozen for e in train_stage(run, state) if isinstance(e, EpochEnd)] == [["layer 1"], ["embeddings"]]


def test_a_frozen_encoder_runs_without_dropout(tmp_path: Path, tiny_model_dir: Path) -> None:
    run, state = start(tmp_path, tiny_model_dir, freeze={"mode": "encoder"}, cache_embeddings=False)
    assert run.encoder_frozen
    event = next(e for e in train_stage(run, state) if isinstance(e, StepEnd))
    model = run.step.model
    assert event.state.global_step == 1
    assert not model.encoder.training and all(head.training for head in model.heads.values())


def test_the_stage_schedule_follows_the_warmup_rule(tmp_path: Path, tiny_model_dir: Path) -> None:
    # 2 epochs x 3 steps, warmup_ratio 0.25: 1.5 steps -> int 1 (polyhead) or ceil 2 (transformers)
    factors = {}
    for rule in ("polyhead", "transformers"):
        scheduler = {"warmup_ratio": 0.25, "warmup_rule": rule}
        run, _ = start(tmp_path / rule, tiny_model_dir, scheduler=scheduler)
        factors[rule] = [run.step.scheduler.lr_lambdas[0](s) for s in range(6)]  # type: ignore[attr-defined]
    assert factors["polyhead"] == pytest.approx([0.5, 1.0, 0.8, 0.6, 0.4, 0.2])
    assert factors["transformers"] == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])


def test_the_transformers_warmup_leaves_the_weights_alone_on_the_first_step(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Its first step runs at lr 0 (AdamW's moments move, the weights and their decay don't); the second moves."""
    run, state = start(tmp_path, tiny_model_dir, scheduler={"warmup_ratio": 0.25, "warmup_rule": "transformers"})
    model = run.step.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop = train_stage(run, state)
    next(e for e in loop if isinstance(e, StepEnd))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    next(e for e in loop if isinstance(e, StepEnd))
    loop.close()
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
