"""Embedding preservation (training.preserve_embedding): pulls a drifting embedding back, reference computed
once and kept for resume, exact resume, the general-sentences file, logged like a task loss, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.training import preserve
from polyhead.training.trainer import Trainer, TrainingInterrupted


def config(tmp: Path, model_dir: Path, preserve_options: dict[str, Any] | None, **training: Any) -> Config:
    cfg = tiny_config(tmp, model_dir, **training)
    # a hard push on the encoder: high learning rate, only the sentence tasks
    del cfg["tasks"]["entities"]
    cfg["training"].update(epochs=2, steps_per_epoch=10, optimizer={"lr": 5e-3, "head_lr": 1e-2})
    if preserve_options is not None:
        cfg["training"]["preserve_embedding"] = preserve_options
    return Config.model_validate(cfg)


def drift(model_dir: Path, trained: Any, texts: list[str]) -> float:
    """Mean cosine between the trained encoder's embeddings and the starting encoder's."""
    from polyhead.modeling.encoder import SentenceEncoder

    start = SentenceEncoder.from_pretrained(model_dir, max_length=32)
    a, b = np.asarray(start.encode(texts)), np.asarray(trained.encode(texts))
    return float((a * b).sum(1).mean())


TEXTS = ["goal is great today match", "chip is awful today app", "the coach loves the team", "hello world"]


def test_preservation_keeps_the_embedding_closer(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = Trainer(config(tmp_path / "a", tiny_model_dir, None), tmp_path / "a" / "run")
    plain.run()
    kept = Trainer(config(tmp_path / "b", tiny_model_dir, {"weight": 5.0}), tmp_path / "b" / "run")
    results = kept.run()
    without, with_ = drift(tiny_model_dir, plain.model, TEXTS), drift(tiny_model_dir, kept.model, TEXTS)
    assert with_ > without + 0.01, (with_, without)
    assert results["dev"]["topic"]["accuracy"] >= 0.8  # the heads still learn
    lines = [json.loads(x) for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss/preserve_embedding" in r for r in lines)
    assert (tmp_path / "b" / "run" / preserve.REFERENCE_FILE).is_file()


def test_reference_is_the_starting_encoder_computed_once(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = preserve.reference_vectors
    monkeypatch.setattr(preserve, "reference_vectors", lambda *a: calls.append(1) or original(*a))
    trainer = Trainer(config(tmp_path, tiny_model_dir, {}), tmp_path / "run")
    trainer.setup()
    assert len(calls) == 1
    ref = trainer.preserve.reference["topic+sentiment"]
    group = trainer.groups["topic+sentiment"]
    assert ref.shape == (len(group), trainer.model.encoder.dim)
    assert torch.allclose(ref.norm(dim=-1), torch.ones(len(ref)), atol=1e-5)
    # row i is example i's vector under the starting weights
    enc = group.items[3]["enc"]
    expected = torch.nn.functional.normalize(
        trainer.model.encoder.eval()({k: torch.tensor([v]) for k, v in enc.items()})["pooled_embedding"], dim=-1
    )
    assert torch.allclose(ref[3], expected[0], atol=1e-5)


def test_resume_is_exact_and_reads_the_saved_reference(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("full", "cut"):
        (tmp_path / name).mkdir()
    full = Trainer(config(tmp_path / "full", tiny_model_dir, {"weight": 2.0}), tmp_path / "full" / "run")
    full.run()
    cut_cfg = config(tmp_path / "cut", tiny_model_dir, {"weight": 2.0})
    with pytest.raises(TrainingInterrupted):
        Trainer(cut_cfg, tmp_path / "cut" / "run").run(stop_after_steps=7)
    calls = []
    monkeypatch.setattr(preserve, "reference_vectors", lambda *a: calls.append(1) or {})
    resumed = Trainer(cut_cfg, tmp_path / "cut" / "run", resume=True)
    resumed.run()
    assert calls == []  # read from the run directory, not recomputed from the (already trained) encoder
    for key, value in full.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-6), key


def test_general_sentences_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    sentences = tmp_path / "general.txt"
    sentences.write_text("\n".join(f"a general sentence number {i}" for i in range(40)) + "\n")
    trainer = Trainer(config(tmp_path, tiny_model_dir, {"data": str(sentences), "loss": "mse"}), tmp_path / "run")
    trainer.run()
    assert set(trainer.preserve.reference) == {preserve.PRESERVE}
    assert trainer.preserve.reference[preserve.PRESERVE].shape[0] == 40
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("train/loss/preserve_embedding", 0) > 0 for r in lines)


def test_frozen_encoder_stage_skips_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, {}, freeze={"mode": "encoder"})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.setup()
    run, _ = trainer.start_stage(0)
    assert run.step.preserve is None and run.step.cache is not None


def test_bad_options_are_one_line_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(PolyheadError, match="neither 'train' nor a file"):
        Trainer(config(tmp_path, tiny_model_dir, {"data": str(tmp_path / "nope.txt")}), tmp_path / "run").setup()
    with pytest.raises(Exception, match="weight"):
        config(tmp_path, tiny_model_dir, {"weight": -1})
    with pytest.raises(Exception, match="may not be called 'preserve_embedding'"):
        cfg = tiny_config(tmp_path, tiny_model_dir)
        cfg["tasks"]["preserve_embedding"] = cfg["tasks"].pop("topic")
        cfg["training"]["preserve_embedding"] = {}
        Config.model_validate(cfg)


def test_many_general_sentences_neither_starve_the_tasks_nor_stretch_the_epoch(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """10x more sentences than task examples: drawn as often as the average task, and an epoch of derived
    length is still a pass over the tasks' data (divided by their share of the draws)."""
    from polyhead.training import plan

    sentences = tmp_path / "general.txt"
    sentences.write_text("\n".join(f"a general sentence number {i}" for i in range(3000)) + "\n")
    cfg = config(tmp_path, tiny_model_dir, {"data": str(sentences)})
    cfg.training.steps_per_epoch = None
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.setup()
    run, _ = trainer.start_stage(0)
    probabilities = run.sampler.probabilities
    tasks = {g: len(grp) for g, grp in trainer.groups.items()}
    assert sum(tasks.values()) < 300 and len(tasks) == 1
    assert probabilities[preserve.PRESERVE] == pytest.approx(0.5)  # one task group: every other draw
    assert run.steps_per_epoch == plan.epoch_steps(tasks, probabilities, cfg.training.batch_size, 1)
    assert run.steps_per_epoch == 2 * -(-max(tasks.values()) // cfg.training.batch_size)
