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
