"""A task type defined here, in the test module alone, trains, saves, reloads, predicts, evaluates and exports.

The type: a yes/no decision from one logit (sigmoid + binary cross-entropy), which no built-in type is. If
any part of polyhead compared type names instead of asking the task object, one of these steps would fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from helpers import tiny_config
from polyhead.config import Config
from polyhead.errors import DataError
from polyhead.modeldir import TaskSpec
from polyhead.tasks import DecodeInput, TaskType, get_task_type, register, task_type_names


@register
class YesNo(TaskType):
    name = "toy_yes_no"
    metric_names = ("accuracy",)
    primary_metric = "accuracy"
    min_labels = 2

    def label_counts(self, labels: Sequence[Any]) -> Counter[str]:
        return Counter(labels)

    def build_labels(self, labels: Sequence[Any], source: str) -> list[str]:
        found = sorted(set(labels))
        if len(found) != 2:
            raise DataError(f"{source}: a yes/no task needs exactly 2 labels, found {found}")
        return found

    def num_outputs(self, spec: TaskSpec) -> int:
        return 1

    def build_head(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> Any:
        from polyhead.modeling.heads import MLPHead

        self.check_spec(spec)
        return MLPHead("sentence", sentence_dim, 1, spec.hidden, spec.activation, spec.dropout, squeeze=True)

    def encode_target(self, spec: TaskSpec, label: Any, word_ids: Any, source: str) -> Any:
        return float(spec.labels.index(label))

    def collate_targets(self, spec: TaskSpec, values: list[Any], width: int) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32)

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(output.float(), target)

    def decode(self, spec: TaskSpec, output: np.ndarray, item: DecodeInput) -> dict[str, Any]:
        p = float(1 / (1 + np.exp(-float(output))))
        return {"label": spec.labels[int(p >= 0.5)], "p_second": p}

    def summary(self, decoded: dict[str, Any]) -> str:
        return f"{decoded['label']} ({decoded['p_second']:.2f})"

    def prediction_value(self, decoded: dict[str, Any]) -> Any:
        return decoded["label"]

    def decisions(self, decoded: dict[str, Any]) -> list[Any]:
        return [decoded["label"]]

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        return {"accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)}


TEXTS = ["goal is great today match", "chip is awful today app", "team is love today coach"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Any, dict[str, Any], Path]:
    from polyhead.training.trainer import Trainer

    tmp = tmp_path_factory.mktemp("plugin")
    config = tiny_config(tmp, tiny_model_dir)
    config["tasks"] = {"mood": {**config["tasks"]["sentiment"], "type": "toy_yes_no"}}
    config["training"].update(epochs=3, steps_per_epoch=12, optimizer={"lr": 2e-3, "head_lr": 3e-2})
    trainer = Trainer(Config.model_validate(config), tmp / "run")
    results = trainer.run()
    return trainer, results, tmp / "run" / "model"


def test_registered_and_validated_by_the_config() -> None:
    assert "toy_yes_no" in task_type_names() and isinstance(get_task_type("toy_yes_no"), YesNo)


def test_trains_and_evaluates_with_its_own_metric(trained: tuple[Any, dict[str, Any], Path]) -> None:
    trainer, results, _ = trained
    assert set(results["dev"]["mood"]) == {"accuracy"}
    assert results["dev"]["mood"]["accuracy"] >= 0.8  # keywords decide the mood: learnable in a few steps
    assert trainer.model.tasks["mood"].labels == ["neg", "pos"]
    assert trainer.model.heads["mood"].net[-1].out_features == 1


def test_saves_reloads_and_predicts_the_same(trained: tuple[Any, dict[str, Any], Path]) -> None:
    from polyhead.modeling.multitask import MultiTaskModel

    trainer, _, model_dir = trained
    loaded = MultiTaskModel.from_pretrained(model_dir)
    assert loaded.tasks["mood"].type == "toy_yes_no"
    predictions = loaded.predict(TEXTS)
    assert predictions == trainer.model.predict(TEXTS)
    assert {p["mood"]["label"] for p in predictions} <= {"neg", "pos"}
    # evaluated again from the saved directory: the same dev accuracy as the run reported
    from polyhead.training.api import evaluate_model

    config = Config.model_validate(yaml.safe_load((model_dir.parent / "config.yaml").read_text()))
    again = evaluate_model(model_dir, config, "dev")
    assert again["mood"]["accuracy"] == pytest.approx(trained[1]["dev"]["mood"]["accuracy"])


def test_exports_to_onnx_with_parity(trained: tuple[Any, dict[str, Any], Path], tmp_path: Path) -> None:
    import shutil

    from polyhead.export.onnx import export_onnx
    from polyhead.predict import load

    _, _, model_dir = trained
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    report = export_onnx(copy, check=True)
    assert report["gate"]["fp32"]["label_agreement"] == 1.0 and report["gate"]["fp32"]["decisions"] > 0
    onnx_model, torch_model = load(copy, "onnx"), load(copy, "torch")
    a, b = onnx_model.predict(TEXTS), torch_model.predict(TEXTS)
    assert [p["mood"]["label"] for p in a] == [p["mood"]["label"] for p in b]
    assert np.allclose([p["mood"]["p_second"] for p in a], [p["mood"]["p_second"] for p in b], atol=1e-4)
