"""A full disk while training (#22 item 9): one line saying what couldn't be written and what is intact; the
previous checkpoint (and any earlier model) stays whole, nothing half-written is left, and --resume finishes."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
from safetensors import SafetensorError

from helpers import tiny_config
from polyhead.config import Config
from polyhead.errors import PolyheadError
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.checkpoint import latest_checkpoint, load_checkpoint
from polyhead.training.trainer import Trainer

# What safetensors raises when the disk fills (seen on a 1 MiB tmpfs): not an OSError.
ENOSPC = "Error while serializing: I/O error: No space left on device (os error 28)"


def make(tmp_path: Path, model_dir: Path) -> Config:
    return Config.model_validate(tiny_config(tmp_path, model_dir))  # 2 epochs of 4 steps: checkpoints at 4, 8


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    return message


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = safetensors.torch.save_file

    def full_at_step_8(tensors: Any, filename: str, metadata: Any = None) -> None:
        if ".step-00000008.tmp" in str(filename):
            real_save(tensors, filename, metadata=metadata)  # the bytes are written, then the disk is full
            raise SafetensorError(ENOSPC)
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_at_step_8)
    cfg, run = make(tmp_path, tiny_model_dir), tmp_path / "run"
    with pytest.raises(PolyheadError) as info:
        Trainer(cfg, run).run()
    root = run / "checkpoints"
    assert one_line(info.value) == (
        f"couldn't write checkpoint step-00000008 in {root}: {ENOSPC}; the previous checkpoint step-00000004 is "
        "intact; free disk space, then run the same command with --resume"
    )
    assert json.loads((root / "latest.json").read_text())["checkpoint"] == "step-00000004"
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step-00000004"]  # no half-written .tmp
    assert not (run / "model").exists()
    previous = latest_checkpoint(run)
    assert previous is not None
    probe = Trainer(cfg, tmp_path / "probe")
    probe.setup()
    trainer_run, _ = probe.start_stage(0)
    state = load_checkpoint(previous, trainer_run.step.model, trainer_run.step.optimizer, {})
    assert state["global_step"] == 4  # the kept checkpoint loads whole
    monkeypatch.undo()  # space freed
    Trainer(cfg, run, resume=True).run()
    assert MultiTaskModel.from_pretrained(run / "model").tasks.keys() == {"topic", "sentiment", "entities"}


def test_disk_full_while_saving_the_final_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: SentenceEncoder, out: Path) -> None:
        (out / "config.json").write_text("{}")  # something written before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SentenceEncoder, "save", full)
    cfg, run = make(tmp_path, tiny_model_dir), tmp_path / "run"
    with pytest.raises(PolyheadError) as info:
        Trainer(cfg, run).run()
    assert one_line(info.value) == (
        f"couldn't write the final model to {run / 'model'}: No space left on device; the checkpoints are intact; "
        "free disk space, then run the same command with --resume"
    )
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".model") or p.name == "model") == []
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"] == "step-00000008"
    monkeypatch.undo()
    Trainer(cfg, run, resume=True).run()  # the run finished; --resume saves the model from the last checkpoint
    assert (run / "model" / "polyhead.json").is_file()
