"""Several training processes through Hugging Face Accelerate (issue 9; see ``docs/distributed.md``).

The model is not wrapped in DDP: every process draws the same task and the same global batch (same
seeds), trains on its shard ``indices[rank::world]`` with each task's loss scaled by the shard's share
of the batch, and the gradients are averaged through one flattened buffer per optimizer step, so all
processes keep identical weights and the result is that of one process on the global batch. Only the
main process writes files. A single process (``polyhead train`` without a launcher) is a no-op context.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from polyhead.errors import PolyheadError
from polyhead.extras import installed
from polyhead.interrupt import sigint_handler

logger = logging.getLogger(__name__)

T = TypeVar("T")

# tracker name in the config -> the package Accelerate needs for it
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
TRACKER_INSTALL = {"tensorboard": "'polyhead[plots]'", "wandb": "wandb", "mlflow": "mlflow"}


def create_accelerator(log_with: Sequence[str] = (), project_dir: Path | None = None, cpu: bool | None = None) -> Any:
    """An ``accelerate.Accelerator`` for this process: gloo on CPUs, NCCL on GPUs; trackers for ``log_with``.

    Raises:
        PolyheadError: a tracker whose package is not installed.
    """
    for name in log_with:
        if not installed(TRACKER_PACKAGES[name]):
            raise PolyheadError(
                f"training.log_with: {name!r} needs the {TRACKER_PACKAGES[name]} package, which is not installed; "
                f"pip install {TRACKER_INSTALL[name]} or remove it (valid: {', '.join(TRACKER_PACKAGES)})"
            )
    from accelerate import Accelerator

    return Accelerator(
        cpu=not torch.cuda.is_available() if cpu is None else cpu,
        log_with=list(log_with) or None,
        project_dir=str(project_dir) if project_dir is not None else None,
    )


class DistContext:
    """Process information and the few collectives the trainer needs.

    Attributes:
        state: Accelerate's ``Accelerator`` or ``PartialState`` (None: one process, no Accelerate).
        rank: This process's index (0 on the main process).
        world: Number of processes.
    """

    def __init__(self, state: Any | None = None) -> None:
        self.state = state
        self.rank = int(getattr(state, "process_index", 0)) if state is not None else 0
        self.world = int(getattr(state, "num_processes", 1)) if state is not None else 1

    @classmethod
    def create(cls, cpu: bool | None = None) -> DistContext:
        """The context from Accelerate's ``PartialState`` (gloo on CPU, NCCL on GPUs).

        Args:
            cpu: Force CPU processes (gloo); default: CPU when no GPU is available.
        """
        from accelerate import PartialState

        return cls(PartialState(cpu=not torch.cuda.is_available() if cpu is None else cpu))

    @property
    def is_main(self) -> bool:
        """Whether this process may write files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of a global batch or an evaluation set: ``items[rank::world]``."""
        return list(items[self.rank :: self.world])

    def wait(self) -> None:
        """Barrier across processes (no-op when single-process)."""
        if self.distributed and self.state is not None:
            self.state.wait_for_everyone()

    def gather_objects(self, items: list[T]) -> list[T]:
        """Concatenate per-process lists on every process, in rank order (``items`` when single-process)."""
        if not self.distributed:
            return items
        from accelerate.utils import gather_object

        return list(gather_object(items))

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of a tensor over processes (the tensor itself when single-process)."""
        if self.distributed:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
        return values

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (e.g. Ctrl-C seen by one process)."""
        if not self.distributed:
            return flag
        return bool(self.all_sum(torch.tensor([float(flag)])).item() > 0)

    def broadcast_object(self, value: T) -> T:
        """The main process's ``value`` on every process (e.g. a run directory named after the time)."""
        if not self.distributed:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]  # type: ignore[no-any-return]

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Copy the main process's parameters and buffers to every process (identical start)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)

    def average_gradients(self, params: Sequence[nn.Parameter], local_weight: float = 1.0) -> None:
        """Sum ``local_weight`` x each process's gradient over processes, through one flattened buffer.

        With ``local_weight = 1 / world`` this is the mean gradient; it equals the gradient of the
        global-batch loss when each process's loss was scaled by ``world`` x its share of the batch. A
        parameter whose gradient is None on every process (a head the step's task doesn't use) stays
        None, as in one process, so AdamW leaves it untouched; None on some processes counts as zero.

        Args:
            params: Trainable parameters, in the same order on every process.
            local_weight: Weight of this process's gradient in the sum.
        """
        if not self.distributed or not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params])
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([has.to(grads[0].device)] + [g.reshape(-1).float() for g in grads])
        flat[len(params) :] *= local_weight
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = len(params)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(g.dtype) if flat[i] > 0 else None
            offset += n


def launch_processes(polyhead_args: Sequence[str], num_processes: int) -> int:
    """Run ``polyhead <args>`` in ``num_processes`` processes on this machine through ``accelerate launch``.

    On a machine without GPUs the processes use the CPU (gloo) and share its cores
    (``OMP_NUM_THREADS`` = cores / processes unless set). Returns the launcher's exit status; the
    launcher's own traceback after a failed process is dropped (the process printed its error).
    """
    import io
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a free port, so two runs on one machine don't collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        "-m",
        "polyhead",
        *polyhead_args,
    ]
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    interrupted = []
    with sigint_handler(lambda *_: interrupted.append(True)):  # the workers handle Ctrl-C
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        # newline="": progress bars' carriage returns pass through as they are
        launcher_failed = forward_stderr(io.TextIOWrapper(proc.stderr, encoding="utf-8", errors="replace", newline=""))
        status = proc.wait()
    if interrupted and status:
        return 130
    if status and launcher_failed:
        sys.stderr.write(f"error: {num_processes} training processes: at least one failed (its error is above)\n")
    return status


def forward_stderr(stream: Any) -> bool:
    """Copy the processes' stderr through, minus the launcher's own traceback after a process failed
    (``ChildFailedError``) and the failure summary after it. Returns True when that traceback was seen."""
    import sys

    block: list[str] = []
    dropping = False
    for line in stream:
        if dropping:
            continue
        if block or line.startswith("Traceback"):
            block.append(line)
            ended = line.strip() and not line.startswith((" ", "\t", "Traceback", "During handling", "The above"))
            if ended:  # the exception line closes the traceback
                text, block = "".join(block), []
                if "ChildFailedError" in text or "SignalException" in text:
                    dropping = True
                else:
                    sys.stderr.write(text)
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
    if block:
        sys.stderr.write("".join(block))
    return dropping
