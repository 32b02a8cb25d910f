"""The streaming options of ``polyhead predict`` and ``polyhead encode`` (``--input FILE --output FILE``), and the
one call each command makes with them: the checks between options, the progress bar, Ray or this process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeGuard

import typer
from rich.console import Console

from polyhead.data.stream import Columns
from polyhead.errors import PolyheadError

Input = Annotated[
    Path | None,
    typer.Option(
        "--input",
        "-i",
        help="Stream this .txt/.jsonl/.csv/.tsv/.parquet file (or Parquet shards: a directory or a quoted glob such "
        "as 'data/train-*.parquet') to --output, in chunks.",
    ),
]
Output = Annotated[Path | None, typer.Option("--output", "-o", help=".jsonl or .parquet (encode also .npy).")]
TextColumn = Annotated[str | None, typer.Option(help="--input column with the text (default: text).")]
PairColumns = Annotated[str | None, typer.Option(help="--input columns A,B with the text pairs for the pair heads.")]
IdColumn = Annotated[str | None, typer.Option(help="--input column copied to the output's id (default: row number).")]
KeepColumns = Annotated[str | None, typer.Option(help="Comma-separated --input columns copied to the output.")]
ChunkSize = Annotated[int, typer.Option(min=1, help="Rows per chunk with --input (memory is bounded by one).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted --input run after its last chunk.")]
Ray = Annotated[
    str | None, typer.Option(help="Run --input on Ray Data: a cluster address, auto (the running cluster) or local.")
]
NumActors = Annotated[int, typer.Option(min=1, help="Model replicas (Ray actors) with --ray.")]


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def make_columns(text: str | None, pair: str | None, id_: str | None, keep: str | None) -> Columns:
    pairs = split_list(pair)
    if pair is not None and len(pairs) != 2:
        raise PolyheadError(f"--pair-columns {pair!r}: name two columns, A,B")
    text_column = text if text is not None else (None if pairs else "text")
    return Columns(text_column, (pairs[0], pairs[1]) if pairs else None, id_, tuple(split_list(keep)))


def check_streaming(
    input: Path | None, output: Path | None, streaming_only: dict[str, Any], in_memory_only: dict[str, Any]
) -> TypeGuard[Path]:
    """True for a streaming run (--input). Options of the other kind of run are errors, never ignored:
    ``streaming_only`` without --input, ``in_memory_only`` (texts, --out, --json, ...) with it."""
    if input is None:
        if output is not None:
            raise PolyheadError("--output needs --input FILE (the file to stream); for a .npy of a few texts: --out")
        used = [name for name, value in streaming_only.items() if value]
        if used:
            raise PolyheadError(f"{used[0]} works with --input FILE --output FILE")
        return False
    if output is None:
        raise PolyheadError(f"--input {input} needs --output FILE (.jsonl or .parquet; encode also .npy)")
    used = [name for name, value in in_memory_only.items() if value]
    if used:
        raise PolyheadError(f"--input streams a file to --output: {used[0]} is for texts given as arguments / --file")
    return True


@contextmanager
def row_progress(console: Console, what: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar (rows, rows/s, elapsed, time left) fed by the run's (done, total) callback; on
    ``console`` (the CLI gives stderr, so stdout holds only the summary line)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    # transient: gone when the run ends (the summary line follows) or fails (the error stays one line)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=None, rate="-", start=False)

        def update(done: int, total: int) -> None:
            if not bar.tasks[0].started:  # rows a resumed run did before don't count for the rate
                bar.reset(task, total=total, completed=done, start=True)
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:,.0f}" if speed else "-")

        yield update


def run(command: str, console: Console, input: Path, output: Path | None, ray: str | None, num_actors: int,
        **kwargs: Any) -> None:  # fmt: skip
    """``polyhead predict|encode --input ... --output ...``: in this process, or on Ray with ``ray``."""
    from polyhead import bulk

    assert output is not None, "check_streaming requires --output with --input"
    start = time.monotonic()
    if ray is not None:
        from polyhead.integrations.ray import run_file

        if kwargs.get("resume"):
            raise PolyheadError("--resume is for runs in this process; a --ray run retries failed tasks itself")
        result = run_file(command, input, output, address=ray, num_actors=num_actors, **kwargs)
    else:
        with row_progress(Console(stderr=True), command) as update:
            function = bulk.predict_file if command == "predict" else bulk.encode_file
            result = function(kwargs.pop("model"), input, output, progress=update, **kwargs)
    resumed = f", resumed after row {result['resumed_from']}" if result.get("resumed_from") else ""
    seconds = time.monotonic() - start
    rate = (result["total"] - result.get("resumed_from", 0)) / max(seconds, 1e-9)
    console.print(f"{result['total']} rows -> {output} ({seconds:.1f} s, {rate:,.0f} rows/s{resumed})", markup=False)
