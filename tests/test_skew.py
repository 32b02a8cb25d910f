"""Skewed classes (#20 item 2) and calibration (item 3): class weights, pos_weight and label smoothing in each
task type's loss; thresholds and temperatures in the model directory, used by every backend; the trainer fits
them on dev and reports the ECE; bad values are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from helpers import tiny_config, write_config
from polyhead.config import load_config
from polyhead.errors import ConfigError, ModelDirError, PolyheadError
from polyhead.modeldir import TaskSpec, read_config
from polyhead.tasks import get_task_type

TEXTS = ["the match is great today", "software is awful", "coach love team", "the app hate chip", "goal", "phone"]


# ------------------------------------------------------------------------------------------ losses by hand
def test_class_weights_change_the_classification_loss_as_computed_by_hand() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 2])
    weights = {"a": 0.5, "b": 2.0, "c": 3.0}
    task = get_task_type("classification")
    weighted = task.loss(TaskSpec("classification", ["a", "b", "c"], class_weights=weights), logits, target)
    nll = -torch.log_softmax(logits, 1)[torch.arange(6), target]
    w = torch.tensor([0.5, 2.0, 3.0])[target]
    assert weighted.item() == pytest.approx((w * nll).mean().item(), rel=1e-6)
    plain = task.loss(TaskSpec("classification", ["a", "b", "c"]), logits, target)
    assert plain.item() == pytest.approx(nll.mean().item(), rel=1e-6) and abs(plain.item() - weighted.item()) > 1e-3


def test_label_smoothing_with_and_without_weights_by_hand() -> None:
    torch.manual_seed(1)
    logits, target, eps = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 3]), 0.2
    labels = ["a", "b", "c", "d"]
    logp = torch.log_softmax(logits, 1)
    task = get_task_type("classification")
    smoothed = task.loss(TaskSpec("classification", labels, label_smoothing=eps), logits, target)
    by_hand = ((1 - eps) * -logp[torch.arange(5), target] + eps * -logp.mean(1)).mean()
    assert smoothed.item() == pytest.approx(by_hand.item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 4.0])
    both = task.loss(
        TaskSpec("classification", labels, label_smoothing=eps,
                 class_weights=dict(zip(labels, w.tolist(), strict=True))),
        logits, target,
    )
    per_row = (1 - eps) * w[target] * -logp[torch.arange(5), target] + eps / 4 * (w * -logp).sum(1)
    assert both.item() == pytest.approx(per_row.mean().item(), rel=1e-6)


def test_token_class_weights_average_over_labelled_tokens() -> None:
    torch.manual_seed(2)
    labels = ["O", "B-PER", "I-PER"]
    logits = torch.randn(2, 4, 3)
    target = torch.tensor([[0, 1, 2, -100], [-100, 0, 0, 1]])
    spec = TaskSpec("token_classification", labels, class_weights={"O": 0.25, "B-PER": 3.0, "I-PER": 2.0})
    loss = get_task_type("token_classification").loss(spec, logits, target)
    flat, tags = logits.reshape(-1, 3), target.reshape(-1)
    keep = tags != -100
    nll = -torch.log_softmax(flat[keep], 1)[torch.arange(int(keep.sum())), tags[keep]]
    w = torch.tensor([0.25, 3.0, 2.0])[tags[keep]]
    assert loss.item() == pytest.approx((w * nll).sum().item() / 6, rel=1e-6)


def test_pos_weight_changes_the_multilabel_loss_as_computed_by_hand() -> None:
    torch.manual_seed(3)
    logits, y = torch.randn(4, 3), torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    spec = TaskSpec("multilabel", ["x", "y", "z"], pos_weight={"x": 4.0, "z": 0.5})
    loss = get_task_type("multilabel").loss(spec, logits, y)
    pw = torch.tensor([4.0, 1.0, 0.5])
    by_hand = -(pw * y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------ weights from config
def test_balanced_weights_are_scikit_learns() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    train = ["a"] * 90 + ["b"] * 9 + ["c"] * 1
    found = get_task_type("classification").class_weight_values("balanced", ["a", "b", "c", "d"], train, "k")
    expected = compute_class_weight("balanced", classes=np.array(["a", "b", "c"]), y=np.array(train))
    assert [found[x] for x in "abc"] == pytest.approx(list(expected)) and found["d"] == 1.0  # "d": not in train
    tags = [["O", "O", "B-PER"], ["O", "B-PER", "I-PER"]]
    token = get_task_type("token_classification").class_weight_values("balanced", ["O", "B-PER", "I-PER"], tags, "k")
    assert token == pytest.approx({"O": 6 / (3 * 3), "B-PER": 6 / (3 * 2), "I-PER": 6 / 3})
    sets = [["x"], ["x", "y"], [], ["x"]]
    assert get_task_type("multilabel").class_weight_values("balanced", ["x", "y"], sets, "k") == {"x": 1 / 3, "y": 3.0}
    # a label on every row has no negatives: weight 1 (not 0, which would drop its positives from the loss)
    everywhere = [["x"], ["x", "y"], ["x"], ["x"]]
    assert get_task_type("multilabel").class_weight_values("balanced", ["x", "y"], everywhere, "k") == {"x": 1.0,
                                                                                                      "y": 3.0}
    mapping = get_task_type("classification").class_weight_values({"b": 5}, ["a", "b"], train, "k")
    assert mapping == {"a": 1.0, "b": 5.0}


def test_weights_naming_unknown_labels_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"tasks.t.class_weights names unknown label 'bogus'; labels: a, b"):
        get_task_type("classification").class_weight_values({"bogus": 2}, ["a", "b"], ["a"], "tasks.t.class_weights")


def test_weights_yaml_reads_as_strings_are_numbers() -> None:
    import yaml

    from polyhead.config import TaskConfig

    raw = yaml.safe_load("type: classification\ndata: {train: t.tsv}\nclass_weights: {a: 1e3, b: 2}")
    assert raw["class_weights"]["a"] == "1e3"  # YAML 1.1: an exponent without a dot is a string
    assert TaskConfig.model_validate(raw).class_weights == {"a": 1000.0, "b": 2}


@pytest.mark.parametrize(
    ("task", "override", "message"),
    [
        ("sentiment", "class_weights=heavy", "class_weights: 'heavy' is not 'balanced' or a mapping"),
        ("sentiment", "class_weights={pos: -1}", "is not 'balanced' or a mapping {label: positive number}"),
        ("sentiment", "pos_weight=balanced", "pos_weight is not an option of a classification task; valid for: "
                                             "multilabel"),
        ("entities", "calibrate=true", "calibrate is not an option of a token_classification task"),
        ("sentiment", "label_smoothing=1.5", "label_smoothing: Input should be less than 1"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, tiny_model_dir: Path, task: str, override: str, message: str
) -> None:
    path = write_config(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    with pytest.raises(ConfigError) as info:
        load_config(path, [f"tasks.{task}.{override}"])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_build_time_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.training.setup import build_specs, load_all_data

    raw = tiny_config(tmp_path, tiny_model_dir)
    path = write_config(tmp_path, raw)
    cases = {
        "tasks.topic.class_weights={golf: 2}":
            "tasks.topic.class_weights names unknown label 'golf'; labels: sport, tech",
        "tasks.topic.labels=[sport, tech, art]":
            "tasks.topic.tune_thresholds: thresholds are tuned for two-class tasks; this one has 3 labels",
    }
    for override, message in cases.items():
        config = load_config(path, [override, "tasks.topic.tune_thresholds=true"])
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            build_specs(config, load_all_data(config))
    config = load_config(path, ["tasks.entities.class_weights=balanced", "tasks.topic.data.dev=null",
                                "tasks.topic.calibrate=true"])
    with pytest.raises(ConfigError, match="tasks.topic: tune_thresholds and calibrate fit on the dev split"):
        build_specs(config, load_all_data(config))


def test_cli_train_refuses_bad_weights_in_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "polyhead", "train", str(path), "--set", "tasks.topic.class_weights={golf: 2}",
         "--output", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "tasks.topic.class_weights names unknown label 'golf'" in lines[0]


# ------------------------------------------------------------------------------------------ the model directory
@pytest.fixture(scope="module")
def skew_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binary and multilabel heads with a temperature and thresholds chosen so that decisions flip."""
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.predict import head_outputs

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    specs = {"mood": TaskSpec("classification", ["neg", "pos"], dropout=0.0),
             "tags": TaskSpec("multilabel", ["x", "y", "z"], dropout=0.0)}
    model = MultiTaskModel(encoder, specs)
    specs["mood"].temperature, specs["tags"].temperature = 0.2, 3.0
    p_pos = torch.softmax(torch.tensor(head_outputs(model, TEXTS, "mood")) / 0.2, 1)[:, 1].numpy()
    wanted = 5 if (p_pos >= 0.5).sum() != 5 else 1  # positives above the threshold: never as many as by argmax
    ranked = np.sort(p_pos)[::-1]
    specs["mood"].thresholds = {"pos": float(ranked[wanted - 1] + ranked[wanted]) / 2}  # no text sits on it
    specs["tags"].thresholds = {"x": 0.3, "z": 0.7}
    return model.save_pretrained(tmp_path_factory.mktemp("skew") / "model")


def expected(model_dir: Path) -> list[dict[str, Any]]:
    """Predictions from the raw head outputs, with the directory's temperatures and thresholds applied by hand."""
    from polyhead.predict import head_outputs, load

    model = load(model_dir)
    mood, tags = model.tasks["mood"], model.tasks["tags"]
    out_mood = torch.softmax(torch.tensor(head_outputs(model, TEXTS, "mood")) / mood.temperature, 1).numpy()
    out_tags = torch.sigmoid(torch.tensor(head_outputs(model, TEXTS, "tags")) / tags.temperature).numpy()
    cut = {"x": 0.3, "y": 0.5, "z": 0.7}
    return [
        {"mood": "pos" if m[1] >= mood.thresholds["pos"] else "neg",
         "tags": [lab for lab, p in zip(["x", "y", "z"], t, strict=True) if p >= cut[lab]]}
        for m, t in zip(out_mood, out_tags, strict=True)
    ]


def test_thresholds_and_temperature_round_trip_and_decide(skew_model: Path) -> None:
    from polyhead.modeling.multitask import MultiTaskModel

    tasks = read_config(skew_model).tasks
    assert tasks["mood"].temperature == 0.2 and set(tasks["mood"].thresholds) == {"pos"}
    assert tasks["tags"].thresholds == {"x": 0.3, "z": 0.7} and tasks["tags"].temperature == 3.0
    model = MultiTaskModel.from_pretrained(skew_model)
    got = model.predict(TEXTS)
    want = expected(skew_model)
    assert [g["mood"]["label"] for g in got] == [w["mood"] for w in want]
    assert [g["tags"]["labels"] for g in got] == [w["tags"] for w in want]
    probs = [g["mood"]["probabilities"]["pos"] for g in got]
    argmax = ["pos" if p >= 0.5 else "neg" for p in probs]
    assert argmax != [g["mood"]["label"] for g in got]  # the threshold, not the argmax, decided
    again = MultiTaskModel.from_pretrained(model.save_pretrained(skew_model.parent / "copy"))
    assert again.tasks == model.tasks and again.predict(TEXTS) == got


def test_onnx_backend_and_server_decide_with_them(skew_model: Path) -> None:
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    from polyhead.export.onnx import export_onnx
    from polyhead.predict import load
    from polyhead.serving.app import ServeSettings, create_app

    export_onnx(skew_model)
    torch_out, onnx_out = load(skew_model).predict(TEXTS), load(skew_model, "onnx").predict(TEXTS)
    assert [o["mood"]["label"] for o in onnx_out] == [w["mood"] for w in expected(skew_model)]
    assert [o["tags"]["labels"] for o in onnx_out] == [t["tags"]["labels"] for t in torch_out]
    for a, b in zip(onnx_out, torch_out, strict=True):
        assert a["mood"]["score"] == pytest.approx(b["mood"]["score"], abs=1e-4)
    with TestClient(create_app(load(skew_model, "onnx"), ServeSettings(batching=False))) as client:
        served = client.post("/predict", json={"texts": TEXTS}).json()["predictions"]
    assert [s["mood"]["label"] for s in served] == [o["mood"]["label"] for o in onnx_out]


def test_openvino_backend_decides_with_them(skew_model: Path) -> None:
    pytest.importorskip("openvino")
    from polyhead.export.openvino import export_openvino
    from polyhead.predict import load

    export_openvino(skew_model)
    torch_out, ov_out = load(skew_model).predict(TEXTS), load(skew_model, "openvino").predict(TEXTS)
    assert [o["mood"]["label"] for o in ov_out] == [w["mood"] for w in expected(skew_model)]
    assert [o["tags"]["labels"] for o in ov_out] == [t["tags"]["labels"] for t in torch_out]
    for a, b in zip(ov_out, torch_out, strict=True):
        assert a["mood"]["score"] == pytest.approx(b["mood"]["score"], abs=1e-4)


@pytest.mark.parametrize(
    ("task", "key", "value", "message"),
    [
        ("mood", "thresholds", {"pos": 1.5},
         "tasks.mood.thresholds is {'pos': 1.5}; valid: an object {label: number in (0, 1)}"),
        ("mood", "thresholds", {"pos": 0}, "valid: an object {label: number in (0, 1)}"),
        ("mood", "thresholds", {"maybe": 0.4}, "tasks.mood.thresholds names unknown label 'maybe'; labels: neg, pos"),
        ("mood", "temperature", 0, "tasks.mood.temperature is 0; valid: a positive number"),
        ("mood", "temperature", -2.0, "valid: a positive number"),
        ("mood", "class_weights", {"neg": -1},
         "tasks.mood.class_weights is {'neg': -1}; valid: an object {label: positive number}"),
        ("tags", "pos_weight", {"w": 2.0}, "tasks.tags.pos_weight names unknown label 'w'"),
        ("mood", "label_smoothing", 1, "tasks.mood.label_smoothing is 1; valid: a number in [0, 1)"),
    ],
)
def test_bad_values_in_polyhead_json_are_one_line_errors(
    skew_model: Path, tmp_path: Path, task: str, key: str, value: Any, message: str
) -> None:
    import shutil

    copy = Path(shutil.copytree(skew_model, tmp_path / "model"))
    raw = json.loads((copy / "polyhead.json").read_text())
    raw["tasks"][task][key] = value
    (copy / "polyhead.json").write_text(json.dumps(raw))
    with pytest.raises(ModelDirError) as info:
        read_config(copy)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_directories_without_the_new_fields_still_load(skew_model: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(skew_model, tmp_path / "old"))
    raw = json.loads((copy / "polyhead.json").read_text())
    for spec in raw["tasks"].values():
        for key in ("class_weights", "pos_weight", "label_smoothing", "thresholds", "temperature"):
            spec.pop(key, None)
    (copy / "polyhead.json").write_text(json.dumps(raw))
    tasks = read_config(copy).tasks
    assert tasks["mood"].temperature == 1.0 and tasks["mood"].thresholds == {} and tasks["tags"].pos_weight == {}


def test_a_classifier_with_three_labels_refuses_a_threshold(skew_model: Path, tmp_path: Path) -> None:
    import shutil

    spec = TaskSpec("classification", ["a", "b", "c"], thresholds={"c": 0.3})
    with pytest.raises(PolyheadError, match="takes one threshold"):
        spec.task.check_spec(spec)
    copy = Path(shutil.copytree(skew_model, tmp_path / "model"))
    raw = json.loads((copy / "polyhead.json").read_text())
    raw["tasks"]["mood"]["thresholds"] = {"neg": 0.4, "pos": 0.6}
    (copy / "polyhead.json").write_text(json.dumps(raw))
    with pytest.raises(ModelDirError, match=r"polyhead.json: task 'mood': a classification head takes one threshold"):
        read_config(copy)  # what the onnx backend reads too


# ------------------------------------------------------------------------------------------ fitted after training
def test_training_fits_temperature_and_thresholds_on_dev(tmp_path: Path, tiny_model_dir: Path) -> None:
    from polyhead.predict import load
    from polyhead.training.trainer import Trainer

    raw = tiny_config(tmp_path, tiny_model_dir)
    raw["tasks"]["sentiment"].update(class_weights="balanced", tune_thresholds=True, calibrate=True)
    raw["tasks"]["topic"].update(calibrate=True, label_smoothing=0.1)
    raw["tasks"]["entities"].update(class_weights="balanced")
    results = Trainer(load_config(write_config(tmp_path, raw)), tmp_path / "run").run()
    cal = results["calibration"]
    assert set(cal) == {"sentiment", "topic"} and set(cal["sentiment"]["thresholds"]) == {"pos"}
    for name in cal:
        assert cal[name]["temperature"] > 0 and cal[name]["temperature"] != 1.0
        assert 0 <= cal[name]["dev_ece_after"] <= 1 and 0 <= cal[name]["dev_ece_before"] <= 1
        assert {"test_ece_before", "test_ece_after"} <= set(cal[name])
        assert cal[name]["reliability"]["split"] == "test"
    written = json.loads((tmp_path / "run" / "results.json").read_text())["calibration"]
    assert written["sentiment"]["thresholds"] == cal["sentiment"]["thresholds"]
    assert (tmp_path / "run" / "reliability.png").stat().st_size > 1000
    tasks = read_config(tmp_path / "run" / "model").tasks
    assert tasks["sentiment"].temperature == cal["sentiment"]["temperature"]
    assert tasks["sentiment"].thresholds == cal["sentiment"]["thresholds"]
    assert tasks["sentiment"].class_weights.keys() == {"neg", "pos"} and tasks["topic"].label_smoothing == 0.1
    assert tasks["entities"].class_weights["O"] < tasks["entities"].class_weights["B-PER"]
    assert "topic" not in json.dumps({k: v for k, v in cal.items() if "thresholds" in v})  # only where asked
    config_yaml = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config_yaml["tasks"]["sentiment"]["tune_thresholds"] is True
    model = load(tmp_path / "run" / "model")
    dev = [line.split("\t")[2] for line in Path(raw["tasks"]["sentiment"]["data"]["dev"]).read_text().splitlines()[1:]]
    threshold = tasks["sentiment"].thresholds["pos"]
    for out in model.predict(dev, tasks=["sentiment"]):
        p = out["sentiment"]["probabilities"]["pos"]
        assert out["sentiment"]["label"] == ("pos" if p >= threshold else "neg")
    # the ECE after scaling is that of the saved model's own predictions (scores from the stored temperature)
    from polyhead.evaluation.calibration import expected_calibration_error

    gold = [line.split("\t")[0] for line in Path(raw["tasks"]["topic"]["data"]["dev"]).read_text().splitlines()[1:]]
    preds = [out["topic"] for out in model.predict(dev, tasks=["topic"])]
    confidence = np.array([p["score"] for p in preds])
    correct = np.array([p["label"] == g for p, g in zip(preds, gold, strict=True)], dtype=float)
    assert expected_calibration_error(confidence, correct) == pytest.approx(cal["topic"]["dev_ece_after"], abs=1e-5)


def test_a_dev_set_that_cannot_calibrate_leaves_the_head_as_it_was(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A dev split of one class drives the fitted temperature to its limit (every probability 0 or 1) and any
    threshold fits it: the head keeps temperature 1 and its own decisions, with a warning."""
    from polyhead.data.readers import Example
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel
    from polyhead.training.calibrate import calibrate_heads
    from polyhead.training.setup import TaskData

    raw = tiny_config(tmp_path, tiny_model_dir)
    raw["tasks"] = {"sentiment": {**raw["tasks"]["sentiment"], "tune_thresholds": True, "calibrate": True}}
    config = load_config(write_config(tmp_path, raw))
    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32),
                           {"sentiment": TaskSpec("classification", ["neg", "pos"], dropout=0.0)})
    head = [m for m in model.heads["sentiment"].modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a head sure of "pos" for every text, right on every dev row
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-3.0, 3.0]))
    dev = [Example(f"a fine text {i}", "pos") for i in range(4)]
    with caplog.at_level("WARNING"):
        report = calibrate_heads(config, model, {"sentiment": TaskData([], dev=dev)}, 4, "fp32")
    assert report["sentiment"]["temperature"] == 1.0 and model.tasks["sentiment"].temperature == 1.0
    assert report["sentiment"]["thresholds"] == {} and model.tasks["sentiment"].thresholds == {}
    assert "too few to fit a temperature on" in caplog.text and "all of one class" in caplog.text


def test_pair_heads_calibrate_on_their_pairs(tiny_model_dir: Path) -> None:
    """A cross-encoded pair head's dev logits come from the pair encodings: the same numbers predict_pairs
    decodes (so the fitted temperature is the one its predictions need)."""
    from polyhead.data.readers import Example
    from polyhead.modeling.encoder import SentenceEncoder
    from polyhead.modeling.multitask import MultiTaskModel

    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=32)
    model = MultiTaskModel(encoder, {"same": TaskSpec("pair_classification", ["no", "yes"], dropout=0.0)})
    examples = [Example(a, label, text_pair=b) for a, b, label in
                [("a cat", "a kitten", "yes"), ("a cat", "the stock market", "no"), ("red car", "blue sky", "no")]]
    logits, targets = model.tasks["same"].task.dev_outputs(model, "same", examples, 2, "fp32")
    assert logits.shape == (3, 2) and targets.tolist() == [1, 0, 0]
    decoded = model.predict_pairs([(ex.text, ex.text_pair or "") for ex in examples])
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), 1)[:, 1].numpy()
    assert np.allclose(probs, [d["same"]["probabilities"]["yes"] for d in decoded], atol=1e-5)


def test_unset_calibration_fields_are_not_written(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A model trained without the options stays readable by older polyhead versions (no new keys)."""
    import json

    from polyhead.modeldir import TaskSpec

    plain = TaskSpec("classification", ["a", "b"]).to_dict()
    assert not {"class_weights", "pos_weight", "label_smoothing", "thresholds", "temperature"} & plain.keys()
    tuned = TaskSpec("classification", ["a", "b"], thresholds={"b": 0.3}, temperature=1.5)
    assert TaskSpec.from_dict(json.loads(json.dumps(tuned.to_dict()))) == tuned
