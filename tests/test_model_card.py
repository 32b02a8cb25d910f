"""The model card (README.md): front matter parsed back, metrics equal to results.json, rewritten by the
trainer and by export, a user's own card never written over."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import tiny_config
from polyhead.config import Config
from polyhead.modeldir import render_card, write_card
from polyhead.modeldir.card import MARKER, base_model, dataset_of
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.training.trainer import Trainer


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("card")
    Trainer(Config.model_validate(tiny_config(tmp, tiny_model_dir)), tmp / "run").run()
    return tmp / "run"


def test_trained_card_matches_results_json(run: Path) -> None:
    card = (run / "model" / "README.md").read_text()
    results = json.loads((run / "results.json").read_text())
    front = front_matter(card)
    assert front["library_name"] == "polyhead"
    assert front["tags"] == ["polyhead", "sentence-transformers", "classification", "token_classification"]
    assert front["pipeline_tag"] == "sentence-similarity"  # mixed heads: what the directory does in ST
    assert "base_model" not in front  # a local encoder directory is no Hub id
    [index] = front["model-index"]
    assert index["name"] == "tiny"
    by_task = {r["task"]["name"].split(" ")[0]: r for r in index["results"]}
    assert set(by_task) == set(results["test"]) == {"topic", "sentiment"}  # entities has no test file
    for task, metrics in results["test"].items():
        got = {m["type"]: m["value"] for m in by_task[task]["metrics"]}
        assert got == metrics  # the very numbers of results.json
        assert by_task[task]["dataset"] == {"name": "data", "type": "data", "split": "test"}
    assert by_task["topic"]["task"]["type"] == "text-classification"
    # the body: tasks with labels, dev and test metrics, the config, how to load and serve it
    assert MARKER in card
    assert "| entities | token_classification |" in card and "`B-PER`" in card
    dev = results["dev"]["entities"]["f1"]
    assert f"| entities | dev | f1 | {dev:.4f} |" in card
    assert "```yaml\nname: tiny\n" in card
    for text in ("SentenceTransformer(", "MultiTaskModel.from_pretrained(", "polyhead serve", "huggingface-cli upload"):
        assert text in card
    record = json.loads((run / "model" / "results.json").read_text())
    assert record["test"] == results["test"] and record["config"]["name"] == "tiny"


def test_save_pretrained_writes_a_basic_card(run: Path, tmp_path: Path) -> None:
    model = MultiTaskModel.from_pretrained(run / "model")
    model.save_pretrained(tmp_path / "copy")
    card = (tmp_path / "copy" / "README.md").read_text()
    front = front_matter(card)
    assert "model-index" not in front and "## Results" not in card  # no run recorded in this directory
    assert front["tags"][2:] == ["classification", "token_classification"]
    assert "## ONNX\n\nNot exported yet" in card


def test_a_users_own_card_is_kept(run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = MultiTaskModel.from_pretrained(run / "model")
    target = model.save_pretrained(tmp_path / "mine")
    (target / "README.md").write_text("# My model\nhand-written\n")
    with caplog.at_level(logging.WARNING):
        assert write_card(target) is False
        model.save_pretrained(target, overwrite=True)  # a new save keeps it too
    assert (target / "README.md").read_text() == "# My model\nhand-written\n"
    assert "your own model card" in caplog.text
    # a polyhead card edited but still carrying the marker is polyhead's to rewrite
    (target / "README.md").write_text(f"{MARKER}\nold\n")
    assert write_card(target) is True
    assert (target / "README.md").read_text() == render_card(target)


def test_export_updates_the_card(run: Path, tmp_path: Path) -> None:
    from polyhead.export.onnx import export_onnx

    model = MultiTaskModel.from_pretrained(run / "model")
    target = model.save_pretrained(tmp_path / "exported")
    export_onnx(target, check=True)
    card = (target / "README.md").read_text()
    gate = json.loads((target / "onnx.json").read_text())["gate"]["fp32"]
    assert "| fp32 | `model.onnx` |" in card
    assert f"| fp32 | {gate['cosine_mean']:.4f} | {gate['cosine_min']:.4f} |" in card
    assert "Not exported yet" not in card


def test_base_model_and_dataset_names(tmp_path: Path) -> None:
    assert base_model("default") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert base_model(str(tmp_path)) is None and base_model("./models/x") is None
    assert dataset_of("../shared/data/sst2/train.tsv") == {"name": "sst2"}
    assert dataset_of("data/banking.parquet") == {"name": "banking"}
    (tmp_path / "conll" / "train").mkdir(parents=True)
    (tmp_path / "conll" / "train" / "dataset_info.json").write_text('{"dataset_name": "conll2003"}')
    assert dataset_of(str(tmp_path / "conll")) == {"name": "conll2003", "id": "conll2003"}
