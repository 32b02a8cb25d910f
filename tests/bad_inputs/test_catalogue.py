"""Runs every case of cases.yaml through the CLI entry point (in-process, so it's fast): exit status 2,
one line on stderr that contains the expected text and no traceback, and nothing the user had changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import tiny_config  # noqa: E402

CASES = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())


def fill(value: Any, slots: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, repl in slots.items():
            value = value.replace("{" + key + "}", repl)
        return value
    if isinstance(value, list):
        return [fill(v, slots) for v in value]
    if isinstance(value, dict):
        return {fill(k, slots): fill(v, slots) for k, v in value.items()}
    return value


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


@pytest.fixture(scope="module")
def tiny_model_with_heads(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from polyhead.modeldir import TaskSpec
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    model = MultiTaskModel(encoder, {"topic": TaskSpec("classification", ["sport", "tech"])})
    return model.save_pretrained(tmp_path_factory.mktemp("catalogue") / "model")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def prepare(case: dict, tmp: Path, model_src: Path, tiny_model_dir: Path) -> dict[str, str]:
    import shutil

    model = tmp / "model"
    shutil.copytree(model_src, model)
    config = tiny_config(tmp, tiny_model_dir)
    slots = {
        "tmp": str(tmp),
        "model": str(model),
        "config": str(tmp / "config.yaml"),
        "run": str(tmp / "run"),
    }
    setup = fill(case.get("setup", {}), slots)
    for key, value in setup.get("config_set", {}).items():
        set_dotted(config, key, value)
    (tmp / "config.yaml").write_text(setup.get("config_yaml") or yaml.safe_dump(config))
    for name, text in setup.get("write", {}).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    for name, hexdata in setup.get("write_bytes", {}).items():
        (tmp / name).write_bytes(bytes.fromhex(hexdata.replace("\n", "").replace(" ", "")))
    for name, target in setup.get("symlink", {}).items():
        (tmp / name).symlink_to(target)
    if "model_edit_json" in setup:
        data = json.loads((model / "polyhead.json").read_text())
        for key, value in setup["model_edit_json"].items():
            set_dotted(data, key, value)
        (model / "polyhead.json").write_text(json.dumps(data))
    for name, edits in setup.get("model_edit_file", {}).items():  # another JSON file of the model directory
        data = json.loads((model / name).read_text())
        data.update(edits)
        (model / name).write_text(json.dumps(data))
    if "model_truncate" in setup:
        file = model / setup["model_truncate"]
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    if "model_drop" in setup:
        (model / setup["model_drop"]).unlink()
    for name, text in setup.get("model_add", {}).items():
        (model / name).write_text(text)
    return slots


def test_catalogue_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({c["id"] for c in CASES}) == len(CASES), "case ids are unique"
    page = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    assert f"`tests/bad_inputs/cases.yaml` ({len(CASES)} cases" in page, "docs/reliability.md gives the case count"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(
    case: dict,
    tmp_path: Path,
    tiny_model_with_heads: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from polyhead.cli import main

    slots = prepare(case, tmp_path, tiny_model_with_heads, tiny_model_dir)
    before = snapshot(tmp_path)
    monkeypatch.setattr(sys, "argv", ["polyhead", *fill(case["args"], slots)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    # what a terminal shows: a progress bar cleared with "\r" (tqdm, leave=False) leaves nothing behind
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    lines = [line for line in shown if line.strip()]
    assert exit_info.value.code == case.get("exit", 2), err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    assert fill(case["expect"], slots) in lines[0], lines[0]
    after = snapshot(tmp_path)
    changed = [name for name, data in before.items() if after.get(name) != data]
    assert not changed, f"the command changed or deleted the user's files: {changed}"
