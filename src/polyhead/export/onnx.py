"""`polyhead export MODEL_DIR --format onnx [--quantize int8] [--check]`.

One graph from ``input_ids``/``attention_mask`` to ``sentence_embedding``, ``pooled_embedding``,
``token_embeddings`` (when a token head exists) and ``task.<name>`` for every head, with dynamic batch
and sequence axes (torch.export-based exporter). int8: the fastest of INT8_RECIPES (onnxruntime dynamic
quantisation, then 8-bit block-wise MatMulNBits on all or half of the encoder) whose outputs hold the int8
gate. The parity gate compares against PyTorch and refuses an export that drifts.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyhead.errors import PolyheadError
from polyhead.export.gate import (  # noqa: F401 - the gate's names stay importable from here
    GATE,
    agreement,
    compare,
    decisions_of,
    gate_failure,
    labels_of,
    parity_gate,
    sts_points,
)
from polyhead.fileio import write_json_atomic
from polyhead.modeldir import CONFIG_NAME, check_new_directory, write_card
from polyhead.modeldir.hub import is_hub_name, is_in_hub_cache, resolve_model_dir
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.onnx_backend import ONNX_META, VARIANTS, OnnxModel, source_hashes
from polyhead.predict import predicting_tasks

logger = logging.getLogger(__name__)

OPSET = 18
SAMPLE = [
    "The fish was superb but the waiter was rude.",
    "Apple unveiled a new iPhone in California on Tuesday.",
    "How far is it from Denver to Aspen?",
    "play the latest album by Miles Davis on Spotify",
    "The central bank raised interest rates again.",
    "I loved this movie, the acting was brilliant!",
    "Worst customer service ever, my card was declined twice.",
    "Manchester United beat Chelsea 2-1 at Old Trafford.",
    "A man is playing a guitar.",
    "Is there a direct flight from Boston to Atlanta tomorrow morning?",
    "The new MacBook has a faster chip but the battery life is disappointing.",
    "Book a table for two at an Italian place",
    "what is the weather like in Paris this weekend",
    "Barack Obama visited Berlin and met Angela Merkel.",
    "Shares of Tesla fell 5 percent after the earnings report.",
    "The soup was cold and the bread stale.",
]


class ExportWrapper(nn.Module):
    """Tensors in, a tuple of tensors out: what the ONNX graph computes."""

    def __init__(self, model: MultiTaskModel, heads: list[str], with_tokens: bool) -> None:
        super().__init__()
        self.model, self.heads, self.with_tokens = model, heads, with_tokens

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # pair tasks: the second text's segment id
            inputs["token_type_ids"] = token_type_ids
        features = self.model.encoder(inputs)
        outputs = self.model.run_heads(features, self.heads)
        extra = (features["token_embeddings"],) if self.with_tokens else ()
        return (
            features["sentence_embedding"],
            features["pooled_embedding"],
            *extra,
            *(outputs[h] for h in self.heads),
        )


def export_onnx(
    model_dir: Path,
    quantize: str | None = None,
    check: bool = False,
    texts: list[str] | None = None,
    sts_file: Path | None = None,
) -> dict[str, Any]:
    """Export (and optionally quantise and check) the model in ``model_dir``; returns what was written."""
    check_options(quantize, sts_file)
    model = load_for_export(model_dir)
    heads, with_tokens, inputs, names = graph_signature(model)
    sample = sample_inputs(model, inputs)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    tmp = model_dir / f".model.onnx.tmp-{os.getpid()}"
    try:
        with torch.no_grad():
            torch.onnx.export(
                ExportWrapper(model, heads, with_tokens).eval(),
                tuple(sample[name] for name in inputs),
                str(tmp),
                input_names=inputs,
                output_names=names,
                opset_version=OPSET,
                dynamo=True,
                dynamic_shapes={name: {0: batch, 1: seq} for name in inputs},
                external_data=False,
                verbose=False,
            )
        os.replace(tmp, model_dir / VARIANTS["fp32"])
    finally:
        tmp.unlink(missing_ok=True)
    meta: dict[str, Any] = {
        "format_version": 1,
        "opset": OPSET,
        "inputs": inputs,
        "outputs": names,
        "pad_token_id": model.encoder.pad_token_id,
        "source_sha256": source_hashes(model_dir),
        "files": {"fp32": VARIANTS["fp32"]},
    }
    write_json_atomic(model_dir / ONNX_META, meta)
    report: dict[str, Any] = {"files": [str(model_dir / VARIANTS["fp32"])]}
    (model_dir / VARIANTS["int8"]).unlink(missing_ok=True)  # an int8 file from earlier weights would be stale
    if quantize == "int8":
        meta["files"]["int8"] = VARIANTS["int8"]  # listed first: OnnxModel, which tries the recipes, refuses others
        write_json_atomic(model_dir / ONNX_META, meta)
        try:
            meta["int8_recipe"] = report["int8_recipe"] = quantize_int8(model, model_dir, texts or SAMPLE)
        except BaseException:
            del meta["files"]["int8"]
            (model_dir / VARIANTS["int8"]).unlink(missing_ok=True)
            write_json_atomic(model_dir / ONNX_META, meta)
            raise
        write_json_atomic(model_dir / ONNX_META, meta)
        report["files"].append(str(model_dir / VARIANTS["int8"]))
    if check:
        try:
            report["gate"] = parity_gate(
                model, model_dir, texts or SAMPLE, variants=list(meta["files"]), sts_file=sts_file
            )
        except PolyheadError:
            meta["files"] = {k: v for k, v in meta["files"].items() if (model_dir / v).is_file()}
            write_json_atomic(model_dir / ONNX_META, meta)
            raise
        meta["gate"] = report["gate"]
        write_json_atomic(model_dir / ONNX_META, meta)
    write_card(model_dir)  # the card's ONNX section: the files written and the gate's numbers
    return report


def load_for_export(model_dir: Path) -> MultiTaskModel:
    """The polyhead model in ``model_dir`` on the CPU in eval mode (an encoder directory is an error saying how
    to export one)."""
    if is_in_hub_cache(model_dir) or (not model_dir.exists() and is_hub_name(model_dir)):
        raise PolyheadError(
            f"{model_dir} is not a local directory of yours but a model in the Hugging Face cache (or a Hub name): "
            f"export never writes into the cache; add --output DIR (a new directory: the model is copied there and "
            f"exported), or download it first (hf download {model_dir} --local-dir DIR) and export DIR"
        )
    encoder_only = str(model_dir) == "default" or (model_dir / "config.json").is_file()
    if encoder_only and not (model_dir / CONFIG_NAME).is_file():
        raise PolyheadError(
            f"{model_dir} is an encoder, not a polyhead model directory: add --output DIR to save it as one "
            "and export it there (export_encoder)"
        )
    # Eager attention by name, whatever the library's default: the graph traced is then the one the int8 recipes,
    # the parity gate's thresholds and the measured ONNX/OpenVINO speeds were established on.
    return MultiTaskModel.from_pretrained(model_dir, device="cpu", attn_implementation="eager").eval()


def graph_signature(model: MultiTaskModel) -> tuple[list[str], bool, list[str], list[str]]:
    """(heads in the graph, whether token embeddings are an output, input names, output names)."""
    heads = predicting_tasks(model.tasks)
    with_tokens = any(model.tasks[n].level == "token" for n in heads)
    names = (
        ["sentence_embedding", "pooled_embedding"]
        + (["token_embeddings"] if with_tokens else [])
        + [f"task.{h}" for h in heads]
    )
    # pair tasks read two texts as one sequence: the graph then takes their segment ids too
    with_types = any(model.tasks[h].task.input == "pair" for h in heads)
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])
    return heads, with_tokens, inputs, names


def sample_inputs(model: MultiTaskModel, inputs: list[str]) -> dict[str, torch.Tensor]:
    """Four tokenised sample sentences, padded: the example inputs a graph is traced with."""
    sample = model.encoder.tokenize(SAMPLE[:4])
    if "token_type_ids" in inputs:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    return sample


def check_options(quantize: str | None, sts_file: Path | None) -> None:
    """Options an export would otherwise only trip over after minutes of exporting and quantising (and the
    packages it needs, the ``onnx`` extra)."""
    from polyhead.extras import require

    require("onnx", "polyhead export")
    if quantize not in (None, "int8"):
        raise PolyheadError(f"--quantize {quantize!r}: valid: int8")
    if sts_file is not None and not Path(sts_file).is_file():
        raise PolyheadError(f"--sts {sts_file}: no such file (a TSV with sentence1, sentence2, score columns)")


def check_format(format: str, quantize: str | None, sts_file: Path | None) -> Any:  # noqa: A002
    """The export function for ``--format`` (``onnx``, ``openvino``), its options checked; one line otherwise."""
    from polyhead.export import openvino

    exports = {"onnx": (export_onnx, check_options), "openvino": (openvino.export_openvino, openvino.check_options)}
    if format not in exports:
        raise PolyheadError(f"--format {format!r}: valid: {', '.join(exports)}")
    export, check = exports[format]
    check(quantize, sts_file)
    return export


def export_encoder(
    source: str,
    output: Path,
    quantize: str | None = None,
    check: bool = False,
    texts: list[str] | None = None,
    sts_file: Path | None = None,
    revision: str | None = None,
    format: str = "onnx",  # noqa: A002 - the CLI option's name
) -> dict[str, Any]:
    """Save an encoder (``"default"``, an HF / sentence-transformers directory or a Hub name at ``revision``, with
    the pooling, normalisation and max length of its sentence-transformers files) as a polyhead model directory without
    heads at ``output`` and export it there, as :func:`export_onnx` does: the embedding-only export
    sentence-transformers users know. ``output`` must be new or empty; if the export fails, it is removed.
    ``format``: ``onnx`` or ``openvino`` (:func:`polyhead.export.openvino.export_openvino`)."""
    from polyhead.modeldir.layout import sentence_transformers_settings
    from polyhead.modeling.encoder import SentenceEncoder, resolve_model_path

    export = check_format(format, quantize, sts_file)
    path = resolve_model_path(source, revision)
    if (path / CONFIG_NAME).is_file():
        if not is_in_hub_cache(path):
            raise PolyheadError(
                f"{source} is a polyhead model directory: it is exported in place (drop --output); "
                "--output is for an encoder ('default' or an HF model directory) or a model from the Hugging Face Hub"
            )
        # A polyhead model from the Hub: its files are copied into the new directory and exported there; the
        # cache (huggingface_hub's, content-addressed) is never written to.
        path = resolve_model_dir(source, revision) if is_hub_name(source) else path
        check_new_directory(output, "--output")
        return export_into(output, lambda: copy_model(path, output), export, quantize, check, texts, sts_file)
    check_new_directory(output, "--output")
    _, ignored = sentence_transformers_settings(path)
    if ignored:
        raise PolyheadError(
            f"{source}: sentence-transformers module(s) {', '.join(ignored)} can't be exported (polyhead reads "
            "Transformer, Pooling and Normalize); the export would not compute that model's embeddings"
        )

    def save() -> None:
        encoder = SentenceEncoder.from_pretrained(source, revision=revision, device="cpu")
        MultiTaskModel(encoder, {}).save_pretrained(output)

    return export_into(output, save, export, quantize, check, texts, sts_file)


def export_into(
    output: Path,
    write: Callable[[], None],
    export: Any,
    quantize: str | None,
    check: bool,
    texts: list[str] | None,
    sts_file: Path | None,
) -> dict[str, Any]:
    """``write()`` the model into the new directory ``output``, then export it there; on failure ``output`` is
    removed again."""
    write()
    try:
        report = export(output, quantize=quantize, check=check, texts=texts, sts_file=sts_file)
    except PolyheadError as exc:
        shutil.rmtree(output, ignore_errors=True)
        raise PolyheadError(f"{exc}; {output} was removed again") from exc
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    report["files"].insert(0, str(output))
    return report


def copy_model(source: Path, output: Path) -> None:
    """The model's files (:func:`polyhead.modeldir.push.model_files`) from ``source`` into ``output``, links
    followed (a cache snapshot's files are links into its blobs)."""
    from polyhead.modeldir.push import model_files

    for name in model_files(source):
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, output / name)


# int8 recipes, fastest first; export keeps the first whose outputs hold the int8 gate on the check texts.
# Measured on MiniLM (2 contended cores; docs/export.md has the table): "dynamic" runs ~2x ONNX fp32 but
# moves embeddings by ~1e-2 in cosine (label agreement 92% for SST-5 heads over a frozen encoder, 98% for a
# fine-tuned ABSA model); "blockwise" 1 - cosine ~4e-4 (98.2%, 99.7%); "blockwise-half" ~1e-4 (99.2%,
# 99.7%). Both blockwise recipes run at about fp32 speed on onnxruntime 1.31 (MatMulNBits' int8 path is
# built for one-row products): they make the file smaller, not faster.
INT8_RECIPES = ("dynamic", "blockwise", "blockwise-half")


def quantize_int8(model: MultiTaskModel, model_dir: Path, texts: list[str]) -> str:
    """Write ``model.int8.onnx`` with the fastest recipe in INT8_RECIPES whose embeddings and labels hold the
    int8 gate against PyTorch on ``texts`` (the last recipe is kept if none does; ``--check`` then refuses
    it). Returns the recipe's name."""
    import onnx

    # The exporter's stored intermediate shapes can disagree with onnx's own shape inference, which the
    # quantisers run; drop them (they are re-inferred) before quantising.
    graph = onnx.load(str(model_dir / VARIANTS["fp32"]))
    del graph.graph.value_info[:]
    encoder_mm, heads = split_matmuls(graph.graph)
    ref_emb, ref_labels = np.asarray(model.encode(texts)), decisions_of(model, texts)
    plain = model_dir / f".model.plain.onnx.tmp-{os.getpid()}"
    try:
        onnx.save(graph, str(plain))
        for recipe in INT8_RECIPES:
            quantize_with(recipe, plain, model_dir / VARIANTS["int8"], encoder_mm, heads)
            res = compare(OnnxModel(model_dir, "int8"), texts, ref_emb, ref_labels)
            failure = gate_failure("int8", res)
            if failure is None:
                break
            logger.info("int8 recipe %s does not hold the gate (%s)", recipe, failure)
    finally:
        plain.unlink(missing_ok=True)
    logger.info("int8 recipe: %s", recipe)
    return recipe


def split_matmuls(graph: Any) -> tuple[list[str], list[str]]:
    """(encoder MatMuls with constant weights in graph order, head nodes): the encoder's are the ones the
    embedding outputs depend on; heads are the MatMul/Gemm nodes only ``task.*`` outputs depend on."""
    producer = {out: node for node in graph.node for out in node.output}
    upstream: set[str] = set()
    stack = [o.name for o in graph.output if not o.name.startswith("task.")]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in upstream:
            upstream.add(node.name)
            stack.extend(node.input)
    weights = {i.name for i in graph.initializer}
    encoder = [n.name for n in graph.node if n.op_type == "MatMul" and n.name in upstream and n.input[1] in weights]
    heads = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.name not in upstream]
    return encoder, heads


def quantize_with(recipe: str, src: Path, dst: Path, encoder_mm: list[str], heads: list[str]) -> None:
    """One int8 recipe; heads (a few small MatMul/Gemm, where a flipped logit is a flipped label) stay fp32.

    dynamic: onnxruntime ``quantize_dynamic``, int8 weights per output channel, activations quantised per
        tensor at run time (MatMulInteger); word embeddings int8 too.
    blockwise: ``MatMulNBits`` with 8-bit symmetric weights in blocks of 32 along the input dimension and
        ``accuracy_level=4`` (activations quantised to int8 per block of 32, int8 dot products): far smaller
        rounding error than one scale per activation tensor.
    blockwise-half: the same on the first half of the encoder's MatMuls (by graph order: the lower layers),
        the rest in fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if recipe == "dynamic":
        # the quantiser first rewrites each Gemm into MatMul "<name>_MatMul" + Add, so exclude both names
        excluded = heads + [f"{h}_MatMul" for h in heads]
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
        return
    assert recipe in ("blockwise", "blockwise-half"), recipe
    keep = encoder_mm if recipe == "blockwise" else encoder_mm[: (len(encoder_mm) + 1) // 2]
    quantizer = nbits_quantizer()(
        str(src),
        bits=8,
        block_size=32,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=[n for n in encoder_mm if n not in keep] + heads,
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), False)


def nbits_quantizer() -> Any:
    """onnxruntime's ``MatMulNBitsQuantizer``. Importing its module runs ``logging.basicConfig(level=INFO)``,
    which would switch on INFO logging (thousands of quantiser lines) for the caller's whole program: the
    root logger's level and handlers are put back as they were."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root.setLevel(level)
    root.handlers[:] = handlers
    return MatMulNBitsQuantizer
