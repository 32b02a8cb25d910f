"""The training engine end to end on the tiny encoder: outputs, resume, cached path, stages, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny_config, write_config
from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.loop import EpochEnd, StageRun, StepEnd
from polyhead.training.state import TrainState
from polyhead.training.trainer import Trainer, TrainerCallback, TrainingInterrupted


def make(tmp_path: Path, model_dir: Path, **training) -> Config:
    return Config.model_validate(tiny_config(tmp_path, model_dir, **training))


def test_two_group_training_writes_a_complete_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = make(
        tmp_path,
        tiny_model_dir,
        log_with=["tensorboard"],
        epochs=3,
        steps_per_epoch=16,
        optimizer={"lr": 2e-3, "head_lr": 3e-2},
    )
    results = Trainer(cfg, tmp_path / "run").run()
    run = tmp_path / "run"
    for name in (
        "metrics.jsonl",
        "results.json",
        "training_curves.png",
        "config.yaml",
        "model/polyhead.json",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("dev/topic/accuracy" in r for r in records)
    assert any("train/loss/entities" in r for r in records)
    assert set(results["dev"]) == {"topic", "sentiment", "entities"}
    # keyword data is easy: the shared-sentence tasks must be learned well above chance
    assert results["dev"]["topic"]["accuracy"] >= 0.9
    model = MultiTaskModel.from_pretrained(run / "model")
    pred = model.predict(["goal is great today match"])[0]
    assert pred["topic"]["label"] == "sport"
    assert set(model.tasks["entities"].labels) == {"O", "B-PER", "I-PER"}


def test_trains_from_a_worker_thread(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Python sets signal handlers from the main thread only: run from another thread (a notebook, a web app),
    training goes without its Ctrl-C handler instead of failing with ValueError."""
    cfg = make(tmp_path, tiny_model_dir, epochs=1, steps_per_epoch=2)
    results: list[dict] = []
    thread = threading.Thread(target=lambda: results.append(Trainer(cfg, tmp_path / "run").run()))
    thread.start()
    thread.join()
    assert len(results) == 1 and set(results[0]["dev"]) == {"topic", "sentiment", "entities"}


def test_resume_continues_exactly(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "a").mkdir()
    full = Trainer(make(tmp_path / "a", tiny_model_dir), tmp_path / "a" / "run")
    full.run()
    (tmp_path / "b").mkdir()
    cfg = make(tmp_path / "b", tiny_model_dir)
    with pytest.raises(TrainingInterrupted, match="checkpoint saved in .*resume=True"):
        Trainer(cfg, tmp_path / "b" / "run").run(stop_after_steps=3)  # mid-epoch
    saved = (tmp_path / "b" / "run" / "config.yaml").read_text()
    other = cfg.model_copy(deep=True)
    other.training.epochs += 1
    with pytest.raises(PolyheadError, match=rf"config differs .*training.epochs: {cfg.training.epochs} -> "):
        Trainer(other, tmp_path / "b" / "run", resume=True).run()  # another run's schedule: refused
    assert (tmp_path / "b" / "run" / "config.yaml").read_text() == saved
    older = yaml.safe_load(saved)
    from polyhead.config import SamplingConfig

    assert older["training"]["sampling"] == SamplingConfig().model_dump(mode="json")
    del older["training"]["sampling"]  # at its defaults: as a polyhead from before that section wrote it
    assert older["encoder"]["pooling"] is None and older["encoder"]["normalize"] is None
    older["encoder"].update(pooling="mean", normalize=True)  # what runs saved before these were optional
    (tmp_path / "b" / "run" / "config.yaml").write_text("{not: [yaml")
    with pytest.raises(PolyheadError, match="config.yaml is not readable YAML .* delete it to resume without"):
        Trainer(cfg, tmp_path / "b" / "run", resume=True).run()
    (tmp_path / "b" / "run" / "config.yaml").write_text(yaml.safe_dump(older))
    Trainer(cfg, tmp_path / "b" / "run", resume=True).run()  # a missing key compares as its default
    a = full.model.state_dict()
    b = MultiTaskModel.from_pretrained(tmp_path / "b" / "run" / "model").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    lines_a = (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()
    lines_b = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines_a) == len(lines_b)


def test_cached_path_matches_uncached(tmp_path: Path, tiny_model_dir: Path) -> None:
    heads = {}
    for cache in (True, False):
        d = tmp_path / str(cache)
        d.mkdir()
        cfg = make(d, tiny_model_dir, freeze={"mode": "encoder"}, cache_embeddings=cache)
        trainer = Trainer(cfg, d / "run")
        trainer.run()
        heads[cache] = {k: v.clone() for k, v in trainer.model.heads.state_dict().items()}
    for key in heads[True]:
        torch.testing.assert_close(heads[True][key], heads[False][key], rtol=0, atol=1e-5, msg=key)


def test_sequential_stages_freeze_the_first_head(tmp_path: Path, tiny_model_dir: Path) -> None:
    stages = [
        {"name": "topic", "tasks": ["topic"], "epochs": 1},
        {"name": "sentiment", "tasks": ["sentiment"], "epochs": 1, "freeze": {"heads": ["topic"]}},
    ]
    cfg = make(tmp_path, tiny_model_dir, stages=stages)

    class Snapshots(TrainerCallback):
        def __init__(self) -> None:
            self.heads: dict[int, dict[str, torch.Tensor]] = {}
            self.hooks: list[str] = []

        def on_stage_start(self, trainer: Trainer, index: int) -> None:
            self.heads[index] = {k: v.clone() for k, v in trainer.model.heads["topic"].state_dict().items()}
            self.hooks.append(f"stage {index}")

        def on_epoch_start(self, trainer: Trainer, run: StageRun, state: TrainState) -> None:
            self.hooks.append(f"epoch {state.epoch}")

        def on_step_end(self, trainer: Trainer, run: StageRun, event: StepEnd) -> None:
            self.hooks.append(f"step {event.state.global_step}")

        def on_epoch_end(self, trainer: Trainer, run: StageRun, event: EpochEnd) -> None:
            self.hooks.append(f"end epoch {event.state.epoch}")

        def on_stage_end(self, trainer: Trainer, run: StageRun, state: TrainState) -> None:
            self.hooks.append(f"end {run.stage.name}")

    snapshots = Snapshots()
    trainer = Trainer(cfg, tmp_path / "run", callbacks=[snapshots])
    trainer.run()
    after = trainer.model.heads["topic"].state_dict()
    assert any(not torch.equal(snapshots.heads[0][k], snapshots.heads[1][k]) for k in after), "stage 1 trains topic"
    assert all(torch.equal(snapshots.heads[1][k], after[k]) for k in after), "stage 2 leaves the topic head alone"
    steps = cfg.training.steps_per_epoch
    assert snapshots.hooks == [
        "stage 0", "epoch 0", *[f"step {i}" for i in range(1, steps + 1)], "end epoch 1", "end topic",
        "stage 1", "epoch 0", *[f"step {i}" for i in range(steps + 1, 2 * steps + 1)], "end epoch 1", "end sentiment",
    ]  # fmt: skip


def test_uncertainty_weights_move(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = make(tmp_path, tiny_model_dir, loss_weighting="uncertainty")
    results = Trainer(cfg, tmp_path / "run").run()
    assert any(abs(w - 1.0) > 1e-3 for w in results["loss_weights"].values())


def test_freezing_everything_is_refused_before_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = make(tmp_path, tiny_model_dir, freeze={"mode": "all"})
    with pytest.raises(PolyheadError, match="leaves nothing to train"):
        Trainer(cfg, tmp_path / "run").run()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_refuses_a_non_empty_output_dir(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(PolyheadError, match="not empty"):
        Trainer(make(tmp_path, tiny_model_dir), out).run()
    assert (out / "precious.txt").read_text() == "keep me"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polyhead", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.optimizer.lrr=1", "unknown key 'lrr'"),
        ("training.epochs=abc", "training.epochs"),
        ("tasks.topic.data.train=/nonexistent/x.tsv", "tasks.topic.data.train: file"),
        ("tasks.topic.data.label_column=nope", "nope"),
        ("training.freeze.mode=all", "leaves nothing to train"),
    ],
)
def test_cli_train_bad_input_exits_2(
    tmp_path: Path, tiny_model_dir: Path, override: str, message: str
) -> None:
    path = write_config(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    proc = run_cli("train", str(path), "--set", override, "--output", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr


def test_cli_train_and_evaluate(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    proc = run_cli("train", str(path), "--output", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "final dev" in proc.stdout
    proc = run_cli(
        "evaluate", str(tmp_path / "run" / "model"), "--config", str(path), "--split", "dev", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert set(metrics) == {"topic", "sentiment", "entities"}
    assert 0 <= metrics["topic"]["accuracy"] <= 1


def test_disk_full_or_unwritable_output_is_refused_up_front(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> None:
    import shutil as shutil_module
    from collections import namedtuple

    cfg = make(tmp_path, tiny_model_dir)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**9, 10**9 - 10 * 2**20, 10 * 2**20))
    with pytest.raises(PolyheadError, match="only 10 MiB free"):
        Trainer(cfg, tmp_path / "run").run()
    monkeypatch.undo()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PolyheadError, match="is not writable"):
        Trainer(cfg, blocker / "run").run()
    assert blocker.read_text() == "not a directory"
