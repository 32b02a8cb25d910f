"""Sharded Parquet: a directory of ``*.parquet`` files, or a glob (``data/train-*.parquet``), read as one table.

This is how Parquet data usually arrives from the Hugging Face Hub (``data/train-00000-of-00004.parquet``, ...)
and from Spark or ``datasets.Dataset.to_parquet`` in pieces. The files are read in sorted file order (so
``-00000-`` before ``-00001-``, and the rows keep the order they were written in), through ``pyarrow.dataset``:
one dataset over the files, each file a fragment with its own schema and row count from its metadata. Errors
name the shard file (and the row counted from 0 within it) and the column.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhead.errors import DataError

GLOB_CHARS = ("*", "?", "[")


def is_sharded(path: Path) -> bool:
    """A glob pattern (``*``, ``?``, ``[``; not an existing file of that name), or a directory of ``*.parquet``
    files that is not a Hugging Face ``datasets`` directory."""
    from polyhead.data.arrow import is_datasets_dir

    if any(c in str(path) for c in GLOB_CHARS) and not path.exists():
        return True
    return path.is_dir() and not is_datasets_dir(path) and any(path.glob("*.parquet"))


def shard_files(path: Path, what: str) -> list[Path]:
    """The ``.parquet`` files of a directory (its own, not its subdirectories') or a glob (``**`` for any depth),
    sorted; ``what`` names the option or config key in errors."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if p.is_file())
        if not files:
            raise DataError(f"{what} {path}: a directory without .parquet files (and not a datasets directory)")
        return files
    files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        raise DataError(f"{what} {path}: no file matches this pattern (relative patterns are read from the "
                        "current directory)")  # fmt: skip
    other = [f for f in files if f.suffix.lower() != ".parquet"]
    if other:
        raise DataError(
            f"{what} {path}: {other[0]} matches but is not a .parquet file; a pattern must match Parquet shards "
            f"only (e.g. {path.parent / '*.parquet'})"
        )
    return files


@dataclass
class Shard:
    """One file of a sharded table: its column names, ``datasets`` features (ClassLabel names), row count."""

    path: Path
    fragment: Any  # a pyarrow.dataset.ParquetFileFragment
    names: list[str]
    metadata: dict[bytes, bytes] | None
    num_rows: int

    def batches(self, columns: list[str], batch_size: int) -> Iterator[Any]:
        """Record batches of ``columns`` (those present) from the first row."""
        present = [c for c in dict.fromkeys(columns) if c in self.names]
        return iter(self.fragment.to_batches(columns=present, batch_size=batch_size, use_threads=False))


def open_shards(files: list[Path]) -> list[Shard]:
    """The shards of one table in the order given (sorted by :func:`shard_files`), through ``pyarrow.dataset``;
    a file that is not readable Parquet is named."""
    from polyhead.data.arrow import import_pyarrow, one_line

    import_pyarrow()  # the error saying how to install pyarrow
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
        fragments = list(dataset.get_fragments())
    except Exception as exc:  # ArrowInvalid / OSError: find the file it is about
        for file in files:
            try:
                ds.dataset(str(file), format="parquet").schema  # noqa: B018 - opening it is the check
            except Exception as inner:
                raise DataError(f"{file}: not a readable Parquet file ({one_line(inner)})") from None
        raise DataError(f"{files[0].parent}: can't read these Parquet shards together ({one_line(exc)})") from None
    shards = []
    for file, fragment in zip(files, fragments, strict=True):
        try:
            schema = fragment.physical_schema
            rows = int(fragment.metadata.num_rows)
        except Exception as exc:
            raise DataError(f"{file}: not a readable Parquet file ({one_line(exc)})") from None
        shards.append(Shard(file, fragment, list(schema.names), schema.metadata, rows))
    return shards


def check_columns(shards: list[Shard], columns: list[str]) -> None:
    """Every shard has every wanted column; else an error naming the first shard without one."""
    for shard in shards:
        missing = [c for c in dict.fromkeys(columns) if c not in shard.names]
        if missing:
            raise DataError(
                f"{shard.path}: column(s) {', '.join(map(repr, missing))} not found in this shard; "
                f"columns: {', '.join(shard.names)}"
            )
