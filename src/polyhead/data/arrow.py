"""Readers for Parquet files and Hugging Face ``datasets`` directories -> Example lists.

Both are Arrow underneath, so both go through one row reader: record batches of the wanted columns only,
read lazily (pyarrow ``ParquetFile.iter_batches``; the shards of one table, a directory or a glob, one file after
the other in sorted order through ``pyarrow.dataset``, :mod:`polyhead.data.shards`; ``datasets.load_from_disk``
memory-maps its Arrow files), so ``data.limit`` stops reading after that many examples however big the file is.
``ClassLabel`` columns (and sequences of them, e.g. conll2003's ``ner_tags``) are mapped to their names, from the
``datasets`` features stored in the schema's ``huggingface`` metadata (``Dataset.to_parquet`` writes it
too). Errors name the file (and split), the column and the row (counted from 0, as ``dataset[i]``).

pyarrow and ``datasets`` are optional (``pip install 'polyhead[datasets]'``) and imported only here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from polyhead.data.readers import Example, ReaderOptions, text_value
from polyhead.errors import DataError
from polyhead.tasks import TaskType

BATCH_ROWS = 1024
# The split each role reads from a DatasetDict directory when data.split doesn't name one.
DEFAULT_SPLITS = {"train": ("train",), "dev": ("validation", "dev", "valid"), "test": ("test",)}


def is_datasets_dir(path: Path) -> bool:
    """A ``save_to_disk`` directory: a Dataset (state.json) or a DatasetDict (dataset_dict.json)."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def read_arrow_examples(path: Path, fmt: str, task: TaskType, options: ReaderOptions) -> list[Example]:
    """Read one split from a Parquet file or a set of Parquet shards (``fmt`` "parquet": a file, a directory of
    ``*.parquet`` files or a glob; :mod:`polyhead.data.shards`) or a ``datasets`` directory ("hf")."""
    columns = wanted_columns(task, options)
    parts = parquet_parts(path, columns) if fmt == "parquet" else [datasets_batches(path, columns, options)]
    for where, names, _, _ in parts:
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(
                f"{where}: column(s) {', '.join(map(repr, missing))} not found; columns: {', '.join(names)}"
            )
    examples: list[Example] = []
    for where, _, features, batches in parts:
        decoders = {c: class_names(features.get(c)) for c in columns}
        for row, record in enumerate(records(where, batches)):
            values = {c: decode(where, row, c, record[c], decoders[c]) for c in columns}
            examples.append(make_example(where, row, values, task, options))
            if options.limit and len(examples) >= options.limit:
                return examples
    if not examples:
        raise DataError(f"{path}: no examples found")
    return examples


def parquet_parts(path: Path, columns: list[str]) -> list[tuple[str, list[str], dict[str, Any], Iterator[Any]]]:
    """(where, column names, features, record batches) per file: one Parquet file, or each shard in order."""
    from polyhead.data.shards import is_sharded, open_shards, shard_files

    if not is_sharded(path):
        return [parquet_batches(path, columns)]
    shards = open_shards(shard_files(path, "data"))
    return [(str(s.path), s.names, hf_features(s.metadata), s.batches(columns, BATCH_ROWS)) for s in shards]


def wanted_columns(task: TaskType, options: ReaderOptions) -> list[str]:
    if task.level == "token":
        return [options.tokens_column, options.label_column]
    return [options.text_column, options.label_column] + ([options.pair_column] if options.pair_column else [])


def import_pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading Parquet needs pyarrow, which is not installed: pip install 'polyhead[datasets]'"
        ) from None
    return pq


def parquet_batches(path: Path, columns: list[str]) -> tuple[str, list[str], dict[str, Any], Iterator[Any]]:
    pq = import_pyarrow()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that isn't Parquet
        raise DataError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None
    schema = parquet.schema_arrow
    present = list(dict.fromkeys(c for c in columns if c in schema.names))
    batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=present)
    return str(path), list(schema.names), hf_features(schema.metadata), batches


def datasets_batches(
    path: Path, columns: list[str], options: ReaderOptions
) -> tuple[str, list[str], dict[str, Any], Iterator[Any]]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{path}: reading a Hugging Face datasets directory needs the datasets package: "
            "pip install 'polyhead[datasets]'"
        ) from None
    if not is_datasets_dir(path):
        raise DataError(
            f"{path}: not a Hugging Face datasets directory (Dataset.save_to_disk / DatasetDict.save_to_disk "
            "output, with state.json or dataset_dict.json)"
        )
    try:
        loaded = datasets.load_from_disk(str(path))  # memory-mapped: nothing is read until iterated
    except Exception as exc:
        raise DataError(f"{path}: can't load this datasets directory ({one_line(exc)})") from None
    where = str(path)
    if isinstance(loaded, datasets.DatasetDict):
        split = pick_split(path, list(loaded), options)
        loaded, where = loaded[split], f"{path} (split {split!r})"
    names = list(loaded.column_names)
    present = list(dict.fromkeys(c for c in columns if c in names))
    table = loaded.select_columns(present).with_format("arrow")
    features = hf_features(loaded.features.arrow_schema.metadata)
    return where, names, features, table.iter(batch_size=BATCH_ROWS)


def pick_split(path: Path, splits: list[str], options: ReaderOptions) -> str:
    if options.split:
        if options.split not in splits:
            raise DataError(
                f"{path}: no split {options.split!r} in this DatasetDict (data.split); splits: {', '.join(splits)}"
            )
        return options.split
    for name in DEFAULT_SPLITS.get(options.role, (options.role,)):
        if name in splits:
            return name
    raise DataError(
        f"{path}: this DatasetDict has no {' / '.join(DEFAULT_SPLITS.get(options.role, ()))} split for data."
        f"{options.role}; splits: {', '.join(splits)}; name one with data.split (e.g. {{{options.role}: "
        f"{splits[0]}}})"
    )


def records(where: str, batches: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """Rows as dicts, one record batch at a time; a corrupt page or undecodable text (Parquet doesn't check
    that strings are UTF-8) is a DataError naming the rows, not a pyarrow traceback."""
    start = 0
    try:
        for batch in batches:
            try:
                rows = batch.to_pylist()
            except Exception as exc:
                last = start + batch.num_rows - 1
                raise DataError(f"{where} rows {start}-{last}: can't decode the data ({one_line(exc)})") from None
            start += len(rows)
            yield from rows
    except DataError:
        raise
    except Exception as exc:  # ArrowInvalid, OSError, ... from reading the next batch
        raise DataError(f"{where}: can't read the data after row {start} ({one_line(exc)})") from None


def hf_features(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The ``datasets`` features (as JSON) stored in an Arrow schema's metadata, or {}."""
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def class_names(feature: Any) -> tuple[list[str], bool] | None:
    """(names, is_sequence) for a ClassLabel feature or a sequence of them; None for anything else."""
    if not isinstance(feature, dict):
        return None
    if feature.get("_type") == "ClassLabel" and isinstance(feature.get("names"), list):
        return [str(n) for n in feature["names"]], False
    if feature.get("_type") in ("List", "LargeList", "Sequence"):
        inner = class_names(feature.get("feature"))
        if inner and not inner[1]:
            return inner[0], True
    return None


def decode(where: str, row: int, column: str, value: Any, names: tuple[list[str], bool] | None) -> Any:
    """A ClassLabel index (or a list of them) -> its name(s); other values unchanged."""
    if names is None or value is None:
        return value
    vocab, is_sequence = names
    if is_sequence:
        if not isinstance(value, list):
            raise DataError(f"{where} row {row}: column {column!r} should hold a list, got {value!r}")
        return [class_name(where, row, column, v, vocab) for v in value]
    return class_name(where, row, column, value, vocab)


def class_name(where: str, row: int, column: str, value: Any, vocab: list[str]) -> str:
    if isinstance(value, int) and 0 <= value < len(vocab):
        return vocab[value]
    if value == -1:  # datasets' ClassLabel for "no label" (GLUE test splits)
        raise DataError(
            f"{where} row {row}: column {column!r} has no label (ClassLabel -1, as in unlabelled test splits)"
        )
    raise DataError(f"{where} row {row}: {value!r} in {column!r} is not a ClassLabel index 0..{len(vocab) - 1}")


def make_example(where: str, row: int, values: dict[str, Any], task: TaskType, options: ReaderOptions) -> Example:
    source = f"{where} row {row}"
    if task.level == "token":
        return token_example(source, values, task, options)
    text = text_value(source, values[options.text_column], options.text_column)
    pair = text_value(source, values[options.pair_column], options.pair_column) if options.pair_column else None
    label = task.parse_label(values[options.label_column], source, options.label_column, options.label_separator)
    return Example(text=text, label=label, text_pair=pair, source=source)


def token_example(source: str, values: dict[str, Any], task: TaskType, options: ReaderOptions) -> Example:
    words, tags = values[options.tokens_column], values[options.label_column]
    for column, value in ((options.tokens_column, words), (options.label_column, tags)):
        if not isinstance(value, list):
            raise DataError(f"{source}: column {column!r} should hold a list (a sequence column), got {value!r}")
    if any(not isinstance(w, str) or not w.strip() for w in words):
        raise DataError(f"{source}: an empty or non-text token in {options.tokens_column!r}")
    if any(isinstance(t, int | float) for t in tags):
        raise DataError(
            f"{source}: {options.label_column!r} holds numbers without tag names; store the tags as strings "
            "or as a sequence of ClassLabel (datasets.Sequence(ClassLabel(names=[...])))"
        )
    if len(words) != len(tags):
        raise DataError(f"{source}: {len(words)} tokens but {len(tags)} tags")
    if not words:
        raise DataError(f"{source}: a sentence without tokens")
    label = task.parse_label(tags, source, options.label_column, options.label_separator)
    return Example(text=" ".join(words), label=label, words=list(words), source=source)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
