"""Output files of streaming inference, written chunk by chunk into a work directory and moved into place whole.

Each writer appends one chunk durably (written and fsynced) and then reports a small state (bytes, parts,
rows) that the run records in its progress file; only a chunk the progress file records counts. A resumed
writer drops whatever lies beyond the recorded state (the half-written chunk of a killed run). The output
file itself appears only when the last chunk is in (``finish``: a rename), so a crash never leaves a file
that looks complete.

- ``.jsonl``: one JSON object a row, appended to ``data.jsonl`` (resume truncates it to the recorded size).
- ``.parquet``: one Parquet file per chunk in ``parts/`` (each written atomically), merged at the end into one
  file, one row group per chunk, read back one part at a time (schemas unified, so a chunk whose entity lists
  were all empty still fits).
- ``.npy``: vectors only, into a ``(rows, dim)`` float32 ``.npy`` through a memory map (``open_memmap``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from polyhead.errors import PolyheadError
from polyhead.extras import installed
from polyhead.fileio import fsync_dir, replacing

OUTPUT_FORMATS = (".jsonl", ".parquet", ".npy")
EMBEDDING = "embedding"  # the vector column of encode's .jsonl / .parquet output


class Block:
    """One chunk's output: ``columns`` (name -> one value per row, in row order) and, for encode, ``vectors``
    (rows, dim) float32, written as the ``embedding`` column (or alone, to .npy)."""

    def __init__(self, columns: dict[str, list[Any]], vectors: np.ndarray | None = None) -> None:
        self.columns, self.vectors = columns, vectors

    def __len__(self) -> int:
        if self.vectors is not None:
            return len(self.vectors)
        return len(next(iter(self.columns.values()))) if self.columns else 0


class Writer(Protocol):
    def write(self, block: Block, start: int) -> dict[str, Any]:
        """Append ``block`` (rows from ``start``) durably; return the state to record."""
        ...

    def finish(self, output: Path) -> None:
        """Move the finished output to ``output`` (replacing what is there)."""
        ...

    def close(self) -> None:
        """Release open files (the work directory is about to be removed)."""
        ...


def output_format(path: Path, option: str = "--output") -> str:
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise PolyheadError(f"{option} {path}: unknown output type {path.suffix!r}; valid: {', '.join(OUTPUT_FORMATS)}")
    if path.suffix.lower() == ".parquet" and not installed("pyarrow"):
        raise PolyheadError("writing Parquet needs pyarrow, which is not installed: pip install 'polyhead[datasets]'")
    return path.suffix.lower()


def open_writer(fmt: str, work: Path, state: dict[str, Any] | None, total: int) -> Writer:
    """The writer for ``fmt`` in ``work``; ``state``: what an earlier run recorded (None: a new output)."""
    if fmt == ".jsonl":
        return JsonlWriter(work, state)
    if fmt == ".parquet":
        return ParquetWriter(work, state)
    return NpyWriter(work, state, total)


def move_into_place(source: Path, output: Path) -> None:
    os.replace(source, output)
    fsync_dir(output.parent)


class JsonlWriter:
    def __init__(self, work: Path, state: dict[str, Any] | None) -> None:
        self.path = work / "data.jsonl"
        self.file = open(self.path, "r+b" if state else "wb")  # noqa: SIM115 - open across chunks, closed in finish
        if state:
            self.file.truncate(state["bytes"])  # what a killed run wrote past its last recorded chunk
            self.file.seek(state["bytes"])

    def write(self, block: Block, start: int) -> dict[str, Any]:
        names = list(block.columns)
        lines = []
        for i in range(len(block)):
            row = {name: block.columns[name][i] for name in names}
            if block.vectors is not None:
                row[EMBEDDING] = block.vectors[i].tolist()
            lines.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.file.write("".join(lines).encode("utf-8"))
        self.file.flush()
        os.fsync(self.file.fileno())
        return {"bytes": self.file.tell()}

    def finish(self, output: Path) -> None:
        self.file.close()
        move_into_place(self.path, output)

    def close(self) -> None:
        self.file.close()


class ParquetWriter:
    def __init__(self, work: Path, state: dict[str, Any] | None) -> None:
        self.parts = work / "parts"
        self.parts.mkdir(exist_ok=True)
        self.count = state["parts"] if state else 0
        for stale in self.parts.glob("part-*.parquet"):  # beyond the recorded parts: a killed run's last chunk
            if int(stale.stem.split("-")[1]) >= self.count:
                stale.unlink()

    def close(self) -> None:
        pass

    def part(self, index: int) -> Path:
        return self.parts / f"part-{index:06d}.parquet"

    def write(self, block: Block, start: int) -> dict[str, Any]:
        import pyarrow.parquet as pq

        with replacing(self.part(self.count)) as tmp:
            pq.write_table(arrow_table(block), tmp)
        self.count += 1
        return {"parts": self.count}

    def finish(self, output: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [self.part(i) for i in range(self.count)]
        schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
        with replacing(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:  # one part in memory at a time
                writer.write_table(pq.read_table(part).cast(schema))


def arrow_table(block: Block) -> Any:
    """A block as a pyarrow Table: nested results as structs and lists, vectors as a fixed-size list column."""
    import pyarrow as pa

    arrays = {name: pa.array(values) for name, values in block.columns.items()}
    if block.vectors is not None:
        vectors = np.ascontiguousarray(block.vectors, dtype=np.float32)
        arrays[EMBEDDING] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    return pa.table(arrays)


class NpyWriter:
    def __init__(self, work: Path, state: dict[str, Any] | None, total: int) -> None:
        self.path, self.total = work / "vectors.npy", total
        self.array: np.memmap | None = None
        if state:
            self.array = np.lib.format.open_memmap(self.path, mode="r+")

    def write(self, block: Block, start: int) -> dict[str, Any]:
        assert block.vectors is not None
        if self.array is None:
            shape = (self.total, block.vectors.shape[1])
            self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=shape)
        self.array[start : start + len(block)] = block.vectors
        self.array.flush()  # msync: these rows are on disk before the progress file says so
        return {"rows": start + len(block)}

    def close(self) -> None:
        self.array = None

    def finish(self, output: Path) -> None:
        if self.array is None:  # no rows: an empty (0, 0) array
            np.save(self.path, np.zeros((0, 0), dtype=np.float32))
        self.array = None
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())
        move_into_place(self.path, output)
