"""`polyhead export MODEL_DIR --format openvino [--quantize int8] [--check]`.

The same graph as the ONNX export (polyhead.export.onnx: token ids -> ``sentence_embedding``,
``pooled_embedding``, ``token_embeddings`` when a token head exists, ``task.<name>`` for every head, dynamic batch
and sequence axes), captured with ``torch.export`` and converted by ``openvino.convert_model`` into an fp32 IR
(``openvino_model.xml`` + ``openvino_model.weights``; the weights stay float32: bf16 is a run-time hint, see
polyhead.openvino_backend). int8: NNCF post-training quantisation, the first of INT8_RECIPES (fastest first)
whose outputs hold the same int8 gate as the ONNX export, on the calibration texts; heads stay fp32. The parity
gate compares against PyTorch and refuses an export that drifts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyhead.errors import PolyheadError
from polyhead.export.gate import parity_gate as onnx_parity_gate
from polyhead.export.onnx import (
    SAMPLE,
    ExportWrapper,
    compare,
    decisions_of,
    gate_failure,
    graph_signature,
    load_for_export,
    sample_inputs,
)
from polyhead.fileio import write_json_atomic
from polyhead.modeldir import write_card
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.numpy_backend import source_hashes
from polyhead.openvino_backend import OPENVINO_META, VARIANTS, OpenVinoModel, bin_file, cpu_has_bf16

logger = logging.getLogger(__name__)

# Fastest first; export keeps the first that holds the int8 gate (docs/export.md has the measurements).
#   static   NNCF `quantize` for transformers: int8 weights (per channel) and int8 activations (per tensor,
#            ranges from the calibration texts, SmoothQuant on the MatMuls): int8 GEMMs (VNNI / AMX)
#   weights  NNCF `compress_weights` INT8_ASYM: int8 weights decompressed on the fly, float arithmetic: a file a
#            quarter of the size, close to fp32 in both speed and numbers
INT8_RECIPES = ("static", "weights")


def export_openvino(
    model_dir: Path,
    quantize: str | None = None,
    check: bool = False,
    texts: list[str] | None = None,
    sts_file: Path | None = None,
) -> dict[str, Any]:
    """Export (and optionally quantise and check) the model in ``model_dir`` as OpenVINO IR; returns what was
    written (``files``, ``int8_recipe``, ``gate``)."""
    check_options(quantize, sts_file)
    import openvino as ov

    model = load_for_export(model_dir)
    ov_model = convert(model)
    for variant in VARIANTS.values():  # files from earlier weights would be stale
        (model_dir / variant).unlink(missing_ok=True)
        bin_file(model_dir / variant).unlink(missing_ok=True)
    save_ir(ov, ov_model, model_dir / VARIANTS["fp32"])
    meta: dict[str, Any] = {
        "format_version": 1,
        "openvino": ov.__version__,
        "inputs": [i.get_any_name() for i in ov_model.inputs],
        "outputs": [o.get_any_name() for o in ov_model.outputs],
        "pad_token_id": model.encoder.pad_token_id,
        "source_sha256": source_hashes(model_dir),
        "files": {"fp32": VARIANTS["fp32"]},
    }
    write_json_atomic(model_dir / OPENVINO_META, meta)
    report: dict[str, Any] = {"files": [str(model_dir / VARIANTS["fp32"])]}
    if quantize == "int8":
        meta["files"]["int8"] = VARIANTS["int8"]
        write_json_atomic(model_dir / OPENVINO_META, meta)
        try:
            meta["int8_recipe"] = report["int8_recipe"] = quantize_int8(ov, model, ov_model, model_dir, texts or SAMPLE)
        except BaseException:
            del meta["files"]["int8"]
            remove_variant(model_dir, "int8")
            write_json_atomic(model_dir / OPENVINO_META, meta)
            raise
        write_json_atomic(model_dir / OPENVINO_META, meta)
        report["files"].append(str(model_dir / VARIANTS["int8"]))
    if check:
        try:
            report["gate"] = parity_gate(model, model_dir, texts or SAMPLE, list(meta["files"]), sts_file)
        except PolyheadError:
            meta["files"] = {k: v for k, v in meta["files"].items() if (model_dir / v).is_file()}
            write_json_atomic(model_dir / OPENVINO_META, meta)
            raise
        meta["gate"] = report["gate"]
        write_json_atomic(model_dir / OPENVINO_META, meta)
    write_card(model_dir)  # the card's OpenVINO section: the files written and the gate's numbers
    return report


def check_options(quantize: str | None, sts_file: Path | None) -> None:
    """What an export would otherwise trip over after minutes of work: options and the ``openvino`` extra."""
    from polyhead.extras import require

    require("openvino", "polyhead export --format openvino", ["openvino"] + (["nncf"] if quantize == "int8" else []))
    if quantize not in (None, "int8"):
        raise PolyheadError(f"--quantize {quantize!r}: valid: int8")
    if sts_file is not None and not Path(sts_file).is_file():
        raise PolyheadError(f"--sts {sts_file}: no such file (a TSV with sentence1, sentence2, score columns)")


@contextmanager
def sdpa_attention(model: MultiTaskModel) -> Iterator[None]:
    """Capture the graph with torch's scaled_dot_product_attention, which OpenVINO fuses into one
    ScaledDotProductAttention op (eager attention becomes plain MatMuls: batch 1 measured 4.0-4.3 ms a sentence
    against 3.2-3.4 ms, BENCHMARKS.md); the model goes back to its own attention afterwards, so the parity gate's
    PyTorch reference is the model as trained. An architecture without SDPA keeps its own attention."""
    transformer = model.encoder.transformer
    before = transformer.config._attn_implementation
    try:
        transformer.set_attn_implementation("sdpa")
    except (ValueError, ImportError) as err:  # transformers' answer for an architecture without SDPA
        logger.info("OpenVINO export keeps %s attention: %s", before, err)
        yield
        return
    try:
        yield
    finally:
        transformer.set_attn_implementation(before)


def convert(model: MultiTaskModel) -> Any:
    """The model's graph as an ``openvino.Model`` with named inputs and outputs and dynamic batch and sequence
    axes (``torch.export`` with ``Dim.DYNAMIC``, then ``openvino.convert_model``)."""
    import openvino as ov

    heads, with_tokens, inputs, names = graph_signature(model)
    sample = sample_inputs(model, inputs)
    dynamic = {name: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC} for name in inputs}
    with torch.no_grad(), sdpa_attention(model):
        program = torch.export.export(
            ExportWrapper(model, heads, with_tokens).eval(), tuple(sample[n] for n in inputs), dynamic_shapes=dynamic
        )
        ov_model = ov.convert_model(program)
    assert len(ov_model.outputs) == len(names) and len(ov_model.inputs) == len(inputs), "graph signature"
    for port, name in zip(ov_model.inputs, inputs, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, names, strict=True):
        port.get_tensor().set_names({name})
    return ov_model


def save_ir(ov: Any, ov_model: Any, xml: Path) -> None:
    """Write ``xml`` and its weights (float32 as they are; :func:`bin_file`) through temporary names renamed into
    place."""
    tmp = xml.with_name(f".{xml.stem}.tmp-{os.getpid()}.xml")
    try:
        ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), bin_file(xml))
        os.replace(tmp, xml)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)


def remove_variant(model_dir: Path, variant: str) -> None:
    (model_dir / VARIANTS[variant]).unlink(missing_ok=True)
    bin_file(model_dir / VARIANTS[variant]).unlink(missing_ok=True)


def head_nodes(ov_model: Any) -> list[str]:
    """Friendly names of the nodes only ``task.*`` outputs depend on (the heads, kept fp32 by the quantiser)."""

    def upstream(results: list[Any]) -> set[str]:
        seen: set[str] = set()
        stack = list(results)
        while stack:
            node = stack.pop()
            if node.get_friendly_name() in seen:
                continue
            seen.add(node.get_friendly_name())
            stack.extend(port.get_source_output().get_node() for port in node.inputs())
        return seen

    results = {port.get_any_name(): port.get_node() for port in ov_model.outputs}
    shared = upstream([node for name, node in results.items() if not name.startswith("task.")])
    heads = upstream([node for name, node in results.items() if name.startswith("task.")]) - shared
    return sorted(n.get_friendly_name() for n in ov_model.get_ops() if n.get_friendly_name() in heads
                  and n.get_type_name() == "MatMul")


def calibration_items(model: MultiTaskModel, inputs: list[str], texts: list[str]) -> list[dict[str, np.ndarray]]:
    """One feed per text (unpadded): what NNCF collects activation ranges on."""
    items = []
    for encoding in model.encoder.tokenize_lists(texts):
        ids = np.asarray([encoding["input_ids"]], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        items.append(feed)
    return items


def quantize_with(recipe: str, ov_model: Any, items: list[dict[str, np.ndarray]]) -> Any:
    """One int8 recipe (INT8_RECIPES) on ``ov_model``; heads left in fp32. NNCF's INFO lines (one per layer it
    leaves alone) are held back for the call; its progress bars stay."""
    import nncf

    ignored = nncf.IgnoredScope(names=head_nodes(ov_model), validate=False)
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(max(level, logging.WARNING))
    try:
        return run_recipe(nncf, recipe, ov_model, items, ignored)
    finally:
        nncf_logger.setLevel(level)


def run_recipe(nncf: Any, recipe: str, ov_model: Any, items: list[dict[str, np.ndarray]], ignored: Any) -> Any:
    if recipe == "static":
        return nncf.quantize(
            ov_model,
            nncf.Dataset(items),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(items),
            ignored_scope=ignored,
        )
    assert recipe == "weights", recipe
    return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=ignored)


def quantize_int8(ov: Any, model: MultiTaskModel, ov_model: Any, model_dir: Path, texts: list[str]) -> str:
    """Write the int8 IR with the first recipe in INT8_RECIPES whose embeddings and decisions hold the int8 gate
    against PyTorch on ``texts`` (which also calibrate it); the last recipe is kept if none does (``--check``
    then refuses it). Returns the recipe's name."""
    inputs = [i.get_any_name() for i in ov_model.inputs]
    items = calibration_items(model, inputs, texts)
    ref_emb, ref_labels = np.asarray(model.encode(texts)), decisions_of(model, texts)
    for recipe in INT8_RECIPES:
        save_ir(ov, quantize_with(recipe, ov_model.clone(), items), model_dir / VARIANTS["int8"])
        failure = gate_failure("int8", compare(OpenVinoModel(model_dir, "int8"), texts, ref_emb, ref_labels))
        if failure is None:
            break
        logger.info("int8 recipe %s does not hold the gate (%s)", recipe, failure)
    logger.info("int8 recipe: %s", recipe)
    return recipe


def parity_gate(
    model: MultiTaskModel, model_dir: Path, texts: list[str], variants: list[str], sts_file: Path | None = None
) -> dict[str, Any]:
    """OpenVINO vs PyTorch on ``texts``, the ONNX export's bounds (polyhead.export.onnx.GATE): fp32 cosine >=
    0.9999 and identical decisions; int8 mean cosine >= 0.99, agreement >= 99%, STS within 0.5 points (with an
    STS file). A failing variant's files are removed and the export fails with one line. On a CPU with bf16,
    the fp32 IR under the bf16 hint is measured too (``bf16``: reported, not gated; it is a run-time choice)."""
    results = onnx_parity_gate(model, model_dir, texts, variants, sts_file, open_variant=OpenVinoModel,
                               remove=remove_variant, files=VARIANTS, kind="OpenVINO ")
    if "fp32" in variants and cpu_has_bf16():
        emb, ref_emb = OpenVinoModel(model_dir, "fp32").encode(texts, precision="bf16"), np.asarray(model.encode(texts))
        cos = (emb * ref_emb).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref_emb, axis=1))
        results["bf16 hint"] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "decisions": 0,
                                "measured": True}
    return results
