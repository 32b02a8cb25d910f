"""Shared fixtures: a random tiny BERT (hidden 32, 2 layers) with the real MiniLM tokenizer, offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from polyhead.runtime import configure_cpu_runtime

# The test run owns its process (the library sets nothing): never the network, even where the Makefile
# didn't set these (subprocesses inherit them), and the CPU settings `polyhead` commands run with.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens, a connection is refused at once
os.environ.setdefault("HF_ENDPOINT", CLOSED_ENDPOINT)  # even with HF_HUB_OFFLINE unset: a closed local port
# polyhead.cpupath's measured choices: cached in a directory of this run, not the user's ~/.cache; the linear
# kernel fixed to oneDNN so every run tests the same path (tests/test_cpupath.py tests the probe itself).
os.environ.setdefault("POLYHEAD_CACHE_DIR", tempfile.mkdtemp(prefix="polyhead-test-cache-"))
os.environ.setdefault("POLYHEAD_LINEARS", "onednn")
configure_cpu_runtime()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_tiny_model_dir(path: Path, seed: int = 0, dropout: float = 0.1) -> Path:
    """Write a random tiny BERT encoder directory (config.json, model.safetensors, tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from polyhead.modeling.encoder import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("default")))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def st_cls_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder saved by sentence-transformers itself: CLS pooling, no Normalize, 48 tokens."""
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(tiny_model_dir), max_seq_length=48)
    st = SentenceTransformer(modules=[transformer, models.Pooling(32, pooling_mode="cls")], device="cpu")
    path = tmp_path_factory.mktemp("st-cls") / "model"
    st.save(str(path))
    return path


@pytest.fixture
def tiny_encoder(tiny_model_dir: Path):
    from polyhead.modeling.encoder import SentenceEncoder

    return SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 (seconds to load): for parity and quality tests."""
    from polyhead.modeling.encoder import SentenceEncoder

    return SentenceEncoder.from_pretrained("default")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HF_HOME, offline, for this process (huggingface_hub reads its constants at import, so they
    are patched too) and for subprocesses (the environment)."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    (home / "hub").mkdir(parents=True)
    for name, value in (("HF_HOME", str(home)), ("HF_HUB_OFFLINE", "1"), ("HF_ENDPOINT", CLOSED_ENDPOINT)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_ENDPOINT)
    return home
