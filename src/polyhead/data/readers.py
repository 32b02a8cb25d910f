"""Readers for TSV/CSV/JSONL/CoNLL files -> Example lists, with file:line in every error.

Parquet files and Hugging Face ``datasets`` directories are read by data/arrow.py (dispatched from here)."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from polyhead.config import DataFormat
from polyhead.errors import DataError
from polyhead.tasks import TaskType, get_task_type

FORMATS: tuple[str, ...] = get_args(DataFormat)
SUFFIXES = {
    ".tsv": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".conll": "conll",
    ".txt": "conll",
    ".bio": "conll",
    ".iob": "conll",
    ".parquet": "parquet",
}
# A text field may be long (a whole article), but not unbounded: 16 MiB, then a DataError.
csv.field_size_limit(16 * 2**20)


@dataclass
class Example:
    """One example: ``text`` (for token tasks the words joined by spaces) and its label.

    ``label``: a class name (classification), a list of names (multilabel), a float (regression,
    similarity), or a BIO tag per word (token_classification, then ``words`` holds the words).
    """

    text: str
    label: str | list[str] | float | None
    words: list[str] | None = None
    text_pair: str | None = None
    source: str = ""


@dataclass
class ReaderOptions:
    format: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    pair_column: str | None = None
    tokens_column: str = "tokens"
    label_separator: str | None = None
    conll_token_column: int = 0
    conll_tag_column: int = -1
    limit: int | None = None
    split: str | None = None  # the split of a datasets DatasetDict directory (None: the role's usual name)
    role: str = "train"  # which of data.train / dev / test this path is


def detect_format(path: Path, options: ReaderOptions) -> str:
    if options.format:
        if options.format not in FORMATS:
            raise DataError(f"{path}: unknown format {options.format!r}; valid: {', '.join(FORMATS)}")
        return options.format
    from polyhead.data.shards import is_sharded

    if is_sharded(path):  # a directory of .parquet files or a glob: Parquet shards
        return "parquet"
    if path.is_dir():
        from polyhead.data.arrow import is_datasets_dir

        if is_datasets_dir(path):
            return "hf"
        raise DataError(
            f"{path}: a directory, but not a Hugging Face datasets directory (save_to_disk output) and without "
            ".parquet files"
        )
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: can't tell the format from the suffix {path.suffix!r}; "
            f"set data.format to one of {', '.join(FORMATS)}"
        )
    return fmt


MAX_LINE_BYTES = 16 * 2**20  # one line of a text file (one JSONL record, one CSV row, one CoNLL token)


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 file, read one at a time (so ``data.limit`` stops reading early and memory stays
    bounded): split at ``\\n``, ``\\r\\n`` and ``\\r`` only, never at U+2028/U+2029 or other characters that
    ``str.splitlines`` breaks at (JSON strings may hold them raw). A line over 16 MiB is a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return _lines(path)


def _lines(path: Path) -> Iterator[str]:
    with path.open("rb") as f:
        offset, n = 0, 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(
                    f"{path}:{n + 1}: a line over {MAX_LINE_BYTES >> 20} MiB; polyhead reads texts and records "
                    f"of at most {MAX_LINE_BYTES >> 20} MiB a line"
                )
            start = 3 if offset == 0 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                text = raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = start + exc.start
                line = n + 1 + raw[:bad].count(b"\r") - raw[:bad].count(b"\r\n")
                raise DataError(
                    f"{path}:{line}: not UTF-8 text (byte {offset + bad}); convert the file to UTF-8"
                ) from exc
            offset += len(raw)
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text
            for part in text.split("\r"):  # old Mac line ends: a lone \r is a line break too
                n += 1
                yield part


def read_examples(path: str | Path, task: TaskType | str, options: ReaderOptions | None = None) -> list[Example]:
    """Read one split for a task type (or its name). Word-level types need CoNLL or JSONL; sentence-level
    types TSV/CSV/JSONL. Each label is parsed by the task type."""
    path = Path(path)
    task = get_task_type(task) if isinstance(task, str) else task
    options = options or ReaderOptions()
    fmt = detect_format(path, options)
    if fmt in ("parquet", "hf"):
        from polyhead.data.arrow import read_arrow_examples

        examples = read_arrow_examples(path, fmt, task, options)
        task.review_labels([(e.source, e.label) for e in examples], str(path))
        return examples
    lines = read_lines(path)
    rows: Iterator[Example]
    if task.level == "token":
        if fmt == "conll":
            rows = conll_rows(path, lines, task, options)
        elif fmt == "jsonl":
            rows = jsonl_token_rows(path, lines, task, options)
        else:
            raise DataError(f"{path}: {task.name} reads CoNLL or JSONL files, not {fmt}")
    elif fmt == "conll":
        raise DataError(f"{path}: a {task.name} task reads TSV/CSV/JSONL, not CoNLL")
    elif fmt == "jsonl":
        rows = (sentence_example(path, n, rec, task, options) for n, rec in jsonl_records(path, lines))
    else:
        rows = table_rows(path, lines, fmt, task, options)
    examples = []
    for example in rows:
        examples.append(example)
        if options.limit and len(examples) >= options.limit:
            break
    if not examples:
        raise DataError(f"{path}: no examples found")
    task.review_labels([(e.source, e.label) for e in examples], str(path))
    return examples


def table_rows(
    path: Path, lines: Iterable[str], fmt: str, task: TaskType, options: ReaderOptions
) -> Iterator[Example]:
    # TSV: tab-separated, quotes are ordinary characters (as in SST, TREC, STS-B); CSV: RFC 4180 quoting.
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty (expected a header line)") from None
    except csv.Error as exc:
        raise DataError(f"{path}:1: {exc}") from exc
    header = [h.strip() for h in header]
    wanted = [options.text_column, options.label_column] + (
        [options.pair_column] if options.pair_column else []
    )
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(
            f"{path}:1: column(s) {', '.join(map(repr, missing))} not in the header; columns: {', '.join(header)}"
        )
    index = {name: header.index(name) for name in wanted}
    while True:
        try:
            cols = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the size limit, or a stray quote in CSV
            raise DataError(f"{path}:{reader.line_num}: {exc}") from exc
        n = reader.line_num  # the (last) line of this record
        if not cols or all(not c.strip() for c in cols):
            continue
        if len(cols) != len(header):
            raise DataError(f"{path}:{n}: {len(cols)} columns, the header has {len(header)}")
        record = {name: cols[i] for name, i in index.items()}
        yield sentence_example(path, n, record, task, options)


def jsonl_records(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: each line must be a JSON object")
        yield n, record


def field(path: Path, n: int, record: dict[str, Any], key: str) -> Any:
    if key not in record:
        raise DataError(f"{path}:{n}: field {key!r} is missing; fields: {', '.join(map(str, record))}")
    return record[key]


def sentence_example(path: Path, n: int, record: dict[str, Any], task: TaskType, options: ReaderOptions) -> Example:
    source = f"{path}:{n}"
    text = text_value(source, field(path, n, record, options.text_column), options.text_column)
    raw = field(path, n, record, options.label_column)
    pair = None
    if options.pair_column:
        pair = text_value(source, field(path, n, record, options.pair_column), options.pair_column)
    label = task.parse_label(raw, source, options.label_column, options.label_separator)
    return Example(text=text, label=label, text_pair=pair, source=source)


def text_value(source: str, value: Any, column: str) -> str:
    """A text field, stripped; a number, list or null there (JSONL, Parquet, datasets) or an empty one is a
    one-line error."""
    if not isinstance(value, str):
        raise DataError(f"{source}: column {column!r} should hold text, got {type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise DataError(f"{source}: empty text in {column!r}")
    return value.strip()


def jsonl_token_rows(path: Path, lines: Iterable[str], task: TaskType, options: ReaderOptions) -> Iterator[Example]:
    for n, record in jsonl_records(path, lines):
        words = field(path, n, record, options.tokens_column)
        tags = field(path, n, record, options.label_column)
        if not isinstance(words, list) or not isinstance(tags, list):
            raise DataError(
                f"{path}:{n}: {options.tokens_column!r} and {options.label_column!r} must be lists"
            )
        yield token_example(path, n, [str(w) for w in words], [str(t) for t in tags], task, options)


def token_example(
    path: Path, n: int, words: list[str], tags: list[str], task: TaskType, options: ReaderOptions
) -> Example:
    if len(words) != len(tags):
        raise DataError(f"{path}:{n}: {len(words)} tokens but {len(tags)} tags")
    if not words:
        raise DataError(f"{path}:{n}: a sentence without tokens")
    if any(not w.strip() for w in words):
        raise DataError(f"{path}:{n}: an empty token")
    label = task.parse_label(tags, f"{path}:{n}", options.label_column, options.label_separator)
    return Example(text=" ".join(words), label=label, words=words, source=f"{path}:{n}")


def conll_rows(path: Path, lines: Iterable[str], task: TaskType, options: ReaderOptions) -> Iterator[Example]:
    """Whitespace/tab separated columns, one token a line, blank line between sentences; -DOCSTART- skipped."""
    words: list[str] = []
    tags: list[str] = []
    start, width = 0, None
    for n, raw in enumerate(itertools.chain(lines, [""]), start=1):
        line = raw.replace("\ufeff", "")  # stray byte-order marks inside a file (WNUT-17 dev has some)
        if raw.strip() and not line.strip():
            continue  # a line of nothing but BOMs is noise, not a sentence break
        if not line.strip():
            if words:
                yield token_example(path, start, words, tags, task, options)
            words, tags = [], []
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if cols[0].startswith("-DOCSTART-"):
            continue
        width = width or len(cols)
        if len(cols) != width or len(cols) < 2:
            raise DataError(
                f"{path}:{n}: {len(cols)} columns, expected {width if width >= 2 else 'at least 2'} (token and tag)"
            )
        try:
            word, tag = cols[options.conll_token_column], cols[options.conll_tag_column]
        except IndexError:
            raise DataError(
                f"{path}:{n}: no column {options.conll_tag_column} (the line has {len(cols)})"
            ) from None
        if not words:
            start = n
        words.append(word.strip())
        tags.append(tag.strip())


def split_examples(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Seeded split: (rest, held-out share); the same inputs always give the same split."""
    if not 0 < fraction < 1:
        raise DataError(f"a split fraction must be between 0 and 1, got {fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(fraction * len(examples)))
    held = set(order[:cut])
    return [e for i, e in enumerate(examples) if i not in held], [
        e for i, e in enumerate(examples) if i in held
    ]
