"""Property tests: every reader returns valid examples or raises DataError, never anything else;
word/sub-token alignment keeps exactly one label per surviving word, on its first sub-token."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyhead.data.readers import Example, ReaderOptions, read_examples
from polyhead.errors import DataError
from polyhead.tokens import IGNORE_INDEX, align_labels, tokenize_words

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TYPES = ["classification", "multilabel", "regression", "token_classification", "similarity"]
SUFFIXES = [".tsv", ".csv", ".jsonl", ".conll"]


def check_examples(examples: list[Example], task_type: str) -> None:
    assert examples
    for ex in examples:
        assert isinstance(ex.text, str)
        if task_type == "token_classification":
            assert ex.words and len(ex.words) == len(ex.label)
        elif task_type in ("regression", "similarity"):
            assert isinstance(ex.label, float)
        elif task_type == "multilabel":
            assert isinstance(ex.label, list)
        else:
            assert isinstance(ex.label, str) and ex.label


def read_bytes(data: bytes, suffix: str, task_type: str, options: ReaderOptions | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(data)
        try:
            examples = read_examples(
                path,
                task_type,
                options or ReaderOptions(pair_column="pair" if task_type == "similarity" else None),
            )
        except DataError as exc:
            assert "\n" not in str(exc)
            return
        check_examples(examples, task_type)


@SETTINGS
@given(data=st.binary(max_size=2000), suffix=st.sampled_from(SUFFIXES), task_type=st.sampled_from(TYPES))
def test_random_bytes(data: bytes, suffix: str, task_type: str) -> None:
    read_bytes(data, suffix, task_type)


cell = st.text(alphabet=string.printable + "éü€—\u200b", max_size=30)


@SETTINGS
@given(
    rows=st.lists(st.lists(cell, min_size=0, max_size=5), max_size=20),
    task_type=st.sampled_from(TYPES),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
    sep=st.sampled_from(["\t", ","]),
)
def test_ragged_tables_in_random_encodings(
    rows: list[list[str]], task_type: str, encoding: str, sep: str
) -> None:
    lines = [sep.join(["text", "label", "pair"])] + [sep.join(r) for r in rows]
    try:
        data = "\n".join(lines).encode(encoding)
    except UnicodeEncodeError:
        return
    read_bytes(data, ".tsv" if sep == "\t" else ".csv", task_type)


@SETTINGS
@given(
    sentences=st.lists(
        st.lists(
            st.tuples(st.text(min_size=0, max_size=12), st.sampled_from(["O", "B-X", "I-X", "X", ""])),
            max_size=8,
        ),
        max_size=10,
    ),
    extra=st.sampled_from(["", "\tEXTRA", " "]),
)
def test_conll_structures(sentences: list, extra: str) -> None:
    text = "\n\n".join("\n".join(f"{w}\t{t}{extra}" for w, t in s) for s in sentences)
    read_bytes(text.encode("utf-8"), ".conll", "token_classification")


@SETTINGS
@given(
    records=st.lists(
        st.dictionaries(
            st.sampled_from(["text", "label", "tokens", "tags", "pair"]),
            st.one_of(
                st.text(max_size=20),
                st.integers(),
                st.floats(),
                st.none(),
                st.lists(st.text(max_size=8), max_size=5),
            ),
        ),
        max_size=10,
    ),
    task_type=st.sampled_from(TYPES),
)
def test_jsonl_records(records: list[dict], task_type: str) -> None:
    import json

    options = ReaderOptions(
        label_column="tags" if task_type == "token_classification" else "label",
        pair_column="pair" if task_type == "similarity" else None,
    )
    read_bytes("\n".join(json.dumps(r) for r in records).encode(), ".jsonl", task_type, options)


@SETTINGS
@given(read_bytes_huge=st.integers(min_value=10_000, max_value=200_000))
def test_huge_fields(read_bytes_huge: int) -> None:
    read_bytes(("text\tlabel\n" + "a" * read_bytes_huge + "\tx\nb\ty\n").encode(), ".tsv", "classification")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


word = st.text(alphabet=string.ascii_letters + string.digits + "éß中!?.,'-@#", min_size=1, max_size=15)


@SETTINGS
@given(words=st.lists(word, min_size=1, max_size=40), max_length=st.integers(min_value=4, max_value=64))
def test_alignment_one_label_per_surviving_word(tokenizer, words: list[str], max_length: int) -> None:
    enc = tokenize_words(tokenizer, [words], max_length)[0]
    word_ids = enc["word_ids"]
    labels = list(range(len(words)))  # label i for word i
    aligned = align_labels(word_ids, labels)
    assert len(aligned) == len(enc["input_ids"]) <= max_length
    kept = [lab for lab in aligned if lab != IGNORE_INDEX]
    surviving = sorted({w for w in word_ids if w is not None})
    assert kept == surviving, "exactly one label per surviving word, in order"
    for pos, lab in enumerate(aligned):
        if lab != IGNORE_INDEX:
            assert word_ids[pos] == lab and (pos == 0 or word_ids[pos - 1] != lab), (
                "label on the first sub-token"
            )
