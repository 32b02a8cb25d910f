"""Building blocks for multi-process training through Hugging Face Accelerate (issue 9).

Not yet wired into :mod:`polyhead.training.trainer`. Design (see ``docs/distributed.md``): the model
is not wrapped in DDP; every process draws the same task and the same global batch, trains on its
shard ``indices[rank::world]`` and averages gradients through one flattened buffer per step, so all
processes keep identical weights. Only the main process writes files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from torch import nn

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DistContext:
    """Process information; a no-op single-process context unless Accelerate reports several processes.

    Attributes:
        rank: This process's index (0 on the main process).
        world: Number of processes.
    """

    def __init__(self, state: Any | None = None) -> None:
        self.state = state
        self.rank = int(getattr(state, "process_index", 0)) if state is not None else 0
        self.world = int(getattr(state, "num_processes", 1)) if state is not None else 1

    @classmethod
    def create(cls, cpu: bool = False) -> DistContext:
        """Build the context from Accelerate's ``PartialState`` (gloo on CPU, NCCL on GPUs).

        Args:
            cpu: Force CPU processes (gloo) even when GPUs exist.

        Returns:
            The context; single-process when not started by ``accelerate launch``.
        """
        from accelerate import PartialState

        return cls(PartialState(cpu=cpu))

    @property
    def is_main(self) -> bool:
        """Whether this process may write files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world > 1

    def shard(self, indices: Sequence[T]) -> list[T]:
        """This process's share of a global batch: ``indices[rank::world]``."""
        return list(indices[self.rank :: self.world])

    def wait(self) -> None:
        """Barrier across processes (no-op when single-process)."""
        if self.distributed and self.state is not None:
            self.state.wait_for_everyone()

    def gather_objects(self, items: list[T]) -> list[T]:
        """Concatenate picklable per-process lists on every process (rank order).

        Args:
            items: This process's items (e.g. ``(gold, pred)`` pairs of its evaluation shard).

        Returns:
            The items of all processes; ``items`` itself when single-process.
        """
        if not self.distributed:
            return items
        from accelerate.utils import gather_object

        return list(gather_object(items))

    def average_gradients(self, params: Sequence[nn.Parameter], local_weight: float = 1.0) -> None:
        """Average gradients across processes through one flattened buffer.

        Each process's gradient is scaled by ``local_weight`` (its share of the global batch, e.g.
        ``len(shard) / len(batch)``) and summed, so the result equals the gradient of the global-batch
        mean loss when each process's loss is the mean over its shard.

        Args:
            params: Trainable parameters, in the same order on every process.
            local_weight: Weight of this process's gradient in the sum.
        """
        if not self.distributed:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]) * local_weight
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(g.dtype)
            offset += n
