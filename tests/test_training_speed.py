"""Issue 24's training-step optimisations leave results unchanged: fused AdamW gives the for-loop AdamW's
weights to float rounding, clipping skips only a multiply by exactly 1.0, and a pass's batches are built once
(the same batches as before), and keeping freed memory (``polyhead train``'s malloc setting) changes no
weight. Speed itself is measured by bench/train_speed.py, never asserted here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import tiny_config
from polyhead.config import Config
from polyhead.data.collate import epoch_batches
from polyhead.training import loop
from polyhead.training import plan as plan_module
from polyhead.training.loop import next_batch, train_stage
from polyhead.training.param_groups import build_adamw
from polyhead.training.step import clip_gradients
from polyhead.training.trainer import Trainer

Weights = dict[str, torch.Tensor]


def train_steps(tmp_path: Path, model_dir: Path, steps: int = 12) -> tuple[torch.optim.Optimizer, Weights, Weights]:
    """``steps`` optimizer steps of the tiny two-group config (dropout on, layer-wise rates: many groups);
    returns the optimizer and the weights before and after."""
    optimizer = {"lr": 2e-3, "head_lr": 3e-2, "layer_decay": 0.8}
    cfg = tiny_config(tmp_path, model_dir, epochs=1, steps_per_epoch=steps, optimizer=optimizer, log_with=[])
    trainer = Trainer(Config.model_validate(cfg), tmp_path / "run")
    trainer.setup()
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    run, state = trainer.start_stage(0)
    for _ in train_stage(run, state):
        pass
    return run.step.optimizer, before, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_fused_adamw_trains_to_the_same_weights(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> None:
    (tmp_path / "fused").mkdir()
    (tmp_path / "loop").mkdir()
    fused, initial, weights = train_steps(tmp_path / "fused", tiny_model_dir)
    assert fused.defaults["fused"] is True and len(fused.param_groups) > 4  # the CPU gets the fused kernel
    monkeypatch.setattr(plan_module, "build_adamw", lambda groups: torch.optim.AdamW(groups))  # torch's default
    plain, _, reference = train_steps(tmp_path / "loop", tiny_model_dir)
    assert not plain.defaults["fused"]
    moved = [k for k in weights if not torch.equal(weights[k], initial[k])]
    assert len(moved) > len(weights) // 2  # the runs trained
    for key in weights:
        torch.testing.assert_close(weights[key], reference[key], rtol=0, atol=2e-5, msg=key)


@pytest.mark.parametrize("scale", [1e-3, 1e3])  # gradient norm within the bound, and far above it
def test_clipping_equals_clip_grad_norm_to_the_bit(scale: float) -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(40, 7)) for _ in range(3)] + [torch.nn.Parameter(torch.randn(5))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, t in zip(params, twins, strict=True):
        p.grad = torch.randn_like(p) * scale
        t.grad = p.grad.clone()
    params[-1].grad = twins[-1].grad = None  # a parameter without a gradient (frozen in this step)
    versions = [p.grad._version for p in params[:-1]]  # type: ignore[union-attr]
    clip_gradients(params, 1.0)
    torch.nn.utils.clip_grad_norm_(twins, 1.0)
    for p, t in zip(params[:-1], twins[:-1], strict=True):
        assert torch.equal(p.grad, t.grad)  # type: ignore[arg-type]
    written = [p.grad._version != v for p, v in zip(params[:-1], versions, strict=True)]  # type: ignore[union-attr]
    assert written == [scale > 1] * 3  # the multiply runs only when it changes something
    clip_gradients([torch.nn.Parameter(torch.ones(2))], 1.0)  # no gradients at all: nothing to do


def test_a_pass_is_built_once_and_batches_are_unchanged(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> None:
    trainer = Trainer(Config.model_validate(tiny_config(tmp_path, tiny_model_dir)), tmp_path / "run")
    trainer.setup()
    run, state = trainer.start_stage(0)
    calls: list[tuple[str, int]] = []

    def counted(lengths: Any, batch_size: int, seed: int, epoch: int, key: str, bucket: bool) -> list[list[int]]:
        calls.append((key, epoch))
        return epoch_batches(lengths, batch_size, seed, epoch, key, bucket)

    monkeypatch.setattr(loop, "epoch_batches", counted)
    drawn = [next_batch(run, state) for _ in range(40)]
    assert len(calls) == len(set(calls))  # each (group, pass) built once, not once per step
    for gname in run.step.groups:
        lengths = run.step.groups[gname].lengths
        expected = [batch.indices for batch in drawn if batch.group == gname]
        passes = [
            epoch_batches(lengths, run.batch_size, run.seed, e, gname, run.bucket_by_length) for e in range(10)
        ]
        flat = [b for p in passes for b in p]
        assert expected == flat[: len(expected)], gname  # the pure function's batches, in order, across passes
    assert sorted(calls) == sorted({(b.group, b.data_epoch) for b in drawn})  # every pass drawn from, once
    assert max(e for _, e in calls) >= 2  # several passes per group


def test_adamw_is_fused_only_where_torch_has_the_kernel() -> None:
    cpu = build_adamw([{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.1}])
    assert cpu.defaults["fused"] is True
    meta = build_adamw([{"params": [torch.nn.Parameter(torch.zeros(3, device="meta"))], "lr": 0.1}])
    assert meta.defaults["fused"] is None  # torch picks its own implementation (fused=True would fail at step)


# Trains the tiny config in a fresh process (malloc settings are per process), after keep_freed_memory() when
# argv[3] is "keep"; prints whether it was applied and a digest of the final weights.
TRAIN_DIGEST = """
import hashlib, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from helpers import tiny_config
from polyhead.config import Config
from polyhead.runtime import cpu_supports_bf16, keep_freed_memory
from polyhead.training.loop import train_stage
from polyhead.training.trainer import Trainer

applied = keep_freed_memory() if sys.argv[3] == "keep" else None
tmp = Path(sys.argv[2])
precision = "bf16" if cpu_supports_bf16() else "fp32"
cfg = tiny_config(tmp, Path(sys.argv[1]), epochs=1, steps_per_epoch=6, log_with=[], precision=precision)
trainer = Trainer(Config.model_validate(cfg), tmp / "run")
trainer.setup()
run, state = trainer.start_stage(0)
for _ in train_stage(run, state):
    pass
digest = hashlib.sha256()
for name, value in sorted(trainer.model.state_dict().items()):
    digest.update(name.encode() + value.detach().float().numpy().tobytes())
print(json.dumps({"applied": applied, "precision": precision, "weights": digest.hexdigest()}))
"""


def test_keeping_freed_memory_trains_to_the_same_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``polyhead train``'s malloc setting (runtime.keep_freed_memory) changes where tensors live, not what
    they hold: bf16 (where the CPU has it) training gives the same weights to the bit with and without it."""
    import json
    import platform
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent
    results = []
    for mode in ("keep", "default"):
        (tmp_path / mode).mkdir()
        args = [sys.executable, "-c", TRAIN_DIGEST, str(tiny_model_dir), str(tmp_path / mode), mode, str(tests)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    keep, default = results
    assert keep["applied"] is (platform.libc_ver()[0] == "glibc")  # elsewhere a no-op that says so
    assert keep["weights"] == default["weights"]
