"""An installed wheel runs on its own: the files the package reads (demo config, serving page) are in it.

The wheel is built offline from a copy of the sources (the working tree gets no build/ or egg-info),
installed into a temporary directory, and run from a directory outside the repository, so `import polyhead`
can only find the wheel's copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ["polyhead/py.typed", "polyhead/resources/demo.yaml", "polyhead/serving/static/index.html"]


def pip(*args: str, cwd: Path) -> None:
    # --no-index: nothing is fetched; --no-build-isolation: the venv's setuptools builds (make setup has it)
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding polyhead installed from a freshly built wheel (not the source tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip("wheel", "--no-build-isolation", "-w", str(work / "dist"), str(source), cwd=work)
    (wheel,) = (work / "dist").glob("polyhead-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        missing = [name for name in PACKAGE_DATA if name not in archive.namelist()]
    assert not missing, f"package data missing from the wheel: {missing}"
    pip("install", "--target", str(work / "site"), str(wheel), cwd=work)
    return work / "site"


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_installed_wheel_runs_the_demo(installed: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    where = run_installed(installed, tmp_path, "-c", "import polyhead; print(polyhead.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed), f"not the wheel's copy: {where.stdout}"

    # the tiny encoder and 200 sentences a dataset: the package's files are what is tested, not MiniLM (a minute)
    proc = run_installed(installed, tmp_path, "-m", "polyhead", "demo", "--quick", "--output", "run",
                         "--data-dir", "data", "--encoder", str(tiny_model_dir), "--sample", "200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("model/polyhead.json", "model/model.safetensors", "model/heads.safetensors", "config.yaml"):
        assert (tmp_path / "run" / name).is_file(), name
    # the two options took effect: the run trained the tiny encoder on 200-sentence samples
    import yaml

    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["encoder"]["model"] == str(tiny_model_dir)
    rows = sum(len(f.read_text().splitlines()) - 1 for f in (tmp_path / "data").glob("sentiment_*.tsv"))
    assert rows == 200, rows
    assert "--config run/config.yaml" in proc.stdout  # the evaluate hint names a file that exists anywhere
