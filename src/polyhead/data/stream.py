"""Streaming input for file-to-file inference: rows of .txt / .jsonl / .csv / .tsv / .parquet files in chunks.

A chunk holds the texts (or pairs) of at most ``size`` rows, their ids, the columns carried through to the
output, and the position just after its last row, so a resumed run starts reading there (a byte offset and a
line number for line formats, a row number for Parquet) without parsing what came before. Memory is bounded
by the chunk: nothing else of the file is held.

Line formats are read with the standard library (``json`` per line, ``csv`` over lines), so every error names
``file:line``; Parquet goes through pyarrow (record batches of the wanted columns only), errors name the row
(counted from 0). A ``.txt`` file is one text per line, blank lines skipped, as ``--file`` reads it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyhead.errors import DataError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
PARQUET_BATCH_ROWS = 1024
ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips


@dataclass(frozen=True)
class Columns:
    """Which input columns are read: the text (a string, or a list of words), a pair of texts, the id, and
    columns copied to the output unchanged. ``text`` None: no single-text input (pairs only)."""

    text: str | None = "text"
    pair: tuple[str, str] | None = None
    id: str | None = None
    keep: tuple[str, ...] = ()

    def wanted(self) -> list[str]:
        names = [self.text, *(self.pair or ()), self.id, *self.keep]
        return list(dict.fromkeys(n for n in names if n is not None))


@dataclass
class Chunk:
    """Rows ``start`` .. ``start + len(ids) - 1`` of the input."""

    start: int
    ids: list[Any]
    texts: list[Any] | None
    pairs: list[tuple[str, str]] | None
    keep: dict[str, list[Any]]
    position: dict[str, int] = field(default_factory=dict)


def input_format(path: Path, option: str = "--input") -> str:
    from polyhead.data.shards import is_sharded

    if is_sharded(path):  # a directory of .parquet files or a glob: Parquet shards read as one table
        return "parquet"
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{option} {path}: unknown file type {path.suffix!r}; valid: {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{option} {path}: no such file")
    return fmt


class InputFile:
    """One input file, checked at open (format, and for CSV/TSV/Parquet that the columns exist)."""

    def __init__(self, path: Path, columns: Columns, option: str = "--input", words: bool = False) -> None:
        self.path, self.columns, self.format = path, columns, input_format(path, option)
        self.words = words and self.format in ("jsonl", "parquet")  # a text may be a list of words
        self.header: list[str] = []
        if self.format == "txt":
            if columns.text != "text" or columns.pair or columns.id or columns.keep:
                raise DataError(
                    f"{option} {path}: a .txt file has one text per line and no columns; for --text-column, "
                    "--pair-columns, --id-column or --keep-columns give a .jsonl, .csv or .parquet file"
                )
        elif self.format in ("csv", "tsv"):
            self.header, self.data_start = self.read_header()
            self.check_columns(self.header)
        elif self.format == "parquet":
            self.shards = parquet_shards(path, option)
            for file, parquet in self.shards:
                self.check_columns(list(parquet.schema_arrow.names), file)

    def check_columns(self, names: list[str], file: Path | None = None) -> None:
        missing = [c for c in self.columns.wanted() if c not in names]
        if missing:
            raise DataError(
                f"{file or self.path}: column(s) {', '.join(map(repr, missing))} not found; columns: {', '.join(names)}"
            )

    def files(self) -> list[Path]:
        """The files read: the input, or its Parquet shards in order."""
        return [file for file, _ in self.shards] if self.format == "parquet" else [self.path]

    # ------------------------------------------------------------------ rows
    def count_rows(self) -> int:
        """How many rows the file holds (one pass; Parquet: from its metadata)."""
        if self.format == "parquet":
            return sum(int(parquet.metadata.num_rows) for _, parquet in self.shards)
        if self.format == "jsonl":  # lines with more than ASCII whitespace (or a BOM): what they hold is read later
            with open(self.path, "rb") as f:
                return sum(1 for line in f if line.strip().removeprefix(b"\xef\xbb\xbf"))
        return sum(1 for _ in self.records({}))

    def chunks(self, size: int, start: int = 0, position: dict[str, int] | None = None) -> Iterator[Chunk]:
        """Chunks of ``size`` rows from row ``start`` (at ``position``, from an earlier chunk; None: row 0)."""
        chunk = self.new_chunk(start)
        for where, values, pos in self.records(dict(position or {})):
            self.add_row(chunk, where, values)
            chunk.position = pos
            if len(chunk.ids) >= size:
                yield chunk
                chunk = self.new_chunk(chunk.start + len(chunk.ids))
        if chunk.ids:
            yield chunk

    def new_chunk(self, start: int) -> Chunk:
        c = self.columns
        return Chunk(start, [], [] if c.text else None, [] if c.pair else None, {k: [] for k in c.keep})

    def add_row(self, chunk: Chunk, where: tuple[str, int], values: dict[str, Any]) -> None:
        c, row = self.columns, chunk.start + len(chunk.ids)
        if chunk.texts is not None:
            chunk.texts.append(text_value(values, c.text or "", where, self.words))
        if chunk.pairs is not None and c.pair:
            a, b = c.pair
            chunk.pairs.append((text_value(values, a, where), text_value(values, b, where)))
        chunk.ids.append(row if c.id is None else present(values, c.id, where))
        for name in c.keep:
            chunk.keep[name].append(present(values, name, where))

    def records(self, position: dict[str, int]) -> Iterator[tuple[tuple[str, int], dict[str, Any], dict[str, int]]]:
        """(where, values, position after the row) per row: where is (file, line) or (file, row), -row-1."""
        if self.format == "parquet":
            yield from shard_records(self.shards, self.columns.wanted(), position.get("row", 0))
            return
        lines = LineReader(self.path, position)
        if self.format == "txt":
            for text in lines:
                if text.strip():
                    yield (str(self.path), lines.line), {"text": text.strip()}, lines.position()
        elif self.format == "jsonl":
            for text in lines:
                if text.strip(ASCII_SPACE):  # as count_rows counts; other space is a JSON error naming the line
                    yield (str(self.path), lines.line), json_object(text, self.path, lines.line), lines.position()
        else:
            if not position:
                lines.skip_to(self.data_start)
            yield from csv_records(lines, self.path, self.header, "\t" if self.format == "tsv" else ",")

    def read_header(self) -> tuple[list[str], dict[str, int]]:
        lines = LineReader(self.path, {})
        reader = csv.reader(lines, delimiter="\t" if self.format == "tsv" else ",")
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{self.path} is empty: the first line must name the columns") from None
        except csv.Error as exc:
            raise DataError(f"{self.path}:{lines.line}: can't parse the header ({exc})") from None
        return header, lines.position()


class LineReader:
    """Decoded lines of a UTF-8 file from a byte offset, tracking the offset and line number of the next one."""

    def __init__(self, path: Path, position: dict[str, int]) -> None:
        self.path = path
        self.offset, self.line = position.get("offset", 0), position.get("line", 0)

    def position(self) -> dict[str, int]:
        return {"offset": self.offset, "line": self.line}

    def skip_to(self, position: dict[str, int]) -> None:
        self.offset, self.line = position["offset"], position["line"]

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for raw in f:
                self.offset += len(raw)
                self.line += 1
                try:
                    text = raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{self.path}:{self.line}: not UTF-8 text (byte {exc.start} of the line); "
                        "convert the file to UTF-8"
                    ) from None
                yield text


def csv_records(
    lines: LineReader, path: Path, header: list[str], delimiter: str
) -> Iterator[tuple[tuple[str, int], dict[str, Any], dict[str, int]]]:
    # csv.reader pulls exactly the lines of one record before yielding it, so the reader's position is the
    # end of that record (a quoted field may span lines).
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        first = lines.line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}:{first}: can't parse this row ({exc})") from None
        if not record:
            continue
        if len(record) != len(header):
            raise DataError(
                f"{path}:{first}: {len(record)} fields, but the header names {len(header)} "
                f"({', '.join(header)}); quote fields that hold the delimiter"
            )
        yield (str(path), first), dict(zip(header, record, strict=True)), lines.position()


def json_object(text: str, path: Path, line: int) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{line}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}:{line}: each line must be a JSON object, got {type(value).__name__}")
    return value


def where_text(where: tuple[str, int]) -> str:
    return f"{where[0]}:{where[1]}" if where[1] >= 0 else f"{where[0]} row {-where[1] - 1}"


def present(values: dict[str, Any], column: str, where: tuple[str, int]) -> Any:
    if column not in values:
        raise DataError(f"{where_text(where)}: no {column!r} field; fields: {', '.join(values)}")
    return values[column]


def text_value(values: dict[str, Any], column: str, where: tuple[str, int], words_ok: bool = False) -> Any:
    """A text (a string; with ``words_ok`` also a list of word strings) from one row, or a one-line error."""
    value = present(values, column, where)
    if isinstance(value, str):
        if not value.strip():  # refused here, where the row is known (prediction only knows its chunk)
            raise DataError(f"{where_text(where)}: empty text in column {column!r}; give a text with something to read")
        return value
    if words_ok and isinstance(value, Sequence) and value and all(isinstance(w, str) and w for w in value):
        return list(value)
    kind = "a string or a list of words" if words_ok else "a string"
    raise DataError(f"{where_text(where)}: column {column!r} should hold {kind}, got {value!r:.60}")


# ------------------------------------------------------------------------------------------------ Parquet
def open_parquet(path: Path) -> Any:
    from polyhead.data.arrow import import_pyarrow, one_line

    pq = import_pyarrow()
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # ArrowInvalid / OSError for a file that isn't Parquet
        raise DataError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None


def parquet_shards(path: Path, option: str) -> list[tuple[Path, Any]]:
    """(file, ParquetFile) for a Parquet file, or for each shard of a directory / glob in sorted order."""
    from polyhead.data.shards import is_sharded, shard_files

    files = shard_files(path, option) if is_sharded(path) else [path]
    return [(file, open_parquet(file)) for file in files]


def shard_records(
    shards: list[tuple[Path, Any]], columns: list[str], start: int
) -> Iterator[tuple[tuple[str, int], dict[str, Any], dict[str, int]]]:
    """Rows from row ``start`` of the shards read as one table: errors name the shard and its own row, the
    position counts rows across all shards; shards before ``start`` are skipped unread (from the metadata)."""
    offset = 0
    for file, parquet in shards:
        rows = int(parquet.metadata.num_rows)
        if offset + rows > start:
            for where, values, position in parquet_records(parquet, str(file), columns, max(0, start - offset)):
                yield where, values, {"row": offset + position["row"]}
        offset += rows


def parquet_records(
    parquet: Any, where: str, columns: list[str], start: int
) -> Iterator[tuple[tuple[str, int], dict[str, Any], dict[str, int]]]:
    """Rows from ``start``: whole row groups before it are skipped unread (from the metadata)."""
    from polyhead.data.arrow import records

    groups: list[int] = []
    first = 0
    for g in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(g).num_rows
        if first + rows > start or groups:
            groups.append(g)
        else:
            first += rows
    if not groups:
        return
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns, row_groups=groups)
    for row, values in enumerate(records(f"{where} (from row {first})", batches), first):
        if row >= start:
            yield (where, -row - 1), values, {"row": row + 1}
