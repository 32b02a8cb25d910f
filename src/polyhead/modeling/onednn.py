"""Linear layers through oneDNN on CPUs: inference with prepacked weights, training with oneDNN GEMMs.

torch's CPU wheels run fp32 ``nn.Linear`` (forward and backward) through MKL's sgemm, which on AMD CPUs
takes a generic path: measured here (AMD EPYC, 2 threads, AVX512) at ~200 GFLOP/s, against ~470 for
oneDNN's matmul on the same shapes, and 86% of encoding time is in these GEMMs (``bench/encode_speed.py
--profile``). ``OneDNNLinear`` keeps the ``nn.Linear`` parameters, hooks and state-dict keys and changes
only which kernel multiplies, on a CPU with a float32 weight:

- inference (no autograd): a copy of the weight reordered once into oneDNN's blocked layout, fp32, or bf16
  under bf16 autocast (the numbers autocast gives, without casting the weight again on every call). The
  copy is rebuilt when a parameter changes (optimizer step, ``load_state_dict``, ``.to()``, a write through
  ``.data``: see ``parameter_key``), so it doesn't serve stale weights;
- training: an autograd function whose forward and both backward GEMMs (input and weight gradients) run
  on oneDNN with the weight as it is (it changes every step).

fp32 results equal the ordinary path to float rounding (~1e-6 relative). Autocast training, other dtypes,
devices, tracing, ``torch.compile`` and ONNX export take the ordinary path.

Choosing the kernel changes the model object (:func:`use_onednn_linears`, called when a ``SentenceEncoder``
is built), never the process. oneDNN's kernel caches grow with every new input shape; capping them is a
process-wide setting, so it is :func:`polyhead.runtime.configure_cpu_runtime`, which the CLI calls at
start-up and a program embedding polyhead may call itself (importing this module sets nothing).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

# Row-count hint for oneDNN's weight layout; any value from 32 up measured the same for 25-2,000 rows.
PACK_ROWS_HINT = 1024


Key = tuple[int, int, bytes] | None
Packed = tuple[tuple[Key, Key], torch.Tensor, torch.Tensor | None]
# Entries of a weight read on every packed call to notice writes that bypass torch's version counter.
PROBES = 64


@functools.cache
def onednn_available() -> bool:
    """True when this torch build has oneDNN and its linear operators, and ``POLYHEAD_ONEDNN`` isn't 0."""
    ops = getattr(torch.ops, "mkldnn", None)
    return bool(
        os.environ.get("POLYHEAD_ONEDNN", "1") != "0"
        and torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def onednn_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # noqa: A002
    """``input @ weight.T + bias`` on oneDNN; ``weight`` is dense (any strides) or prepacked."""
    return torch.ops.mkldnn._linear_pointwise(input, weight, bias, "none", [], "")


def parameter_key(tensor: torch.Tensor | None) -> Key:
    """What identifies a parameter's current values: storage, version counter and ``PROBES`` sampled entries.

    The version counter sees every in-place write made through the parameter (optimizer steps,
    ``load_state_dict``, ``copy_`` under ``no_grad``) but not writes through ``param.data``, which has a
    counter of its own; the sampled entries catch those (any update that changes the sampled values).
    """
    if tensor is None:
        return None
    flat = tensor.detach().reshape(-1)
    probes = flat[:: max(1, flat.numel() // PROBES)].numpy().tobytes()  # ~64 floats: microseconds
    return tensor.data_ptr(), tensor._version, probes


class OneDNNLinearFunction(torch.autograd.Function):
    """fp32 linear whose forward and backward GEMMs all run on oneDNN."""

    @staticmethod
    def forward(ctx: FunctionCtx, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # noqa: A002
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return onednn_linear(input, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, weight = ctx.saved_tensors
        grad_rows = grad_output.reshape(-1, grad_output.shape[-1])  # (rows, out)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = onednn_linear(grad_output, weight.t(), None)  # grad @ W: (..., in)
        if ctx.needs_input_grad[1]:
            rows = input.reshape(-1, input.shape[-1])  # (rows, in)
            grad_weight = onednn_linear(grad_rows.t(), rows.t(), None)  # grad.T @ x: (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_input, grad_weight, grad_bias


class OneDNNLinear(nn.Linear):
    """An ``nn.Linear`` that multiplies through oneDNN on CPUs (see the module docstring)."""

    _packed: dict[torch.dtype, Packed] | None = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Linear's argument name
        if not self.onednn_applies(input):
            return super().forward(input)
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (input, self.weight, self.bias)
        )
        if torch.is_autocast_enabled("cpu"):
            if needs_grad or torch.get_autocast_dtype("cpu") != torch.bfloat16:
                return super().forward(input)  # autocast's own kernels (bf16 already runs on oneDNN)
            weight, bias = self.packed(torch.bfloat16)
            return onednn_linear(input.to(torch.bfloat16), weight, bias)
        if input.dtype != torch.float32:
            return super().forward(input)
        if needs_grad:
            return OneDNNLinearFunction.apply(input, self.weight, self.bias)  # type: ignore[no-any-return]
        weight, bias = self.packed(torch.float32)
        return onednn_linear(input, weight, bias)

    def onednn_applies(self, input: torch.Tensor) -> bool:  # noqa: A002
        """False where the ordinary path must run: other devices or dtypes, tracing, compiling, export,
        and empty inputs (oneDNN refuses zero rows: an empty shard in multi-process training)."""
        return not (
            input.numel() == 0
            or self.weight.numel() == 0
            or input.device.type != "cpu"
            or self.weight.device.type != "cpu"
            or self.weight.dtype != torch.float32
            or input.dtype not in (torch.float32, torch.bfloat16)
            or torch.jit.is_tracing()
            or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling()
        )

    def packed(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight in oneDNN's layout and bias, in ``dtype``; rebuilt when either parameter changed."""
        key = (parameter_key(self.weight), parameter_key(self.bias))
        cache = self._packed if self._packed is not None else {}
        if dtype not in cache or cache[dtype][0] != key:
            with torch.no_grad():
                weight = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach().to(dtype), PACK_ROWS_HINT)
                bias = None if self.bias is None else self.bias.detach().to(dtype)
            cache[dtype] = (key, weight, bias)
            self._packed = cache
        return cache[dtype][1], cache[dtype][2]

    def __getstate__(self) -> dict[str, Any]:
        # The packed copies are oneDNN tensors: rebuilt on use, never copied or pickled.
        state = self.__dict__.copy()
        state.pop("_packed", None)
        return state


def use_onednn_linears(module: nn.Module) -> nn.Module:
    """Switch every plain ``nn.Linear`` in ``module`` to ``OneDNNLinear`` in place; returns ``module``.

    A no-op when this torch build lacks oneDNN. Parameters, hooks and state-dict keys are untouched.
    """
    if not onednn_available():
        return module
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = OneDNNLinear
    return module


def use_plain_linears(module: nn.Module) -> nn.Module:
    """The inverse of :func:`use_onednn_linears`: every ``OneDNNLinear`` back to ``nn.Linear``, in place."""
    for sub in module.modules():
        if type(sub) is OneDNNLinear:
            sub.__dict__.pop("_packed", None)
            sub.__class__ = nn.Linear  # type: ignore[assignment]
    return module


# ------------------------------------------------------------------------------------------ choosing by measuring
PROBE_ROWS = 800  # 32 sentences x 25 tokens: the rows of one encoding batch
PROBE_REPEATS = 8


def linear_shapes(module: nn.Module, most: int = 3) -> list[tuple[int, int]]:
    """The most frequent (in, out) shapes of ``module``'s linear layers (MiniLM: 384x384, 384x1536, 1536x384)."""
    counts: dict[tuple[int, int], int] = {}
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            shape = (sub.in_features, sub.out_features)
            counts[shape] = counts.get(shape, 0) + 1
    return sorted(sorted(counts, key=lambda s: -counts[s])[:most])


def linear_probes(shapes: list[tuple[int, int]]) -> dict[str, Any]:
    """name -> a function timing ``PROBE_REPEATS`` fp32 products of every shape on that kernel (seconds)."""
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(PROBE_ROWS, k, generator=gen), torch.randn(n, k, generator=gen) / k**0.5,
              torch.zeros(n)) for k, n in shapes]
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS_HINT) for _, w, _ in cases] if cases else []

    def timer(run: Any) -> Any:
        def probe() -> float:
            with torch.inference_mode():
                run()  # warm-up: first-call kernel creation is not what we compare
                start = time.perf_counter()
                for _ in range(PROBE_REPEATS):
                    run()
                return time.perf_counter() - start

        return probe

    def mkl() -> None:
        for x, w, b in cases:
            torch.nn.functional.linear(x, w, b)

    def onednn() -> None:
        for (x, _, b), w in zip(cases, packed, strict=True):
            onednn_linear(x, w, b)

    return {"mkl": timer(mkl), "onednn": timer(onednn)}


def choose_linears(module: nn.Module, explicit: str | None = None) -> str:
    """Switch ``module``'s linears to the faster kernel on this CPU (``onednn`` or ``mkl``: torch's own); returns
    which. Chosen by :func:`polyhead.cpupath.choose` (a GEMM probe of the module's shapes, well under a second,
    cached per CPU and torch version; ``explicit`` or ``POLYHEAD_LINEARS`` override it)."""
    from polyhead import cpupath

    if not onednn_available():
        return "mkl"
    shapes = linear_shapes(module)
    subject = f"fp32 GEMM, {PROBE_ROWS} rows, (in, out) {shapes}, {torch.get_num_threads()} threads"
    choice = cpupath.choose("linears", subject, linear_probes(shapes), ["torch"], explicit)
    if choice == "onednn":
        use_onednn_linears(module)
    return choice
