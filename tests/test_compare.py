"""`polyhead compare` on small fixture runs: grouping by strategy, mean ± std, multi- vs single-task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polyhead.compare import compare
from polyhead.errors import PolyheadError


def fake_run(
    root: Path, name: str, seed: int, test: dict, params: int = 1000, sts: float | None = 0.8
) -> Path:
    run = root / f"{name}-{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\n")
    results = {
        "name": name,
        "seed": seed,
        "test": test,
        "wall_time_s": 10.0 + seed,
        "trainable_params": params,
    }
    if sts is not None:
        results["sts_spearman"] = sts
    (run / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    paths = []
    for seed, (cat, pol) in enumerate([(0.80, 0.70), (0.84, 0.72), (0.82, 0.74)]):
        paths.append(
            fake_run(tmp_path, "joint", seed, {"category": {"accuracy": cat}, "polarity": {"accuracy": pol}})
        )
    for seed, cat in enumerate([0.70, 0.72, 0.71]):
        paths.append(
            fake_run(tmp_path, "single-category", seed, {"category": {"accuracy": cat, "macro_f1": 0.5}})
        )
    paths.append(fake_run(tmp_path, "single-polarity", 0, {"polarity": {"accuracy": 0.72}}, sts=None))
    return paths


def test_table_groups_seeds_and_reports_mean_and_std(runs: list[Path]) -> None:
    result = compare(runs)
    header, rows = result["table"]
    assert header[:4] == ["strategy", "seeds", "category (test accuracy)", "polarity (test accuracy)"]
    joint = next(r for r in rows if r[0] == "joint")
    assert joint[1] == "3"
    assert joint[2] == "82.00 ± 2.00"
    assert joint[3] == "72.00 ± 2.00"
    assert joint[4] == "80.00 ± 0.00"
    single = next(r for r in rows if r[0] == "single-polarity")
    assert single[2] == "-" and single[3] == "72.00"


def test_multitask_verdicts(runs: list[Path]) -> None:
    header, rows = compare(runs)["multitask"]
    by_task = {r[0]: r for r in rows}
    assert by_task["category"][5].startswith("+11.00 (multi-task helped)")
    assert by_task["polarity"][5].startswith("+0.00 (no clear difference)")


def test_cli_writes_markdown_and_png(runs: list[Path], tmp_path: Path) -> None:
    md, png = tmp_path / "out" / "table.md", tmp_path / "out" / "chart.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "polyhead",
            "compare",
            *map(str, runs),
            "--markdown",
            str(md),
            "--plot",
            str(png),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| joint | 3 | 82.00 ± 2.00 |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(PolyheadError, match="no results.json"):
        compare([tmp_path])
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(PolyheadError, match="not valid JSON"):
        compare([tmp_path / "x.json"])
    proc = subprocess.run(
        [sys.executable, "-m", "polyhead", "compare", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_token_tasks_are_scored_by_entity_f1_not_word_accuracy(tmp_path: Path) -> None:
    slots = {"f1": 0.56, "precision": 0.5, "recall": 0.6, "accuracy": 0.78}  # what token tasks report
    runs = [fake_run(tmp_path, "snips", seed, {"slots": slots, "intent": {"accuracy": 0.9, "macro_f1": 0.8}})
            for seed in (1, 2)]
    header, rows = compare(runs)["table"]
    assert header[2:4] == ["intent (test accuracy)", "slots (test f1)"]
    assert rows[0][2:4] == ["90.00 ± 0.00", "56.00 ± 0.00"]


def test_benchmark_records_group_by_overrides_and_skip_unrankable_tasks(tmp_path: Path, caplog) -> None:
    def record(name: str, overrides: list[str], test: dict) -> Path:
        path = tmp_path / f"{name}-{len(overrides)}.json"
        path.write_text(json.dumps({"benchmark": name, "overrides": overrides, "seed": 42, "test": test}))
        return path

    ner = {"f1": 0.71, "precision": 0.7, "recall": 0.7, "accuracy": 0.9}
    runs = [
        record("wikiann", [], {"ner": ner}),
        record("wikiann", ["training.epochs=3"], {"ner": {**ner, "f1": 0.76}}),
        record("sts_zero_shot", [], {"sts": {"pairs": 1379, "spearman_polyhead": 0.82}}),
    ]
    with caplog.at_level("WARNING", logger="polyhead"):
        _, rows = compare(runs)["table"]
    expected = [("wikiann", "1", "71.00"), ("wikiann (training.epochs=3)", "1", "76.00"), ("sts_zero_shot", "1", "-")]
    assert [(r[0], r[1], r[2]) for r in rows] == expected
    assert "task 'sts' has no metric compare ranks by" in caplog.text
