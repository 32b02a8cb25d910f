"""Pooling, projection and normalisation with hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polyhead.errors import PolyheadError
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.pooling import POOLING_MODES, Dense, Pooling, normalize

# Two real tokens per row; row 0 has one padding token holding a huge value.
TOKENS = torch.tensor(
    [
        [[1.0, -2.0], [3.0, -4.0], [1e30, 1e30]],
        [[-5.0, 6.0], [7.0, -8.0], [-1.0, -1.0]],
    ]
)
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_mean_hand_computed() -> None:
    out = Pooling("mean")(TOKENS, MASK)
    assert torch.allclose(out[0], torch.tensor([2.0, -3.0]))
    assert torch.allclose(out[1], torch.tensor([1 / 3, -1.0]))


def test_mean_sqrt_len_hand_computed() -> None:
    out = Pooling("mean_sqrt_len")(TOKENS, MASK)
    assert torch.allclose(out[0], torch.tensor([4.0, -6.0]) / math.sqrt(2))
    assert torch.allclose(out[1], torch.tensor([1.0, -3.0]) / math.sqrt(3))


def test_max_hand_computed() -> None:
    out = Pooling("max")(TOKENS, MASK)
    assert torch.equal(out[0], torch.tensor([3.0, -2.0]))  # the 1e30 padding never wins
    assert torch.equal(out[1], torch.tensor([7.0, 6.0]))


def test_max_all_negative_ignores_zero_padding() -> None:
    tokens = torch.tensor([[[-3.0, -7.0], [-2.0, -9.0], [0.0, 0.0], [0.0, 0.0]]])
    out = Pooling("max")(tokens, torch.tensor([[1, 1, 0, 0]]))
    assert torch.equal(out[0], torch.tensor([-2.0, -7.0]))


def test_cls_is_position_zero() -> None:
    out = Pooling("cls")(TOKENS, MASK)
    assert torch.equal(out, TOKENS[:, 0])


@pytest.mark.parametrize("mode", ["mean", "max", "mean_sqrt_len", "cls"])
@pytest.mark.parametrize("pad_value", [1e30, -1e30, float("inf"), float("nan")])
def test_padding_never_changes_the_result(mode: str, pad_value: float) -> None:
    torch.manual_seed(0)
    real = torch.randn(1, 4, 8)
    padded = torch.cat([real, torch.full((1, 3, 8), pad_value)], dim=1)
    pool = Pooling(mode)
    expected = pool(real, torch.ones(1, 4, dtype=torch.long))
    got = pool(padded, torch.tensor([[1, 1, 1, 1, 0, 0, 0]]))
    assert torch.allclose(got, expected, atol=1e-6), (mode, pad_value)


def test_unknown_pooling_names_the_valid_modes() -> None:
    with pytest.raises(PolyheadError) as info:
        Pooling("avg")
    message = str(info.value)
    assert "'avg'" in message and all(m in message for m in POOLING_MODES) and "\n" not in message


def test_dense_changes_dim_and_normalize_gives_unit_norm() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    assert torch.allclose(normalize(x), torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    dense = Dense(2, 5)
    assert dense(x).shape == (2, 5)


# ----------------------------------------------------------------------- through the encoder
def test_projection_changes_the_dimension(tiny_model_dir) -> None:
    enc = SentenceEncoder.from_pretrained(tiny_model_dir, projection_dim=16)
    assert enc.dim == 16 and enc.hidden_size == 32
    vectors = enc.encode(["a short one", "and a second sentence"])
    assert vectors.shape == (2, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_normalize_flag(tiny_model_dir) -> None:
    texts = ["first sentence here", "second"]
    unit = SentenceEncoder.from_pretrained(tiny_model_dir, normalize=True).encode(texts)
    raw = SentenceEncoder.from_pretrained(tiny_model_dir, normalize=False).encode(texts)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    # normalize= on encode() overrides the encoder's setting
    enc = SentenceEncoder.from_pretrained(tiny_model_dir, normalize=False)
    assert np.allclose(enc.encode(texts, normalize=True), unit, atol=1e-6)


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_batch_padding_does_not_change_embeddings(tiny_model_dir, mode: str) -> None:
    """A short text embedded alone equals the same text padded in a batch with a long one."""
    enc = SentenceEncoder.from_pretrained(tiny_model_dir, pooling=mode)
    short = "tiny"
    long = "a much longer sentence that forces plenty of padding onto the short one in the batch"
    alone = enc.encode([short])[0]
    batched = enc.encode([short, long], batch_size=2, max_tokens=None)[0]
    assert np.allclose(alone, batched, atol=1e-5)
