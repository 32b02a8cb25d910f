"""The side effects of training, driven by the loop's events: the public callback hooks, the progress
bar, training-loss logging, checkpoints, and dev evaluation with early stopping and best-model keeping."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file
from torch import nn

from polyhead.config import TrainingConfig
from polyhead.errors import PolyheadError
from polyhead.evaluation.evaluator import sts_spearman
from polyhead.evaluation.metrics import LOWER_IS_BETTER
from polyhead.fileio import save_tensors_atomic
from polyhead.modeldir import TaskSpec
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.checkpoint import load_checkpoint, save_checkpoint
from polyhead.training.distributed import DistContext
from polyhead.training.loop import EpochEnd, StageRun, StepEnd
from polyhead.training.losses import StaticWeighting, UncertaintyWeighting
from polyhead.training.metrics_log import MetricsLog
from polyhead.training.plan import Stage
from polyhead.training.results import metrics_summary
from polyhead.training.state import TrainState

if TYPE_CHECKING:
    from polyhead.training.trainer import Trainer

logger = logging.getLogger(__name__)


class TrainerCallback:
    """Hooks for ``Trainer(..., callbacks=[...])``; override the ones you need (the defaults do nothing).

    Called on every process, after the trainer's own logging, checkpointing and evaluation for the
    event, in the order the callbacks were given. ``run`` holds the stage's model, optimizer, schedule
    and sampler (``run.step.model``, ``run.step.optimizer``, ...); ``state`` / ``event.state`` is the
    live training state: read it, don't change it.
    """

    def on_stage_start(self, trainer: Trainer, index: int) -> None:
        """Stage ``index`` is about to be set up (before its freezing, optimizer and cache)."""

    def on_epoch_start(self, trainer: Trainer, run: StageRun, state: TrainState) -> None:
        """An epoch (or what is left of one after a resume) is about to run."""

    def on_step_end(self, trainer: Trainer, run: StageRun, event: StepEnd) -> None:
        """An optimizer step is done (called before the trainer stops on Ctrl-C or ``stop_after_steps``)."""

    def on_epoch_end(self, trainer: Trainer, run: StageRun, event: EpochEnd) -> None:
        """An epoch is done, evaluated on dev and checkpointed."""

    def on_stage_end(self, trainer: Trainer, run: StageRun, state: TrainState) -> None:
        """The stage is done (its best epoch's weights restored when it kept one)."""


class ProgressBar:
    """A tqdm bar per epoch (when shown) with the latest loss of each task."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: Any = None

    def open(self, total: int, start: int, desc: str) -> None:
        if not self.show:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def update(self, running: dict[str, list[float]]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({t: f"{v[-1]:.3f}" for t, v in running.items()})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LossLog:
    """Mean training loss per task every 10 steps and at the end of each epoch (over all processes: their
    scaled shard losses average to the global batch's loss), with the learning rate and loss weights."""

    def __init__(self, log: MetricsLog, dist: DistContext, weighting: StaticWeighting | UncertaintyWeighting) -> None:
        self.log, self.dist, self.weighting = log, dist, weighting
        self.running: dict[str, list[float]] = {}

    def reset(self) -> None:
        self.running = {}

    def add(self, losses: dict[str, list[float]]) -> None:
        for t, values in losses.items():
            self.running.setdefault(t, []).extend(values)

    def write_if_due(self, run: StageRun, state: TrainState) -> None:
        if state.global_step % 10 == 0 or state.step_in_epoch == run.steps_per_epoch:
            self.write(run, state)
            self.reset()

    def write(self, run: StageRun, state: TrainState) -> None:
        names = [t for t, v in self.running.items() if v]
        running = self.running
        means = self.dist.all_sum(torch.tensor([sum(running[t]) / len(running[t]) for t in names])) / self.dist.world
        values = {f"train/loss/{t}": float(m) for t, m in zip(names, means, strict=True)}
        values["train/lr"] = float(run.step.scheduler.get_last_lr()[-1])
        values.update(
            {f"train/loss_weight/{t}": w for t, w in self.weighting.weights().items() if t in run.stage.tasks}
        )
        self.log.write(state.global_step, values, stage=run.stage.name, epoch=state.epoch)


def save_training_checkpoint(
    out: Path, run: StageRun, state: TrainState, weighting: nn.Module, log: MetricsLog, keep: int, dist: DistContext
) -> None:
    """Full state, written by the main process (all processes hold the same), so it resumes with any
    number of processes."""
    if not dist.is_main:
        dist.wait()
        return
    state.sampler = run.sampler.state_dict()
    if run.unfreezer is not None:
        state.unfreezer = run.unfreezer.state_dict()
    state.metrics_lines = log.lines
    log.flush()
    save_checkpoint(
        out, state.global_step, run.step.model, run.step.optimizer, {"weighting": weighting}, state.state_dict(), keep
    )
    dist.wait()


def restore_training_checkpoint(
    checkpoint: Path, run: StageRun, weighting: nn.Module, dist: DistContext, seed: int
) -> TrainState:
    """Model, loss weights, optimizer, RNG, sampler, unfreezing and schedule as ``checkpoint`` saved them."""
    state = TrainState.from_state_dict(
        load_checkpoint(checkpoint, run.step.model, run.step.optimizer, {"weighting": weighting})
    )
    assert state.sampler is not None, f"{checkpoint}/state.json has no sampler state"
    run.sampler.load_state_dict(state.sampler)
    if run.unfreezer is not None:
        assert state.unfreezer is not None, f"{checkpoint}/state.json has no unfreezer state"
        run.unfreezer.load_state_dict(state.unfreezer)
    run.step.scheduler.last_epoch = state.stage_step
    if dist.rank:  # the checkpoint holds the main process's RNG state
        torch.manual_seed(seed + dist.rank + state.global_step)
    return state


class DevEvaluation:
    """Dev metrics after each epoch, the best epoch's weights kept (``best_path``), early stopping."""

    def __init__(
        self,
        model: MultiTaskModel,
        specs: dict[str, TaskSpec],
        evaluate: Callable[[str, list[str]], dict[str, dict[str, float]]],
        config: TrainingConfig,
        sts_pairs: list[tuple[str, str, float]],
        log: MetricsLog,
        report: Callable[[Any], None],
        best_path: Path,
        dist: DistContext,
    ) -> None:
        self.model, self.specs, self.evaluate, self.config = model, specs, evaluate, config
        self.sts_pairs, self.log, self.report, self.best_path, self.dist = sts_pairs, log, report, best_path, dist

    def end_of_epoch(self, stage: Stage, st: TrainState) -> bool:
        """Dev metrics per task; keeps the best model; returns True when early stopping triggers."""
        metrics = self.evaluate("dev", stage.tasks)
        values = {f"dev/{t}/{k}": v for t, m in metrics.items() for k, v in m.items()}
        sts = self.config.sts_eval
        if self.sts_pairs and sts is not None and sts.each_epoch and self.dist.is_main:
            values["dev/sts/spearman"] = sts_spearman(self.model, self.sts_pairs, self.config.eval_batch_size)
        self.log.write(st.global_step, values, stage=stage.name, epoch=st.epoch)
        if metrics:
            self.report(metrics_summary(f"{stage.name} epoch {st.epoch} dev", metrics))
        score = self.selection_score(metrics)
        if score is None:
            return False
        if st.best is None or score > st.best:
            st.best, st.best_epoch, st.bad_epochs = score, st.epoch, 0
            if self.dist.is_main:
                save_tensors_atomic(dict(self.model.state_dict()), self.best_path)
            return False
        st.bad_epochs += 1
        patience = self.config.early_stopping.patience
        return patience is not None and st.bad_epochs >= patience

    def selection_score(self, metrics: dict[str, dict[str, float]]) -> float | None:
        name = self.config.early_stopping.metric
        if not metrics:
            return None
        if name == "mean":
            scores = [m[self.specs[t].task.primary_metric] for t, m in metrics.items()]
            return sum(scores) / len(scores)
        task, _, metric = name.partition("/")
        if task not in metrics or metric not in metrics[task]:
            raise PolyheadError(
                f"training.early_stopping.metric {name!r}: no such dev metric; have: "
                + ", ".join(f"{t}/{k}" for t, m in metrics.items() for k in m)
            )
        value = metrics[task][metric]
        return -value if metric in LOWER_IS_BETTER else value

    def keep_best(self, stage: Stage, st: TrainState) -> None:
        """At the end of a stage: back to the weights of its best epoch, when one was saved."""
        self.dist.wait()
        if st.best is not None and self.best_path.is_file():
            self.model.load_state_dict(load_file(str(self.best_path)), strict=True)
            self.report(f"stage {stage.name}: kept the best epoch ({st.best_epoch}, {st.best:.4f})")
            self.dist.wait()  # every process has read it
            if self.dist.is_main:
                self.best_path.unlink()


def log_renderable(item: Any) -> None:
    """The trainer's default report: rich tables rendered to plain text, into the log."""
    if isinstance(item, str):
        logger.info("%s", item)
        return
    from rich.console import Console

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(item)
    logger.info("\n%s", console.export_text())
