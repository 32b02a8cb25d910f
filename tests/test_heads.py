"""Task-type registry, TaskSpec validation and output shapes of every head type on the tiny encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polyhead.errors import PolyheadError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.heads import build_head
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.tasks import TaskType, get_task_type, task_type_names

BUILT_IN = ("classification", "multilabel", "regression", "similarity", "token_classification")

SPECS = {
    "topic": TaskSpec("classification", ["sports", "politics", "tech"]),
    "tags": TaskSpec("multilabel", ["food", "service", "price", "ambience"]),
    "score": TaskSpec("regression"),
    "ner": TaskSpec("token_classification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    "sts": TaskSpec("similarity"),
}
TEXTS = ["Messi scored twice in Paris.", "The vote was close.", "New phones ship today with faster chips."]


def test_every_task_type_is_registered() -> None:
    assert set(BUILT_IN) <= set(task_type_names())
    for kind in BUILT_IN:
        assert isinstance(get_task_type(kind), TaskType) and get_task_type(kind).name == kind
        spec = SPECS[next(n for n, s in SPECS.items() if s.type == kind)]
        assert isinstance(build_head(spec, 32, 32), nn.Module)
    assert {s.type for s in SPECS.values()} == set(BUILT_IN)


def test_output_shapes_on_the_tiny_encoder(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, SPECS)
    features = tiny_encoder.tokenize(TEXTS)
    batch, seq_len = features["input_ids"].shape
    out = model(features)
    assert set(out) == set(SPECS)
    assert out["topic"].shape == (batch, 3)
    assert out["tags"].shape == (batch, 4)
    assert out["score"].shape == (batch,)
    assert out["ner"].shape == (batch, seq_len, 5)
    assert out["sts"].shape == (batch, tiny_encoder.dim)


def test_only_requested_heads_run(tiny_encoder: SentenceEncoder) -> None:
    model = MultiTaskModel(tiny_encoder, SPECS)
    out = model(tiny_encoder.tokenize(TEXTS), tasks=["score", "ner"])
    assert set(out) == {"score", "ner"}


def test_heads_on_a_projected_embedding(tiny_model_dir) -> None:
    """Sentence heads read the projected (dim) vector, token heads the hidden-size token vectors."""
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, projection_dim=12)
    model = MultiTaskModel(encoder, SPECS)
    assert model.heads["topic"].net[-1].in_features == 12
    assert model.heads["ner"].net[-1].in_features == 32
    out = model(encoder.tokenize(TEXTS))
    assert out["topic"].shape == (3, 3) and out["sts"].shape == (3, 12)


def test_mlp_head_layers() -> None:
    spec = TaskSpec("classification", ["a", "b"], hidden=[16, 8], activation="tanh", dropout=0.2)
    head = build_head(spec, 32, 32)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 16), (16, 8), (8, 2)]
    assert any(isinstance(m, nn.Tanh) for m in head.modules())
    x = {"sentence_embedding": torch.randn(5, 32)}
    assert head(x).shape == (5, 2)


def test_linear_head_by_default() -> None:
    head = build_head(TaskSpec("regression"), 32, 32)
    assert [m.out_features for m in head.modules() if isinstance(m, nn.Linear)] == [1]


def test_similarity_head_has_no_parameters() -> None:
    head = build_head(TaskSpec("similarity", loss="cosine"), 32, 32)
    assert sum(p.numel() for p in head.parameters()) == 0
    emb = torch.randn(2, 32)
    assert torch.equal(head({"sentence_embedding": emb}), emb)


def test_taskspec_round_trips_through_a_dict() -> None:
    for spec in SPECS.values():
        assert TaskSpec.from_dict(spec.to_dict()) == spec
    assert SPECS["ner"].level == "token" and SPECS["topic"].level == "sentence"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (TaskSpec("classification", ["only"]), "at least 2 labels"),
        (TaskSpec("multilabel", []), "at least 1 labels"),
        (TaskSpec("token_classification", ["O", "PER"]), "BIO tag"),
        (TaskSpec("token_classification", ["O", "I-PER"]), "no matching B- tag"),
        (TaskSpec("classification", ["a", "b"], activation="swish"), "unknown activation 'swish'"),
        (TaskSpec("similarity", loss="triplet"), "unknown similarity loss"),
    ],
)
def test_invalid_specs_give_one_line_errors(spec: TaskSpec, match: str) -> None:
    with pytest.raises(PolyheadError, match=match) as info:
        build_head(spec, 32, 32)
    assert "\n" not in str(info.value)


def test_unknown_head_type() -> None:
    with pytest.raises(PolyheadError) as info:
        build_head(TaskSpec("ranking", ["a", "b"]), 32, 32)
    assert "ranking" in str(info.value) and "classification" in str(info.value)


def test_sentence_heads_read_the_vector_before_normalisation(tiny_encoder: SentenceEncoder) -> None:
    features = tiny_encoder(tiny_encoder.tokenize(TEXTS))
    pooled, embedding = features["pooled_embedding"], features["sentence_embedding"]
    assert torch.allclose(embedding, torch.nn.functional.normalize(pooled, dim=-1), atol=1e-6)
    head = build_head(TaskSpec("classification", ["a", "b"], dropout=0.0), 32, 32).eval()
    assert torch.equal(head(features), head.net(pooled))
    # features without pooled_embedding (e.g. from another producer) fall back to sentence_embedding
    assert torch.equal(head({"sentence_embedding": embedding}), head.net(embedding))
    assert torch.equal(build_head(TaskSpec("similarity"), 32, 32)(features), embedding)
