"""Regenerate the training guide's table and chart from the committed result files.

    .venv/bin/python bench/guide/report.py

Runs `polyhead compare bench/results/guide/* --markdown docs/guide/results.md --plot docs/guide/strategies.png`
and pastes the table into docs/training-guide.md between the markers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def main() -> None:
    runs = sorted(str(p) for p in (ROOT / "bench" / "results" / "guide").iterdir() if (p / "results.json").is_file())
    md, png = ROOT / "docs" / "guide" / "results.md", ROOT / "docs" / "guide" / "strategies.png"
    subprocess.run([sys.executable, "-m", "polyhead", "compare", *runs, "--markdown", str(md), "--plot", str(png)],
                   check=True, cwd=ROOT)
    guide = ROOT / "docs" / "training-guide.md"
    text = guide.read_text()
    block = f"{START}\n\n{md.read_text().strip()}\n\n{END}"
    guide.write_text(text[: text.index(START)] + block + text[text.index(END) + len(END) :])


if __name__ == "__main__":
    main()
