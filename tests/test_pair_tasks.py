"""Sentence-pair tasks (cross-encoded ``[CLS] a [SEP] b``): train, save, reload, predict, export, serve, CLI,
bad pair data."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import TOPICS
from polyhead.config import Config
from polyhead.errors import ConfigError, DataError, PolyheadError

WORDS = {w: topic for topic, words in TOPICS.items() for w in words}
PAIRS = [("the match is here", "a goal was there"), ("the chip is here", "a goal was there")]


def write_pairs(path: Path, n: int, seed: int) -> Path:
    """label: same/different topic of the two sentences; score: 1 or 0; topic: of the first sentence."""
    rng = random.Random(seed)
    rows = ["label\tscore\ttopic\tsentence1\tsentence2"]
    for _ in range(n):
        a, b = rng.choice(list(WORDS)), rng.choice(list(WORDS))
        same = WORDS[a] == WORDS[b]
        rows.append(f"{'same' if same else 'different'}\t{float(same)}\t{WORDS[a]}\tthe {a} is here\ta {b} was there")
    path.write_text("\n".join(rows) + "\n")
    return path


def pair_config(tmp: Path, model_dir: Path) -> dict[str, Any]:
    train, dev = write_pairs(tmp / "train.tsv", 160, 1), write_pairs(tmp / "dev.tsv", 40, 2)
    data = {"train": str(train), "dev": str(dev), "test": str(dev), "text_column": "sentence1",
            "pair_column": "sentence2"}
    return {
        "name": "pairs",
        "encoder": {"model": str(model_dir), "max_length": 32},
        "tasks": {
            "same": {"type": "pair_classification", "data": data},
            "score": {"type": "pair_regression", "data": {**data, "label_column": "score"}},
            # a single-text task on the same file: batched apart from the pair tasks
            "topic": {"type": "classification", "data": {**data, "label_column": "topic", "pair_column": None}},
        },
        "training": {"seed": 3, "epochs": 4, "steps_per_epoch": 25, "batch_size": 16, "eval_batch_size": 32,
                     "optimizer": {"lr": 3e-3, "head_lr": 3e-2}, "log_with": []},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Any, dict[str, Any], Path]:
    from polyhead.training.trainer import Trainer

    tmp = tmp_path_factory.mktemp("pairs")
    trainer = Trainer(Config.model_validate(pair_config(tmp, tiny_model_dir)), tmp / "run")
    return trainer, trainer.run(), tmp / "run" / "model"


def test_pair_tasks_train_in_their_own_group(trained: tuple[Any, dict[str, Any], Path]) -> None:
    trainer, results, _ = trained
    assert set(trainer.groups) == {"same+score", "topic"}
    assert set(results["dev"]["same"]) == {"accuracy", "macro_f1", "f1"}
    # the relation between the two texts is learned from the joint sequence (chance: ~0.5)
    assert results["dev"]["same"]["accuracy"] >= 0.8, results["dev"]
    assert results["dev"]["score"]["spearman"] >= 0.5, results["dev"]
    assert results["dev"]["topic"]["accuracy"] >= 0.9


def test_binary_f1_is_the_positive_class() -> None:
    from polyhead.tasks import get_task_type

    task = get_task_type("pair_classification")
    gold, pred = ["paraphrase", "paraphrase", "not_paraphrase"], ["paraphrase", "not_paraphrase", "not_paraphrase"]
    # positive "paraphrase" (last in sorted order): P = 1, R = 1/2 -> F1 = 2/3
    assert task.metrics(gold, pred, ["not_paraphrase", "paraphrase"])["f1"] == pytest.approx(2 / 3)
    # of a label and its negation the label, whatever the sort order: positive "entailment", P = 1, R = 1/2
    gold, pred = ["entailment", "entailment", "not_entailment"], ["entailment", "not_entailment", "not_entailment"]
    assert task.metrics(gold, pred, ["entailment", "not_entailment"])["f1"] == pytest.approx(2 / 3)
    # a gold label the head doesn't know (dev / test labels not seen in train) counts as not the positive class
    gold = ["entailment", "entailment", "neutral"]
    assert task.metrics(gold, pred, ["entailment", "not_entailment"])["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("labels", "positive"), [
    (["not_entailment", "entailment"], "entailment"), (["duplicate", "not duplicate"], "duplicate"),
    (["related", "unrelated"], "related"), (["Non-toxic", "toxic"], "toxic"), (["match", "mismatch"], "match"),
    (["0", "1"], "1"), (["yes", "no"], "yes"), (["negative", "positive"], "positive"), (["ham", "spam"], "spam"),
    (["contradiction", "entailment"], "entailment"),
])
def test_the_positive_class(labels: list[str], positive: str) -> None:
    from polyhead.tasks.classification import positive_label

    assert positive_label(labels) == positive


def test_save_reload_predict_pairs(trained: tuple[Any, dict[str, Any], Path]) -> None:
    from polyhead.modeling.multitask import MultiTaskModel

    trainer, _, model_dir = trained
    model = MultiTaskModel.from_pretrained(model_dir)
    out = model.predict_pairs(PAIRS)
    assert out == trainer.model.predict_pairs(PAIRS)
    assert set(out[0]) == {"same", "score"} and out[0]["same"]["label"] in ("same", "different")
    assert out[0]["score"]["score"] > out[1]["score"]["score"]  # same topic scores above different topics
    assert set(model.predict(["the match is here"])[0]) == {"topic"}  # text heads only
    # batched == one by one (padding and segment ids of a pair don't depend on its neighbours)
    alone = [model.predict_pairs([p])[0]["score"]["score"] for p in PAIRS]
    assert np.allclose(alone, [o["score"]["score"] for o in out], atol=1e-5)
    with pytest.raises(PolyheadError, match="take pairs of texts: predict_pairs in Python"):
        model.predict(["x"], tasks=["same"])
    with pytest.raises(PolyheadError, match="pair 0 must be two texts"):
        model.predict_pairs([("only one",)])


def test_onnx_export_with_parity(trained: tuple[Any, dict[str, Any], Path], tmp_path: Path) -> None:
    from polyhead.export.onnx import export_onnx
    from polyhead.predict import load

    copy = tmp_path / "model"
    shutil.copytree(trained[2], copy)
    report = export_onnx(copy, check=True)
    assert report["gate"]["fp32"]["label_agreement"] == 1.0
    assert "token_type_ids" in json.loads((copy / "onnx.json").read_text())["inputs"]
    a, b = load(copy, "onnx").predict_pairs(PAIRS), load(copy, "torch").predict_pairs(PAIRS)
    assert [x["same"]["label"] for x in a] == [x["same"]["label"] for x in b]
    assert np.allclose([x["score"]["score"] for x in a], [x["score"]["score"] for x in b], atol=1e-4)


def test_served(trained: tuple[Any, dict[str, Any], Path]) -> None:
    from fastapi.testclient import TestClient

    from polyhead.predict import load
    from polyhead.serving.app import ServeSettings, create_app

    model = load(trained[2])
    with TestClient(create_app(model, ServeSettings(batching=False))) as client:
        res = client.post("/predict", json={"pairs": [list(p) for p in PAIRS]})
        assert res.status_code == 200
        assert res.json()["predictions"] == json.loads(json.dumps(model.predict_pairs(PAIRS)))
        assert client.post("/predict", json={"texts": ["a"], "pairs": [["a", "b"]]}).status_code == 422
        assert client.post("/predict", json={"pairs": [["a"]]}).status_code == 422
        # errors name the request's own field: the pair and its side, not a flattened list of texts
        res = client.post("/predict", json={"pairs": [["a", "b"], ["c", "d"], ["e", " "]]})
        assert res.status_code == 422 and res.json()["error"].startswith("pairs[2][1]: empty text"), res.json()
        res = client.post("/similarity", json={"pairs": [["a", "b"], ["", "d"]]})
        assert res.status_code == 422 and res.json()["error"].startswith("pairs[1][0]: empty text"), res.json()
        res = client.post("/predict", json={"texts": ["x"], "tasks": ["same"]})
        assert res.status_code == 422 and "'pairs' over HTTP" in res.json()["error"], res.json()
        health = client.get("/health").json()
        assert health["tasks"]["same"]["input"] == "pair" and health["tasks"]["topic"]["input"] == "text"


def test_cli_predict_pairs(trained: tuple[Any, dict[str, Any], Path], tmp_path: Path) -> None:
    model_dir = trained[2]
    run = [sys.executable, "-m", "polyhead", "predict", str(model_dir)]
    out = subprocess.run([*run, "--pair", " ||| ".join(PAIRS[0]), "--json"], capture_output=True, text=True, check=True)
    record = json.loads(out.stdout)
    assert record["pair"] == list(PAIRS[0]) and set(record) == {"pair", "same", "score"}
    pairs_file = tmp_path / "pairs.tsv"
    pairs_file.write_text("the match is here\ta goal was there\nno tab here\n")
    bad = subprocess.run([*run, "--pairs-file", str(pairs_file)], capture_output=True, text=True)
    assert bad.returncode == 2 and "text_a<TAB>text_b" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([*run, "--pair", "no separator"], capture_output=True, text=True)
    assert bad.returncode == 2 and "TEXT_A ||| TEXT_B" in bad.stderr
    from polyhead.data.lines import gather_pairs

    with pytest.raises(PolyheadError, match="one '|||'"):  # not silently ("a", "b ||| c")
        gather_pairs(["a ||| b ||| c"], None)


def test_bad_pair_data_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.training.setup import load_all_data

    config = pair_config(tmp_path, tiny_model_dir)
    no_pair = json.loads(json.dumps(config))
    no_pair["tasks"]["same"]["data"]["pair_column"] = None
    with pytest.raises(Exception, match="pair_column is required for a pair_classification task"):
        Config.model_validate(no_pair)
    missing = json.loads(json.dumps(config))
    missing["tasks"]["same"]["data"]["pair_column"] = "sentence3"
    with pytest.raises(DataError, match=r"train.tsv:1: column\(s\) 'sentence3' not in the header"):
        load_all_data(Config.model_validate(missing))
    empty = tmp_path / "empty.tsv"
    empty.write_text("label\tscore\ttopic\tsentence1\tsentence2\nsame\t1.0\tsport\tthe goal\t \n")
    config["tasks"]["same"]["data"]["train"] = str(empty)
    with pytest.raises(DataError, match=r"empty.tsv:2: empty text in 'sentence2'") as info:
        load_all_data(Config.model_validate(config))
    assert "\n" not in str(info.value)
    numbers = tmp_path / "numbers.jsonl"  # JSON values that aren't text are named for what they are
    numbers.write_text('{"label": "same", "sentence1": "the goal", "sentence2": 5}\n')
    config["tasks"]["same"]["data"]["train"] = str(numbers)
    with pytest.raises(DataError, match=r"numbers.jsonl:1: column 'sentence2' should hold text, got int 5"):
        load_all_data(Config.model_validate(config))
    assert issubclass(ConfigError, PolyheadError)


def test_preservation_on_pair_tasks_alone_uses_each_text_of_the_pairs(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Cross-encoded pairs have no sentence embedding to preserve: with only pair tasks, data 'train' takes
    the pairs' texts, each alone and each once, as one more group (it once trained silently without the term);
    a file of general sentences replaces them."""
    from polyhead.training import preserve
    from polyhead.training.trainer import Trainer

    config = pair_config(tmp_path, tiny_model_dir)
    del config["tasks"]["topic"]
    config["training"].update(epochs=1, steps_per_epoch=6, preserve_embedding={"weight": 1.0})
    config["training"]["sampling"] = {"strategy": "round_robin"}  # the sentences' turn every third step
    trainer = Trainer(Config.model_validate(config), tmp_path / "run")
    trainer.setup()
    examples = [trainer.data[t].train for t in config["tasks"]]
    texts = {text for rows in examples for ex in rows for text in (ex.text, ex.text_pair)}
    assert len(texts) < sum(2 * len(rows) for rows in examples)  # both tasks read one file: each text kept once
    kept = preserve.pair_texts(examples)
    assert len(kept) == len(texts) and set(kept) == texts
    assert set(trainer.preserve.reference) == {preserve.PRESERVE}
    assert trainer.preserve.reference[preserve.PRESERVE].shape[0] == len(texts)
    encoded = trainer.model.encoder.tokenize_lists(kept)
    assert [it["enc"]["input_ids"] for it in trainer.preserve.extra.items] == [e["input_ids"] for e in encoded]
    trainer = Trainer(Config.model_validate(config), tmp_path / "run1")
    trainer.run()
    lines = [json.loads(line) for line in (tmp_path / "run1" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("train/loss/preserve_embedding", 0) > 0 for r in lines)
    config["training"]["preserve_embedding"]["limit"] = 3
    trainer = Trainer(Config.model_validate(config), tmp_path / "run2")
    trainer.setup()
    assert trainer.preserve.reference[preserve.PRESERVE].shape[0] == 3
    sentences = tmp_path / "general.txt"
    sentences.write_text("\n".join(f"a general sentence number {i}" for i in range(20)) + "\n")
    config["training"]["preserve_embedding"] = {"weight": 1.0, "data": str(sentences)}
    trainer = Trainer(Config.model_validate(config), tmp_path / "run3")
    trainer.run()
    assert trainer.preserve.reference["preserve_embedding"].shape[0] == 20
