"""Optional extras (serve, onnx, plots): the core commands run without them, and a command that needs a missing
one fails with one line naming the extra. Missing packages are simulated with ``sys.modules[name] = None``
(what Python does for a module that can't be imported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from helpers import tiny_config, write_config
from polyhead.config import TrainingConfig
from polyhead.errors import PolyheadError
from polyhead.extras import EXTRAS
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from test_cli_encode_predict import assert_user_error, run_main

ROOT = Path(__file__).resolve().parents[1]


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32),
                           {"topic": TaskSpec("classification", ["sport", "tech"])})
    return model.save_pretrained(tmp_path_factory.mktemp("extras") / "model")


def test_pyproject_extras_are_the_ones_polyhead_checks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    core = {d.split("==")[0].split(">=")[0].lower() for d in project["dependencies"]}
    for extra, modules in EXTRAS.items():
        # package (without its own extras, e.g. ray[data]) -> module name
        pinned = {d.split("==")[0].split("[")[0].lower().replace("-", "_") for d in extras[extra]}
        assert pinned == set(modules) and all("==" in d for d in extras[extra]), extra
        assert not pinned & core, f"{extra} packages are in the core dependencies too: {pinned & core}"
    listed = extras["all"][0].removeprefix("polyhead[").removesuffix("]").split(",")
    assert len(extras["all"]) == 1 and set(EXTRAS) <= set(listed)
    assert "all" in (ROOT / "Makefile").read_text().split("pip install --quiet -e '.[")[1].split("]")[0]


def test_serve_without_the_serve_extra(model_dir: Path, capsys, monkeypatch) -> None:
    hide(monkeypatch, "uvicorn")
    result = run_main(capsys, monkeypatch, "serve", str(model_dir))
    assert_user_error(result, "polyhead serve needs uvicorn, which is not installed: pip install 'polyhead[serve]'")


def test_onnx_backend_and_export_without_the_onnx_extra(model_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    hide(monkeypatch, "onnxruntime")
    for args in (["predict", str(model_dir), "hi", "--backend", "onnx"],
                 ["encode", "hi", "--model", str(model_dir), "--backend", "onnx-int8"]):
        assert_user_error(run_main(capsys, monkeypatch, *args),
                          "the onnx backend needs onnxruntime", "pip install 'polyhead[onnx]'")
    hide(monkeypatch, "onnx")
    result = run_main(capsys, monkeypatch, "export", "default", "--output", str(tmp_path / "out"))
    assert_user_error(result, "polyhead export needs onnx, onnxruntime, which are not installed",
                      "pip install 'polyhead[onnx]'")
    assert not (tmp_path / "out").exists()


def test_plots_without_the_plots_extra(tmp_path: Path, capsys, monkeypatch, caplog) -> None:
    from polyhead.training.distributed import create_accelerator
    from polyhead.training.metrics_log import plot_curves

    hide(monkeypatch, "matplotlib", "tensorboard")
    result = {"name": "r", "tasks": {"t": {"type": "classification", "test": {"accuracy": 0.5}}}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(result))
    result = run_main(capsys, monkeypatch, "compare", str(tmp_path / "run"), "--plot", str(tmp_path / "p.png"))
    assert_user_error(result, "compare --plot needs matplotlib", "pip install 'polyhead[plots]'")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "train/loss/t": 0.5}) + "\n")
    with caplog.at_level("WARNING", logger="polyhead"):
        assert plot_curves(metrics, tmp_path / "curves.png") is None
    assert "pip install 'polyhead[plots]'" in caplog.text and not (tmp_path / "curves.png").exists()
    assert TrainingConfig().log_with == []  # the default without tensorboard: train runs, no tracker
    with pytest.raises(PolyheadError, match=r"'tensorboard' needs the tensorboard package.*'polyhead\[plots\]'"):
        create_accelerator(["tensorboard"])


def test_core_commands_run_with_every_extra_missing(tmp_path: Path, tiny_model_dir: Path, model_dir: Path) -> None:
    """train (default trackers), predict, encode and evaluate in a process where no extra can be imported."""
    blocked = [m for modules in EXTRAS.values() for m in modules]
    config = tiny_config(tmp_path, tiny_model_dir, epochs=1, steps_per_epoch=2)
    config["training"].pop("log_with")
    path = write_config(tmp_path, config)
    script = ("import sys\nfor m in sys.argv[1].split(','): sys.modules[m] = None\n"
              "sys.argv = ['polyhead', *sys.argv[2:]]\nfrom polyhead.cli import main\nmain()\n")
    for args in (["train", str(path), "--output", str(tmp_path / "run"), "--quiet"],
                 ["predict", str(tmp_path / "run" / "model"), "team is great today", "--json"],
                 ["encode", "hello", "--model", str(model_dir)],
                 ["evaluate", str(tmp_path / "run" / "model"), "--config", str(path), "--split", "dev"]):
        proc = subprocess.run([sys.executable, "-c", script, ",".join(blocked), *args], capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (args[0], proc.stderr)
    assert (tmp_path / "run" / "model" / "polyhead.json").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "training_curves.png").exists()


def test_the_dockerfile_serves_as_documented() -> None:
    """The Dockerfile pins the torch `make setup` pins, installs extras that exist, serves /model on port 8000
    as docs/serving.md shows, and CI builds it only where a Docker daemon answers."""
    import re

    dockerfile = (ROOT / "Dockerfile").read_text()
    make_torch = re.search(r"torch==([\d.]+)", (ROOT / "Makefile").read_text())
    assert make_torch and f"pip install torch=={make_torch.group(1)} --index-url https://download.pytorch.org/whl/cpu" \
        in dockerfile
    installed = re.search(r"pip install '\.\[([a-z,-]+)\]'", dockerfile)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert installed and set(installed.group(1).split(",")) == {"serve", "onnx"} <= set(extras)
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, flags=re.M).group(1))  # type: ignore[union-attr]
    assert entry == ["polyhead", "serve", "/model", "--host", "0.0.0.0", "--port", "8000"]
    doc = (ROOT / "docs" / "serving.md").read_text()
    assert "docker build -t polyhead ." in doc and '-p 8000:8000 -v "$PWD/runs/demo/model:/model:ro" polyhead' in doc
    ci = (ROOT / ".ci" / "run").read_text()
    assert "docker info >/dev/null 2>&1; then" in ci and "docker build -t polyhead-ci ." in ci
    assert "docker" not in (ROOT / "Makefile").read_text()
