"""BENCHMARKS.md's quality section is exactly what bench/quality/table.py makes of the committed JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_quality_table_matches_committed_results() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality" / "table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_table_reports_mean_and_spread_over_seeds(tmp_path: Path, monkeypatch) -> None:
    sys.path.insert(0, str(ROOT / "bench" / "quality"))
    import table

    records = []
    for seed, acc in ((1, 0.80), (2, 0.90), (3, 0.85)):
        records.append(
            {
                "benchmark": "absa_category",
                "seed": seed,
                "command": "python bench/quality/run.py absa_category --seed 1",
                "test": {"category": {"accuracy": acc, "macro_f1": acc - 0.1}},
                "sts_spearman_after": 80.0,
                "train_wall_time_s": 100,
            }
        )
    for r in records:
        (tmp_path / f"absa_category-seed{r['seed']}.json").write_text(json.dumps(r))
    monkeypatch.setattr(table, "RESULTS", tmp_path)
    text = table.render(table.load())
    assert "| SemEval-14 rest. category | accuracy | 85.00 ± 5.00 (n=3) |" in text
    assert "seeds 1, 2, 3" in text


def test_preservation_variant_is_compared_with_the_same_seeds_and_its_time_ratio(tmp_path: Path, monkeypatch) -> None:
    sys.path.insert(0, str(ROOT / "bench" / "quality"))
    import table

    def record(seed: int, acc: float, sts: float, tag: str | None) -> dict:
        sets = " --set training.preserve_embedding.weight=1.0 --tag p1" if tag else ""
        return {
            "benchmark": "multi_absa",
            "seed": seed,
            "tag": tag,
            "overrides": ["training.preserve_embedding.weight=1.0"] if tag else [],
            "command": f"python bench/quality/run.py multi_absa --seed {seed}{sets}",
            "test": {"polarity": {"accuracy": acc, "macro_f1": acc}},
            "sts_spearman_after": sts,
        }

    records = [record(1, 0.80, 70.0, None), record(2, 0.82, 72.0, None), record(9, 0.99, 60.0, None)]
    records += [record(1, 0.81, 82.0, "p1"), record(2, 0.83, 84.0, "p1")]
    for i, r in enumerate(records):
        (tmp_path / f"r{i}.json").write_text(json.dumps(r))
    ratios = tmp_path.parent / f"{tmp_path.name}-ratios.json"
    ratios.write_text(json.dumps({"multi_absa-p1-seed1": {"ratio_of_medians": 1.1, "ratio_per_round": [1.05, 1.2]}}))
    monkeypatch.setattr(table, "RESULTS", tmp_path)
    monkeypatch.setattr(table, "TIME_RATIOS", ratios)
    runs = table.load()
    assert [r["seed"] for r in runs["preserve"]] == [1, 2] and "tried" not in runs
    row = next(line for line in table.preservation(runs) if "| accuracy |" in line)
    # seed 9 has no preserved twin, so "without" is seeds 1 and 2 only
    assert "| 81.00 ± 1.41 (n=2) | 82.00 ± 1.41 (n=2) | +1.00 |" in row
    assert "| 71.00 ± 1.41 (n=2) | 83.00 ± 1.41 (n=2) |" in row
    assert "x1.10 (1.05-1.20, seed 1)" in row
    assert "--set training.preserve_embedding.weight=1.0 --tag p1` (seeds 1, 2)" in row
