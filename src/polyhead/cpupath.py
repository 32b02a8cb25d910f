"""CPU paths chosen by measuring: a short probe of the available paths at first use, cached per machine.

Which kernels are fastest depends on the CPU (torch's MKL GEMMs take a generic path on AMD, where oneDNN's run
2-2.5x faster; on Intel CPUs MKL is at home) and on the library versions, so polyhead doesn't assume: the
first time a choice is needed on a machine it times each candidate for a fraction of a second and records the
winner, with the figures, in ``cpu_paths.json`` in the user's cache directory, keyed by the CPU model, its
instruction-set flags that matter, and the versions of the libraries involved. Later processes read it.

Choices (each overridable by an environment variable, and by the caller's explicit argument):

- ``linears``: the kernel of a torch ``nn.Linear`` on the CPU, ``onednn`` or ``mkl``
  (:mod:`polyhead.modeling.onednn`); ``POLYHEAD_LINEARS=onednn|mkl|auto``.
- ``backend``: what ``load(dir, "auto")`` runs a model directory on, among torch and the directory's
  full-fidelity exports (onnx, openvino fp32); ``POLYHEAD_BACKEND=torch|onnx|openvino|...|auto``.

The cache directory: ``$POLYHEAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/polyhead``, else ``~/.cache/polyhead``.
Deleting the file re-measures. Nothing here imports torch.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from polyhead.errors import PolyheadError
from polyhead.fileio import write_json_atomic

logger = logging.getLogger(__name__)

CACHE_FILE = "cpu_paths.json"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni", "asimd", "sve")
ENV = {"linears": "POLYHEAD_LINEARS", "backend": "POLYHEAD_BACKEND"}
# What a backend probe encodes: 64 sentences of 3-30 words (typical short-text lengths), two batches of 32.
PROBE_TEXTS = [
    " ".join(["the quick brown fox jumps over the lazy dog"] * (1 + i % 4))[: 12 + (i * 37) % 170]
    for i in range(64)
]


def cache_dir() -> Path:
    if os.environ.get("POLYHEAD_CACHE_DIR"):
        return Path(os.environ["POLYHEAD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polyhead"


@cache
def cpu_description() -> str:
    """The CPU model and the instruction-set flags that decide which kernels win, e.g.
    ``AMD EPYC [avx2 avx512_bf16 avx512_vnni avx512f avx_vnni]``."""
    model, flags = "unknown CPU", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine() or model
    return f"{model} [{' '.join(sorted(f for f in FLAGS if f in flags))}] x{os.cpu_count()}"


def versions(libraries: Sequence[str]) -> str:
    out = []
    for name in libraries:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name}==none")
    return " ".join(out)


def cache_key(kind: str, subject: str, libraries: Sequence[str]) -> str:
    """One line naming what a choice depends on: kind, what was probed (shapes, an architecture), CPU, versions."""
    return f"{kind} | {subject} | {cpu_description()} | {versions(libraries)}"


def read_cache() -> dict[str, Any]:
    file = cache_dir() / CACHE_FILE
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # unreadable or half-written by something else: measure again
        logger.warning("ignoring %s (%s); the CPU paths are measured again", file, exc)
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(key: str, entry: dict[str, Any]) -> None:
    data = read_cache()
    data[key] = entry
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_dir() / CACHE_FILE, data)
    except OSError as exc:  # a read-only home: the choice still holds for this process
        logger.warning("can't write %s (%s); the CPU path will be measured again next time", cache_dir(), exc)


def override(kind: str, valid: Sequence[str], explicit: str | None = None) -> str | None:
    """The path the caller (``explicit``) or the environment variable for ``kind`` fixes, or None for ``auto``;
    an invalid name is an error naming the variable and the valid names."""
    name, source = (explicit, "argument") if explicit not in (None, "auto") else (os.environ.get(ENV[kind]), ENV[kind])
    if name in (None, "", "auto"):
        return None
    if name not in valid:
        raise PolyheadError(f"{source} {kind} path {name!r}: valid: auto, {', '.join(valid)}")
    return name


def choose(
    kind: str,
    subject: str,
    probes: Mapping[str, Callable[[], float]],
    libraries: Sequence[str],
    explicit: str | None = None,
) -> str:
    """The fastest of ``probes`` (name -> a function returning seconds for a fixed piece of work) for ``kind``
    on this machine: the override when one is set, else the cached winner for (kind, subject, CPU, library
    versions), else measured now (each probe run alternately, three times; the median counts) and cached."""
    names = list(probes)
    fixed = override(kind, names, explicit)
    if fixed is not None:
        return fixed
    if len(names) == 1:
        return names[0]
    key = cache_key(kind, f"{subject}, candidates {'/'.join(sorted(names))}", libraries)
    cached = read_cache().get(key)
    if isinstance(cached, dict) and cached.get("choice") in names:
        return str(cached["choice"])
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(3):
        for name in names:
            times[name].append(probes[name]())
    seconds = {name: statistics.median(t) for name, t in times.items()}
    choice = min(seconds, key=lambda n: seconds[n])
    logger.info("%s path for %s on this CPU: %s (probe seconds %s)", kind, subject, choice, seconds)
    write_cache(key, {"choice": choice, "probe_seconds": seconds, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return choice
