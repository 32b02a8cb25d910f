"""One optimizer step's maths: collate, autocast, encoder (or cached) features, heads, per-task losses,
scaling for several processes, backward, gradient averaging and clipping, the optimizer and schedule.

No logging and no files: a step returns its losses and leaves the rest to the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from polyhead.data.collate import EncodedGroup, collate
from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import autocast
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.cache import EmbeddingCache
from polyhead.training.distributed import DistContext
from polyhead.training.preserve import PRESERVE, Preservation


@dataclass
class Batch:
    """One micro-batch as this process sees it.

    Attributes:
        group: Name of the task group it comes from.
        indices: Rows of the group in this process's shard of the global batch (all of it in one process).
        data_epoch: The pass over the group's data it was drawn from.
    """

    group: str
    indices: list[int]
    data_epoch: int = 0


class NonFiniteLoss(PolyheadError):
    """A task's loss was NaN or infinite: the step is not applied (the weights stay as they were)."""

    def __init__(self, task: str | None, value: float, step: int | None = None) -> None:
        self.task, self.value, self.step = task, value, step
        where = f" at step {step}" if step is not None else ""
        what = f"the loss of task '{task}' is {value}" if task else "another process saw a non-finite loss"
        super().__init__(
            f"training stopped{where}: {what} (non-finite, so the model diverged); nothing was saved as the "
            "final model. Check that task's labels (e.g. regression targets far too large), lower the "
            "learning rate, or set training.max_grad_norm"
        )

    def at(self, step: int) -> NonFiniteLoss:
        return NonFiniteLoss(self.task, self.value, step)


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``, without its multiply by exactly 1.0 when the norm is within bounds.

    clip_grad_norm_ always multiplies every gradient by ``min(1, max_norm / (norm + 1e-6))``: that avoids a
    host sync on accelerators, but on the CPU (no sync to avoid) it is a pass over every gradient (22.7M for
    MiniLM) that changes nothing unless the norm is too large. Same coefficient, same kernel, so the same
    gradients to the bit (tests/test_training_speed.py).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norm = torch.nn.utils.get_total_norm(grads)
    if norm.device.type != "cpu" or bool(max_norm / (norm + 1e-6) < 1.0):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


@dataclass
class TrainStep:
    """A stage's optimizer step: ``step(batches)`` trains on ``gradient_accumulation`` micro-batches.

    Attributes:
        model: The model being trained (already on ``device``).
        specs: Task name -> its head spec (type, labels, loss).
        weighting: Combines the per-task losses into one (static or uncertainty weighting).
        optimizer: The stage's optimizer.
        scheduler: The stage's learning-rate schedule (stepped once per optimizer step).
        tasks: The stage's tasks (heads of other tasks get no loss).
        groups: Group name -> its tokenised training data.
        cache: Cached encoder outputs when the stage's encoder is frozen (None: run the encoder).
        score_scale: Similarity task -> largest absolute gold score (cosine loss targets are divided by it).
        dist: Processes taking part (one by default).
        device: Where the model lives.
        precision: Autocast precision (``fp32``, ``bf16``, ``fp16``).
        max_grad_norm: Gradient clipping norm (None or 0: no clipping).
        preserve: Embedding preservation (its reference vectors and weight), or None.
    """

    model: MultiTaskModel
    specs: dict[str, TaskSpec]
    weighting: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tasks: list[str]
    groups: dict[str, EncodedGroup]
    cache: EmbeddingCache | None = None
    score_scale: dict[str, float] = field(default_factory=dict)
    dist: DistContext = field(default_factory=DistContext)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    max_grad_norm: float | None = None
    preserve: Preservation | None = None
    # fp16 autocast (CUDA) scales the loss so small gradients don't underflow: torch.amp.GradScaler, else None
    scaler: Any = None

    def __call__(self, batches: list[Batch]) -> dict[str, list[float]]:
        """Forward and backward every micro-batch (losses averaged over them), then one optimizer step.

        Returns:
            Task -> its loss on each micro-batch that had the task (this process's, scaled as in
            ``forward_batch``; 0.0 for an empty shard).
        """
        running: dict[str, list[float]] = {}
        for batch in batches:
            losses = self.forward_batch(batch.group, batch.indices)
            total = self.total_loss(losses) / len(batches)
            if total.requires_grad:  # False for an empty shard: no gradient, which counts as zero
                (self.scaler.scale(total) if self.scaler is not None else total).backward()
            for t, loss in losses.items():
                running.setdefault(t, []).append(float(loss.detach()))
        # the losses are already on the host (above): checking them costs nothing, and a diverged step is
        # refused before the optimizer writes NaN into the weights
        bad = next(((t, v) for t, values in running.items() for v in values if not math.isfinite(v)), None)
        if self.dist.any(bad is not None):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(*(bad or (None, math.nan)))
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]
        self.dist.average_gradients(params, 1.0 / self.dist.world)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm:
            clip_gradients(params, self.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when a gradient overflowed in fp16
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return running

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted task losses, plus the weighted preservation loss when there is one."""
        tasks = {t: loss for t, loss in losses.items() if t != PRESERVE}
        total = self.weighting(tasks) if tasks else torch.zeros((), device=self.device)
        if PRESERVE in losses and self.preserve is not None:
            total = total + self.preserve.weight * losses[PRESERVE]
        return total

    def forward_batch(self, gname: str, local: list[int]) -> dict[str, torch.Tensor]:
        """Each task's loss on ``local``, this process's shard of the global batch (all of it in one process).

        With several processes each loss is multiplied by ``world x`` the shard's share of the batch (its
        examples, or labelled tokens for token tasks), so that averaging gradients over processes gives
        the gradient of the global batch's mean loss (the cosine loss of similarity tasks is a mean over
        pairs too). CoSENT ranks the pairs within a shard (as DDP does): its losses are averaged over the
        processes whose shard holds pairs.
        """
        group = self.groups[gname]
        tasks = [t for t in group.tasks if t in self.tasks]
        # the preservation loss, for groups it compares on (never on cached features: a frozen encoder)
        preserving = self.preserve is not None and self.cache is None and gname in self.preserve.reference
        names = tasks + [PRESERVE] * preserving
        losses = {t: torch.zeros((), device=self.device) for t in names}
        counts = torch.zeros(len(names))
        if local:
            features, targets = collate(group, local, self.specs, self.model.encoder.pad_token_id)
            features = {k: v.to(self.device) for k, v in features.items()}
            with autocast(self.precision, self.device):
                if self.cache is not None:
                    feats = self.cache.features(gname, local, features["attention_mask"])
                else:
                    feats = self.model.encoder(features)
                outputs = self.model.run_heads(feats, tasks)
                for i, t in enumerate(tasks):
                    target = targets[t].to(self.device)
                    spec = self.specs[t]
                    counts[i] = spec.task.loss_count(target)
                    if counts[i] > 0:
                        losses[t] = spec.task.loss(spec, outputs[t], target, self.score_scale.get(t, 1.0))
                if preserving and self.preserve is not None:
                    counts[-1] = len(local)
                    losses[PRESERVE] = self.preserve.term(gname, local, feats)  # type: ignore[assignment]
        if not self.dist.distributed:
            return losses
        totals = self.dist.all_sum(torch.cat([counts, (counts > 0).float()]))
        n, holding = totals[: len(names)], totals[len(names) :]
        by_share = torch.where(n > 0, self.dist.world * counts / n.clamp(min=1), 0.0)
        by_shard = torch.where(counts > 0, self.dist.world / holding.clamp(min=1), 0.0)
        in_batch = [t != PRESERVE and self.specs[t].task.loss_ranks_batch(self.specs[t]) for t in names]
        return {t: losses[t] * float(by_shard[i] if in_batch[i] else by_share[i]) for i, t in enumerate(names)}

