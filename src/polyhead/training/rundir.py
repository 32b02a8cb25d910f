"""The run directory: a new run never writes over anything; a resumed run continues under the config it
started with; an unfinished run (killed before its first checkpoint) restarts cleanly, removing only what
polyhead can prove it wrote (the run marker ``.polyhead-run.json``, written when the run created the
directory, and file names only a run writes); anything else is a refusal."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.fileio import write_json_atomic
from polyhead.modeldir import check_new_directory
from polyhead.modeling.encoder import DEFAULT_MODEL, encoder_settings, resolve_model_path
from polyhead.training.checkpoint import latest_checkpoint
from polyhead.training.distributed import DistContext

logger = logging.getLogger(__name__)

# The marker a run writes when it creates its (empty) directory: the run's identity. Without it, nothing in
# the directory is polyhead's to remove.
RUN_MARKER = ".polyhead-run.json"
# What a run writes before its first checkpoint (removed when restarting an unfinished run that has a marker).
RUN_FILES = {"config.yaml", "metrics.jsonl", "best_model.safetensors", "preserve_reference.safetensors"}
# Inside these directories, only files named like the ones a run writes there are removed.
RUN_DIR_FILES = {
    "tensorboard": re.compile(r"events\.out\.tfevents\..*"),
    "checkpoints": re.compile(r"\.step-\d{8}\.tmp"),  # a checkpoint cut short (a complete one is resumed)
}
CHECKPOINT_TMP_FILES = {"model.safetensors", "optimizer.safetensors", "state.json"}


def prepare_output(out: Path, resume: bool, dist: DistContext) -> bool:
    """Refuse to clobber a previous run; check the directory is writable with room to spare. Returns
    whether the run resumes from a checkpoint (False: it starts from the beginning).

    Every process checks before any writes (so all of them fail alike); the main process removes
    what an unfinished run left and creates the directory.
    """
    if resume and latest_checkpoint(out) is not None:
        return True
    leftovers = unfinished_run(out) if resume else set()
    if not resume:
        refuse_non_empty(out)
    dist.wait()
    if dist.is_main:
        for path in sorted(leftovers, key=lambda p: len(p.parts), reverse=True):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    probe = out / f".write-test.{dist.rank}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        if dist.is_main and not (out / RUN_MARKER).is_file():
            write_json_atomic(out / RUN_MARKER, {"run_id": uuid.uuid4().hex, "directory": str(out.resolve())})
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PolyheadError(f"output directory {out} is not writable: {exc.strerror}") from exc
    free = shutil.disk_usage(out).free
    if free < 500 * 2**20:
        raise PolyheadError(f"only {free // 2**20} MiB free under {out}; training needs at least 500 MiB")
    dist.wait()
    return False


def unfinished_run(out: Path) -> set[Path]:
    """--resume before the first checkpoint: a run killed that early restarts from the beginning, provided
    the directory carries the run's marker and holds nothing but what a run writes. Returns what to remove
    (files and the directories a run made); anything polyhead can't prove it wrote is a refusal."""
    found = [p for p in out.iterdir() if not p.name.startswith(".write-test.")] if out.is_dir() else []
    if not found:
        raise PolyheadError(f"--resume: no checkpoint in {out}/checkpoints to resume from")
    if not run_marker_valid(out):
        raise PolyheadError(
            f"--resume: no checkpoint in {out}/checkpoints to resume from, and {out} was not created by a polyhead "
            f"run (no valid {RUN_MARKER}): nothing in it is removed; choose another --output"
        )
    remove: set[Path] = set()
    foreign: list[str] = []
    for path in found:
        if path.name == RUN_MARKER:
            continue
        if path.name in RUN_FILES and path.is_file() and not path.is_symlink():
            remove.add(path)
        elif path.name in RUN_DIR_FILES and path.is_dir() and not path.is_symlink():
            remove |= run_dir_contents(path, RUN_DIR_FILES[path.name], foreign)
        else:
            foreign.append(str(path.relative_to(out)))
    if foreign:
        raise PolyheadError(
            f"--resume: no checkpoint in {out}/checkpoints to resume from, and {out} holds files a polyhead run "
            f"does not write ({', '.join(sorted(foreign)[:5])}): nothing is removed; move them or choose another "
            "--output"
        )
    logger.warning("no checkpoint yet in %s: restarting the run from the beginning", out)
    return remove


def run_marker_valid(out: Path) -> bool:
    """Whether ``out`` holds the marker a run wrote when it created the directory (a JSON object with its id)."""
    marker = out / RUN_MARKER
    if not marker.is_file() or marker.is_symlink():
        return False
    try:
        data = json.loads(marker.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        return False
    return isinstance(data, dict) and isinstance(data.get("run_id"), str) and len(data["run_id"]) == 32


def run_dir_contents(root: Path, pattern: re.Pattern[str], foreign: list[str]) -> set[Path]:
    """The run's files under ``root`` (and the directories holding them); anything else goes to ``foreign``.

    ``tensorboard/``: event files at any depth (the trackers' sub-directories); ``checkpoints/``: checkpoint
    directories cut short while being written, holding only the files a checkpoint has.
    """
    remove = {root}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_symlink():
            ours = False
        elif root.name == "tensorboard":
            ours = path.is_dir() or pattern.fullmatch(path.name) is not None
        else:
            depth = len(rel.parts)
            ours = pattern.fullmatch(rel.parts[0]) is not None and (
                (depth == 1 and path.is_dir()) or (depth == 2 and rel.parts[1] in CHECKPOINT_TMP_FILES)
            )
        if ours:
            remove.add(path)
        else:
            foreign.append(f"{root.name}/{rel}")
    return remove


def refuse_non_empty(out: Path) -> None:
    """A new run never writes into a directory that holds something (or over a file)."""
    check_new_directory(out, "output directory", "pass --resume to continue it or choose another --output")


def check_same_config(config: dict[str, Any], out: Path) -> None:
    """--resume continues a run only under the config it started with (overrides included): the data,
    schedule and sampler it would rebuild otherwise are another run's."""
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        return
    try:
        saved = yaml.safe_load(saved_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolyheadError(
            f"--resume: {saved_file} is not readable YAML ({type(exc).__name__}); it records the config the run "
            "started with: restore it, or delete it to resume without this check"
        ) from exc
    if not isinstance(saved, dict):
        raise PolyheadError(
            f"--resume: {saved_file} holds no config; restore it, or delete it to resume without this check"
        )
    # through the model, so keys a newer polyhead added compare as their defaults (if it no longer
    # validates, it is compared as written: the differences say what changed)
    with contextlib.suppress(ValidationError):
        saved = Config.model_validate(saved).model_dump(mode="json")
    saved, config = (effective_encoder(c) for c in (saved, config))
    changed = [
        f"{key}: {old!r} -> {new!r}"
        for key, old, new in config_differences(saved, config)
        if key not in RESUME_IRRELEVANT
    ]
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise PolyheadError(
            f"--resume: the config differs from the one this run started with ({shown}); resume with the same "
            f"config and --set overrides (the run's config is {saved_file})"
        )


# Keys that don't change what a resumed run computes (threads, logging, evaluation batch size, checkpoint
# keeping): they may differ between the start and the resume.
RESUME_IRRELEVANT = {
    "training.num_threads",
    "training.log_with",
    "training.eval_batch_size",
    "training.keep_checkpoints",
    "training.checkpoint_steps",
}


def effective_encoder(config: dict[str, Any]) -> dict[str, Any]:
    """The config with an unset ``encoder.pooling`` / ``encoder.normalize`` replaced by what the model gives
    (its sentence-transformers files, else mean / normalised): a run saved as ``mean`` before these became
    optional is the same run."""
    encoder = dict(config.get("encoder") or {})
    with contextlib.suppress(PolyheadError):  # a model that is gone: compared as written
        path = resolve_model_path(encoder.get("model", DEFAULT_MODEL), encoder.get("revision"))
        settings, _ = encoder_settings(path, pooling=encoder.get("pooling"), normalize=encoder.get("normalize"))
        encoder.update(pooling=settings["pooling"], normalize=settings["normalize"])
    return {**config, "encoder": encoder}


def config_differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs between two config dumps."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in {**old, **new} for d in config_differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]
