"""Odd but valid inputs read right, and odd ones said out loud (#22 items 7 and 10): line separators inside
JSONL strings, lazy ``data.limit`` for every text format, old line endings, grapheme-safe words and spans,
the character cut before tokenisation, I- tags continuing another type, encoder config bounds, empty texts."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from polyhead.data.readers import ReaderOptions, read_examples
from polyhead.errors import DataError, ModelDirError, PolyheadError
from polyhead.predict import check_pairs
from polyhead.tokens import char_limit, clip_text, clip_words, decode_bio, split_words


# ------------------------------------------------------------------------------------------ readers
def test_jsonl_strings_may_hold_line_and_paragraph_separators(tmp_path: Path) -> None:
    """U+2028/U+2029 (and U+0085) are valid raw inside JSON strings; str.splitlines broke the line there."""
    data = tmp_path / "d.jsonl"
    texts = ["one\u2028two", "x\u2029y\x85z", "plain"]
    data.write_text("".join(json.dumps({"text": t, "label": "ab"[i % 2]}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)) + "{broken\n", encoding="utf-8")
    assert "\u2028" in data.read_text(encoding="utf-8")  # raw, not escaped
    with pytest.raises(DataError, match=r"d\.jsonl:4: invalid JSON"):  # line numbers count \n only
        read_examples(data, "classification")
    rows = read_examples(data, "classification", ReaderOptions(limit=3))
    assert [r.text for r in rows] == texts and [r.source for r in rows] == [f"{data}:{n}" for n in (1, 2, 3)]


def test_tsv_text_with_a_line_separator_and_old_line_endings(tmp_path: Path) -> None:
    data = tmp_path / "d.tsv"
    data.write_bytes("\ufefftext\tlabel\r\nA\u2028B\ta\r\nC\tb\rD\ta\n".encode())  # BOM, CRLF, a lone CR
    rows = read_examples(data, "classification")
    assert [(r.text, r.label, r.source) for r in rows] == [
        ("A\u2028B", "a", f"{data}:2"), ("C", "b", f"{data}:3"), ("D", "a", f"{data}:4")
    ]


def test_cli_text_files_split_at_line_ends_only(tmp_path: Path) -> None:
    """`--file` / `--pairs-file` / preservation sentence files: U+2028, U+2029, U+0085, form feed stay inside a
    text (str.splitlines split there, so one line became several predictions)."""
    from polyhead.data.lines import gather_pairs, read_text_lines

    file = tmp_path / "texts.txt"
    file.write_bytes("\ufeffone\u2028two\r\nx\u2029y\x85z\x0cw\rlast\n\n".encode())
    assert read_text_lines(file) == ["one\u2028two", "x\u2029y\x85z\x0cw", "last"]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\u2028b\tc\nd\te\u2029f\n", encoding="utf-8")
    assert gather_pairs(None, pairs) == [("a\u2028b", "c"), ("d", "e\u2029f")]


def test_not_utf8_names_the_line_and_the_byte_of_the_file(tmp_path: Path) -> None:
    data = tmp_path / "d.tsv"
    raw = "\ufefftext\tlabel\nok\ta\n".encode() + b"caf\xe9\tb\n"
    data.write_bytes(raw)
    with pytest.raises(DataError) as info:
        read_examples(data, "classification")
    byte = raw.index(bytes([0xE9]))
    assert str(info.value) == f"{data}:3: not UTF-8 text (byte {byte}); convert the file to UTF-8"


@pytest.mark.parametrize(
    ("name", "task", "good"),
    [
        ("d.jsonl", "classification", "".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(4))),
        ("d.csv", "classification", "text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(4))),
        ("d.tsv", "classification", "text\tlabel\n" + "".join(f"t{i}\t{'ab'[i % 2]}\n" for i in range(4))),
        ("d.txt", "token_classification", "".join(f"w{i}\tB-X\nend\tO\n\n" for i in range(4))),
        ("d.conll", "token_classification", "".join(f"w{i} B-X\nend O\n\n" for i in range(4))),
    ],
)
def test_data_limit_stops_reading_at_the_limit(tmp_path: Path, name: str, task: str, good: str) -> None:
    """Whatever follows the first ``limit`` examples is never read (here: bytes that are not UTF-8)."""
    data = tmp_path / name
    data.write_bytes(good.encode() + b"\xff\xfe garbage \xff\n")
    assert len(read_examples(data, task, ReaderOptions(limit=3))) == 3
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_examples(data, task)


# ------------------------------------------------------------------------------------------ CoNLL tags
def test_an_i_tag_continuing_another_type_is_warned_about_once_per_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "d.conll"
    data.write_text("Bob B-PER\nParis I-LOC\n\nAnn B-PER\nRome I-LOC\n\nin O\nLima I-LOC\n\n")
    with caplog.at_level("WARNING", logger="polyhead.tasks.token_classification"):
        read_examples(data, "token_classification")
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"{data}: 2 sentence(s) have an I- tag continuing an entity of another type (first at {data}:1: B-PER "
        "then I-LOC); each such I-LOC is read as the start of a new LOC entity (as B-LOC)"
    ]  # "O I-LOC" (IOB1's way to start an entity) is not warned about
    assert [s[:3] for s in decode_bio(["B-PER", "I-LOC"], [1.0, 1.0])] == [("PER", 0, 0), ("LOC", 1, 1)]
    caplog.clear()
    data.write_text("Bob B-PER\nSmith I-PER\n\n")
    with caplog.at_level("WARNING", logger="polyhead.tasks.token_classification"):
        read_examples(data, "token_classification")
    assert caplog.records == []


# ------------------------------------------------------------------------------------------ graphemes
def boundaries(text: str) -> set[int]:
    ends = {0}
    for m in regex.finditer(r"\X", text):
        ends.add(m.end())
    return ends


def test_words_never_split_a_grapheme_cluster() -> None:
    text = unicodedata.normalize("NFD", "álice met José in 🇫🇷 Paris, हिन्दी 👨‍👩‍👧 #️⃣ x-y it's https://a.b/é")
    words = [w.text for w in split_words(text)]
    assert words == [
        unicodedata.normalize("NFD", w)
        for w in ["álice", "met", "José", "in", "🇫🇷", "Paris", ",", "हिन्दी", "👨‍👩‍👧", "#️⃣", "x-y", "it's", "https://a.b/é"]
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab é,.-'#@ \t") + ["\u0301", "\u200d", "\ufe0f", "\U0001F1EB",
                                                                  "\U0001F1F7", "\U0001F468", "\u0915", "\u093F",
                                                                  "\u094D", "\n", "\u2028"]), max_size=40))
def test_every_word_is_whole_grapheme_clusters(text: str) -> None:
    cuts = boundaries(text)
    for word in split_words(text):
        assert text[word.start : word.end] == word.text and word.text.strip()
        assert word.start in cuts and word.end in cuts, (text, word)


# ------------------------------------------------------------------------------------------ the character cut
def test_clip_cuts_at_whitespace_or_a_grapheme_boundary() -> None:
    assert clip_text("short", 10) == "short"
    assert clip_text("alpha beta gamma", 13) == "alpha beta"
    assert clip_text("e\u0301" * 10, 5) == "e\u0301e\u0301"  # never between a letter and its accent
    assert clip_text("\U0001F1EB\U0001F1F7" * 3, 3) == "\U0001F1EB\U0001F1F7"  # never half a flag
    limit = char_limit(4)
    assert limit == 400
    words = [["w" * 99] * 10, ["ok"]]
    assert clip_words(words, 4) == [["w" * 99] * 4, ["ok"]]


# ------------------------------------------------------------------------------------------ encoder config
def test_encoder_config_sizes_are_checked_before_anything_is_allocated(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.modeling.encoder import SentenceEncoder

    model = tmp_path / "enc"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    for key, value, valid in [
        ("num_hidden_layers", 4000, "1 to 256"),
        ("max_position_embeddings", 0, "1 to 1,048,576"),
        ("intermediate_size", True, "1 to 131,072"),
    ]:
        (model / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ModelDirError) as info:
            SentenceEncoder.from_pretrained(str(model))
        assert str(info.value) == (
            f"{model / 'config.json'}: {key} is {value!r}; polyhead loads encoders with {key} from {valid}"
        )
    (model / "config.json").write_text(json.dumps(config))
    assert SentenceEncoder.from_pretrained(str(model)).hidden_size == config["hidden_size"]


# ------------------------------------------------------------------------------------------ empty texts
def test_pairs_with_an_empty_text_are_refused() -> None:
    assert check_pairs([("a", "b")]) == [("a", "b")]
    with pytest.raises(PolyheadError, match=r"^pair 1: text 1 is empty; give a text with something to read$"):
        check_pairs([("a", "b"), ("c", "  ")])
    with pytest.raises(PolyheadError, match=r"^pair 0: text 0 is not valid Unicode"):
        check_pairs([("\ud800", "b")])


def test_predict_with_a_token_head_cuts_a_huge_text_before_splitting_it(caplog: pytest.LogCaptureFixture) -> None:
    from polyhead.tokens import prediction_inputs

    huge = "Ann " * 200
    with caplog.at_level("WARNING", logger="polyhead.tokens"):
        items, words = prediction_inputs([huge, "Bob"], token_heads=True, max_length=4)
    assert items == [huge, "Bob"]  # offsets still point into the text as given
    assert words is not None and len(words[0]) == 100 and words[0][-1].end <= 400 and len(words[1]) == 1
    assert "1 text(s) longer than 400 characters were cut to 400 before tokenisation" in caplog.text
