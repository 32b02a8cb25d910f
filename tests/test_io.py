"""The model directory: layout, round trips (polyhead and sentence-transformers), and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeldir import FORMAT_VERSION, TaskSpec, read_config
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel

TASKS = {
    "topic": TaskSpec("classification", ["sports", "politics", "tech"], hidden=[8]),
    "aspects": TaskSpec("multilabel", ["food", "service"]),
    "rating": TaskSpec("regression"),
    "ner": TaskSpec("token_classification", ["O", "B-PER", "I-PER"]),
    "sts": TaskSpec("similarity", loss="cosine"),
}
TEXTS = ["Messi scored twice.", "The vote was close in the senate today.", "New phones ship."]


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, projection_dim=16, max_length=64)
    torch.manual_seed(0)
    return MultiTaskModel(encoder, TASKS).save_pretrained(tmp_path / "model")


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(PolyheadError) as info:
        MultiTaskModel.from_pretrained(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def edit_config(path: Path, edit) -> None:
    file = path / "polyhead.json"
    config = json.loads(file.read_text())
    edit(config)
    file.write_text(json.dumps(config))


# ----------------------------------------------------------------------- layout and round trip
def test_directory_layout(model_dir: Path) -> None:
    names = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert {
        "polyhead.json",
        "config.json",
        "model.safetensors",
        "heads.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
    } <= names
    assert (model_dir / "3_Normalize").is_dir()
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
    assert not list(model_dir.parent.glob(".model.*"))  # no temporary directories left behind


def test_polyhead_json(model_dir: Path) -> None:
    config = read_config(model_dir).raw
    assert set(config) == {"format_version", "library_versions", "encoder", "tasks", "tokenizer"}
    assert set(config["tokenizer"]["files"]) == {"tokenizer.json", "tokenizer_config.json"}
    assert config["tokenizer"]["vocab_size"] == 30522
    assert config["format_version"] == FORMAT_VERSION
    assert set(config["library_versions"]) == {"polyhead", "torch", "transformers"}
    assert config["encoder"]["pooling"] == "mean" and config["encoder"]["projection_dim"] == 16
    assert config["encoder"]["normalize"] is True and config["encoder"]["max_length"] == 64
    assert set(config["tasks"]) == set(TASKS)
    assert config["tasks"]["topic"] == TASKS["topic"].to_dict()


def test_round_trip_identical_outputs(model_dir: Path) -> None:
    model = MultiTaskModel.from_pretrained(model_dir)
    again = MultiTaskModel.from_pretrained(model.save_pretrained(model_dir.parent / "copy"))
    features = model.encoder.tokenize(TEXTS)
    with torch.inference_mode():
        a, b = model(features), again(features)
    assert set(a) == set(TASKS)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert again.tasks == model.tasks
    assert again.predict(TEXTS) == model.predict(TEXTS)


def test_loaded_model_is_in_eval_mode(model_dir: Path) -> None:
    model = MultiTaskModel.from_pretrained(model_dir)
    assert not model.training and not model.encoder.training


def test_encoder_from_a_polyhead_directory(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = MultiTaskModel.from_pretrained(model_dir)
    encoder = SentenceEncoder.from_pretrained(model_dir, pooling="cls")  # the directory's settings win
    assert "saved encoder settings are used" in caplog.text
    assert encoder.pooling.mode == "mean" and encoder.dim == 16
    assert np.array_equal(encoder.encode(TEXTS), model.encode(TEXTS))


def test_sentence_encoder_alone_saves_and_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, pooling="max", normalize=False)
    path = MultiTaskModel(encoder, {}).save_pretrained(tmp_path / "enc")
    assert not (path / "heads.safetensors").exists()
    assert read_config(path).tasks == {}
    loaded = SentenceEncoder.from_pretrained(path)
    assert loaded.pooling.mode == "max" and not loaded.normalize
    assert np.array_equal(loaded.encode(TEXTS), encoder.encode(TEXTS))
    assert MultiTaskModel.from_pretrained(path).tasks == {}


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "mean_sqrt_len"])
def test_sentence_transformers_loads_the_dir(tiny_model_dir: Path, tmp_path: Path, pooling: str) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, pooling=pooling, projection_dim=8)
    path = MultiTaskModel(encoder, TASKS).save_pretrained(tmp_path / "m")
    theirs = SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)
    ours = encoder.encode(TEXTS)
    assert theirs.shape == ours.shape == (3, 8)
    assert np.allclose(theirs, ours, atol=1e-5)


@pytest.mark.slow
def test_real_minilm_round_trip_via_sentence_transformers(minilm: SentenceEncoder, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The stock market fell sharply on Monday.",
        "!",  # a text of punctuation alone (empty texts are refused, #22)
    ]
    model = MultiTaskModel(minilm, {"topic": TaskSpec("classification", ["a", "b"])})
    path = model.save_pretrained(tmp_path / "minilm-model")
    ours = model.encode(texts)
    st = SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)
    reloaded = SentenceEncoder.from_pretrained(path).encode(texts)
    for other in (st, reloaded):
        cosine = (ours * other).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(other, axis=1))
        assert cosine.min() >= 0.99999, cosine


# ----------------------------------------------------------------------- bad directories
def test_missing_directory(tmp_path: Path) -> None:
    assert "does not exist" in error_of(tmp_path / "nope")


def test_not_a_polyhead_directory(tiny_model_dir: Path) -> None:
    assert "polyhead.json is missing" in error_of(tiny_model_dir)


def test_missing_encoder_weights(model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    assert "no model.safetensors" in error_of(model_dir)


def test_missing_head_weights(model_dir: Path) -> None:
    (model_dir / "heads.safetensors").unlink()
    assert "heads.safetensors is missing" in error_of(model_dir)


def test_missing_dense_weights(model_dir: Path) -> None:
    (model_dir / "2_Dense" / "model.safetensors").unlink()
    assert "2_Dense/model.safetensors is missing" in error_of(model_dir)


@pytest.mark.parametrize("name", ["model.safetensors", "heads.safetensors", "2_Dense/model.safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_weights(model_dir: Path, name: str, keep: float) -> None:
    file = model_dir / name
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])
    message = error_of(model_dir)
    assert name in message and "truncated or corrupt" in message


def test_newer_format_version(model_dir: Path) -> None:
    edit_config(model_dir, lambda c: c.update(format_version=FORMAT_VERSION + 1))
    message = error_of(model_dir)
    assert f"format version {FORMAT_VERSION + 1}" in message and "upgrade polyhead" in message


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format_version": "1"}', '{"format_version": 1}'])
def test_broken_polyhead_json(model_dir: Path, content: str) -> None:
    (model_dir / "polyhead.json").write_text(content)
    assert "polyhead.json" in error_of(model_dir)


@pytest.mark.parametrize("labels", [["sports", "politics"], ["sports", "politics", "tech", "science"]])
def test_label_list_that_does_not_match_the_weights(model_dir: Path, labels: list[str]) -> None:
    edit_config(model_dir, lambda c: c["tasks"]["topic"].update(labels=labels))
    message = error_of(model_dir)
    assert "topic." in message and "label list" in message


def test_head_spec_that_does_not_match_the_weights(model_dir: Path) -> None:
    edit_config(model_dir, lambda c: c["tasks"]["topic"].update(hidden=[]))
    assert "doesn't match the model" in error_of(model_dir)


def test_task_missing_from_polyhead_json(model_dir: Path) -> None:
    edit_config(model_dir, lambda c: c["tasks"].pop("rating"))
    message = error_of(model_dir)
    assert "unexpected" in message and "rating." in message


def test_invalid_task_spec(model_dir: Path) -> None:
    original = json.loads((model_dir / "polyhead.json").read_text())
    edit_config(model_dir, lambda c: c["tasks"]["topic"].update(colour="blue"))
    assert "invalid task spec" in error_of(model_dir)
    (model_dir / "polyhead.json").write_text(json.dumps(original))
    edit_config(model_dir, lambda c: c["tasks"]["topic"].update(type="ranking"))
    assert "unknown type 'ranking'; valid: classification" in error_of(model_dir)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "heads.pkl", "extra/state.pt", "modeling_evil.py"])
def test_pickle_or_code_files_are_refused(model_dir: Path, name: str) -> None:
    file = model_dir / name
    file.parent.mkdir(exist_ok=True)
    file.write_bytes(b"\x80\x04K\x01.")
    message = error_of(model_dir)
    assert Path(name).name in message and "safetensors" in message
    with pytest.raises(ModelDirError):
        SentenceEncoder.from_pretrained(model_dir)


def test_unknown_task_names_in_predict(model_dir: Path) -> None:
    model = MultiTaskModel.from_pretrained(model_dir)
    with pytest.raises(PolyheadError) as info:
        model.predict(TEXTS, tasks=["topic", "sentiment"])
    assert "'sentiment'" in str(info.value) and "valid: topic, aspects, rating, ner, sts" in str(info.value)


# ----------------------------------------------------------------------- saving
def test_refuses_to_overwrite_a_non_model_directory(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    model = MultiTaskModel(tiny_encoder, TASKS)
    with pytest.raises(PolyheadError, match="not empty"):
        model.save_pretrained(target)
    with pytest.raises(PolyheadError, match="not a polyhead model directory; refusing"):
        model.save_pretrained(target, overwrite=True)
    assert (target / "notes.txt").read_text() == "precious"


def test_overwrite_a_model_directory_only_when_asked(model_dir: Path, tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, {"rating": TaskSpec("regression")})
    with pytest.raises(PolyheadError, match="already exists"):
        model.save_pretrained(model_dir)
    model.save_pretrained(model_dir, overwrite=True)
    assert set(MultiTaskModel.from_pretrained(model_dir).tasks) == {"rating"}
    assert not (model_dir / "2_Dense").exists()  # nothing stale from the old model
    assert not list(model_dir.parent.glob(".model.*"))


def test_save_into_an_empty_existing_directory(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    MultiTaskModel(tiny_encoder, {"rating": TaskSpec("regression")}).save_pretrained(tmp_path / "empty")
    assert (tmp_path / "empty" / "polyhead.json").is_file()


def test_copied_directory_still_loads(model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "elsewhere")
    shutil.rmtree(model_dir)
    assert set(MultiTaskModel.from_pretrained(copy).tasks) == set(TASKS)


def test_file_instead_of_a_model_directory(model_dir: Path) -> None:
    assert "is a file, not a directory" in error_of(model_dir / "polyhead.json")


def test_save_onto_a_file_is_refused(tiny_encoder: SentenceEncoder, tmp_path: Path) -> None:
    file = tmp_path / "model"
    file.write_text("x")
    with pytest.raises(PolyheadError, match="is a file"):
        MultiTaskModel(tiny_encoder, {"rating": TaskSpec("regression")}).save_pretrained(file)
    assert file.read_text() == "x"
