"""Streaming memory stays bounded: `polyhead predict --input` on a generated JSONL file with three heads, the
process's RSS sampled against its progress; what it holds after 10% of the file is what it holds at the end."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel

ROWS = 20_000
CHUNK = 1_000


@pytest.mark.slow
def test_rss_is_flat_between_10_and_100_percent_of_the_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tasks = {"topic": TaskSpec("classification", ["a", "b", "c"]), "rating": TaskSpec("regression"),
             "aspects": TaskSpec("multilabel", ["food", "service", "price"])}  # fmt: skip
    model = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32), tasks)
    model_dir = model.save_pretrained(tmp_path / "model")
    rng = random.Random(0)
    words = ["the", "food", "was", "great", "but", "service", "slow", "and", "prices", "high", "at", "this",
             "place", "in", "town"]  # fmt: skip
    with open(tmp_path / "in.jsonl", "w") as f:
        for i in range(ROWS):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 25)))
            f.write(json.dumps({"text": text, "id": i, "note": "x" * rng.randint(2_000, 8_000)}) + "\n")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = ["predict", str(model_dir), "--input", str(tmp_path / "in.jsonl"), "--output", str(out),
            "--chunk-size", str(CHUNK), "--keep-columns", "note"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "polyhead", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    progress = tmp_path / "out.jsonl.polyhead-partial" / "progress.json"
    samples: list[tuple[int, int]] = []  # (rows done, rss bytes)
    done = 0
    while proc.poll() is None:
        try:
            done = json.loads(progress.read_text())["rows_done"]
            samples.append((done, psutil.Process(proc.pid).memory_info().rss))
        except (OSError, ValueError, KeyError, psutil.NoSuchProcess):
            pass
        time.sleep(0.02)
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    assert out.read_text().count("\n") == ROWS
    early = [rss for rows, rss in samples if ROWS * 0.1 <= rows < ROWS * 0.2]
    late = [rss for rows, rss in samples if rows >= ROWS * 0.2]
    assert early and late, f"too few samples: {len(samples)}"
    mib = 2**20
    print(f"RSS MiB early {max(early) / mib:.0f} late {max(late) / mib:.0f}")
    assert max(late) <= 1.10 * max(early), (max(early) / mib, max(late) / mib)
