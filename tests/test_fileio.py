"""polyhead.fileio: a file is replaced whole or not at all; failures leave the old content and no temp file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, safe_open

from polyhead import fileio
from polyhead.fileio import replacing, save_tensors_atomic, write_json_atomic, write_text_atomic


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_writes_and_replaces_leaving_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second, ünïcode\n")
    assert target.read_text(encoding="utf-8") == "second, ünïcode\n"
    write_json_atomic(tmp_path / "data.json", {"a": [1, 2]})
    assert (tmp_path / "data.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
    assert files(tmp_path) == ["data.json", "notes.txt"]


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Not tempfile's 0600: a model directory must stay readable by whoever serves it."""
    (tmp_path / "plain.txt").write_text("x")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def test_an_exception_while_writing_keeps_the_old_content_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "polyhead.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="serialiser broke"), replacing(target) as tmp:
        tmp.write_text("half of the new con")
        raise RuntimeError("serialiser broke")
    assert target.read_text() == "old"
    assert files(tmp_path) == ["polyhead.json"]


def test_a_value_json_cannot_hold_leaves_the_target_alone(tmp_path: Path) -> None:
    target = tmp_path / "onnx.json"
    write_json_atomic(target, {"files": {"fp32": "model.onnx"}})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"files": {"fp32": object()}})
    assert json.loads(target.read_text()) == {"files": {"fp32": "model.onnx"}}
    assert files(tmp_path) == ["onnx.json"]


def test_a_failing_flush_or_rename_keeps_the_old_content_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    for name in ("fsync", "replace"):
        with monkeypatch.context() as m:
            m.setattr(fileio.os, name, disk_full)
            with pytest.raises(OSError, match="No space left"):
                write_text_atomic(target, "new")
        assert target.read_text() == "old", name
        assert files(tmp_path) == ["results.json"], name


def test_a_process_killed_mid_write_leaves_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"step": 1}')
    code = (
        "import os, signal, sys; from polyhead.fileio import replacing\n"
        "with replacing(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('{\"step\": 2, \"half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert json.loads(target.read_text()) == {"step": 1}
    leftovers = [name for name in files(tmp_path) if name != "state.json"]
    assert len(leftovers) == 1 and re.fullmatch(r"\.state\.json\.\d+-[0-9a-f]{8}\.tmp", leftovers[0])


def test_save_tensors_atomic_round_trip_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    weight = torch.arange(6.0).reshape(2, 3).t()  # not contiguous: saved as a contiguous copy
    save_tensors_atomic({"w": weight}, target, metadata={"format": "pt"})
    assert torch.equal(load_file(str(target))["w"], weight)
    with safe_open(str(target), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    with pytest.raises(AttributeError):
        save_tensors_atomic({"w": "not a tensor"}, target)  # type: ignore[dict-item]
    assert torch.equal(load_file(str(target))["w"], weight)
    assert files(tmp_path) == ["model.safetensors"]


def test_the_model_directory_json_files_are_written_atomically(
    tiny_encoder: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.multitask import MultiTaskModel

    written: list[str] = []
    real = fileio.write_text_atomic

    def spy(path: Path, text: str, encoding: str = "utf-8") -> None:
        written.append("/".join(Path(path).relative_to(tmp_path).parts[1:]))  # below the temporary directory
        real(path, text, encoding)

    monkeypatch.setattr(fileio, "write_text_atomic", spy)  # what write_json_atomic calls, whoever calls it
    model = MultiTaskModel(tiny_encoder, {"topic": TaskSpec("classification", ["sport", "tech"])})  # type: ignore[arg-type]
    model.save_pretrained(tmp_path / "model")
    assert {"polyhead.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"} <= set(written)


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "2_Dense" / "config.json", {"in_features": 4})
    assert json.loads((tmp_path / "2_Dense" / "config.json").read_text()) == {"in_features": 4}


# Lines that may still write a file directly: a write-permission probe, a console to /dev/null, and the bulk
# writer's chunk stream (a work file inside OUTPUT.polyhead-partial/, fsynced per chunk, recorded by an atomic
# progress.json and renamed into place only when complete: bulk/run.py).
ALLOWED_DIRECT_WRITES = ('probe.write_text("ok")', "open(os.devnull", 'with replacing(path) as tmp, open(tmp, "xb")',
                         'self.file = open(self.path, "r+b" if state else "wb")')


def test_no_module_writes_json_or_text_files_directly() -> None:
    root = Path(fileio.__file__).parent
    direct = []
    for file in sorted(root.rglob("*.py")):
        if file.name == "fileio.py":
            continue
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if re.search(r"\.write_text\(|json\.dump\(|open\([^)]*[\"'][wx]b?[\"']", line) and not any(
                allowed in line for allowed in ALLOWED_DIRECT_WRITES
            ):
                direct.append(f"{file.relative_to(root)}:{number}: {line.strip()}")
    assert not direct, "use polyhead.fileio:\n" + "\n".join(direct)


def test_the_helper_is_importable_without_torch() -> None:
    code = "import sys, polyhead.fileio; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
