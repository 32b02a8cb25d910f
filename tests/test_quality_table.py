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
