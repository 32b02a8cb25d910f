"""The stage plan: which tasks each stage trains, for how long, with which parameters and learning rates.

Functions of the config and the model's parameter names; nothing here trains or writes. The one that acts on the
model, :func:`stage_optimizer`, applies a stage's freezing and builds its optimizer when the stage starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from polyhead.config import Config, FreezeConfig, GradualUnfreezingConfig, OptimizerConfig, StageConfig
from polyhead.errors import PolyheadError
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.freezing import GradualUnfreezer, apply_freezing, check_trainable, frozen_parameter_names
from polyhead.training.param_groups import build_adamw, build_param_groups, describe_groups, format_group_table


@dataclass
class Stage:
    name: str
    tasks: list[str]
    epochs: int
    freeze: FreezeConfig
    gradual: GradualUnfreezingConfig | None
    optimizer: OptimizerConfig
    # a contrastive stage (training/fewshot.py): trains the encoder on pairs drawn from these tasks' labels
    pair_tasks: list[str] = field(default_factory=list)
    steps: int | None = None  # optimizer steps per epoch (None: training.steps_per_epoch, else one pass)
    batch_size: int | None = None  # None: training.batch_size
    bucket_by_length: bool | None = None  # None: training.bucket_by_length


def resolve_stages(config: Config) -> list[Stage]:
    """The config's stages; a config without ``training.stages`` is one stage named ``train``."""
    t = config.training
    if not t.stages:
        return [Stage("train", list(config.tasks), t.epochs, t.freeze, t.gradual_unfreezing, t.optimizer)]
    return [stage_from_config(i, s, config) for i, s in enumerate(t.stages)]


def stage_from_config(i: int, s: StageConfig, config: Config) -> Stage:
    return Stage(
        s.name or f"stage{i + 1}",
        list(s.tasks or config.tasks),
        s.epochs,
        s.freeze,
        s.gradual_unfreezing,
        s.optimizer or config.training.optimizer,
    )


# training.scheduler.warmup_rule -> the warmup length from (ratio, total steps) (config.WarmupRule)
WARMUP_STEPS: dict[str, Callable[[float, int], int]] = {
    "polyhead": lambda ratio, total: int(ratio * total),
    # transformers' TrainingArguments.get_warmup_steps (the HF Trainer, sentence-transformers, SetFit)
    "transformers": lambda ratio, total: math.ceil(ratio * total),
}


def warmup_steps(ratio: float, total: int, rule: str = "polyhead") -> int:
    """Warmup steps of a ``total``-step schedule with ``training.scheduler.warmup_ratio`` ``ratio``."""
    return WARMUP_STEPS[rule](ratio, total)


def lr_factor(step: int, kind: str, warmup: int, total: int, rule: str = "polyhead") -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warmup over ``warmup`` steps,
    then ``constant``, ``cosine`` decay to 0 or (any other kind) linear decay to 0 at ``total``.

    Warmup ``rule`` ``polyhead``: ``(step + 1) / (warmup + 1)``, so the first step already moves the weights;
    ``transformers``: ``step / warmup`` as ``get_linear_schedule_with_warmup``, the first step at lr 0 (it
    only feeds AdamW's moment estimates). The decay after warmup is the same for both."""
    if step < warmup:
        return step / warmup if rule == "transformers" else (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def lr_lambda(kind: str, warmup: int, total: int, rule: str = "polyhead") -> Callable[[int], float]:
    """``lr_factor`` with the schedule fixed, for ``torch.optim.lr_scheduler.LambdaLR``."""

    def fn(step: int) -> float:
        return lr_factor(step, kind, warmup, total, rule)

    return fn


def epoch_steps(sizes: dict[str, int], probabilities: dict[str, float], batch_size: int, accumulation: int) -> int:
    """Optimizer steps in one pass over the largest group: its batches divided by the chance of picking it.

    Args:
        sizes: Group name -> training examples.
        probabilities: Group name -> the sampler's chance of drawing it.
        batch_size: Examples per micro-batch.
        accumulation: Micro-batches per optimizer step.
    """
    bs = batch_size * accumulation
    largest = max(sizes, key=lambda g: sizes[g])
    return max(1, math.ceil(math.ceil(sizes[largest] / bs) / probabilities[largest]))


def frozen_names(model: MultiTaskModel, stage: Stage) -> set[str]:
    """Parameter names the stage's freezing policy freezes."""
    f = stage.freeze
    return frozen_parameter_names(model, f.mode, f.layers_below, list(f.heads))


def trainable_in(model: MultiTaskModel, stage: Stage, frozen: set[str]) -> list[tuple[str, nn.Parameter]]:
    """Parameters the stage's optimizer holds: not frozen, and no heads of tasks outside the stage."""
    inactive = [f"heads.{t}." for t in model.tasks if t not in stage.tasks]
    return [
        (n, p)
        for n, p in model.named_parameters()
        if n not in frozen and not any(n.startswith(prefix) for prefix in inactive)
    ]


def check_stages(model: MultiTaskModel, stages: list[Stage]) -> None:
    """Every stage must have something to train, checked before anything runs."""
    for stage in stages:
        trainable = trainable_in(model, stage, frozen_names(model, stage))
        if not trainable and stage.gradual is None:
            raise_nothing_to_train(stage)


def raise_nothing_to_train(stage: Stage) -> None:
    raise PolyheadError(
        f"stage {stage.name!r}: freezing (mode={stage.freeze.mode!r}, layers_below={stage.freeze.layers_below}, "
        f"heads={stage.freeze.heads}) leaves nothing to train for tasks {stage.tasks}; "
        "unfreeze something (training.freeze) or use `polyhead evaluate` to only evaluate"
    )


def stage_param_groups(
    model: MultiTaskModel, stage: Stage, include: set[str], weighting: nn.Module
) -> list[dict[str, Any]]:
    """The stage's optimizer groups over ``include`` (plus the learned loss weights, if any)."""
    extra = {"loss_weights": list(weighting.parameters())} if any(True for _ in weighting.parameters()) else None
    opt = stage.optimizer
    return build_param_groups(
        model,
        lr=opt.lr,
        head_lr=opt.head_lr,
        projection_lr=opt.projection_lr,
        layer_decay=opt.layer_decay,
        weight_decay=opt.weight_decay,
        include=include,
        extra=extra,
    )


def stage_optimizer(
    model: MultiTaskModel, stage: Stage, weighting: nn.Module, report: Callable[[Any], None]
) -> tuple[torch.optim.Optimizer, GradualUnfreezer | None, bool]:
    """Freeze what ``stage`` freezes (its parameter table goes to ``report``); its optimizer, gradual unfreezer,
    and whether the encoder stays frozen."""
    frozen = frozen_names(model, stage)
    apply_freezing(model, frozen)
    unfreezer = GradualUnfreezer(model, stage.gradual.every, always_frozen=frozen) if stage.gradual else None
    include = {n for n, _ in trainable_in(model, stage, frozen)}
    if unfreezer is None:
        check_trainable(model, f"stage {stage.name!r}")
    param_groups = stage_param_groups(model, stage, include, weighting)
    report(format_group_table(describe_groups(model, param_groups)))
    encoder_frozen = unfreezer is None and all(
        not p.requires_grad for n, p in model.named_parameters() if n.startswith("encoder.")
    )
    return build_adamw(param_groups), unfreezer, encoder_frozen
