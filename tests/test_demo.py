"""The demo path end to end: pip-installed data, three heads, baselines, predictions (tiny encoder, small sample)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from polyhead.demo import NEW_SENTENCES, run_demo
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
    assert (tmp_path / "a" / "topic_train.tsv").read_text() == (tmp_path / "b" / "topic_train.tsv").read_text()
    train = set((tmp_path / "a" / "topic_train.tsv").read_text().splitlines()[1:])
    test = set((tmp_path / "a" / "topic_test.tsv").read_text().splitlines()[1:])
    assert not train & test
    assert a["topic"] == {"train": 140, "dev": 20, "test": 40}


STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman is cutting an onion.", 4.4),
    ("The cat sleeps on the sofa.", "Stocks fell sharply on Monday.", 0.0),
    ("A dog runs in the park.", "A dog is running through a park.", 4.6),
    ("The bank raised interest rates.", "A child is eating an apple.", 0.2),
    ("Two men are playing chess.", "Two people play a board game.", 3.5),
]

README = Path(__file__).resolve().parents[1] / "README.md"


def test_demo_runs_end_to_end_on_the_tiny_encoder(tmp_path: Path, tiny_model_dir: Path) -> None:
    sts = tmp_path / "sts.tsv"
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in STS_ROWS))
    buffer = io.StringIO()
    console = Console(file=buffer, width=100)
    out = run_demo(
        tmp_path / "run",
        tmp_path / "data",
        quick=True,
        console=console,
        sample=120,
        encoder_model=str(tiny_model_dir),
        sts_file=sts,
    )
    text = buffer.getvalue()
    headings = [
        "1. Sentence embeddings",
        "2. Training one encoder with three heads",
        "3. Results on the test splits",
        "4. What one multi-task model gives you (measured in this run)",
        "5. Files and next steps",
    ]
    readme = README.read_text()
    for heading in headings:
        assert heading in text
        assert heading in readme, f"README's demo paragraph lacks the section {heading!r}"
    assert "Cosine similarity" in text and "TF-IDF" in text and "polyhead predict" in text
    assert set(out["summary"]) == {"topic", "sentiment", "entities"}
    for name in ("topic", "sentiment"):
        assert 0.0 <= out["summary"][name]["tfidf_logreg"] <= 1.0
        assert 0.0 <= out["summary"][name]["majority"] <= 1.0
    for name in ("model/polyhead.json", "metrics.jsonl", "training_curves.png", "results.json"):
        assert (tmp_path / "run" / name).is_file(), name
    # entity scores per type: one row per type of the test split, each with its gold count
    entities = out["summary"]["entities"]
    assert "Entities by type" in text and entities["per_type"]
    assert sum(m["support"] for m in entities["per_type"].values()) > 0
    for m in entities["per_type"].values():
        assert 0.0 <= m["f1"] <= 1.0
    assert "entity precision / recall" in text
    # predictions: each sentence printed whole on its own line, then a line per head
    flat = " ".join(text.split())
    for sentence in NEW_SENTENCES:
        assert sentence in flat
    # one encoder pass for three heads vs one per head, timed in alternating runs
    shared = out["shared_pass"]
    assert shared["heads"] == ["topic", "sentiment", "entities"]
    assert len(shared["one_pass"]) == len(shared["per_head"]) == 3
    assert all(t > 0 for t in shared["one_pass"] + shared["per_head"])
    assert f"One encoder pass for 3 heads: {shared['texts']} test tweets" in flat
    # STS-B before and after training, on the given file
    assert out["sts"]["pairs"] == len(STS_ROWS)
    assert -100 <= out["sts"]["before"] <= 100 and -100 <= out["sts"]["after"] <= 100
    assert f"STS-B test Spearman {out['sts']['before']:.1f} before training, {out['sts']['after']:.1f} after" in flat
    # the int8 ONNX export: written into the model directory, timed, decisions compared head by head
    onnx = out["onnx"]
    assert (tmp_path / "run" / "model" / "model.int8.onnx").is_file()
    assert set(onnx["agreement"]) == {"topic", "sentiment", "entities"}
    assert onnx["agreement"]["topic"]["decisions"] == onnx["texts"]
    for a in onnx["agreement"].values():
        assert 0 <= a["same"] <= a["decisions"]
    assert len(onnx["torch"]) == len(onnx["int8"]) == 3
    assert f"int8 ONNX export (recipe {onnx['recipe']}" in flat
    assert "polyhead serve" in text and "polyhead compare" in text and "training-guide" in text
    # the printed next step evaluates with the run's own config.yaml (data paths included), from any directory
    from polyhead.config import load_config
    from polyhead.training.api import evaluate_model

    assert f"--config{tmp_path / 'run' / 'config.yaml'}--split" in "".join(text.split())  # wrapped or not
    metrics = evaluate_model(tmp_path / "run" / "model", load_config(tmp_path / "run" / "config.yaml"), "test")
    assert set(metrics) == {"topic", "sentiment", "entities"}
    # the entity head's minimum entity score (tune_thresholds in the demo config) is what the model saved
    import json

    from polyhead.modeldir import read_config

    tuned = json.loads((tmp_path / "run" / "results.json").read_text())["calibration"]["entities"]["thresholds"]
    assert read_config(tmp_path / "run" / "model").tasks["entities"].thresholds == tuned
    assert "calibration entities: threshold" in flat


def test_predictions_read_as_sentences_with_typed_entities() -> None:
    """Long sentences are not squeezed into table cells; every entity carries its type."""
    from polyhead.demo_showcase import prediction_lines
    from polyhead.modeldir import TaskSpec

    tasks = {
        "topic": TaskSpec("classification", ["business", "sport"]),
        "entities": TaskSpec("token_classification", ["O", "B-company", "I-company", "B-geo-loc", "I-geo-loc"]),
    }
    sentence = NEW_SENTENCES[0]
    pred = {
        "topic": {"label": "business", "score": 0.97},
        "entities": {"entities": [{"text": "Apple", "type": "company"}, {"text": "London", "type": "geo-loc"}]},
    }
    buffer = io.StringIO()
    Console(file=buffer, width=60).print(prediction_lines([sentence, "Nothing here."], [pred, {
        "topic": {"label": "sport", "score": 0.51}, "entities": {"entities": []}}], tasks))  # fmt: skip
    lines = buffer.getvalue().splitlines()
    assert len(lines[0]) <= 60 and " ".join(" ".join(lines[:2]).split()) == sentence  # wrapped, words intact
    assert not any(ch in buffer.getvalue() for ch in "│┃|")  # no table cells
    assert "entities  Apple (company), London (geo-loc)" in buffer.getvalue()
    assert "topic     business (0.970)" in buffer.getvalue()
    assert "entities  (no entities)" in buffer.getvalue()


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


def test_demo_refuses_a_missing_sts_file_before_running(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "polyhead", "demo", "--output", str(out), "--sts", str(tmp_path / "nope.tsv")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--sts" in proc.stderr and "nope.tsv" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr and "Sentence embeddings" not in proc.stdout
    assert not out.exists() or not any(out.iterdir())


def test_demo_with_a_missing_encoder_or_a_zero_sample_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    demo = [sys.executable, "-m", "polyhead", "demo", "--quick", "--output", str(tmp_path / "run")]
    proc = subprocess.run([*demo, "--encoder", str(tmp_path / "no-model")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no-model" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = subprocess.run([*demo, "--sample", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--sample" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


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
