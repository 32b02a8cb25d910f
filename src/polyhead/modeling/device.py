"""Device names -> ``torch.device``: ``auto`` (CUDA, then Apple MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.

The GPU path is torch's ordinary one: the model is moved with ``.to(device)`` and inputs follow it; the CPU-only
kernel choices (oneDNN linears, :mod:`polyhead.modeling.onednn`) step aside for tensors that are not on the CPU.
"""

from __future__ import annotations

import re

import torch

from polyhead.errors import PolyheadError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
_CUDA = re.compile(r"cuda(?::(\d+))?")


def available_devices() -> list[str]:
    """The devices this process can use, e.g. ``["cpu"]`` or ``["cpu", "cuda:0", "cuda:1"]``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if mps_available():
        found.append("mps")
    return found


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto", what: str = "device") -> torch.device:
    """A checked ``torch.device`` for ``name``; ``what`` names the option in errors (``--device``, ...).

    Raises:
        PolyheadError: an unknown name, or a device this machine doesn't have (the message lists those it has).
    """
    text = str(name if name is not None else "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not mps_available():
            raise PolyheadError(
                f"{what} 'mps': Apple's MPS is not available here; available: {', '.join(available_devices())}"
            )
        return torch.device("mps")
    match = _CUDA.fullmatch(text)
    if match is None:
        raise PolyheadError(f"{what} {str(name)!r} is not a device; valid: {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA GPU found"
        raise PolyheadError(
            f"{what} {text!r}: CUDA is not available here ({build}, torch {torch.__version__}); "
            f"available: {', '.join(available_devices())}"
        )
    index = int(match.group(1)) if match.group(1) is not None else None
    if index is not None and index >= torch.cuda.device_count():
        raise PolyheadError(f"{what} {text!r}: no such GPU; available: {', '.join(available_devices())}")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")
