"""docs/architecture.md names real modules, and the rules it states hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "polyhead"
DOC = ROOT / "docs" / "architecture.md"
TASK_NAMES = ("classification", "multilabel", "regression", "token_classification", "similarity")


def test_every_module_the_page_names_exists() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`([a-z_/]+(?:\.py|/))`", text))
    assert named, "the page names no modules"
    missing = []
    for name in named:
        places = (PACKAGE, PACKAGE.parent, ROOT, *[PACKAGE / d for d in ("training", "data", "modeling", "modeldir")])
        candidates = [place / name for place in places]
        if not any(c.exists() for c in candidates):
            missing.append(name)
    assert not missing, f"docs/architecture.md names modules that don't exist: {sorted(missing)}"


def test_no_task_type_name_comparisons_outside_tasks() -> None:
    """Outside polyhead/tasks/, code asks the task object; a `== "similarity"`-style comparison is a regression."""
    names = "|".join(TASK_NAMES)
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)""")
    offenders = []
    for file in PACKAGE.rglob("*.py"):
        if "tasks" in file.relative_to(PACKAGE).parts:
            continue
        for n, line in enumerate(file.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{file.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_torch_free_modules_import_without_torch() -> None:
    code = (
        "import sys; import polyhead.modeldir, polyhead.modeldir.hub, polyhead.extras, polyhead.tasks, "
        "polyhead.predict, polyhead.onnx_backend, "
        "polyhead.serving.app, polyhead.evaluation.evaluator, polyhead.bulk, polyhead.bulk.options, "
        "polyhead.data.stream, polyhead.integrations.ray; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
