"""A minimum entity score for token heads (`tune_thresholds` on a token_classification task): chosen on dev for
the best entity F1, saved per entity type in polyhead.json, applied by the shared decoder (so by every backend):
an entity below it is dropped and its words tagged O."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import tiny_config, write_config
from polyhead.config import load_config
from polyhead.data.readers import Example
from polyhead.errors import ModelDirError
from polyhead.evaluation.calibration import entity_threshold
from polyhead.evaluation.metrics import entity_metrics
from polyhead.modeldir import TaskSpec, read_config
from polyhead.tasks.token_classification import decode_tokens
from polyhead.tokens import Word

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
SENTENCES = [s.split() for s in [
    "Anna flew from Paris to Rome on Monday",
    "the mayor of New York met John Smith",
    "Berlin and Madrid are large cities",
    "Maria thinks London is rainy",
    "nothing happens here at all today",
    "Peter moved to Oslo last year with Ida",
]]


def test_entity_threshold_is_the_f1_best_cut() -> None:
    scores, correct = np.array([0.9, 0.8, 0.3, 0.2, 0.1]), np.array([True, True, False, False, True])
    # keep the top 2: F1 4/5 = 0.8; keep all 5: 6/8; top 3: 4/6; top 4: 4/7
    assert entity_threshold(scores, correct, gold=3) == pytest.approx((0.8 + 0.3) / 2)
    assert entity_threshold(scores, np.array([True, True, True, False, True]), gold=10) is None  # keeping all wins
    assert entity_threshold(np.array([]), np.array([], dtype=bool), gold=4) is None
    # equal F1s (here 0 at every cut): the loosest cut, i.e. keep every entity, nothing saved
    assert entity_threshold(np.array([0.9, 0.5, 0.4]), np.array([False] * 3), gold=3) is None
    assert entity_threshold(np.array([0.9, 0.5, 0.4]), np.array([True, False, False]), gold=1) == pytest.approx(0.7)


def test_decoding_drops_entities_below_their_types_minimum() -> None:
    words = [Word(w, i * 10, i * 10 + len(w)) for i, w in enumerate(["Anna", "saw", "New", "York"])]
    word_ids = [None, 0, 1, 2, 3, None]
    logits = np.full((6, 5), -9.0)
    logits[1, 3] = 2.0  # Anna: B-PER, probability ~1
    logits[2, 0] = 5.0  # saw: O
    logits[3, [1, 0]] = [1.0, 0.5]  # New: B-LOC, probability ~0.62
    logits[4, [2, 0]] = [1.0, 0.2]  # York: I-LOC
    plain = decode_tokens(LABELS, logits, word_ids, words, 32)
    assert [(e["type"], e["word_start"], e["word_end"]) for e in plain["entities"]] == [("PER", 0, 1), ("LOC", 2, 4)]
    loc_score = plain["entities"][1]["score"]
    cut = decode_tokens(LABELS, logits, word_ids, words, 32, min_scores={"LOC": loc_score + 0.01, "PER": 0.5})
    assert [e["type"] for e in cut["entities"]] == ["PER"] and cut["tags"] == ["B-PER", "O", "O", "O"]
    kept = decode_tokens(LABELS, logits, word_ids, words, 32, min_scores={"LOC": loc_score - 0.01})
    assert kept == plain


@pytest.fixture(scope="module")
def token_model(tiny_model_dir: Path) -> Any:
    """An untrained token head: many entities of every score, so the cut matters."""
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    return MultiTaskModel(encoder, {"ner": TaskSpec("token_classification", LABELS, dropout=0.0)})


def gold_from_confident_entities(model: Any) -> list[Example]:
    """Dev gold = the model's own entities above their median score, so that the best cut lies inside."""
    found = [out["ner"] for out in model.predict(SENTENCES, tasks=["ner"])]
    scores = [e["score"] for f in found for e in f["entities"]]
    assert len(scores) >= 6, "the untrained head should predict entities"
    median = float(np.median(scores))
    examples = []
    for words, f in zip(SENTENCES, found, strict=True):
        tags = ["O"] * len(words)
        for e in f["entities"]:
            if e["score"] > median:
                tags[e["word_start"] : e["word_end"]] = [f"B-{e['type']}"] + [f"I-{e['type']}"] * (
                    e["word_end"] - e["word_start"] - 1)
        examples.append(Example(" ".join(words), tags, words=list(words)))
    return examples


def test_the_tuned_minimum_gives_the_best_dev_f1_seqeval_finds(token_model: Any) -> None:
    spec = token_model.tasks["ner"]
    spec.thresholds = {}
    examples = gold_from_confident_entities(token_model)
    gold = [ex.label for ex in examples]
    tuned = spec.task.tune_thresholds(spec, *spec.task.dev_outputs(token_model, "ner", examples, 4, "fp32"))
    assert set(tuned) == {"LOC", "PER"} and len(set(tuned.values())) == 1

    def f1_with(minimum: float | None) -> float:
        spec.thresholds = {} if minimum is None else {"LOC": minimum, "PER": minimum}
        pred = [out["ner"]["tags"] for out in token_model.predict([ex.words for ex in examples], tasks=["ner"])]
        return entity_metrics(gold, pred)["f1"]

    plain = f1_with(None)
    found = token_model.predict(SENTENCES, tasks=["ner"])
    scores = sorted({e["score"] for out in found for e in out["ner"]["entities"]})
    brute = max(f1_with(s) for s in scores)  # every cut there is (keep entities >= each score)
    best = f1_with(tuned["LOC"])
    spec.thresholds = {}
    assert best == pytest.approx(brute) and best > plain


def test_training_tunes_saves_and_every_backend_applies_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.predict import load
    from polyhead.training.trainer import Trainer

    raw = tiny_config(tmp_path, tiny_model_dir)
    raw["tasks"]["entities"]["tune_thresholds"] = True
    raw["training"]["epochs"] = 1
    results = Trainer(load_config(write_config(tmp_path, raw)), tmp_path / "run").run()
    tuned = results["calibration"]["entities"]["thresholds"]
    model_dir = tmp_path / "run" / "model"
    assert read_config(model_dir).tasks["entities"].thresholds == tuned
    # whatever dev gave, the saved head applies a cut: set one that drops something and check the backends
    data = json.loads((model_dir / "polyhead.json").read_text())
    torch_model = load(model_dir)
    words = [line.split()[0] for line in Path(raw["tasks"]["entities"]["data"]["dev"]).read_text().splitlines()
             if line.strip()][:12]
    before = torch_model.predict([words], tasks=["entities"])[0]["entities"]["entities"]
    assert before, "the tiny model should tag something"
    cut = float(np.median([e["score"] for e in before])) + 1e-6
    data["tasks"]["entities"]["thresholds"] = dict.fromkeys(torch_model.tasks["entities"].task.threshold_keys(
        torch_model.tasks["entities"]), cut)
    (model_dir / "polyhead.json").write_text(json.dumps(data))
    kept = [e for e in before if e["score"] >= cut]
    for backend in ("torch", "onnx"):
        if backend == "onnx":
            pytest.importorskip("onnxruntime")
            from polyhead.export.onnx import export_onnx

            export_onnx(model_dir)
        after = load(model_dir, backend).predict([words], tasks=["entities"])[0]["entities"]["entities"]
        assert [(e["type"], e["word_start"]) for e in after] == [(e["type"], e["word_start"]) for e in kept], backend


def test_a_threshold_naming_no_entity_type_is_a_one_line_error(tmp_path: Path, token_model: Any) -> None:
    model_dir = token_model.save_pretrained(tmp_path / "m")
    data = json.loads((model_dir / "polyhead.json").read_text())
    data["tasks"]["ner"]["thresholds"] = {"B-LOC": 0.5}
    (model_dir / "polyhead.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match=r"tasks.ner.thresholds names unknown label 'B-LOC'; valid: LOC, PER$"):
        read_config(model_dir)
