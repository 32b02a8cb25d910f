"""The chunk loop of streaming inference: read a chunk, run it, write it, record it; resume where it stopped.

Work happens in ``OUTPUT.polyhead-partial/`` beside the output: the writer's data and ``progress.json``, the
record of the complete chunks (rows done, where the next chunk starts in the input, the writer's state) and
of the settings the run started with. ``progress.json`` is replaced atomically after each chunk's data is on
disk, so it never counts a chunk that isn't whole. ``--resume`` reads it, checks that the input file and the
settings are the ones it recorded, drops what lies beyond the last recorded chunk and goes on from there. At
the end the output is moved into place (``--overwrite`` to replace an existing file) and the work directory
removed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhead.bulk.writers import Block, open_writer, output_format
from polyhead.data.stream import Chunk, InputFile
from polyhead.errors import PolyheadError
from polyhead.fileio import write_json_atomic

logger = logging.getLogger(__name__)
PROGRESS_VERSION = 1
# Called after each chunk with (rows done, rows in the file).
ProgressFn = Callable[[int, int], None]


@dataclass
class Job:
    """One file-to-file run. ``settings``: everything that shapes the output (model, backend, tasks, columns,
    precision, batch and chunk size, ...); a resumed run must be given the same."""

    input: InputFile
    output: Path
    chunk_size: int
    settings: dict[str, Any]
    resume: bool = False
    overwrite: bool = False

    @property
    def work(self) -> Path:
        return self.output.with_name(self.output.name + ".polyhead-partial")


def check_output(job: Job) -> str:
    """The output format, after refusing an output that would destroy something or an unfinished run
    that would be silently restarted."""
    fmt = output_format(job.output)
    if job.output.is_dir():
        raise PolyheadError(f"--output {job.output} is a directory; give a file path (e.g. {job.output / 'out'}{fmt})")
    if job.work.exists() and not job.resume:
        raise PolyheadError(
            f"--output {job.output}: an unfinished run left {job.work}; pass --resume to continue it, "
            "or remove that directory to start again"
        )
    if (job.output.exists() or job.output.is_symlink()) and not job.overwrite and not job.work.exists():
        raise PolyheadError(
            f"--output {job.output} already exists; pass --overwrite to replace it, or choose another file"
        )
    return fmt


def input_fingerprint(path: Path, files: list[Path] | None = None) -> dict[str, Any]:
    """Size and modification time of the input (of each of its shards, for a directory or glob of shards)."""
    if files is not None and files != [path]:
        return {"path": str(path), "files": [input_fingerprint(f) for f in files]}
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def start_or_resume(job: Job, fmt: str) -> dict[str, Any]:
    """The progress record to go on from: a new one, or the unfinished run's after checking it matches."""
    fingerprint = input_fingerprint(job.input.path, job.input.files())
    progress_file = job.work / "progress.json"
    if job.resume and progress_file.is_file():
        try:
            progress = json.loads(progress_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PolyheadError(f"{progress_file}: unreadable ({exc}); remove {job.work} to start again") from None
        if progress.get("version") != PROGRESS_VERSION:
            raise PolyheadError(f"{progress_file}: written by another polyhead version; remove {job.work}")
        if progress["input"] != fingerprint:
            raise PolyheadError(
                f"--resume: the input {job.input.path} changed since the unfinished run started (size or "
                f"modification time); remove {job.work} to start again"
            )
        recorded = progress["settings"]
        for key in sorted(set(recorded) | set(job.settings)):
            if recorded.get(key) != job.settings.get(key):
                raise PolyheadError(
                    f"--resume: {key} was {recorded.get(key)!r} in the unfinished run, now {job.settings.get(key)!r}; "
                    f"give the options it started with, or remove {job.work} to start again"
                )
        logger.info("resuming %s after row %d", job.output, progress["rows_done"])
        return dict(progress)
    if job.resume:
        logger.info("--resume: no unfinished run at %s; starting from the first row", job.work)
    total = job.input.count_rows()
    if total == 0:
        raise PolyheadError(f"--input {job.input.path} has no rows")
    job.work.mkdir(parents=True, exist_ok=True)
    progress = {
        "version": PROGRESS_VERSION,
        "input": fingerprint,
        "settings": job.settings,
        "format": fmt,
        "total": total,
        "rows_done": 0,
        "position": {},
        "writer": None,
    }
    write_json_atomic(progress_file, progress)
    return progress


def run_job(job: Job, infer: Callable[[Chunk], Block], progress_fn: ProgressFn | None = None) -> dict[str, Any]:
    """Run ``infer`` on every chunk not yet done and write the output; returns the final progress record
    (``total`` rows, ``resumed_from`` the row it started at)."""
    fmt = check_output(job)
    progress = start_or_resume(job, fmt)
    progress_file = job.work / "progress.json"
    writer = open_writer(fmt, job.work, progress["writer"], progress["total"])
    resumed_from = progress["rows_done"]
    if progress_fn is not None:
        progress_fn(resumed_from, progress["total"])
    try:
        for chunk in job.input.chunks(job.chunk_size, progress["rows_done"], progress["position"]):
            block = infer(chunk)
            assert len(block) == len(chunk.ids), "one output row per input row"
            progress["writer"] = writer.write(block, chunk.start)
            progress["rows_done"] = chunk.start + len(chunk.ids)
            progress["position"] = chunk.position
            write_json_atomic(progress_file, progress)  # the chunk counts from here on
            if progress_fn is not None:
                progress_fn(progress["rows_done"], progress["total"])
    except PolyheadError:
        if progress["rows_done"] == 0:  # bad input before any chunk: nothing worth resuming
            writer.close()
            shutil.rmtree(job.work, ignore_errors=True)
        raise
    if progress["rows_done"] != progress["total"]:
        raise PolyheadError(
            f"--input {job.input.path}: read {progress['rows_done']} rows, but it held {progress['total']} when "
            f"the run started; remove {job.work} to start again"
        )
    writer.finish(job.output)
    shutil.rmtree(job.work)
    return {**progress, "resumed_from": resumed_from}
