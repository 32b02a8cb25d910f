"""--resume before the first checkpoint removes only what the run can prove it wrote (#22 item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyhead.errors import PolyheadError
from polyhead.training.distributed import DistContext
from polyhead.training.rundir import RUN_MARKER, prepare_output, unfinished_run


def OneProcess() -> DistContext:  # noqa: N802 - one process, no Accelerate
    return DistContext()


def test_a_new_run_writes_its_marker(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert prepare_output(out, resume=False, dist=OneProcess()) is False
    marker = json.loads((out / RUN_MARKER).read_text())
    assert len(marker["run_id"]) == 32 and marker["directory"] == str(out.resolve())


def test_an_unfinished_run_restarts_removing_only_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prepare_output(out, resume=False, dist=OneProcess())
    marker = (out / RUN_MARKER).read_text()
    (out / "config.yaml").write_text("name: x\n")
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "tensorboard" / "run").mkdir(parents=True)
    (out / "tensorboard" / "run" / "events.out.tfevents.1.host").write_bytes(b"e")
    (out / "checkpoints" / ".step-00000003.tmp").mkdir(parents=True)
    (out / "checkpoints" / ".step-00000003.tmp" / "model.safetensors").write_bytes(b"half")
    assert prepare_output(out, resume=True, dist=OneProcess()) is False
    assert sorted(p.name for p in out.iterdir()) == [RUN_MARKER]
    assert (out / RUN_MARKER).read_text() == marker  # the same run, restarted


@pytest.mark.parametrize(
    "extra",
    ["notes.txt", "tensorboard/note.txt", "checkpoints/epoch-3/weights.safetensors",
     "checkpoints/.step-00000003.tmp/mine.txt"],
)
def test_anything_else_is_a_refusal_and_nothing_is_removed(tmp_path: Path, extra: str) -> None:
    out = tmp_path / "run"
    prepare_output(out, resume=False, dist=OneProcess())
    (out / "config.yaml").write_text("name: x\n")
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_text("mine")
    before = sorted(str(p) for p in out.rglob("*"))
    with pytest.raises(PolyheadError, match="holds files a polyhead run does not write"):
        prepare_output(out, resume=True, dist=OneProcess())
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_a_symlinked_run_file_is_not_followed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prepare_output(out, resume=False, dist=OneProcess())
    (tmp_path / "precious.yaml").write_text("mine")
    (out / "config.yaml").symlink_to(tmp_path / "precious.yaml")
    with pytest.raises(PolyheadError, match="does not write"):
        unfinished_run(out)
    assert (tmp_path / "precious.yaml").read_text() == "mine"
