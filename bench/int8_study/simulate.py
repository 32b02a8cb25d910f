"""Fake-quantised PyTorch runs of the `sst` model: which int8 scheme could hold the gate, before building it.

    flock /tmp/polyhead-cpu.lock .venv/bin/python bench/int8_study/simulate.py '{"a":"tensor","w":"channel"}' ...

Each argument is one scheme applied to every nn.Linear of the encoder (heads stay fp32):
  a: activations  none | tensor (uint8, one asymmetric scale per tensor: onnxruntime's dynamic recipe)
                  | token (uint8, one scale per token) | block32 (int8, one scale per 32 inputs)
  w: weights      none | channel (int8 per output channel) | block32 (int8 per 32 inputs: MatMulNBits)
  alpha: SmoothQuant, s_j = max|X_j|^alpha / max|W_j|^(1-alpha) from calibration sentences 4,000-4,500
  outl: keep this many input channels (largest calibration max) unquantised
  only / skip: regexes on Linear names to quantise only / leave out
Prints cosine to PyTorch (mean, min) and label agreement on the 2,000 held-out sentences. The simulation
tracks the real graphs: dynamic 92.4% (real 92.0%), blockwise 98.5% (real 98.2%).
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import common
import numpy as np
import torch
from torch import nn

from polyhead.export.onnx import labels_of


def q_sym(x: torch.Tensor, dim: int) -> torch.Tensor:
    s = x.abs().amax(dim=dim, keepdim=True).clamp_min(1e-8) / 127
    return (x / s).round().clamp(-127, 127) * s


def q_asym_tensor(x: torch.Tensor) -> torch.Tensor:  # onnxruntime DynamicQuantizeLinear: uint8, range holds 0
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s = (hi - lo) / 255 or 1.0
    zp = round(-lo / s)
    return ((x / s).round() + zp).clamp(0, 255).sub(zp) * s


def q_asym_token(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.amin(-1, keepdim=True).clamp_max(0), x.amax(-1, keepdim=True).clamp_min(0)
    s = ((hi - lo) / 255).clamp_min(1e-8)
    zp = (-lo / s).round()
    return ((x / s).round() + zp).clamp(0, 255).sub(zp) * s


def q_block(x: torch.Tensor, b: int = 32) -> torch.Tensor:
    shape = x.shape
    return q_sym(x.reshape(*shape[:-1], shape[-1] // b, b), -1).reshape(shape)


ACTIVATIONS = {"none": lambda t: t, "tensor": q_asym_tensor, "token": q_asym_token, "block32": q_block}


class FakeQuant(nn.Module):
    def __init__(self, lin: nn.Linear, a: str, w: str, s: torch.Tensor | None, outl: torch.Tensor | None) -> None:
        super().__init__()
        self.lin, self.a, self.s, self.outl = lin, a, s, outl
        weight = lin.weight.data * (s if s is not None else 1)
        self.weight = {"none": weight, "channel": q_sym(weight, 1), "block32": q_block(weight)}[w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.s is not None:
            x = x / self.s
        if self.outl is not None:
            keep = x[..., self.outl].clone()
            x = x.clone()
            x[..., self.outl] = 0
            x = ACTIVATIONS[self.a](x)
            x[..., self.outl] = keep
        else:
            x = ACTIVATIONS[self.a](x)
        return nn.functional.linear(x, self.weight, self.lin.bias)


def linears(model: Any) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.encoder.transformer.named_modules() if isinstance(m, nn.Linear)]


def calibration_max(model: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    """max |x_j| per input channel of every encoder Linear."""
    mx: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def record(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            cur = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0)
            mx[name] = torch.maximum(mx[name], cur) if name in mx else cur

        return record

    hooks = [m.register_forward_hook(hook(n)) for n, m in linears(model)]
    model.encode(texts)
    for h in hooks:
        h.remove()
    return mx


def run(spec: dict[str, Any], model: Any, held: list[str], ref: np.ndarray, mx: dict[str, torch.Tensor]) -> dict:
    replaced = []
    for name, lin in linears(model):
        if spec.get("skip") and re.search(spec["skip"], name):
            continue
        if spec.get("only") and not re.search(spec["only"], name):
            continue
        s = None
        if spec.get("alpha") is not None:
            wmax = lin.weight.data.abs().amax(0).clamp_min(1e-5)
            s = (mx[name].clamp_min(1e-5) ** spec["alpha"] / wmax ** (1 - spec["alpha"])).clamp_min(1e-5)
        outl = mx[name].topk(spec["outl"]).indices if spec.get("outl") else None
        parent_name, leaf = name.rsplit(".", 1)
        parent = model.encoder.transformer.get_submodule(parent_name)
        replaced.append((parent, leaf, lin))
        setattr(parent, leaf, FakeQuant(lin, spec["a"], spec["w"], s, outl))
    try:
        emb = np.asarray(model.encode(held))
        labels = labels_of(model.predict(held), model.tasks)
    finally:
        for parent, leaf, lin in replaced:
            setattr(parent, leaf, lin)
    cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    agree = float(np.mean([x == y for x, y in zip(labels, common.ref_labels(), strict=True)]))
    return {"cos_mean": round(float(cos.mean()), 6), "cos_min": round(float(cos.min()), 5), "agree": round(agree, 4)}


def main() -> None:
    torch.set_num_threads(2)
    model = common.load_torch()
    texts = common.texts_all()
    ref = np.load(common.EXP / "ref_emb.npy")
    mx = calibration_max(model, texts[common.CALIBRATION])
    for arg in sys.argv[1:]:
        start = time.time()
        result = run(json.loads(arg), model, texts[common.HELD_OUT], ref, mx)
        print(arg, result, f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
