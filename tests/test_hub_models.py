"""A trained polyhead model by its Hub name: ``polyhead.load("org/name")``, ``MultiTaskModel.from_pretrained``,
``predict`` / ``evaluate`` / ``encode --model`` / ``serve``, resolved from a real cache layout in a temporary
HF_HOME with HF_HUB_OFFLINE set (tests/test_hub.py builds the cache); export never writes into the cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

import polyhead
from helpers import tiny_config, write_config
from polyhead.config import load_config
from polyhead.errors import ModelDirError
from polyhead.modeldir.format import export_files
from polyhead.modeldir.hub import MODEL_DIR_PATTERNS, resolve_model_dir
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.predict import load
from polyhead.training.trainer import Trainer
from test_cli_encode_predict import assert_user_error, run_main
from test_hub import OTHER_COMMIT, TINY, add_to_cache
from test_serving import start

NAME = "polyhead-tests/tiny-multitask"
TEXTS = ["the match and the goal were great today", "i met alice in town", "the chip is awful"]


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model directory, config file) of a tiny model trained on three tasks (a few steps)."""
    tmp = tmp_path_factory.mktemp("hubmodel")
    config = write_config(tmp, tiny_config(tmp, tiny_model_dir, epochs=1, steps_per_epoch=3))
    Trainer(load_config(config), tmp / "run").run()
    return tmp / "run" / "model", config


def cache_files(hub: Path) -> dict[str, str]:
    """Every file under the cache and its content hash: what a command must leave as it was."""
    return {str(p.relative_to(hub)): hashlib.sha256(p.read_bytes()).hexdigest() for p in hub.rglob("*") if p.is_file()}


def test_load_by_hub_name_equals_the_local_directory(hf_home: Path, trained: tuple[Path, Path]) -> None:
    model_dir, _ = trained
    snapshot = add_to_cache(hf_home / "hub", NAME, model_dir)
    assert resolve_model_dir(NAME) == snapshot
    local = MultiTaskModel.from_pretrained(model_dir).predict(TEXTS)
    assert polyhead.load(NAME).predict(TEXTS) == local
    by_class = MultiTaskModel.from_pretrained(NAME)
    assert by_class.predict(TEXTS) == local and set(by_class.tasks) == {"topic", "sentiment", "entities"}
    np.testing.assert_allclose(load(NAME, "auto").encode(TEXTS), by_class.encode(TEXTS), atol=1e-5)


def test_revision_picks_another_commit(hf_home: Path, trained: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, _ = trained
    add_to_cache(hf_home / "hub", NAME, model_dir)
    untrained = MultiTaskModel.from_pretrained(model_dir)
    for head in untrained.heads.values():
        for p in head.parameters():
            p.data.normal_(0.0, 1.0, generator=__import__("torch").Generator().manual_seed(7))
    other = untrained.save_pretrained(tmp_path / "other")
    add_to_cache(hf_home / "hub", NAME, other, commit=OTHER_COMMIT, ref="v1")
    main_scores = load(NAME).predict(TEXTS)
    v1 = MultiTaskModel.from_pretrained(NAME, revision="v1").predict(TEXTS)
    assert v1 == MultiTaskModel.from_pretrained(other).predict(TEXTS) != main_scores
    assert load(NAME, revision=OTHER_COMMIT).predict(TEXTS) == v1
    with pytest.raises(ModelDirError, match=r"\(revision v9\) is not a local directory and is not in the Hugging"):
        load(NAME, revision="v9")


def test_only_the_files_polyhead_reads_are_fetched() -> None:
    from huggingface_hub.utils import filter_repo_objects

    repo = ["polyhead.json", "config.json", "model.safetensors", "heads.safetensors", "tokenizer.json", "vocab.txt",
            "tokenizer_config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
            "2_Dense/config.json", "2_Dense/model.safetensors", "README.md", "results.json", "onnx.json",
            "model.onnx", "model.int8.onnx", "openvino.json", "openvino_model.xml", "openvino_model.weights",
            "pytorch_model.bin", "2_Dense/pytorch_model.bin", "custom_head.py", "optimizer.pt", "training_args.bin"]
    torch_files = set(filter_repo_objects(repo, allow_patterns=MODEL_DIR_PATTERNS))
    assert torch_files == set(repo[:14])
    with_onnx = set(filter_repo_objects(repo, allow_patterns=MODEL_DIR_PATTERNS + export_files("onnx")))
    assert with_onnx - torch_files == {"onnx.json", "model.onnx"}
    with_ov = set(filter_repo_objects(repo, allow_patterns=MODEL_DIR_PATTERNS + export_files("openvino")))
    assert with_ov - torch_files == {"openvino.json", "openvino_model.xml", "openvino_model.weights"}
    assert export_files("onnx-int8") == ["onnx.json", "model.int8.onnx"]
    assert export_files("openvino-int8") == ["openvino.json", "openvino_model.int8.xml", "openvino_model.int8.weights"]
    assert export_files("torch") == export_files("onnx-fp16") == []


def test_a_snapshot_with_pickles_and_code_loads_only_safetensors(
    hf_home: Path, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """After a full `hf download` the snapshot may hold other files: they are never read (nor refused)."""
    files = shutil.copytree(trained[0], tmp_path / "full")
    (files / "pytorch_model.bin").write_bytes(b"a pickle would run code when loaded")
    (files / "modeling_custom.py").write_text("raise SystemExit('remote code must never run')\n")
    add_to_cache(hf_home / "hub", NAME, files)
    assert load(NAME).predict(TEXTS) == load(trained[0]).predict(TEXTS)


def test_hub_errors_are_one_line(hf_home: Path, tiny_model_dir: Path, trained: tuple[Path, Path]) -> None:
    add_to_cache(hf_home / "hub", TINY, tiny_model_dir)  # an encoder repository, not a polyhead model
    with pytest.raises(ModelDirError) as info:
        load(TINY)
    assert "is not a polyhead model directory (no polyhead.json)" in str(info.value)
    assert f"polyhead encode --model {TINY}" in str(info.value)
    with pytest.raises(ModelDirError) as info:
        load("someone/missing-model")
    assert "is not in the Hugging Face cache" in str(info.value) and "hf download someone/missing-model" in str(
        info.value
    )
    add_to_cache(hf_home / "hub", NAME, trained[0])
    with pytest.raises(ModelDirError) as info:
        load(NAME, "onnx")  # the author pushed no export
    assert "has no onnx.json, model.onnx for --backend onnx" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelDirError, match="runs/x/model does not exist"):
        load("runs/x/model")  # a path-like name stays a local path


def test_onnx_files_are_used_when_that_backend_is_asked_for(
    hf_home: Path, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from polyhead.export.onnx import export_onnx

    exported = shutil.copytree(trained[0], tmp_path / "exported")
    export_onnx(exported)
    add_to_cache(hf_home / "hub", NAME, exported)
    onnx = load(NAME, "onnx")
    assert type(onnx).__name__ == "OnnxModel"
    torch_result = load(NAME, "torch").predict(TEXTS)
    assert [{t: r[t]["label"] for t in ("topic", "sentiment")} for r in onnx.predict(TEXTS)] == [
        {t: r[t]["label"] for t in ("topic", "sentiment")} for r in torch_result
    ]


# ----------------------------------------------------------------------- the commands
def test_cli_predict_evaluate_encode_by_hub_name(
    hf_home: Path, trained: tuple[Path, Path], capsys, monkeypatch, tmp_path: Path
) -> None:
    model_dir, config = trained
    add_to_cache(hf_home / "hub", NAME, model_dir)
    result = run_main(capsys, monkeypatch, "predict", NAME, *TEXTS, "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = MultiTaskModel.from_pretrained(model_dir).predict(TEXTS)
    assert [{k: v for k, v in r.items() if k != "text"} for r in rows] == json.loads(json.dumps(expected))
    result = run_main(capsys, monkeypatch, "evaluate", NAME, "--config", str(config), "--split", "dev", "--json")
    assert result.returncode == 0, result.stderr
    local = run_main(capsys, monkeypatch, "evaluate", str(model_dir), "--config", str(config), "--split", "dev",
                     "--json")
    assert json.loads(result.stdout) == json.loads(local.stdout)
    out = tmp_path / "v.npy"
    assert run_main(capsys, monkeypatch, "encode", *TEXTS, "--model", NAME, "--out", str(out)).returncode == 0
    np.testing.assert_allclose(np.load(out), MultiTaskModel.from_pretrained(model_dir).encode(TEXTS), atol=1e-5)
    rows_file = tmp_path / "in.jsonl"
    rows_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    result = run_main(capsys, monkeypatch, "predict", NAME, "--input", str(rows_file), "--output",
                      str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    streamed = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["topic"] for r in streamed] == [r["topic"] for r in json.loads(json.dumps(expected))]
    assert_user_error(run_main(capsys, monkeypatch, "predict", NAME, "hi", "--revision", "v9"),
                      "(revision v9) is not a local directory and is not in the Hugging Face cache")


def test_export_never_writes_into_the_cache(
    hf_home: Path, trained: tuple[Path, Path], capsys, monkeypatch, tmp_path: Path
) -> None:
    snapshot = add_to_cache(hf_home / "hub", NAME, trained[0])
    before = cache_files(hf_home / "hub")
    for target in (NAME, str(snapshot)):
        assert_user_error(run_main(capsys, monkeypatch, "export", target), "export never writes into the cache",
                          "add --output DIR", "hf download")
    out = tmp_path / "exported"
    result = run_main(capsys, monkeypatch, "export", NAME, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert cache_files(hf_home / "hub") == before  # nothing written, nothing changed
    assert (out / "model.onnx").is_file() and (out / "heads.safetensors").is_file()
    assert not any(p.is_symlink() for p in out.rglob("*"))  # real files, not links into the cache's blobs
    assert load(out, "onnx").predict(TEXTS)[0]["topic"]["label"] == load(NAME).predict(TEXTS)[0]["topic"]["label"]
    assert_user_error(run_main(capsys, monkeypatch, "export", NAME, "--output", str(out)), "is not empty")


def test_serve_by_hub_name(hf_home: Path, trained: tuple[Path, Path]) -> None:
    add_to_cache(hf_home / "hub", NAME, trained[0])
    proc, url = start(NAME)  # type: ignore[arg-type]
    try:
        health = httpx.get(url + "/health", timeout=10).json()
        assert set(health["tasks"]) == {"topic", "sentiment", "entities"}
        body = httpx.post(url + "/predict", json={"texts": TEXTS[:1]}, timeout=60).json()
        expected = MultiTaskModel.from_pretrained(trained[0]).predict(TEXTS[:1])[0]
        assert body["predictions"][0]["topic"]["label"] == expected["topic"]["label"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

