"""Readers on real shared data, and the file:line errors on small bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyhead.data.readers import ReaderOptions, read_examples, split_examples
from polyhead.errors import DataError


@pytest.mark.slow
def test_real_files(shared_data: Path) -> None:
    sst2 = read_examples(shared_data / "sst2/dev.tsv", "classification", ReaderOptions(limit=5))
    assert len(sst2) == 5 and sst2[0].label == "negative"
    sts = read_examples(
        shared_data / "stsb/dev.tsv", "similarity",
        ReaderOptions(text_column="sentence1", pair_column="sentence2", label_column="score", limit=3),
    )
    assert sts[0].label == 5.0 and sts[0].text_pair
    wnut = read_examples(shared_data / "wnut17/dev.conll", "token_classification", ReaderOptions(limit=3))
    assert all(len(e.words) == len(e.label) for e in wnut)
    assert len(read_examples(shared_data / "wnut17/dev.conll", "token_classification")) == 1009  # whole file
    snips = read_examples(shared_data / "snips_intent_slots/dev.conll", "token_classification", ReaderOptions(limit=3))
    assert snips and snips[0].text == " ".join(snips[0].words)


def test_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("a O\nb c d O\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.conll:2"):
        read_examples(bad, "token_classification", ReaderOptions())
    reg = tmp_path / "r.tsv"
    reg.write_text("text\tlabel\nhello\t1.5\nworld\tmany\n", encoding="utf-8")
    with pytest.raises(DataError, match="r.tsv:3"):
        read_examples(reg, "regression", ReaderOptions())
    with pytest.raises(DataError, match="text"):
        read_examples(reg, "classification", ReaderOptions(text_column="sentence"))
    with pytest.raises(DataError):
        read_examples(tmp_path / "missing.tsv", "classification", ReaderOptions())


def test_split_is_deterministic(tmp_path: Path) -> None:
    f = tmp_path / "c.tsv"
    f.write_text("text\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(20)), encoding="utf-8")
    ex = read_examples(f, "classification", ReaderOptions())
    a, b = split_examples(ex, 0.25, seed=1)
    assert len(b) == 5 and len(a) == 15
    assert split_examples(ex, 0.25, seed=1) == (a, b)


def test_conll_stray_byte_order_marks_are_dropped(tmp_path: Path) -> None:
    # as in WNUT-17 dev.conll: a BOM glued to a token, and a line of nothing but BOMs inside a sentence
    path = tmp_path / "bom.conll"
    path.write_text("I\tO\nmet\tO\nDubbz\ufeff\tB-person\n\ufeff\t\ufeff\ntoday\tO\n\nok\tO\n", encoding="utf-8")
    examples = read_examples(path, "token_classification")
    assert [ex.words for ex in examples] == [["I", "met", "Dubbz", "today"], ["ok"]]
    assert examples[0].label == ["O", "O", "B-person", "O"]
