"""The demo path end to end: pip-installed data, three heads, baselines, predictions (tiny encoder, small sample)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from polyhead.demo import run_demo
from polyhead.demo_data import bbc_topics, tweet_entities, tweet_sentiment, write_demo_data


def test_demo_data_sources_are_real_and_repaired() -> None:
    topics = bbc_topics()
    assert len(topics) == 2225
    assert {label for _, label in topics} == {"business", "entertainment", "politics", "sports", "tech"}
    tweets = tweet_sentiment()
    assert {label for _, label in tweets} == {"negative", "neutral", "positive"}
    assert not any("\ufffd" in text or "â€" in text for text, _ in tweets), "mojibake left in tweets"
    sentences = tweet_entities()
    assert len(sentences) > 2000
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for sent in sentences for _, tag in sent)


def test_demo_splits_are_seeded_and_disjoint(tmp_path: Path) -> None:
    a = write_demo_data(tmp_path / "a", seed=1, sample=200)
    write_demo_data(tmp_path / "b", seed=1, sample=200)
    assert (tmp_path / "a" / "topic_train.tsv").read_text() == (
        tmp_path / "b" / "topic_train.tsv"
    ).read_text()
    train = set((tmp_path / "a" / "topic_train.tsv").read_text().splitlines()[1:])
    test = set((tmp_path / "a" / "topic_test.tsv").read_text().splitlines()[1:])
    assert not train & test
    assert a["topic"] == {"train": 140, "dev": 20, "test": 40}


def test_demo_runs_end_to_end_on_the_tiny_encoder(tmp_path: Path, tiny_model_dir: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160)
    out = run_demo(
        tmp_path / "run",
        tmp_path / "data",
        quick=True,
        console=console,
        sample=120,
        encoder_model=str(tiny_model_dir),
    )
    text = buffer.getvalue()
    for heading in ("1. Sentence embeddings", "2. Training", "3. Results", "4. Files and next steps"):
        assert heading in text
    assert "Cosine similarity" in text and "TF-IDF" in text and "polyhead predict" in text
    assert set(out["summary"]) == {"topic", "sentiment", "entities"}
    for name in ("topic", "sentiment"):
        assert 0.0 <= out["summary"][name]["tfidf_logreg"] <= 1.0
        assert 0.0 <= out["summary"][name]["majority"] <= 1.0
    for name in ("model/polyhead.json", "metrics.jsonl", "training_curves.png", "results.json"):
        assert (tmp_path / "run" / name).is_file(), name
    # the printed next step evaluates with the run's own config.yaml (data paths included), from any directory
    from polyhead.config import load_config
    from polyhead.training.api import evaluate_model

    assert f"--config{tmp_path / 'run' / 'config.yaml'}--split" in "".join(text.split())  # wrapped or not
    metrics = evaluate_model(tmp_path / "run" / "model", load_config(tmp_path / "run" / "config.yaml"), "test")
    assert set(metrics) == {"topic", "sentiment", "entities"}


def test_demo_refuses_to_overwrite_a_previous_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "polyhead", "demo", "--output", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "already exists" in proc.stderr
    assert (out / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("name", ["topic", "sentiment", "entities"])
def test_demo_config_tasks(name: str) -> None:
    from polyhead.demo import load_demo_config

    cfg = load_demo_config(Path("runs/demo-data"), quick=False)
    assert name in cfg.tasks


def test_the_demo_config_is_package_data() -> None:
    """Read through importlib.resources from inside the package (an installed wheel has no configs/)."""
    import polyhead
    from polyhead.demo import demo_config_file, load_demo_config

    with demo_config_file() as path:
        assert path.resolve().is_relative_to(Path(polyhead.__file__).resolve().parent)
    cfg = load_demo_config(Path("elsewhere"), quick=True)
    assert cfg.tasks["topic"].data.train == str(Path("elsewhere") / "topic_train.tsv")
    assert (cfg.training.epochs, cfg.training.steps_per_epoch) == (1, 5)
