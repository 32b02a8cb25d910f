"""Freezing policies: exact requires_grad sets, frozen values unchanged after an AdamW step, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polyhead.errors import ConfigError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.freezing import (
    GradualUnfreezer,
    apply_freezing,
    check_trainable,
    frozen_parameter_names,
    layer_index,
    num_encoder_layers,
)

TASKS = {
    "topic": TaskSpec(type="classification", labels=["a", "b", "c"]),
    "slots": TaskSpec(type="token_classification", labels=["O", "B-x", "I-x"]),
}
T = "encoder.transformer."


def make_model(encoder: SentenceEncoder) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(encoder, dict(TASKS))


@pytest.fixture
def model(tiny_encoder: SentenceEncoder) -> MultiTaskModel:
    return make_model(tiny_encoder)


@pytest.fixture
def six_layer_model(tmp_path: Path) -> MultiTaskModel:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from polyhead.modeling.encoder import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("default")))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=6, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(tmp_path), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp_path))
    return make_model(SentenceEncoder.from_pretrained(tmp_path, max_length=64))


def names(model: MultiTaskModel) -> set[str]:
    return {n for n, _ in model.named_parameters()}


def trainable(model: MultiTaskModel) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def in_layers(model: MultiTaskModel, layers: set[int]) -> set[str]:
    total = num_encoder_layers(model)
    return {n for n in names(model) if layer_index(n, total) in layers}


def train_step(model: MultiTaskModel) -> dict[str, torch.Tensor]:
    """One AdamW step on a real loss over both heads; returns the parameters before the step."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    features = model.encoder.tokenize(["the fish was superb", "rude waiter here today"])
    outputs = model(features)
    loss = torch.nn.functional.cross_entropy(outputs["topic"], torch.tensor([0, 2]))
    slot_logits = outputs["slots"]
    loss = loss + torch.nn.functional.cross_entropy(
        slot_logits.reshape(-1, slot_logits.shape[-1]), torch.ones(slot_logits.shape[:2], dtype=torch.long).reshape(-1)
    )
    loss.backward()
    optimizer.step()
    return before


def assert_step_respects(model: MultiTaskModel, frozen: set[str]) -> None:
    before = train_step(model)
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param.detach(), before[name]), f"frozen {name} changed"
            assert param.grad is None, name
    # every trainable weight matrix moves (biases/norms too, but position rows unused by short inputs may not)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved, "nothing trained"
    assert moved <= names(model) - frozen
    for name in names(model) - frozen:
        if name.startswith("heads.") or ".layer." in name:
            assert name in moved, f"trainable {name} did not change"


def test_layer_index_bert_and_distilbert() -> None:
    assert layer_index(T + "embeddings.word_embeddings.weight", 6) == 0
    assert layer_index(T + "encoder.layer.0.attention.self.query.weight", 6) == 1
    assert layer_index(T + "encoder.layer.5.output.dense.bias", 6) == 6
    assert layer_index(T + "transformer.layer.3.attention.q_lin.weight", 6) == 4  # DistilBERT
    assert layer_index(T + "encoder.layers.2.mlp.fc1.weight", 6) == 3
    assert layer_index(T + "final_layer_norm.weight", 6) == 6
    assert layer_index("encoder.dense.linear.weight", 6) is None
    assert layer_index("heads.topic.linear.weight", 6) is None


@pytest.mark.parametrize("mode", ["none", "all", "encoder", "embeddings"])
def test_modes_exact_sets_and_step(model: MultiTaskModel, mode: str) -> None:
    everything = names(model)
    expected_frozen = {
        "none": set(),
        "all": everything,
        "encoder": {n for n in everything if n.startswith("encoder.")},
        "embeddings": {n for n in everything if n.startswith(T + "embeddings.")},
    }[mode]
    frozen = frozen_parameter_names(model, mode)
    assert frozen == expected_frozen
    apply_freezing(model, frozen)
    assert trainable(model) == everything - expected_frozen
    if mode == "all":
        with pytest.raises(ConfigError, match="stage 1: freezing leaves nothing to train"):
            check_trainable(model, "stage 1")
    else:
        check_trainable(model, "stage 1")
        assert_step_respects(model, frozen)


def test_freeze_heads(model: MultiTaskModel) -> None:
    frozen = frozen_parameter_names(model, heads=["topic"])
    assert frozen == {n for n in names(model) if n.startswith("heads.topic.")} and frozen
    apply_freezing(model, frozen)
    assert_step_respects(model, frozen)


@pytest.mark.parametrize("below", [2, 4])
def test_layers_below_six_layers(six_layer_model: MultiTaskModel, below: int) -> None:
    model = six_layer_model
    assert num_encoder_layers(model) == 6
    frozen = frozen_parameter_names(model, layers_below=below)
    assert frozen == in_layers(model, set(range(below + 1)))
    assert max(int(n.split(".layer.")[1].split(".")[0]) for n in frozen if ".layer." in n) == below - 1
    apply_freezing(model, frozen)
    assert trainable(model) == names(model) - frozen
    assert_step_respects(model, frozen)


def test_layers_below_two_of_two(model: MultiTaskModel) -> None:
    frozen = frozen_parameter_names(model, layers_below=2)
    assert frozen == in_layers(model, {0, 1, 2})


def test_errors(model: MultiTaskModel) -> None:
    with pytest.raises(ConfigError, match=r"training\.freeze\.layers_below.*0\.\.2"):
        frozen_parameter_names(model, layers_below=3)
    with pytest.raises(ConfigError, match="topic, slots"):
        frozen_parameter_names(model, heads=["topics"])
    with pytest.raises(ConfigError, match="training.freeze.mode"):
        frozen_parameter_names(model, "bottom")


def test_gradual_unfreezer_sequence_and_state(six_layer_model: MultiTaskModel) -> None:
    model = six_layer_model
    unfreezer = GradualUnfreezer(model, every=2)
    assert in_layers(model, set(range(7))).isdisjoint(trainable(model))
    assert trainable(model) == {n for n in names(model) if n.startswith("heads.")}
    seen = []
    for count in range(1, 16):
        seen.append((count, unfreezer.step(count)))
    assert [new for _, new in seen if new] == [
        ["layer 6"], ["layer 5"], ["layer 4"], ["layer 3"], ["layer 2"], ["layer 1"], ["embeddings"]
    ]
    # the top layer trains from the first step(0); one more layer every `every` completed units
    assert [count for count, new in seen if new] == [1, 2, 4, 6, 8, 10, 12]
    fresh = GradualUnfreezer(model, every=2)
    assert fresh.step(0) == ["layer 6"]
    assert fresh.step(3) == ["layer 5"]
    top = in_layers(model, {5, 6})
    assert trainable(model) - {n for n in names(model) if n.startswith("heads.")} == top
    state = fresh.state_dict()
    other = GradualUnfreezer(model, every=2)
    assert trainable(model) == {n for n in names(model) if n.startswith("heads.")}
    other.load_state_dict(state)
    assert trainable(model) - {n for n in names(model) if n.startswith("heads.")} == top


def test_gradual_unfreezer_always_frozen(model: MultiTaskModel) -> None:
    keep = {n for n in names(model) if n.startswith("heads.topic.")}
    unfreezer = GradualUnfreezer(model, every=1, always_frozen=keep)
    unfreezer.step(100)
    assert trainable(model) == names(model) - keep
