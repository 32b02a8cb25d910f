"""A library leaves its host alone (STYLE rule 16): importing polyhead or loading a model changes no
environment variable; the process-wide settings happen in the CLI entry point or in an explicit call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Everything polyhead ever set in os.environ by itself (import, model load, oneDNN module).
PROCESS_VARIABLES = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "HF_HUB_DISABLE_TELEMETRY",
    "LRU_CACHE_CAPACITY",
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY",
)


def host_env(**extra: str) -> dict[str, str]:
    """The test process's environment without the variables above (conftest and the Makefile set some)."""
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_VARIABLES}
    # HF_HUB_OFFLINE is unset here, so a Hub request would go out: point the Hub at a closed local port,
    # so one would fail at once instead (nothing here should make one; loading is local_files_only).
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    return {**env, **extra}


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env or host_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_importing_polyhead_changes_no_environment_variable() -> None:
    code = (
        "import os; e = dict(os.environ); import polyhead, polyhead.modeling.encoder; "
        "assert dict(os.environ) == e, sorted(set(os.environ.items()) ^ set(e.items()))"
    )
    run_python(code)


LOAD_MODELS = """
import json, os, sys
before = dict(os.environ)
from polyhead import MultiTaskModel, SentenceEncoder
from polyhead.modeldir import TaskSpec

encoder = SentenceEncoder.from_pretrained(sys.argv[1], max_length=32)
encoder.encode(["a sentence", "another one"])
model = MultiTaskModel(encoder, {"topic": TaskSpec("classification", ["sport", "tech"])})
model.predict(["a sentence"])
MultiTaskModel.from_pretrained(model.save_pretrained(sys.argv[2])).predict(["a sentence"])
SentenceEncoder.from_pretrained(sys.argv[2]).encode(["a sentence"])
changed = {k: [before.get(k), os.environ.get(k)] for k in set(before) | set(os.environ)
           if before.get(k) != os.environ.get(k)}
print(json.dumps(changed))
"""


def test_loading_building_and_running_models_changes_no_environment_variable(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = run_python(LOAD_MODELS, str(tiny_model_dir), str(tmp_path / "model"))
    assert json.loads(out.splitlines()[-1]) == {}


def test_configure_cpu_runtime_caps_onednn_caches_and_user_values_win() -> None:
    code = (
        "import os, json, polyhead.runtime as r; e = dict(os.environ); print(json.dumps(r.configure_cpu_runtime())); "
        "print(json.dumps({k: os.environ.get(k) for k in ('LRU_CACHE_CAPACITY', 'ONEDNN_PRIMITIVE_CACHE_CAPACITY')}))"
    )
    first, second = run_python(code).splitlines()[-2:]
    capped = {"LRU_CACHE_CAPACITY": "32", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "32"}
    assert json.loads(first) == json.loads(second) == capped
    first, second = run_python(code, env=host_env(LRU_CACHE_CAPACITY="7")).splitlines()[-2:]
    assert json.loads(first) == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "32"}  # what it set
    assert json.loads(second) == {"LRU_CACHE_CAPACITY": "7", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "32"}


CLI_ENV = """
import json, os, sys
sys.argv = ["polyhead", *sys.argv[1:]]
import polyhead.cli
try:
    polyhead.cli.main()
except SystemExit:
    pass
keys = ("TOKENIZERS_PARALLELISM", "LRU_CACHE_CAPACITY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "HF_HUB_OFFLINE")
print(json.dumps({k: os.environ.get(k) for k in keys}))
"""


@pytest.mark.parametrize("user", [{}, {"TOKENIZERS_PARALLELISM": "true", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}])
def test_the_cli_entry_point_sets_the_process_settings_it_needs(user: dict[str, str]) -> None:
    """`polyhead serve` and every other command run with oneDNN's caches capped (BENCHMARKS.md, Serving:
    a micro-batching server grew by gigabytes without) and without tokenizer threads; the user's values
    win, and offline mode stays the user's choice."""
    out = run_python(CLI_ENV, "--help", env=host_env(**user))
    expected = {"TOKENIZERS_PARALLELISM": "false", "LRU_CACHE_CAPACITY": "32", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "32",
                "HF_HUB_OFFLINE": None}
    assert json.loads(out.splitlines()[-1]) == {**expected, **user}


def test_cli_no_arguments_prints_help_and_exits_0() -> None:
    proc = subprocess.run([sys.executable, "-m", "polyhead"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "encode" in proc.stdout + proc.stderr and "train" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr.lower()


def test_cli_usage_error_is_one_line_and_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "polyhead", "encode", "--batch-size", "0", "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "batch-size" in lines[0], proc.stderr


def test_cli_imports_no_private_module_of_another_library() -> None:
    import ast

    import polyhead

    root = Path(polyhead.__file__).parent
    private = []
    for file in root.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            private += [f"{file.name}: {n}" for n in names if not n.startswith("polyhead")
                        and any(part.startswith("_") and part != "__future__" for part in n.split("."))]
    assert not private
