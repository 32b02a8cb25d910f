"""Inference on onnxruntime without torch or transformers: the `backend="onnx"` of SentenceEncoder and
MultiTaskModel. Tokenisation uses the `tokenizers` package on the directory's tokenizer.json.

    model = MultiTaskModel.from_pretrained("runs/demo/model", backend="onnx")   # after `polyhead export`
    model.predict(["..."]); model.encode(["..."]); model.similarity(["a"], ["b"])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.decoding import decode_sentence, decode_tokens
from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeling.batching import length_sorted_batches
from polyhead.tokens import TextInput, Word, item_text, prediction_inputs

logger = logging.getLogger(__name__)

ONNX_META = "onnx.json"
VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
SOURCE_FILES = ("model.safetensors", "heads.safetensors", "2_Dense/model.safetensors")


@dataclass
class OnnxTask:
    type: str
    labels: list[str] = field(default_factory=list)
    threshold: float = 0.5

    @property
    def level(self) -> str:
        return "token" if self.type == "token_classification" else "sentence"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_hashes(path: Path) -> dict[str, str]:
    """Hashes of the weights an ONNX export was made from (to detect a stale export)."""
    return {name: sha256(path / name) for name in SOURCE_FILES if (path / name).is_file()}


def physical_cores() -> int:
    """Physical cores (psutil when installed, else the logical count): onnxruntime's intra-op threads."""
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1


# Graph rewrites onnxruntime would apply that make our graphs slower. SkipLayerNormFusion merges the bias
# Add, the residual Add and LayerNormalization into one SkipLayerNormalization kernel, which on onnxruntime
# 1.31 (x86-64, AVX512) takes several times longer than the three ops it replaces: leaving it out makes
# MiniLM 16% faster in fp32 and 17% faster with the `dynamic` int8 recipe, with the same arithmetic
# (docs/export.md, "The ONNX backend").
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def create_session(file: Path, threads: int, optimized_file: Path | None = None) -> Any:
    """An onnxruntime CPU session: ``threads`` intra-op threads, sequential execution, all graph
    optimisations except DISABLED_OPTIMIZERS (``optimized_file``: where to write the optimised graph)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_file is not None:
        options.optimized_model_filepath = str(optimized_file)
    return ort.InferenceSession(
        str(file), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS)
    )


class OnnxModel:
    """Same encode / similarity / predict API and outputs as MultiTaskModel, on onnxruntime."""

    def __init__(self, path: str | Path, variant: str = "fp32", threads: int | None = None) -> None:
        path = Path(path)
        try:
            import onnxruntime  # noqa: F401 - imported here to fail early with an install hint
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise PolyheadError(
                f"the onnx backend needs onnxruntime and tokenizers: pip install onnxruntime ({exc})"
            ) from exc
        if variant not in VARIANTS:
            raise PolyheadError(f"unknown ONNX variant {variant!r}; valid: {', '.join(VARIANTS)}")
        meta_file = path / ONNX_META
        config_file = path / "polyhead.json"
        if not config_file.is_file():
            raise ModelDirError(f"{path} is not a polyhead model directory: polyhead.json is missing")
        if not meta_file.is_file() or not (path / VARIANTS[variant]).is_file():
            quantize = " --quantize int8" if variant == "int8" else ""
            raise ModelDirError(
                f"{path} has no {VARIANTS[variant]}: run `polyhead export {path} --format onnx{quantize}`"
            )
        meta = json.loads(meta_file.read_text())
        if variant not in meta.get("files", {}):
            quantize = " --quantize int8" if variant == "int8" else ""
            raise ModelDirError(
                f"{meta_file} lists no {variant} export: run `polyhead export {path} --format onnx{quantize}`"
            )
        if meta.get("source_sha256") != source_hashes(path):
            raise ModelDirError(
                f"{path / VARIANTS[variant]} was exported from other weights than the directory holds "
                f"now (stale export): run `polyhead export {path} --format onnx` again"
            )
        config = json.loads(config_file.read_text())
        self.path = path
        self.settings = config["encoder"]
        self.max_length = int(self.settings["max_length"])
        self.normalize = bool(self.settings["normalize"])
        self.tasks = {
            n: OnnxTask(t["type"], list(t.get("labels") or []), float(t.get("threshold", 0.5)))
            for n, t in config["tasks"].items()
        }
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = int(meta.get("pad_token_id", 0))
        self.session = create_session(path / VARIANTS[variant], threads or physical_cores())
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.variant = variant

    @property
    def dim(self) -> int:
        return int(
            self.session.get_outputs()[0].shape[-1]
            or self.settings.get("projection_dim")
            or self.settings["hidden_size"]
        )

    # ----------------------------------------------------------------- internals
    def run(self, encodings: list[Any], batch_size: int, wanted: list[str]) -> Any:
        """Yield (indices, {output: array}) for token-sorted, dynamically padded batches."""
        batches = length_sorted_batches([len(e.ids) for e in encodings], batch_size, 16384)
        for batch in batches:
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            yield batch, dict(zip(wanted, self.session.run(wanted, feeds), strict=True))

    # ----------------------------------------------------------------- API
    def encode(
        self, texts: str | Sequence[str], batch_size: int = 32, normalize: bool | None = None, **_: Any
    ) -> np.ndarray:
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if items:
            for batch, result in self.run(self.tokenizer.encode_batch(items), batch_size, ["pooled_embedding"]):
                out[batch] = result["pooled_embedding"]
        if self.normalize if normalize is None else normalize:
            out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out[0] if single else out

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
        ea = self.encode([a] if isinstance(a, str) else a, normalize=True, **kwargs)
        eb = ea if b is None else self.encode([b] if isinstance(b, str) else b, normalize=True, **kwargs)
        return ea @ eb.T

    def predict(
        self,
        texts: TextInput | Sequence[TextInput],
        tasks: Sequence[str] | None = None,
        batch_size: int = 32,
        **_: Any,
    ) -> list[dict[str, Any]]:
        if tasks is not None:
            unknown = [t for t in tasks if t not in self.tasks]
            if unknown:
                raise PolyheadError(f"unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(self.tasks)}")
        names = [t for t in (tasks or list(self.tasks)) if self.tasks[t].type != "similarity"]
        items, item_words = prediction_inputs(texts, any(self.tasks[t].level == "token" for t in names))
        words: list[list[Word]] = item_words or []
        if item_words is not None:
            encodings = self.tokenizer.encode_batch([[w.text for w in ws] for ws in words], is_pretokenized=True)
        else:
            encodings = self.tokenizer.encode_batch(list(items))
        results: list[dict[str, Any]] = [{} for _ in items]
        if not names:  # a plain encoder (or only similarity heads): nothing to run
            return results
        for batch, outputs in self.run(encodings, batch_size, [f"task.{n}" for n in names]):
            for name in names:
                spec, values = self.tasks[name], outputs[f"task.{name}"]
                for row, index in enumerate(batch):
                    if spec.level == "token":
                        n = len(encodings[index].ids)
                        results[index][name] = decode_tokens(
                            spec.labels,
                            values[row, :n],
                            encodings[index].word_ids,
                            words[index],
                            self.max_length,
                            item_text(items[index]),
                        )
                    else:
                        results[index][name] = decode_sentence(spec.type, spec.labels, spec.threshold, values[row])
        return results
