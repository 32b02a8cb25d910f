"""The tokenizer a model was saved with, recorded in polyhead.json and checked at load (torch-free).

A model directory whose tokenizer files are gone or replaced still "loads" in transformers (it builds a
tiny vocabulary from whatever is left) and then predicts wrong answers that look right. So ``write_config``
records each tokenizer file's SHA-256 and the vocabulary size, and both backends refuse a directory whose
files are missing or differ. Directories saved before the record: the tokenizer files must exist and the
vocabulary must fit the embedding matrix (``check_vocab_size``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from polyhead.errors import ModelDirError

# Files a Hugging Face tokenizer saves (whichever of them the tokenizer has).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
# Files of which at least one must be there: the vocabulary itself.
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
# An embedding matrix may be padded past the vocabulary (to a multiple of 64 or 128): that much is allowed.
VOCAB_PADDING = 128


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_record(out: Path) -> dict[str, Any]:
    """What polyhead.json records about the tokenizer saved in ``out``: each file's SHA-256, the vocab size."""
    files = {name: file_sha256(out / name) for name in TOKENIZER_FILES if (out / name).is_file()}
    return {"files": files, "vocab_size": embedding_rows(out)}


def embedding_rows(path: Path) -> int | None:
    """``vocab_size`` of the transformer's config.json (the embedding matrix's rows), or None."""
    try:
        size = json.loads((path / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError, AttributeError):
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def check_tokenizer_files(path: Path, raw: dict[str, Any]) -> None:
    """Refuse a directory whose tokenizer files are missing or differ from those it was saved with."""
    record = raw.get("tokenizer")
    if record is None:  # saved before the record: the vocabulary must at least be there
        if not any((path / name).is_file() for name in VOCAB_FILES):
            raise ModelDirError(
                f"{path} has no tokenizer files ({' or '.join(VOCAB_FILES[:2])}): the model can't read text "
                "without the tokenizer it was trained with; copy them back from where the model came from"
            )
        return
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or not files:
        raise ModelDirError(f"{path / 'polyhead.json'}: 'tokenizer' must be an object with the tokenizer 'files'")
    for name, digest in files.items():
        file = path / str(name)
        if not file.is_file():
            raise ModelDirError(
                f"{path}: tokenizer file {name} is missing; the model was saved with it (polyhead.json "
                "'tokenizer'): copy it back from where the model came from"
            )
        if file_sha256(file) != digest:
            raise ModelDirError(
                f"{file} differs from the tokenizer file the model was saved with (SHA-256 recorded in "
                "polyhead.json 'tokenizer'): restore the original file"
            )


def check_vocab_size(path: Path, tokenizer_size: int) -> None:
    """The tokenizer's vocabulary must fit the embedding matrix it indexes (and not be a fraction of it)."""
    rows = embedding_rows(path)
    if rows is None:
        return
    if not 0 <= rows - tokenizer_size <= VOCAB_PADDING:
        raise ModelDirError(
            f"{path}: the tokenizer has {tokenizer_size} tokens but the encoder's embedding matrix has {rows} rows "
            "(config.json vocab_size): the tokenizer files are not the ones this encoder was trained with"
        )
