"""Process-level settings: the CPU runtime the CLI configures, and bf16 support detection.

Nothing here runs on import: a library leaves its host process alone (no environment variables set, no
global state changed). The CLI entry point (``polyhead.cli.main``) owns its process and calls
:func:`configure_cpu_runtime`; a program embedding polyhead (its own server, say) may call it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from pathlib import Path
from typing import Any, get_args

from polyhead.config import Precision

logger = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = get_args(Precision)

# torch's oneDNN layer (ideep, LRU_CACHE_CAPACITY) and oneDNN itself (ONEDNN_PRIMITIVE_CACHE_CAPACITY) each
# keep up to 1,024 kernels per input shape by default, and every batch of a different (batch x length) is a
# new shape: measured here, 1,200 row counts through MiniLM's three linear shapes grew RSS by 2.7 GB (a
# server's RSS kept climbing: 560 -> 1,356 MiB over 20,000 requests; BENCHMARKS.md, Serving). With both
# caches at 32 the same sweep grows 147 MiB, at no measurable encoding cost (600-633 sent/s for 1024 / 64 /
# 16). Both are read once, when oneDNN first runs in the process, so they must be set before that.
ONEDNN_CACHE_CAPACITY = "32"
CPU_RUNTIME_DEFAULTS = {
    "LRU_CACHE_CAPACITY": ONEDNN_CACHE_CAPACITY,
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": ONEDNN_CACHE_CAPACITY,
}


def configure_cpu_runtime() -> dict[str, str]:
    """Cap oneDNN's kernel caches for this process; returns the variables it set.

    Call it once, before the first model runs (oneDNN reads the variables when it first runs; later calls
    change nothing that matters). A variable already in the environment is left as the user set it.
    ``polyhead`` commands call it at start-up; the library never does (importing polyhead or loading a
    model changes no environment variable).
    """
    added = {name: value for name, value in CPU_RUNTIME_DEFAULTS.items() if name not in os.environ}
    os.environ.update(added)
    return added


# glibc's mallopt parameters (malloc.h). A training step allocates and frees ~0.2 GB (activations kept for
# backward, gradients, bf16 copies of the weights, the 47 MB word-embedding gradient); by default glibc serves
# blocks over its mmap threshold (32 MB at most) with fresh mmap()s and returns the top of the heap to the kernel
# once more than its trim threshold is free, so every step faults those pages in again (and the kernel zeroes
# them). Keeping freed memory for reuse makes the step's memory warm from the second step on.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRAINING_MALLOC = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**30))


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory in the process for reuse (no mmap'd blocks, trim only past 1 GiB).

    For training: the process's memory then stays at its peak (memory freed is reused, not returned), which a
    long-running server would not want, so only ``polyhead train`` calls it. Changes which addresses tensors
    get, never a value. Returns False (and changes nothing) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in TRAINING_MALLOC)


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX-BF16).

    Without them torch still runs bf16 autocast, but through slow emulation, so it is refused.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(precision: str, device: str = "cpu") -> str:
    """Validate a precision name for a device type (``cpu``, ``cuda``, ``mps``); returns it unchanged.

    ``fp16`` autocast runs on CUDA GPUs only; ``bf16`` on a CPU needs native bf16 instructions (checked only on
    the CPU: GPUs take torch's ordinary autocast path).
    """
    from polyhead.errors import PolyheadError

    if precision not in PRECISIONS:
        raise PolyheadError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device != "cuda":
        raise PolyheadError(f"precision 'fp16' runs on CUDA GPUs only (device {device}); use 'fp32' or 'bf16'")
    if precision == "bf16" and device == "cpu" and not cpu_supports_bf16():
        raise PolyheadError(
            "precision 'bf16' needs a CPU with AVX512-BF16 or AMX (not found in /proc/cpuinfo); use 'fp32'"
        )
    return precision


# ------------------------------------------------------------ the CLI entry point's process settings
def setup_logging(console: Any, verbose: bool = False) -> None:
    """The CLI's logging: warnings (INFO with ``verbose``) through rich on ``console``; transformers quiet."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("polyhead").setLevel(logging.INFO)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def configure_process() -> None:
    """Process-wide settings every command runs with; a variable the user set wins.

    oneDNN's kernel caches capped (:func:`polyhead.runtime.configure_cpu_runtime`: a micro-batching
    server grew by gigabytes without), set before any model runs; tokenizers' own thread pool off, as
    polyhead's commands have always run (and no warning from it when a process forks after tokenising).
    Hub access is left to the user's ``HF_HUB_OFFLINE``.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    configure_cpu_runtime()
