"""Where training is: the typed progress a checkpoint saves (``state.json``) and a resume restores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """The training loop's counters and the state of everything that draws batches.

    ``state_dict()`` is the JSON written into a checkpoint's ``state.json`` (beside the optimizer's
    metadata and ``step``, which ``save_checkpoint`` adds); its keys and values are the ones polyhead
    has always written, so checkpoints of earlier versions resume.

    Attributes:
        stage: Index of the stage in the plan.
        epoch: Completed epochs of the stage.
        step_in_epoch: Optimizer steps done in the current epoch.
        stage_step: Optimizer steps done in the stage (the scheduler's position).
        global_step: Optimizer steps done in the run, over all stages.
        positions: Group name -> (pass over the group's data, index of its next batch in that pass).
        best: Best dev selection score of the stage so far (None: not evaluated yet).
        best_epoch: The epoch that scored ``best``.
        bad_epochs: Epochs since ``best`` improved (for early stopping).
        elapsed: Seconds spent in the stage, as of the last checkpoint.
        sampler: ``TaskSampler.state_dict()``, filled in when a checkpoint is written.
        unfreezer: ``GradualUnfreezer.state_dict()`` (None: the stage has no gradual unfreezing).
        metrics_lines: Lines of metrics.jsonl written, filled in when a checkpoint is written.
    """

    stage: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    stage_step: int = 0
    global_step: int = 0
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    elapsed: float = 0.0
    sampler: dict[str, Any] | None = None
    unfreezer: dict[str, Any] | None = None
    metrics_lines: int | None = None

    @classmethod
    def start(cls, stage: int, global_step: int, groups: list[str]) -> TrainState:
        """The state at the beginning of a stage: every group at the start of its first pass."""
        return cls(stage=stage, global_step=global_step, positions={g: (0, 0) for g in groups})

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrainState:
        new = cls()
        new.load_state_dict(state)
        return new

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready, in the order polyhead has always written it (``unfreezer`` only when there is one)."""
        state: dict[str, Any] = {
            "stage": self.stage,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "stage_step": self.stage_step,
            "global_step": self.global_step,
            "positions": {g: list(p) for g, p in self.positions.items()},
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "elapsed": self.elapsed,
            "sampler": self.sampler,
            "unfreezer": self.unfreezer,
            "metrics_lines": self.metrics_lines,
        }
        if self.unfreezer is None:
            del state["unfreezer"]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From ``state_dict()`` or a checkpoint's state.json (its ``step`` and ``optimizer`` keys, which
        belong to the checkpoint, are ignored). Keys a checkpoint may lack take their defaults: a run
        that stopped before its first checkpoint has only ``stage``, ``global_step`` and ``elapsed``."""
        self.stage = int(state.get("stage", 0))
        self.epoch = int(state.get("epoch", 0))
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.stage_step = int(state.get("stage_step", 0))
        self.global_step = int(state.get("global_step", 0))
        self.positions = {g: (int(p[0]), int(p[1])) for g, p in state.get("positions", {}).items()}
        self.best = None if state.get("best") is None else float(state["best"])
        self.best_epoch = None if state.get("best_epoch") is None else int(state["best_epoch"])
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.elapsed = float(state.get("elapsed", 0.0))
        self.sampler = state.get("sampler")
        self.unfreezer = state.get("unfreezer")
        self.metrics_lines = None if state.get("metrics_lines") is None else int(state["metrics_lines"])
