"""Reports people read (#20 item 4): per-class precision / recall / F1 / support equal to scikit-learn's (seqeval's
per entity type), confusion matrices, worst-confused pairs; `polyhead evaluate` prints them, --json carries them,
--plot-dir draws them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_config, write_config
from polyhead.evaluation.report import entity_report, label_report, multilabel_report
from polyhead.tasks import get_task_type


def test_label_report_equals_scikit_learn() -> None:
    from sklearn.metrics import classification_report, confusion_matrix

    rng = np.random.default_rng(0)
    labels = ["ant", "bee", "cat", "dog"]
    gold = list(rng.choice(labels, 200, p=[0.6, 0.25, 0.1, 0.05]))
    pred = [g if rng.random() < 0.7 else str(rng.choice(labels)) for g in gold]
    report = get_task_type("classification").report(gold, pred, labels)
    assert report is not None
    reference = classification_report(gold, pred, labels=labels, output_dict=True, zero_division=0)
    for label in labels:
        ours, theirs = report["per_class"][label], reference[label]
        assert ours["precision"] == pytest.approx(theirs["precision"])
        assert ours["recall"] == pytest.approx(theirs["recall"])
        assert ours["f1"] == pytest.approx(theirs["f1-score"]) and ours["support"] == theirs["support"]
    matrix = confusion_matrix(gold, pred, labels=labels)
    assert report["confusion"] == {"labels": labels, "matrix": matrix.tolist()}
    worst = report["worst_confused"][0]
    off = matrix - np.diag(np.diag(matrix))
    i, j = np.unravel_index(off.argmax(), off.shape)
    assert (worst["gold"], worst["predicted"], worst["count"]) == (labels[i], labels[j], int(off.max()))
    assert worst["share_of_gold"] == pytest.approx(off.max() / matrix[i].sum())
    counts = [p["count"] for p in report["worst_confused"]]
    assert counts == sorted(counts, reverse=True) and all(c > 0 for c in counts)


def test_gold_labels_the_head_lacks_get_a_row() -> None:
    report = label_report(["a", "b", "zebra"], ["a", "a", "b"], ["a", "b"])
    assert report["confusion"]["labels"] == ["a", "b", "zebra"]
    assert report["per_class"]["zebra"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_multilabel_report_equals_scikit_learn() -> None:
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    gold = [["x"], ["x", "y"], [], ["z"], ["y"], ["x", "z"]]
    pred = [["x"], ["y"], ["x"], ["z"], [], ["x", "y", "z"]]
    report = multilabel_report(gold, pred, ["x", "y", "z"])
    mlb = MultiLabelBinarizer(classes=["x", "y", "z"])
    p, r, f, s = precision_recall_fscore_support(mlb.fit_transform(gold), mlb.transform(pred), zero_division=0)
    for i, label in enumerate(["x", "y", "z"]):
        assert report["per_class"][label] == pytest.approx(
            {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        )
    assert report["label_counts"]["x"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}  # rows 0, 5 / 2 / 1 / 3, 4
    assert report["label_counts"]["y"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 1}
    assert report["label_counts"]["z"] == {"tn": 4, "fp": 0, "fn": 0, "tp": 2}
    assert [w["label"] for w in report["worst_labels"]] == ["x", "y"]  # z has no errors: not listed
    # printed too, not only in --json
    from rich.console import Console

    from polyhead.display import report_tables

    console = Console(record=True, width=120)
    for table in report_tables("tags", report):
        console.print(table)
    text = console.export_text()
    assert "tags: per label decisions" in text and "tags: labels with the most errors" in text
    assert any(line.split()[:5] == ["│", "x", "│", "2", "│"] for line in text.splitlines()), text


def test_entity_report_equals_seqeval_per_type() -> None:
    from seqeval.metrics import classification_report

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "O"], ["O", "O"]]
    report = get_task_type("token_classification").report(gold, pred, [])
    assert report is not None
    reference = classification_report(gold, pred, output_dict=True, zero_division=0)
    assert set(report["per_class"]) == {"LOC", "ORG", "PER"}
    for kind, ours in report["per_class"].items():
        assert ours["f1"] == pytest.approx(reference[kind]["f1-score"])
        assert ours["support"] == reference[kind]["support"]
        assert ours["precision"] == pytest.approx(reference[kind]["precision"])
    assert report["per_class"]["LOC"]["recall"] == 0.0 and report["per_class"]["PER"]["f1"] == 1.0
    assert report["confusion"]["labels"] == ["O", "LOC", "ORG", "PER"]
    # words: LOC -> ORG once, LOC -> O once
    assert report["confusion"]["matrix"][1] == [1, 0, 1, 0]
    pairs = {(p["gold"], p["predicted"]) for p in report["worst_confused"]}
    assert pairs == {("LOC", "ORG"), ("LOC", "O")}
    assert entity_report(gold, gold)["worst_confused"] == []


def test_types_without_classes_have_no_report() -> None:
    assert get_task_type("regression").report([1.0, 2.0], [1.5, 2.0], []) is None


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from polyhead.config import load_config
    from polyhead.training.trainer import Trainer

    tmp = tmp_path_factory.mktemp("reports")
    path = write_config(tmp, tiny_config(tmp, tiny_model_dir, epochs=1))
    Trainer(load_config(path), tmp / "run").run()
    return tmp / "run" / "model", path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polyhead", *args], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "COLUMNS": "200"})


def test_cli_evaluate_prints_and_carries_the_reports(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from polyhead.config import load_config
    from polyhead.training.api import evaluate_model

    model_dir, config = trained
    proc = run_cli("evaluate", str(model_dir), "--config", str(config), "--split", "dev", "--json",
                   "--plot-dir", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"topic", "sentiment", "entities"} and 0 <= out["topic"]["accuracy"] <= 1
    direct = evaluate_model(model_dir, load_config(config), "dev", reports=True)
    for task in out:
        assert out[task]["report"] == json.loads(json.dumps(direct[task]["report"]))
    assert sum(row["support"] for row in out["topic"]["report"]["per_class"].values()) == 16
    assert sum(map(sum, out["topic"]["report"]["confusion"]["matrix"])) == 16
    assert set(out["entities"]["report"]["per_class"]) == {"PER"}
    for task in ("topic", "sentiment", "entities"):
        assert (tmp_path / "plots" / f"{task}_confusion.png").stat().st_size > 1000
    table = run_cli("evaluate", str(model_dir), "--config", str(config), "--split", "dev")
    assert table.returncode == 0, table.stderr
    for title in ("topic: per class", "topic: confusion matrix", "entities: per class", "support"):
        assert title in table.stdout
    again = run_cli("evaluate", str(model_dir), "--config", str(config), "--split", "dev",
                    "--plot-dir", str(tmp_path / "plots"))
    lines = [line for line in again.stderr.splitlines() if line.strip()]
    assert again.returncode == 2 and len(lines) == 1, again.stderr
    assert "--plot-dir" in lines[0] and "topic_confusion.png already exists; pass --overwrite" in lines[0]
    # a config whose task type isn't the head's would read the data as something else
    other = run_cli("evaluate", str(model_dir), "--config", str(config), "--set", "tasks.topic.type=multilabel")
    lines = [line for line in other.stderr.splitlines() if line.strip()]
    assert other.returncode == 2 and len(lines) == 1, other.stderr
    assert "tasks.topic.type: multilabel in the config, classification in the model" in lines[0]
