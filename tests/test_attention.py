"""Eager attention (the encoder's default) against SDPA (transformers' default, measured no faster here: issue 24):
the same outputs in eval mode, the same weights after a fixed-seed training run (dropout off, and on: on the CPU,
SDPA with dropout runs torch's math kernel, which draws the masks eager draws), and export on eager by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_model_dir
from helpers import tiny_config
from polyhead.config import Config
from polyhead.modeldir import TaskSpec
from polyhead.modeling.batching import pad_batch
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.loop import train_stage
from polyhead.training.trainer import Trainer

TEXTS = [
    "The cat sat on the mat.",
    "A considerably longer sentence, with commas, numbers like 42 and several clauses in it.",
    "Short.",
    "Transformers turn text into vectors, and padding hides the rest of a short one.",
]
PAIRS = [("a man plays a guitar", "someone plays an instrument"), ("short", "a much longer second text of a pair")]


def attention(encoder: SentenceEncoder) -> str:
    return str(encoder.transformer.config._attn_implementation)


def same_outputs(eager: SentenceEncoder, sdpa: SentenceEncoder, atol: float) -> None:
    """Padded batches of single texts and of pairs (segment ids 0 and 1), compared position by position."""
    batches = [eager.tokenize(TEXTS)]
    batches.append(pad_batch(eager.tokenize_pairs(PAIRS), eager.pad_token_id))
    assert (batches[0]["attention_mask"] == 0).any()  # padding is really there
    assert (batches[1]["token_type_ids"] == 1).any()  # and segment ids
    with torch.inference_mode():
        for features in batches:
            a, b = eager(dict(features)), sdpa(dict(features))
            mask = features["attention_mask"].bool()
            assert (a["token_embeddings"][mask] - b["token_embeddings"][mask]).abs().max() <= atol
            torch.testing.assert_close(a["sentence_embedding"], b["sentence_embedding"], rtol=0, atol=atol)
    np.testing.assert_allclose(eager.encode(TEXTS), sdpa.encode(TEXTS), rtol=0, atol=atol)


def test_default_is_eager_and_sdpa_equals_it_in_eval_mode(tiny_model_dir: Path) -> None:
    default = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    sdpa = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64, attn_implementation="sdpa")
    chosen = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64, attn_implementation=None)
    assert (attention(default), attention(sdpa), attention(chosen)) == ("eager", "sdpa", "sdpa")
    same_outputs(default, sdpa, atol=1e-5)


def test_saved_model_reloads_with_either_and_they_agree(tiny_model_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64, projection_dim=16)
    path = MultiTaskModel(encoder, {"topic": TaskSpec("classification", ["a", "b"])}).save_pretrained(tmp_path / "m")
    assert "attn" not in (path / "config.json").read_text()  # the choice is the loader's, not the directory's
    eager = MultiTaskModel.from_pretrained(path)
    sdpa = MultiTaskModel.from_pretrained(path, attn_implementation="sdpa")
    assert (attention(eager.encoder), attention(sdpa.encoder)) == ("eager", "sdpa")
    same_outputs(eager.encoder, sdpa.encoder, atol=1e-5)
    a, b = ([r["topic"]["probabilities"][k] for r in m.predict(TEXTS) for k in "ab"] for m in (eager, sdpa))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_real_minilm_sdpa_equals_eager(minilm: SentenceEncoder) -> None:
    sdpa = SentenceEncoder.from_pretrained("default", attn_implementation="sdpa")
    assert (attention(minilm), attention(sdpa)) == ("eager", "sdpa")
    same_outputs(minilm, sdpa, atol=1e-5)


def trained_weights(tmp_path: Path, model_dir: Path, implementation: str) -> dict[str, torch.Tensor]:
    """12 fixed-seed optimizer steps of the tiny three-task config with the encoder on ``implementation``."""
    cfg = tiny_config(tmp_path, model_dir, epochs=1, steps_per_epoch=12, optimizer={"lr": 2e-3, "head_lr": 3e-2})
    trainer = Trainer(Config.model_validate(cfg), tmp_path / "run")
    trainer.setup()
    transformer = trainer.model.encoder.transformer
    assert transformer.config._attn_implementation == "eager"  # the library's default, in training too
    transformer.set_attn_implementation(implementation)
    assert transformer.config._attn_implementation == implementation
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    run, state = trainer.start_stage(0)
    for _ in train_stage(run, state):
        pass
    after = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert sum(not torch.equal(after[k], before[k]) for k in after) > len(after) // 2  # it trained
    return after


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fixed_seed_training_gives_the_same_weights(dropout: float, tmp_path: Path) -> None:
    # dropout 0.1 (MiniLM's own): if a torch release gives the CPU's SDPA kernels a dropout of their own, the
    # masks (and so fixed-seed weights) change, this fails, and BENCHMARKS.md's "Same seed" note is out of date
    model_dir = make_tiny_model_dir(tmp_path / f"tiny-{dropout}", dropout=dropout)
    weights = {}
    for implementation in ("eager", "sdpa"):
        (tmp_path / implementation).mkdir()
        weights[implementation] = trained_weights(tmp_path / implementation, model_dir, implementation)
    for key, value in weights["eager"].items():
        torch.testing.assert_close(weights["sdpa"][key], value, rtol=0, atol=2e-5, msg=key)


def test_export_loads_eager_by_name(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhead.export.onnx import load_for_export
    from polyhead.modeling import encoder as encoder_module
    from polyhead.modeling import multitask

    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    path = MultiTaskModel(encoder, {}).save_pretrained(tmp_path / "m")
    # even if the library's default changes (the loaders' defaults are bound at import: patch those)
    monkeypatch.setattr(multitask.load_pretrained, "__defaults__", ("sdpa",))
    monkeypatch.setattr(encoder_module.load_encoder, "__defaults__", ("sdpa",))
    assert attention(MultiTaskModel.from_pretrained(path).encoder) == "sdpa"
    assert attention(load_for_export(path).encoder) == "eager"
