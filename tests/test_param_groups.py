"""AdamW parameter groups: hand-computed layer-wise learning rates, no-decay rules, exact partition, table."""

from __future__ import annotations

import pytest
import torch

from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.freezing import apply_freezing, frozen_parameter_names
from polyhead.training.param_groups import build_param_groups, describe_groups, format_group_table


@pytest.fixture
def model(tiny_encoder: SentenceEncoder) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(
        tiny_encoder,
        {
            "topic": TaskSpec(type="classification", labels=["a", "b", "c"]),
            "slots": TaskSpec(type="token_classification", labels=["O", "B-x", "I-x"]),
        },
    )


def by_part(groups: list[dict]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for g in groups:
        part = g["name"].split("/")[0]
        assert rates.setdefault(part, g["lr"]) == g["lr"]
    return rates


def test_llrd_hand_computed(model: MultiTaskModel) -> None:
    groups = build_param_groups(model, lr=1e-4, head_lr=1e-3, layer_decay=0.5)
    rates = by_part(groups)
    assert rates["embeddings"] == pytest.approx(2.5e-5)
    assert rates["layer 1"] == pytest.approx(5e-5)
    assert rates["layer 2"] == pytest.approx(1e-4)
    assert rates["heads.topic"] == rates["heads.slots"] == pytest.approx(1e-3)
    assert set(rates) == {"embeddings", "layer 1", "layer 2", "heads.topic", "heads.slots"}
    assert build_param_groups(model, lr=1e-4)[0]["lr"] == pytest.approx(1e-4)  # no decay: all lr
    assert set(by_part(build_param_groups(model, lr=1e-4)).values()) == {1e-4}


def test_no_decay_rules_and_partition(model: MultiTaskModel) -> None:
    groups = build_param_groups(model, lr=1e-4, layer_decay=0.8, weight_decay=0.05)
    for g in groups:
        for name, param in zip(g["param_names"], g["params"], strict=True):
            no_decay = param.ndim == 1 or "bias" in name or "LayerNorm" in name
            assert g["name"].endswith("/no_decay") == no_decay, name
            assert g["weight_decay"] == (0.0 if no_decay else 0.05)
            assert param is dict(model.named_parameters())[name]
    listed = [n for g in groups for n in g["param_names"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {n for n, _ in model.named_parameters()}
    torch.optim.AdamW(groups)  # torch accepts the groups (extra keys are kept)


def test_partition_follows_freezing_and_include(model: MultiTaskModel) -> None:
    apply_freezing(model, frozen_parameter_names(model, layers_below=1))
    groups = build_param_groups(model, lr=1e-4, layer_decay=0.5)
    listed = [n for g in groups for n in g["param_names"]]
    assert sorted(listed) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert {g["name"].split("/")[0] for g in groups} == {"layer 2", "heads.topic", "heads.slots"}
    only = {n for n, _ in model.named_parameters() if n.startswith("heads.topic.")}
    assert {n for g in build_param_groups(model, lr=1e-4, include=only) for n in g["param_names"]} == only


def test_projection_and_extra(tiny_model_dir) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, projection_dim=16)
    model = MultiTaskModel(encoder, {"topic": TaskSpec(type="classification", labels=["a", "b"])})
    weights = torch.nn.Parameter(torch.zeros(1))
    groups = build_param_groups(model, lr=1e-4, head_lr=1e-3, extra={"loss_weights": [weights]})
    rates = by_part(groups)
    assert rates["projection"] == pytest.approx(1e-3)  # defaults to head_lr
    assert by_part(build_param_groups(model, lr=1e-4, head_lr=1e-3, projection_lr=2e-4))["projection"] == 2e-4
    last = groups[-1]
    assert last["name"] == "loss_weights" and last["params"][0] is weights
    assert last["lr"] == pytest.approx(1e-3) and last["weight_decay"] == 0.0


def test_table_rows_include_frozen_and_sum(model: MultiTaskModel) -> None:
    apply_freezing(model, frozen_parameter_names(model, layers_below=1, heads=["slots"]))
    groups = build_param_groups(model, lr=1e-4, layer_decay=0.5)
    rows = describe_groups(model, groups)
    total = sum(p.numel() for p in model.parameters())
    assert sum(r["params"] for r in rows) == total
    frozen_rows = [r["group"] for r in rows if not r["trainable"]]
    assert frozen_rows == ["embeddings (frozen)", "layer 1 (frozen)", "heads.slots (frozen)"]
    assert all(r["lr"] is None for r in rows if not r["trainable"])
    assert sum(r["params"] for r in rows if r["trainable"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    order = [r["group"].split("/")[0].split(" (")[0] for r in rows]
    assert order.index("embeddings") < order.index("layer 1") < order.index("layer 2") < order.index("heads.slots")
    table = format_group_table(rows)
    assert table.row_count == len(rows) and f"{total:,}" in str(table.caption)
