"""Small learnable datasets written to tmp dirs, and config builders for the tiny encoder."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import yaml

TOPICS = {
    "sport": ["match", "goal", "team", "coach", "league", "striker"],
    "tech": ["software", "chip", "computer", "app", "internet", "phone"],
}
MOODS = {"pos": ["great", "wonderful", "love"], "neg": ["awful", "terrible", "hate"]}
NAMES = ["alice", "bob", "carol", "dave"]


def write_sentence_data(path: Path, n: int, seed: int) -> Path:
    """TSV with columns topic, sentiment, text: both labels readable from keywords."""
    rng = random.Random(seed)
    rows = ["topic\tsentiment\ttext"]
    for _ in range(n):
        topic, mood = rng.choice(list(TOPICS)), rng.choice(list(MOODS))
        words = [rng.choice(TOPICS[topic]), "is", rng.choice(MOODS[mood]), "today", rng.choice(TOPICS[topic])]
        rows.append(f"{topic}\t{mood}\t{' '.join(words)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_conll(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = ["i", "met", rng.choice(NAMES), "in", "town"]
        tags = ["O", "O", "B-PER", "O", "O"]
        sentences.append("\n".join(f"{w}\t{t}" for w, t in zip(words, tags, strict=True)))
    path.write_text("\n\n".join(sentences) + "\n")
    return path


def tiny_config(tmp_path: Path, model_dir: Path, **training: Any) -> dict[str, Any]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    train = write_sentence_data(data / "train.tsv", 48, 1)
    dev = write_sentence_data(data / "dev.tsv", 16, 2)
    ner_train = write_conll(data / "ner_train.conll", 24, 3)
    ner_dev = write_conll(data / "ner_dev.conll", 8, 4)
    shared = {"train": str(train), "dev": str(dev), "test": str(dev)}
    config = {
        "name": "tiny",
        "encoder": {"model": str(model_dir), "max_length": 32},
        "tasks": {
            "topic": {"type": "classification", "data": {**shared, "label_column": "topic"}},
            "sentiment": {"type": "classification", "data": {**shared, "label_column": "sentiment"}},
            "entities": {
                "type": "token_classification",
                "data": {"train": str(ner_train), "dev": str(ner_dev)},
            },
        },
        "training": {
            "seed": 3,
            "epochs": 2,
            "steps_per_epoch": 4,
            "batch_size": 8,
            "eval_batch_size": 16,
            "optimizer": {"lr": 1e-3, "head_lr": 1e-2},
            "log_with": [],
            **training,
        },
    }
    return config


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def interruptible() -> None:
    """``preexec_fn`` for a child that is sent SIGINT: Python's own Ctrl-C handling, even when the tests run with
    SIGINT ignored (a script's ``make test &``), which a polyhead command would otherwise keep ignoring."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
