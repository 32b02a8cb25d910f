"""Crash safety: SIGKILL at random moments (and in the middle of a checkpoint write), then --resume, ends
with the same weights as an uninterrupted run; no checkpoint that is pointed to is ever half-written;
Ctrl-C saves a checkpoint and says how to resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import interruptible, tiny_config, write_config

pytestmark = pytest.mark.slow


def train_cmd(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "polyhead", "train", str(config), "--output", str(out), "--quiet", *extra]


def weights(run: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(run / "model" / "model.safetensors"))
    state.update({f"heads.{k}": v for k, v in load_file(str(run / "model" / "heads.safetensors")).items()})
    return state


def assert_checkpoints_complete(run: Path) -> None:
    root = run / "checkpoints"
    if not root.exists():
        return
    for ckpt in root.glob("step-*"):
        for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
            assert (ckpt / name).is_file(), f"{ckpt} lacks {name}"
        load_file(str(ckpt / "model.safetensors"))
        json.loads((ckpt / "state.json").read_text())
    latest = root / "latest.json"
    if latest.exists():
        assert (root / json.loads(latest.read_text())["checkpoint"] / "state.json").is_file()


@pytest.fixture
def config(tmp_path: Path, tiny_model_dir: Path) -> Path:
    cfg = tiny_config(tmp_path, tiny_model_dir, epochs=2, steps_per_epoch=6, checkpoint_steps=1)
    return write_config(tmp_path, cfg)


def test_sigkill_anywhere_then_resume_equals_uninterrupted(tmp_path: Path, config: Path) -> None:
    reference = tmp_path / "reference"
    subprocess.run(train_cmd(config, reference), check=True, capture_output=True, timeout=600)

    run = tmp_path / "crashy"
    # 1. killed in the middle of writing the checkpoint of step 3
    env = {**os.environ, "POLYHEAD_FAULT": "checkpoint-write:3"}
    proc = subprocess.run(train_cmd(config, run), env=env, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert (run / "checkpoints" / ".step-00000003.tmp").exists(), "the fault hit a checkpoint write"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"] == "step-00000002"
    assert_checkpoints_complete(run)
    # 2. resumed and killed again at random moments (seeded)
    rng = random.Random(0)
    for _ in range(3):
        child = subprocess.Popen(
            train_cmd(config, run, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(2.0, 7.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert_checkpoints_complete(run)
        if (run / "model" / "polyhead.json").exists():
            break
    # 3. resumed to the end
    if not (run / "results.json").exists():
        subprocess.run(train_cmd(config, run, "--resume"), check=True, capture_output=True, timeout=600)
    a, b = weights(reference), weights(run)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_sigkill_while_deleting_an_old_checkpoint_leaves_every_checkpoint_whole(tmp_path: Path, config: Path) -> None:
    """A checkpoint is renamed to a hidden .trash name before it is deleted, so a kill half-way through the
    delete leaves no step-* directory without its files (a resume found step-00000008 without its weights)."""
    run = tmp_path / "run"
    env = {**os.environ, "POLYHEAD_FAULT": "checkpoint-discard:1"}  # step 1 is pruned once step 3 is saved
    proc = subprocess.run(train_cmd(config, run), env=env, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    checkpoints = run / "checkpoints"
    assert (checkpoints / ".step-00000001.trash").is_dir() and not (checkpoints / "step-00000001").exists()
    assert_checkpoints_complete(run)
    done = subprocess.run(train_cmd(config, run, "--resume"), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert not list(checkpoints.glob(".*.trash"))
    assert_checkpoints_complete(run)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_model_dir, epochs=1, steps_per_epoch=400)
    config = write_config(tmp_path, cfg)
    run = tmp_path / "run"
    child = subprocess.Popen(
        train_cmd(config, run, "--set", "training.seed=7"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    )
    deadline = time.time() + 120
    while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip()):
        assert time.time() < deadline and child.poll() is None, "training did not start"
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    # the whole command, overrides included: resuming without them would be refused (another config)
    assert f"Resume with: polyhead train {config} --set training.seed=7 --output {run} --resume" in err
    assert "Traceback" not in err
    assert (run / "checkpoints" / "latest.json").exists()
    assert_checkpoints_complete(run)
    state = json.loads(
        (
            run
            / "checkpoints"
            / json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
            / "state.json"
        ).read_text()
    )
    assert 0 < state["global_step"] < 400
