"""Linear layers on oneDNN: same numbers as nn.Linear, packed weights never stale, same gradients."""

from __future__ import annotations

import copy
from unittest import mock

import pytest
import torch
from torch import nn

from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.onednn import (
    OneDNNLinear,
    OneDNNLinearFunction,
    onednn_available,
    use_onednn_linears,
    use_plain_linears,
)

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")

# "!": a one-character text (empty texts are refused, #22)
TEXTS = ["a short one", "The quick brown fox jumps over the lazy dog near the river bank.", "!", "hello world"]


def plain_copy(encoder: SentenceEncoder) -> SentenceEncoder:
    """A deep copy whose linears are ordinary nn.Linear again (the reference path)."""
    plain = use_plain_linears(copy.deepcopy(encoder))
    assert not any(type(m) is OneDNNLinear for m in plain.modules())
    return plain


def test_every_encoder_linear_is_packed_and_state_dict_keys_are_unchanged(tiny_encoder: SentenceEncoder) -> None:
    linears = [m for m in tiny_encoder.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is OneDNNLinear for m in linears)
    assert list(tiny_encoder.state_dict()) == list(plain_copy(tiny_encoder).state_dict())


def test_packed_inference_matches_plain_linear_and_uses_the_packed_weight(tiny_encoder: SentenceEncoder) -> None:
    reference = plain_copy(tiny_encoder).encode(TEXTS)
    with mock.patch.object(OneDNNLinear, "packed", autospec=True, side_effect=OneDNNLinear.packed) as spy:
        packed = tiny_encoder.encode(TEXTS)
    assert spy.call_count >= 2 * 6  # 2 layers x (Q, K, V, attention out, FFN in, FFN out), at least one batch
    assert abs(packed - reference).max() < 1e-5


def test_packed_weight_follows_in_place_weight_changes(tiny_encoder: SentenceEncoder) -> None:
    tiny_encoder.encode(TEXTS)  # builds the packed copies
    with torch.no_grad():
        for module in tiny_encoder.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(0.5).add_(0.01)  # what an optimizer step does: in place
    after = tiny_encoder.encode(TEXTS)
    assert abs(after - plain_copy(tiny_encoder).encode(TEXTS)).max() < 1e-5


def test_writes_through_dot_data_refresh_the_packed_weight(tiny_encoder: SentenceEncoder) -> None:
    tiny_encoder.encode(TEXTS)
    for module in tiny_encoder.modules():
        if isinstance(module, nn.Linear):
            version = module.weight._version
            module.weight.data.mul_(0.5)  # bypasses the version counter
            assert module.weight._version == version
    assert abs(tiny_encoder.encode(TEXTS) - plain_copy(tiny_encoder).encode(TEXTS)).max() < 1e-5


def test_load_state_dict_refreshes_the_packed_weight(tiny_model_dir) -> None:
    a = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    b = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.05)
    before = a.encode(TEXTS)
    a.load_state_dict(b.state_dict())
    assert abs(a.encode(TEXTS) - b.encode(TEXTS)).max() < 1e-5
    assert abs(a.encode(TEXTS) - before).max() > 1e-3


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_training_gradients_equal_nn_linear(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    plain = nn.Linear(8, 6, bias=bias)
    layer = use_onednn_linears(nn.Sequential(copy.deepcopy(plain))).get_submodule("0")
    assert type(layer) is OneDNNLinear
    x = torch.randn(*shape, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(*shape[:-1], 6)
    with mock.patch("polyhead.modeling.onednn.OneDNNLinearFunction.apply", autospec=True,
                    side_effect=OneDNNLinearFunction.apply) as spy:
        out = layer(x)
    spy.assert_called_once()
    (out * upstream).sum().backward()
    (plain(x_plain) * upstream).sum().backward()
    assert torch.allclose(out, plain(x_plain), atol=1e-6)
    assert torch.allclose(x.grad, x_plain.grad, atol=1e-6)
    assert torch.allclose(layer.weight.grad, plain.weight.grad, atol=1e-6)
    if bias:
        assert torch.allclose(layer.bias.grad, plain.bias.grad, atol=1e-6)


def test_frozen_weight_gets_no_gradient_but_the_input_does() -> None:
    layer = use_onednn_linears(nn.Sequential(nn.Linear(8, 4))).get_submodule("0")
    layer.requires_grad_(False)
    x = torch.randn(3, 8, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None
    assert torch.allclose(x.grad, layer.weight.sum(0).expand(3, 8))


def test_encoder_training_step_matches_plain_linears(tiny_encoder: SentenceEncoder) -> None:
    plain = plain_copy(tiny_encoder)
    grads = []
    for encoder in (tiny_encoder, plain):
        encoder.train()
        torch.manual_seed(1)  # same dropout masks
        features = encoder.tokenize(TEXTS)
        encoder(features)["sentence_embedding"].pow(3).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in encoder.parameters() if p.grad is not None]))
    assert grads[0].shape == grads[1].shape and grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_bf16_autocast_uses_a_bf16_packed_weight_with_autocasts_numbers(
    tiny_encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("polyhead.runtime.cpu_supports_bf16", lambda: True)  # slow but correct without AVX512-BF16
    reference = plain_copy(tiny_encoder).encode(TEXTS, precision="bf16")
    with mock.patch.object(OneDNNLinear, "packed", autospec=True, side_effect=OneDNNLinear.packed) as spy:
        packed = tiny_encoder.encode(TEXTS, precision="bf16")
    assert {call.args[1] for call in spy.call_args_list} == {torch.bfloat16}
    assert abs(packed - reference).max() < 2e-2  # both bf16; accumulation order may differ
    assert abs(packed - tiny_encoder.encode(TEXTS)).max() > 0  # really bf16, not the fp32 copy


def test_other_dtypes_and_fp16_autocast_take_the_ordinary_path() -> None:
    layer = use_onednn_linears(nn.Sequential(nn.Linear(8, 4))).get_submodule("0")
    x = torch.randn(3, 8)
    with mock.patch.object(OneDNNLinear, "packed", autospec=True) as spy, torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.float16):
            assert layer(x).dtype == torch.float16
        assert layer.double()(x.double()).dtype == torch.float64
    spy.assert_not_called()


def test_deepcopy_after_use_drops_the_packed_copy(tiny_encoder: SentenceEncoder) -> None:
    tiny_encoder.encode(TEXTS)
    clone = copy.deepcopy(tiny_encoder)
    layers = [m for m in clone.modules() if type(m) is OneDNNLinear]
    assert all(m._packed is None for m in layers)
    assert abs(clone.encode(TEXTS) - tiny_encoder.encode(TEXTS)).max() < 1e-6


def test_polyhead_onednn_0_keeps_plain_linears(monkeypatch: pytest.MonkeyPatch, tiny_model_dir) -> None:
    monkeypatch.setenv("POLYHEAD_ONEDNN", "0")
    onednn_available.cache_clear()
    try:
        encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=64)
        assert not any(type(m) is OneDNNLinear for m in encoder.modules())
    finally:
        monkeypatch.delenv("POLYHEAD_ONEDNN")
        onednn_available.cache_clear()
    assert onednn_available()


@pytest.mark.parametrize("shape", [(0, 8), (0, 5, 8), (2, 0, 8)])
def test_empty_inputs_work_in_inference_and_training(shape: tuple[int, ...]) -> None:
    layer = use_onednn_linears(nn.Sequential(nn.Linear(8, 4))).get_submodule("0")
    x = torch.randn(*shape)
    with torch.inference_mode():
        assert layer(x).shape == (*shape[:-1], 4)
    out = layer(x.requires_grad_(True))
    out.sum().backward()
    assert out.shape == (*shape[:-1], 4) and float(layer.weight.grad.abs().sum()) == 0.0


# The kernel-cache caps (LRU_CACHE_CAPACITY, ONEDNN_PRIMITIVE_CACHE_CAPACITY) are a process setting made by the
# CLI or polyhead.runtime.configure_cpu_runtime(), never on import: tests/test_runtime.py.
