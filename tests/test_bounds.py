"""Memory stays bounded on hostile configs (#22 item 7): run under a memory limit in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
) + "tasks: *i\n"


def run_limited(code: str, limit_mb: int = 600, timeout: float = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose address space is capped at ``limit_mb`` MiB."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, {limit_mb} << 20))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_yaml_alias_bomb_is_refused_within_600_mib(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB)
    assert len(BOMB) < 1200  # 1.1 KB that expands to 9**9 values
    done = run_limited(
        "from polyhead.config import load_config\nfrom polyhead.errors import ConfigError\n"
        f"try:\n    load_config({str(config)!r})\nexcept ConfigError as e:\n    print(e)\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "expands to more than 100,000 values" in done.stdout


def test_data_limit_reads_lazily_within_400_mib(tmp_path: Path) -> None:
    """64 good lines, then a 1 GB sparse hole: with ``data.limit: 64`` the hole is never read (the old
    reader read the whole file first: 2.36 GB)."""
    data = tmp_path / "big.jsonl"
    with data.open("w") as f:
        for i in range(64):
            f.write(f'{{"text": "sentence {i}", "label": "{"ab"[i % 2]}"}}\n')
        f.truncate(2**30)
    done = run_limited(
        "from polyhead.data.readers import ReaderOptions, read_examples\n"
        f"rows = read_examples({str(data)!r}, 'classification', ReaderOptions(limit=64))\n"
        "print(len(rows), rows[-1].text)\n",
        limit_mb=400,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["64", "sentence", "63"]


def test_a_huge_line_in_a_data_file_is_one_error_within_400_mib(tmp_path: Path) -> None:
    """A 120 MB text in a JSONL training file: one line naming file:line, memory bounded by the 16 MiB line
    limit (the old reader held the file, its decoded text, the split lines and the parsed record at once)."""
    data = tmp_path / "huge.jsonl"
    with data.open("w") as f:
        f.write('{"text": "fine", "label": "a"}\n{"text": "')
        chunk = "word " * 200_000
        for _ in range(120):
            f.write(chunk)
        f.write('", "label": "b"}\n')
    done = run_limited(
        "from polyhead.data.readers import read_examples\nfrom polyhead.errors import DataError\n"
        f"try:\n    read_examples({str(data)!r}, 'classification')\nexcept DataError as e:\n    print(e)\n",
        limit_mb=400,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        f"{data}:2: a line over 16 MiB; polyhead reads texts and records of at most 16 MiB a line"
    )


def test_a_16_mb_text_is_encoded_and_predicted_within_2_gib() -> None:
    """Characters are cut before tokenisation (max_length 256 x 100), so a 16 MB text costs what 25,600
    characters cost; without the cut the tokenizer's offsets and ids for 3.4 M words took gigabytes."""
    done = run_limited(
        "from polyhead.modeling.encoder import SentenceEncoder\n"
        "encoder = SentenceEncoder.from_pretrained('default')\n"
        "text = 'word ' * 3_400_000\n"
        "(ids,) = encoder.tokenize_lists([text])\n"
        "print(len(ids['input_ids']), encoder.encode([text, 'short']).shape)\n",
        limit_mb=2048,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["256", "(2,", "384)"]
    assert "1 text(s) longer than 25,600 characters were cut to 25,600 before tokenisation" in done.stderr
