"""The parity gate of the exports (ONNX and OpenVINO): an exported graph against PyTorch on sample texts.

fp32: min cosine >= 0.9999 and identical decisions; int8: mean cosine >= 0.99, decision agreement >= 99% and
(with an STS file) STS Spearman within 0.5 points. A variant that fails is removed and the export fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.errors import PolyheadError
from polyhead.evaluation.evaluator import read_sts_pairs, sts_spearman
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.onnx_backend import VARIANTS, OnnxModel
from polyhead.predict import predicting_tasks

GATE = {
    "fp32_cosine_min": 0.9999,
    "int8_cosine_mean": 0.99,
    "int8_label_agreement": 0.99,
    "int8_sts_points": 0.5,
}


def decisions_of(model: Any, texts: list[str]) -> list[Any]:
    """Every decision the model's heads make on ``texts`` (and, for pair tasks, on neighbouring texts paired)."""
    out = labels_of(model.predict(texts), model.tasks)
    if predicting_tasks(model.tasks, "pair"):
        out += labels_of(model.predict_pairs(list(zip(texts, texts[1:] + texts[:1], strict=True))), model.tasks)
    return out


def labels_of(predictions: list[dict[str, Any]], tasks: dict[str, Any]) -> list[Any]:
    """Comparable decisions, as each task type counts them (class labels, label sets, token tags; none for
    scores)."""
    out: list[Any] = []
    for pred in predictions:
        for task in sorted(pred):
            out += tasks[task].task.decisions(pred[task])
    return out


def parity_gate(
    model: MultiTaskModel,
    model_dir: Path,
    texts: list[str],
    variants: list[str],
    sts_file: Path | None = None,
    open_variant: Callable[[Path, str], Any] | None = None,
    remove: Callable[[Path, str], None] | None = None,
    files: dict[str, str] | None = None,
    kind: str = "",
) -> dict[str, Any]:
    """An export vs PyTorch on ``texts``: fp32 cosine >= 0.9999 and identical labels; int8 mean cosine >= 0.99,
    label agreement >= 99% and (with an STS file) STS Spearman within 0.5 points. Fails the export
    (removing the failing variant's files) with a one-line error when a bound doesn't hold. ``open_variant``
    ``remove`` and ``files`` (variant -> file name) default to the ONNX ones; the OpenVINO export passes its own
    (``kind``: "OpenVINO ")."""
    open_variant, files = open_variant or OnnxModel, files or VARIANTS
    ref_emb = np.asarray(model.encode(texts))
    ref_labels = decisions_of(model, texts)
    results: dict[str, Any] = {}
    for variant in variants:
        exported = open_variant(model_dir, variant)
        res = compare(exported, texts, ref_emb, ref_labels)
        if variant == "int8" and sts_file is not None:
            res["sts_spearman_torch"], res["sts_spearman_onnx"] = sts_points(model, exported, sts_file)
        results[variant] = res
        failure = gate_failure(variant, res)
        if failure:
            if remove is None:
                (model_dir / files[variant]).unlink(missing_ok=True)
            else:
                remove(model_dir, variant)
            raise PolyheadError(
                f"parity gate failed for the {kind}{variant} export ({failure}); {files[variant]} was removed"
            )
    return results


def compare(onnx_model: Any, texts: list[str], ref_emb: np.ndarray, ref_labels: list[Any]) -> dict[str, Any]:
    """Cosine of each embedding to PyTorch's ``ref_emb`` (n, dim) and the share of identical decisions."""
    emb = onnx_model.encode(texts)
    cos = (emb * ref_emb).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref_emb, axis=1))
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        **agreement(decisions_of(onnx_model, texts), ref_labels),
        "texts": len(texts),
    }


def agreement(labels: list[Any], ref_labels: list[Any]) -> dict[str, Any]:
    """Share of identical decisions (1.0 when there are none: a model without heads) and their count."""
    same = [a == b for a, b in zip(labels, ref_labels, strict=True)]
    return {"label_agreement": float(np.mean(same)) if same else 1.0, "decisions": len(same)}


def gate_failure(variant: str, res: dict[str, Any]) -> str | None:
    if variant == "fp32":
        if res["cosine_min"] < GATE["fp32_cosine_min"]:
            return f"min cosine to PyTorch {res['cosine_min']:.6f} < {GATE['fp32_cosine_min']}"
        if res["label_agreement"] < 1.0:
            return f"labels differ from PyTorch on {1 - res['label_agreement']:.2%} of decisions"
        return None
    if res["cosine_mean"] < GATE["int8_cosine_mean"]:
        return f"mean cosine to PyTorch {res['cosine_mean']:.4f} < {GATE['int8_cosine_mean']}"
    if res["label_agreement"] < GATE["int8_label_agreement"]:
        return f"label agreement {res['label_agreement']:.2%} < {GATE['int8_label_agreement']:.0%}"
    if (
        "sts_spearman_onnx" in res
        and abs(res["sts_spearman_onnx"] - res["sts_spearman_torch"]) > GATE["int8_sts_points"]
    ):
        return f"STS Spearman moved {abs(res['sts_spearman_onnx'] - res['sts_spearman_torch']):.2f} points (> 0.5)"
    return None


def sts_points(model: MultiTaskModel, onnx_model: Any, sts_file: Path) -> tuple[float, float]:
    """STS Spearman x100 of the torch model and of its ONNX export on the same pairs."""
    pairs = read_sts_pairs(sts_file)
    return 100 * sts_spearman(model, pairs, batch_size=32), 100 * sts_spearman(onnx_model, pairs, batch_size=32)
