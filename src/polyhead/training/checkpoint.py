"""Atomic training checkpoints (safetensors + JSON, never pickle) and exact resume.

Layout under ``<run>/checkpoints/``::

    step-00000120/  model.safetensors  optimizer.safetensors  state.json
    latest.json     {"checkpoint": "step-00000120"}

A checkpoint is written into a temporary directory, flushed, and renamed into place; ``latest.json``
moves last (also by rename), so a crash at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from polyhead.errors import PolyheadError
from polyhead.fileio import fsync_dir, save_tensors_atomic, write_json_atomic, write_text_atomic  # noqa: F401 - old names kept

logger = logging.getLogger(__name__)

LATEST = "latest.json"


def inject_fault(point: str, step: int) -> None:
    """Fault injection for the crash-safety tests: POLYHEAD_FAULT=checkpoint-write:STEP kills the
    process with SIGKILL in the middle of writing that step's checkpoint (checkpoint-discard:STEP: of deleting
    it). Unset in normal use."""
    if os.environ.get("POLYHEAD_FAULT") == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON (the rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    extra_modules: Mapping[str, nn.Module],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and move ``latest.json`` to it; prune old ones."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for trash in root.glob(".*.trash"):  # what an earlier run was killed while deleting
        shutil.rmtree(trash, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors = dict(model.state_dict())
        for prefix, module in extra_modules.items():
            tensors.update({f"__{prefix}__.{k}": v for k, v in module.state_dict().items()})
        tensors["__rng__.torch"] = torch.get_rng_state()
        save_tensors_atomic(tensors, tmp / "model.safetensors")
        inject_fault("checkpoint-write", step)
        opt_tensors, opt_meta = optimizer_state(optimizer)
        save_tensors_atomic(opt_tensors, tmp / "optimizer.safetensors")
        write_json_atomic(tmp / "state.json", {**state, "optimizer": opt_meta, "step": step})
        fsync_dir(tmp)
        final = root / name
        if final.exists():
            discard(final)
        os.replace(tmp, final)
        fsync_dir(root)
        write_json_atomic(root / LATEST, {"checkpoint": name, "step": step})
    except WRITE_ERRORS as exc:  # a full disk, a quota, a read-only file system: latest.json still names the last one
        shutil.rmtree(tmp, ignore_errors=True)
        previous = (root / LATEST).is_file() and json.loads((root / LATEST).read_text()).get("checkpoint")
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint was written"
        raise write_failed(exc, f"checkpoint {name} in {root}", f"{kept}; {RECOVER}") from exc
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        discard(old)
    return final


def discard(checkpoint: Path) -> None:
    """Delete a checkpoint directory so that a kill at any moment leaves it whole or gone: renamed first (one
    atomic step) to a hidden ``.NAME.trash`` that no reader looks at, then deleted file by file."""
    trash = checkpoint.with_name(f".{checkpoint.name}.trash")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(checkpoint, trash)
    (trash / "model.safetensors").unlink(missing_ok=True)
    inject_fault("checkpoint-discard", int(checkpoint.name.rpartition("-")[2]))  # half deleted
    shutil.rmtree(trash, ignore_errors=True)


# What failing to write a file looks like: safetensors reports a full disk as SafetensorError ("I/O error: No
# space left on device (os error 28)"); Python's own writes raise OSError (ENOSPC, EDQUOT, EROFS, ...).
WRITE_ERRORS = (SafetensorError, OSError)
RECOVER = "free disk space, then run the same command with --resume"


def write_failed(exc: BaseException, what: str, then: str) -> PolyheadError:
    """One line for a write that failed (usually a full disk): what, why (the error's first line), and what
    the user still has and can do."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    return PolyheadError(f"couldn't write {what}: {reason}; {then}")


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
        if not isinstance(name, str) or not re.fullmatch(r"step-\d{8}", name):
            raise TypeError(name)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError) as exc:
        raise PolyheadError(f"{pointer} is corrupt; delete it to resume from an earlier checkpoint") from exc
    path = run_dir / "checkpoints" / name
    if not (path / "state.json").is_file():
        raise PolyheadError(f"{pointer} points to {path}, which is incomplete")
    return path


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, extra_modules: Mapping[str, nn.Module]
) -> dict[str, Any]:
    """Restore model, extra modules, optimizer and torch RNG; returns the trainer state dict."""
    try:
        return restore(path, model, optimizer, extra_modules)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PolyheadError(
            f"checkpoint {path} is unreadable ({first}); delete it and point {path.parent / LATEST} at an earlier "
            "one, or start a new run"
        ) from exc


def restore(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, extra_modules: Mapping[str, nn.Module]
) -> dict[str, Any]:
    tensors = load_file(str(path / "model.safetensors"))
    torch.set_rng_state(tensors.pop("__rng__.torch"))
    for prefix, module in extra_modules.items():
        mark = f"__{prefix}__."
        module.load_state_dict({k[len(mark) :]: tensors.pop(k) for k in list(tensors) if k.startswith(mark)})
    model.load_state_dict(tensors, strict=True)
    state = json.loads((path / "state.json").read_text())
    load_optimizer_state(optimizer, load_file(str(path / "optimizer.safetensors")), state.pop("optimizer"))
    return state
