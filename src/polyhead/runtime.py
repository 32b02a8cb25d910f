"""Process-level settings: offline mode, CPU threads and bf16 support detection."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


def force_offline() -> None:
    """Never let transformers / huggingface_hub reach the network (the hub is not reachable here)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


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
    """Validate a precision name and that this machine can run it fast; returns it unchanged."""
    from polyhead.errors import PolyheadError

    if precision not in PRECISIONS:
        raise PolyheadError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "bf16" and device == "cpu" and not cpu_supports_bf16():
        raise PolyheadError(
            "precision 'bf16' needs a CPU with AVX512-BF16 or AMX (not found in /proc/cpuinfo); use 'fp32'"
        )
    return precision
