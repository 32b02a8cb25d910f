"""The trainer's side effects on their own: training-loss logging cadence, the early-stopping score,
keeping the best epoch and stopping after ``patience`` epochs without improvement."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from polyhead.config import TrainingConfig
from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.training.callbacks import DevEvaluation, LossLog
from polyhead.training.distributed import DistContext
from polyhead.training.losses import StaticWeighting
from polyhead.training.metrics_log import MetricsLog
from polyhead.training.plan import Stage
from polyhead.training.state import TrainState


def test_losses_are_logged_every_ten_steps_and_at_the_end_of_an_epoch(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    run: Any = SimpleNamespace(
        steps_per_epoch=12,
        stage=SimpleNamespace(name="s", tasks=["a"]),
        step=SimpleNamespace(scheduler=SimpleNamespace(get_last_lr=lambda: [0.5, 0.25])),
    )
    losses = LossLog(log, DistContext(), StaticWeighting({"a": 1.0, "b": 2.0}))
    state = TrainState()
    for step in range(1, 13):
        state.global_step = state.step_in_epoch = step
        losses.add({"a": [float(step), float(step) + 1.0]} if step % 2 else {"a": [float(step)], "b": [1.0]})
        losses.write_if_due(run, state)
    log.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 12]
    # steps 1..10: a's losses 1,2, 2, 3,4, 4, ... (odd steps two micro-batches): their mean
    first = [v for s in range(1, 11) for v in ([s, s + 1] if s % 2 else [s])]
    assert records[0]["train/loss/a"] == pytest.approx(sum(first) / len(first))
    assert records[0]["train/loss/b"] == 1.0 and records[0]["train/lr"] == 0.25
    assert records[0]["train/loss_weight/a"] == 1.0 and "train/loss_weight/b" not in records[0]  # b: not in stage
    assert records[1]["train/loss/a"] == pytest.approx((11 + 12 + 12) / 3)


def dev_evaluation(tmp_path: Path, scores: list[float], **early_stopping: Any) -> DevEvaluation:
    model = torch.nn.Linear(2, 1)
    results = iter(scores)

    def evaluate(split: str, tasks: list[str]) -> dict[str, dict[str, float]]:
        score = next(results)
        return {"topic": {"accuracy": score, "macro_f1": 0.0}, "rating": {"spearman": score / 2, "mse": 1 - score}}

    specs = {"topic": TaskSpec("classification", ["a", "b"]), "rating": TaskSpec("regression")}
    config = TrainingConfig.model_validate({"early_stopping": early_stopping})
    log = MetricsLog(tmp_path)
    return DevEvaluation(
        model, specs, evaluate, config, [], log, lambda item: None, tmp_path / "best.safetensors", DistContext()  # type: ignore[arg-type]
    )


def test_selection_score_is_the_mean_primary_metric_or_the_named_one(tmp_path: Path) -> None:
    metrics = {"topic": {"accuracy": 0.8, "macro_f1": 0.5}, "rating": {"spearman": 0.4, "mse": 0.3}}
    assert dev_evaluation(tmp_path, []).selection_score(metrics) == pytest.approx(0.6)
    assert dev_evaluation(tmp_path, [], metric="topic/macro_f1").selection_score(metrics) == 0.5
    assert dev_evaluation(tmp_path, [], metric="rating/mse").selection_score(metrics) == -0.3  # lower is better
    assert dev_evaluation(tmp_path, []).selection_score({}) is None
    with pytest.raises(PolyheadError, match="'topic/f1': no such dev metric; have: topic/accuracy, topic/macro_f1"):
        dev_evaluation(tmp_path, [], metric="topic/f1").selection_score(metrics)


def test_the_best_epoch_is_kept_and_patience_stops(tmp_path: Path) -> None:
    dev = dev_evaluation(tmp_path, [0.5, 0.7, 0.6, 0.65], patience=2)
    stage = Stage("s", ["topic", "rating"], 4, None, None, None)  # type: ignore[arg-type]
    state = TrainState()
    stops = []
    for epoch in range(1, 5):
        state.epoch = epoch
        stops.append(dev.end_of_epoch(stage, state))
        if epoch == 2:
            best = {k: v.clone() for k, v in dev.model.state_dict().items()}
            with torch.no_grad():
                dev.model.weight.add_(1.0)  # later epochs train on
    assert stops == [False, False, False, True]
    assert (state.best, state.best_epoch, state.bad_epochs) == (pytest.approx(0.525), 2, 2)
    dev.keep_best(stage, state)
    assert all(torch.equal(best[k], v) for k, v in dev.model.state_dict().items())
    assert not (tmp_path / "best.safetensors").exists()
