"""The training loop of one stage, as a generator the caller drives (after spaCy's
``training/loop.py:train_while_improving``).

``train_stage(run, state)`` draws batches, runs optimizer steps, advances ``state`` and unfreezes layers
on schedule; it yields an event at the start of each epoch, after each optimizer step and at the end of
each epoch. Everything else (logging, checkpoints, evaluation, early stopping, stopping on Ctrl-C) is the
caller's: it reacts to the events, and stops the loop by leaving it (``break``, or an exception).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from polyhead.data.collate import epoch_batches
from polyhead.training.freezing import GradualUnfreezer
from polyhead.training.plan import Stage
from polyhead.training.sampling import TaskSampler
from polyhead.training.state import TrainState
from polyhead.training.step import Batch, NonFiniteLoss, TrainStep


@dataclass
class StageRun:
    """What the loop of one stage needs besides its state.

    Attributes:
        stage: The stage (its tasks, epochs and gradual-unfreezing schedule).
        step: The stage's optimizer step (model, optimizer, schedule, data groups).
        sampler: Draws the group of each micro-batch.
        steps_per_epoch: Optimizer steps per epoch.
        unfreezer: Gradual unfreezing (None: the stage's freezing is fixed).
        encoder_frozen: Whether the encoder is frozen for the whole stage (it then runs without dropout).
        batch_size: Examples per micro-batch (of the global batch, before sharding).
        accumulation: Micro-batches per optimizer step.
        seed: Seeds each group's batch order (with the pass over the data and the group's name).
        bucket_by_length: Batch examples of similar length together.
        orders: Group -> (pass, that pass's batches): the pass being drawn from, built once per pass (not per
            step, which cost O(group size) a step: sorting and shuffling the whole group again).
    """

    stage: Stage
    step: TrainStep
    sampler: TaskSampler
    steps_per_epoch: int
    unfreezer: GradualUnfreezer | None = None
    encoder_frozen: bool = False
    batch_size: int = 32
    accumulation: int = 1
    seed: int = 0
    bucket_by_length: bool = True
    orders: dict[str, tuple[int, list[list[int]]]] = field(default_factory=dict)


@dataclass
class EpochStart:
    """An epoch (or the rest of one, after a resume) is about to run. ``state`` is the loop's live state."""

    state: TrainState


@dataclass
class StepEnd:
    """An optimizer step is done and ``state`` counts it.

    Attributes:
        state: The loop's live state.
        batches: The micro-batches the step trained on (this process's shards).
        losses: Task -> its loss on each micro-batch (see ``TrainStep.__call__``).
        unfrozen: Layer groups gradual unfreezing started training after this step.
    """

    state: TrainState
    batches: list[Batch]
    losses: dict[str, list[float]]
    unfrozen: list[str]


@dataclass
class EpochEnd:
    """An epoch is done: ``state.epoch`` counts it and ``state.step_in_epoch`` is back to 0.

    Attributes:
        state: The loop's live state.
        unfrozen: Layer groups gradual unfreezing started training after this epoch.
    """

    state: TrainState
    unfrozen: list[str]


Event = EpochStart | StepEnd | EpochEnd


def train_stage(run: StageRun, state: TrainState) -> Iterator[Event]:
    """Train the stage's remaining epochs from ``state``, yielding progress; the caller may stop at any event."""
    model = run.step.model
    while state.epoch < run.stage.epochs:
        yield EpochStart(state)
        model.train()
        if run.encoder_frozen:
            model.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout
        while state.step_in_epoch < run.steps_per_epoch:
            batches = [next_batch(run, state) for _ in range(run.accumulation)]
            try:
                losses = run.step(batches)
            except NonFiniteLoss as exc:
                raise exc.at(state.global_step + 1) from None
            state.step_in_epoch += 1
            state.stage_step += 1
            state.global_step += 1
            yield StepEnd(state, batches, losses, unfreeze(run, "steps", state.stage_step))
        state.epoch += 1
        state.step_in_epoch = 0
        yield EpochEnd(state, unfreeze(run, "epochs", state.epoch))


def next_batch(run: StageRun, state: TrainState) -> Batch:
    """Draw a group and take its next batch of the current pass (a new pass when that one is used up);
    this process gets its shard. The batch order is a pure function of the seed, so a resume draws the same."""
    gname = run.sampler.sample()
    epoch, pos = state.positions[gname]
    batches = pass_batches(run, gname, epoch)
    if pos >= len(batches):
        epoch, pos = epoch + 1, 0
        batches = pass_batches(run, gname, epoch)
    state.positions[gname] = (epoch, pos + 1)
    return Batch(gname, run.step.dist.shard(batches[pos]), epoch)


def pass_batches(run: StageRun, gname: str, epoch: int) -> list[list[int]]:
    """The batches of pass ``epoch`` over group ``gname`` (:func:`epoch_batches`), kept until the next pass."""
    kept = run.orders.get(gname)
    if kept is None or kept[0] != epoch:
        lengths = run.step.groups[gname].lengths
        kept = (epoch, epoch_batches(lengths, run.batch_size, run.seed, epoch, gname, run.bucket_by_length))
        run.orders[gname] = kept
    return kept[1]


def unfreeze(run: StageRun, unit: str, count: int) -> list[str]:
    """Advance gradual unfreezing when its schedule counts in ``unit``; returns what it started training."""
    gradual = run.stage.gradual
    if run.unfreezer is None or gradual is None or gradual.unit != unit:
        return []
    return run.unfreezer.step(count)
