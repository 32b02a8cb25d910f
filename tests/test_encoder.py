"""SentenceEncoder: encode() contract, bad input, and parity with sentence-transformers on the real MiniLM."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path

TEXTS = [
    "The cat sat on the mat.",
    "A considerably longer sentence, with commas, numbers like 42 and several clauses in it.",
    "Short.",
    "Transformers turn text into vectors.",
    "!",
    "Yet another sentence of middling length for the batcher.",
]


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    return message


# ----------------------------------------------------------------------- encode() contract (tiny model)
def test_encode_restores_input_order(tiny_encoder: SentenceEncoder) -> None:
    batched = tiny_encoder.encode(TEXTS, batch_size=2)
    single = np.stack([tiny_encoder.encode(t) for t in TEXTS])
    assert batched.shape == (len(TEXTS), tiny_encoder.dim)
    assert np.allclose(batched, single, atol=1e-5)
    # rows really differ, so a permutation would be caught
    assert not np.allclose(batched[0], batched[1], atol=1e-3)


def test_encode_small_token_budget_still_restores_order(tiny_encoder: SentenceEncoder) -> None:
    reference = tiny_encoder.encode(TEXTS, batch_size=64, max_tokens=None)
    assert np.allclose(tiny_encoder.encode(TEXTS, batch_size=64, max_tokens=20), reference, atol=1e-5)


def test_encode_empty_list(tiny_encoder: SentenceEncoder) -> None:
    out = tiny_encoder.encode([])
    assert isinstance(out, np.ndarray) and out.shape == (0, tiny_encoder.dim)
    assert tiny_encoder.encode([], convert_to="torch").shape == (0, tiny_encoder.dim)


def test_encode_single_string_gives_a_vector(tiny_encoder: SentenceEncoder) -> None:
    out = tiny_encoder.encode("hello world")
    assert out.shape == (tiny_encoder.dim,)
    assert np.allclose(out, tiny_encoder.encode(["hello world"])[0], atol=1e-6)


def test_encode_convert_to_torch(tiny_encoder: SentenceEncoder) -> None:
    out = tiny_encoder.encode(TEXTS[:2], convert_to="torch")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, tiny_encoder.dim)
    assert not out.requires_grad
    with pytest.raises(PolyheadError, match="convert_to"):
        tiny_encoder.encode(TEXTS, convert_to="list")  # type: ignore[arg-type]


def test_empty_or_whitespace_texts_are_refused_like_the_cli_and_server(tiny_encoder: SentenceEncoder) -> None:
    """#22 item 10: the Python API refuses empty texts (it used to embed the special tokens alone)."""
    for texts, where in ((["", "something"], "text 0"), (["fine", "   \n"], "text 1"), ("", "text 0")):
        with pytest.raises(PolyheadError) as info:
            tiny_encoder.encode(texts)
        assert one_line(info.value) == f"{where} is empty; give a text with something to read"
    with pytest.raises(PolyheadError, match="text 1 is not valid Unicode"):
        tiny_encoder.encode(["fine", "x \ud800"])


def test_a_huge_text_is_cut_before_tokenisation_with_a_warning(
    tiny_encoder: SentenceEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    """#22 item 7: characters are bounded before the tokenizer sees them; the tokens kept are the same."""
    from polyhead.tokens import char_limit

    limit = char_limit(tiny_encoder.max_length)
    huge = "word " * (limit // 5 + 50_000)
    with caplog.at_level("WARNING", logger="polyhead.tokens"):
        (clipped,) = tiny_encoder.tokenize_lists([huge])
    assert f"1 text(s) longer than {limit:,} characters were cut to {limit:,}" in caplog.text
    assert clipped == tiny_encoder.tokenize_lists([huge[:5000]])[0]  # truncated to max_length either way


def test_non_string_text_is_an_error(tiny_encoder: SentenceEncoder) -> None:
    with pytest.raises(PolyheadError, match="text 1 is a int"):
        tiny_encoder.encode(["fine", 3])  # type: ignore[list-item]


def test_encode_leaves_training_mode_alone(tiny_encoder: SentenceEncoder) -> None:
    tiny_encoder.train()
    tiny_encoder.encode(["x"])
    assert tiny_encoder.training


def test_truncation_to_max_length(tiny_model_dir: Path) -> None:
    enc = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=8)
    ids = enc.tokenize_lists(["word " * 50])[0]["input_ids"]
    assert len(ids) == 8
    assert enc.encode("word " * 50).shape == (enc.dim,)
    # max_length never exceeds the model's position embeddings (128 for the tiny model)
    assert SentenceEncoder.from_pretrained(tiny_model_dir, max_length=10_000).max_length == 128


def test_similarity_matrix(tiny_encoder: SentenceEncoder) -> None:
    sims = tiny_encoder.similarity(["a b c", "d e f"], ["a b c", "x", "y"])
    assert sims.shape == (2, 3)
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert tiny_encoder.similarity(["a", "b", "c"]).shape == (3, 3)


def test_settings(tiny_model_dir: Path) -> None:
    enc = SentenceEncoder.from_pretrained(
        tiny_model_dir, pooling="max", projection_dim=8, normalize=False, max_length=32
    )
    s = enc.settings()
    assert (s["pooling"], s["projection_dim"], s["normalize"], s["max_length"], s["hidden_size"]) == (
        "max", 8, False, 32, 32
    )


# ----------------------------------------------------------------------- bad input
def test_unknown_pooling(tiny_model_dir: Path) -> None:
    with pytest.raises(PolyheadError) as info:
        SentenceEncoder.from_pretrained(tiny_model_dir, pooling="median")
    assert "valid pooling modes are: mean, cls, max, mean_sqrt_len" in one_line(info.value)


def test_model_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError) as info:
        SentenceEncoder.from_pretrained(tmp_path / "nope")
    assert "is not a local directory, and not a Hugging Face Hub name" in one_line(info.value)


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelDirError) as info:
        SentenceEncoder.from_pretrained(tmp_path)
    assert "is not a model directory" in one_line(info.value)


def test_file_instead_of_directory(tmp_path: Path) -> None:
    file = tmp_path / "model.txt"
    file.write_text("x")
    with pytest.raises(ModelDirError, match="not a model directory"):
        SentenceEncoder.from_pretrained(file)


def test_hub_name_while_offline() -> None:
    with pytest.raises(ModelDirError) as info:
        SentenceEncoder.from_pretrained("sentence-transformers/all-mpnet-base-v2")
    message = one_line(info.value)
    assert "sentence-transformers/all-mpnet-base-v2" in message and "HF_HUB_OFFLINE is set" in message


def test_hf_directory_with_pickled_weights_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (model / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelDirError) as info:
        SentenceEncoder.from_pretrained(model)
    assert "pytorch_model.bin" in one_line(info.value)


def test_hf_directory_without_safetensors(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (model / "model.safetensors").unlink()
    with pytest.raises(ModelDirError, match="no model.safetensors"):
        SentenceEncoder.from_pretrained(model)


def test_default_resolves_to_the_package() -> None:
    path = resolve_model_path("default")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


# ----------------------------------------------------------------------- real model (slow)
def sst2_sentences(shared_data: Path, n: int) -> list[str]:
    with open(shared_data / "sst2" / "test.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"] for r in rows[:n]]


@pytest.mark.slow
def test_parity_with_sentence_transformers(minilm: SentenceEncoder, shared_data: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = sst2_sentences(shared_data, 256)
    assert len(texts) == 256
    texts += [" ".join(texts[i : i + 12]) for i in range(0, 48, 12)]  # > 256 tokens: truncation must match
    reference = SentenceTransformer(str(resolve_model_path("default")), device="cpu")
    theirs = reference.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    ours = minilm.encode(texts, batch_size=32)
    assert ours.shape == theirs.shape == (260, 384)
    assert max(len(ids["input_ids"]) for ids in minilm.tokenize_lists(texts)) == 256
    cosine = (ours * theirs).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.99999, f"worst cosine {cosine.min():.7f} at {texts[int(cosine.argmin())]!r}"


@pytest.mark.slow
def test_default_settings_match_the_published_model(minilm: SentenceEncoder) -> None:
    assert (minilm.dim, minilm.pooling.mode, minilm.normalize, minilm.max_length) == (384, "mean", True, 256)


@pytest.mark.slow
def test_paraphrase_scores_higher_than_unrelated(minilm: SentenceEncoder) -> None:
    sims = minilm.similarity(
        ["A man is playing a guitar."],
        ["Someone is playing an instrument.", "The stock market fell sharply on Monday."],
    )
    assert sims[0, 0] > sims[0, 1] + 0.2, sims
    s = minilm.similarity(["How do I reset my password?"], ["I forgot my password, how can I change it?",
                                                             "What time does the bakery open?"])
    assert s[0, 0] > s[0, 1], s


# ----------------------------------------------------------------------- batching
def test_length_sorted_batches() -> None:
    from polyhead.modeling.batching import length_sorted_batches

    lengths = [3, 10, 5, 10, 2]
    assert length_sorted_batches(lengths, batch_size=2) == [[1, 3], [2, 0], [4]]  # longest first
    # at most 20 padded tokens per batch: 2 x 10 fits, then 5+3+2 -> 3 x 5 = 15 fits
    assert length_sorted_batches(lengths, batch_size=8, max_tokens=20) == [[1, 3], [2, 0, 4]]
    # a text longer than the budget still gets its own batch
    assert length_sorted_batches([50, 1], batch_size=8, max_tokens=20) == [[0], [1]]
    assert length_sorted_batches([], batch_size=4) == []


def test_bad_batch_size(tiny_encoder: SentenceEncoder) -> None:
    with pytest.raises(PolyheadError, match="batch_size must be >= 1, got 0"):
        tiny_encoder.encode(["x"], batch_size=0)


def test_sentence_transformers_layout_sets_pooling_normalize_and_length(st_cls_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    ours = SentenceEncoder.from_pretrained(st_cls_dir)
    assert (ours.pooling.mode, ours.normalize, ours.max_length) == ("cls", False, 48)
    texts = ["a short one", " ".join(["long"] * 80), "John met Mary in Paris"]  # one past 48 tokens
    theirs = SentenceTransformer(str(st_cls_dir), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours.encode(texts), theirs, atol=1e-5)  # not normalised, so norms match too
    asked = SentenceEncoder.from_pretrained(st_cls_dir, pooling="mean", normalize=True, max_length=16)
    assert (asked.pooling.mode, asked.normalize, asked.max_length) == ("mean", True, 16)  # arguments win


def test_sentence_transformers_modules_polyhead_does_not_read(st_cls_dir: Path, tmp_path: Path, caplog) -> None:
    import json
    import shutil

    from polyhead.modeldir.layout import sentence_transformers_settings

    path = tmp_path / "model"
    shutil.copytree(st_cls_dir, path)
    modules = json.loads((path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (path / "modules.json").write_text(json.dumps(modules))
    assert sentence_transformers_settings(path) == ({"normalize": False, "pooling": "cls", "max_length": 48},
                                                    ["Dense (2_Dense)"])
    with caplog.at_level("WARNING", logger="polyhead"):
        SentenceEncoder.from_pretrained(path)
    assert "Dense (2_Dense) not loaded" in caplog.text
    pooling = path / "1_Pooling" / "config.json"
    legacy = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_max_tokens": True}
    pooling.write_text(json.dumps(legacy))  # the older format (one boolean per mode), as MiniLM ships it
    assert sentence_transformers_settings(path)[0]["pooling"] == "max"
    for unsupported in ({"pooling_mode": "weightedmean"}, {**legacy, "pooling_mode_mean_tokens": True},
                        {"pooling_mode": ["cls", "mean"]}):
        pooling.write_text(json.dumps(unsupported))
        with pytest.raises(ModelDirError, match="1_Pooling/config.json: pooling .* is not supported; valid: one of"):
            SentenceEncoder.from_pretrained(path)
    (path / "modules.json").write_text("{broken")
    with pytest.raises(ModelDirError, match="unreadable sentence-transformers files"):
        SentenceEncoder.from_pretrained(path)


def test_plain_hf_directory_gets_the_defaults(tiny_model_dir: Path) -> None:
    from polyhead.modeldir.layout import sentence_transformers_settings

    assert sentence_transformers_settings(tiny_model_dir) == ({}, [])
    enc = SentenceEncoder.from_pretrained(tiny_model_dir)
    assert (enc.pooling.mode, enc.normalize, enc.max_length) == ("mean", True, 128)  # 256, capped by positions
