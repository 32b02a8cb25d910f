"""The run directory: a new run never writes over anything; a resumed run continues under the config it
started with; an unfinished run (killed before its first checkpoint) restarts cleanly."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.modeldir import check_new_directory
from polyhead.modeling.encoder import DEFAULT_MODEL, encoder_settings, resolve_model_path
from polyhead.training.checkpoint import latest_checkpoint
from polyhead.training.distributed import DistContext

logger = logging.getLogger(__name__)

# What a run writes before its first checkpoint (safe to remove when restarting an unfinished run).
RUN_ARTIFACTS = {
    "config.yaml",
    "metrics.jsonl",
    "tensorboard",
    "checkpoints",
    "best_model.safetensors",
    "preserve_reference.safetensors",
    ".write-test",  # written by earlier versions (now .write-test.<rank>)
}


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
        for name in leftovers:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    probe = out / f".write-test.{dist.rank}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PolyheadError(f"output directory {out} is not writable: {exc.strerror}") from exc
    free = shutil.disk_usage(out).free
    if free < 500 * 2**20:
        raise PolyheadError(f"only {free // 2**20} MiB free under {out}; training needs at least 500 MiB")
    dist.wait()
    return False


def unfinished_run(out: Path) -> set[str]:
    """--resume before the first checkpoint: a run killed that early restarts from the beginning,
    provided its directory holds nothing but what a run writes. Returns what to remove."""
    found = {p.name for p in out.iterdir()} if out.is_dir() else set()
    found = {name for name in found if not name.startswith(".write-test.")}
    if not found or found - RUN_ARTIFACTS:
        raise PolyheadError(f"--resume: no checkpoint in {out}/checkpoints to resume from")
    logger.warning("no checkpoint yet in %s: restarting the run from the beginning", out)
    return found


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
