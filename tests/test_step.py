"""One optimizer step on the tiny model: it trains, its losses are finite per task, micro-batches average
to the whole batch, an empty shard trains nothing, cached features give the encoder's losses."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config
from polyhead.tasks import get_task_type
from polyhead.tokens import IGNORE_INDEX
from polyhead.training.cache import EmbeddingCache
from polyhead.training.step import Batch, TrainStep
from polyhead.training.trainer import Trainer

SENTENCES = "topic+sentiment"  # the group of the two tasks that read one TSV
ENTITIES = "entities"


@pytest.fixture
def trainer(tmp_path: Path, tiny_model_dir: Path) -> Trainer:
    """Data, model, weighting and tokenised groups of the tiny config: ``setup()`` without a run."""
    trainer = Trainer(Config.model_validate(tiny_config(tmp_path, tiny_model_dir)), tmp_path / "run")
    trainer.setup()
    return trainer


def make_step(trainer: Trainer, model: torch.nn.Module | None = None, sgd: bool = False) -> TrainStep:
    model = model or trainer.model
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1) if sgd else torch.optim.AdamW(params, lr=1e-2)
    return TrainStep(
        model=model,  # type: ignore[arg-type]
        specs=trainer.specs,
        weighting=trainer.weighting,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        tasks=list(trainer.specs),
        groups=trainer.groups,
        score_scale=trainer.score_scale,
    )


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_step_changes_weights_and_returns_finite_losses_per_task(trainer: Trainer) -> None:
    step = make_step(trainer)
    before = snapshot(trainer.model)
    losses = step([Batch(SENTENCES, list(range(8))), Batch(ENTITIES, list(range(8)))])
    assert set(losses) == {"topic", "sentiment", "entities"}
    for task, values in losses.items():
        assert len(values) == 1 and math.isfinite(values[0]) and values[0] > 0, task
    after = trainer.model.state_dict()
    for prefix in ("encoder.transformer.", "heads.topic.", "heads.sentiment.", "heads.entities."):
        changed = [k for k in after if k.startswith(prefix) and not torch.equal(before[k], after[k])]
        assert changed, f"nothing under {prefix} changed"
    assert all(p.grad is None for p in trainer.model.parameters())  # zeroed for the next step
    assert step.scheduler.last_epoch == 1


def test_micro_batches_average_to_the_whole_batch(trainer: Trainer) -> None:
    trainer.model.eval()  # no dropout: the two runs see the same function
    twin = copy.deepcopy(trainer.model)
    make_step(trainer, sgd=True)([Batch(SENTENCES, list(range(4))), Batch(SENTENCES, list(range(4, 8)))])
    make_step(trainer, twin, sgd=True)([Batch(SENTENCES, list(range(8)))])
    a, b = trainer.model.state_dict(), twin.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_an_empty_shard_trains_nothing(trainer: Trainer) -> None:
    before = snapshot(trainer.model)
    losses = make_step(trainer)([Batch(SENTENCES, [])])
    assert losses == {"topic": [0.0], "sentiment": [0.0]}
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_cached_features_give_the_encoders_losses(trainer: Trainer) -> None:
    trainer.model.eval()
    step = make_step(trainer)
    with torch.no_grad():
        plain = {g: step.forward_batch(g, list(range(6))) for g in (SENTENCES, ENTITIES)}
        step.cache = EmbeddingCache.build(trainer.model, trainer.groups, 16, "fp32")
        cached = {g: step.forward_batch(g, list(range(6))) for g in (SENTENCES, ENTITIES)}
    for g in plain:
        for task in plain[g]:
            torch.testing.assert_close(cached[g][task], plain[g][task], rtol=0, atol=1e-5, msg=task)


def test_loss_count_is_labelled_tokens_or_examples() -> None:
    tags = torch.tensor([[IGNORE_INDEX, 1, 0, IGNORE_INDEX], [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]])
    assert get_task_type("token_classification").loss_count(tags) == 3
    assert get_task_type("classification").loss_count(torch.tensor([0, 1, 1])) == 3


def test_a_non_finite_loss_stops_before_the_weights_change(trainer: Trainer) -> None:
    """#22 item 4: a NaN loss names the task, and the optimizer never writes it into the weights."""
    from polyhead.training.step import NonFiniteLoss

    step = make_step(trainer)
    head = trainer.model.heads["topic"]
    with torch.no_grad():
        head.net[-1].bias.fill_(float("nan"))  # type: ignore[index]
    before = snapshot(trainer.model)
    with pytest.raises(NonFiniteLoss, match="the loss of task 'topic' is nan") as info:
        step([Batch(SENTENCES, list(range(8)))])
    assert "at step 7" in str(info.value.at(7))
    after = snapshot(trainer.model)
    assert all(torch.allclose(before[k], after[k], rtol=0, atol=0, equal_nan=True) if before[k].is_floating_point()
               else torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in trainer.model.parameters())


def test_a_model_with_nan_weights_is_never_saved_as_the_final_model(trainer: Trainer) -> None:
    from polyhead.errors import PolyheadError

    with torch.no_grad():
        next(trainer.model.encoder.parameters()).fill_(float("nan"))
    with pytest.raises(PolyheadError, match="training diverged: 1 weight tensors hold NaN"):
        trainer.finish(0.0)
    assert not (trainer.out / "model").exists()
