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
from pathlib import Path
from typing import Any

import numpy as np

from polyhead import predict as pipeline
from polyhead.errors import ModelDirError, PolyheadError
from polyhead.modeldir import read_config
from polyhead.modeldir.tokenizer import check_tokenizer_files, check_vocab_size
from polyhead.tokens import clip_texts, clip_words

logger = logging.getLogger(__name__)

ONNX_META = "onnx.json"
VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
SOURCE_FILES = ("model.safetensors", "heads.safetensors", "2_Dense/model.safetensors")


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


class OnnxModel(pipeline.PipelineMethods):
    """Same encode / similarity / predict API and outputs as MultiTaskModel, on onnxruntime (the pipeline in
    polyhead.predict; this class only tokenises with ``tokenizers`` and runs a batch)."""

    def __init__(self, path: str | Path, variant: str = "fp32", threads: int | None = None) -> None:
        path = Path(path)
        from polyhead.extras import require

        require("onnx", "the onnx backend", ["onnxruntime"])  # before anything is read: the install hint first
        if variant not in VARIANTS:
            raise PolyheadError(f"unknown ONNX variant {variant!r}; valid: {', '.join(VARIANTS)}")
        config = read_config(path)
        meta_file = path / ONNX_META
        quantize = " --quantize int8" if variant == "int8" else ""
        if not meta_file.is_file() or not (path / VARIANTS[variant]).is_file():
            raise ModelDirError(
                f"{path} has no {VARIANTS[variant]}: run `polyhead export {path} --format onnx{quantize}`"
            )
        meta = json.loads(meta_file.read_text())
        if variant not in meta.get("files", {}):
            raise ModelDirError(
                f"{meta_file} lists no {variant} export: run `polyhead export {path} --format onnx{quantize}`"
            )
        if meta.get("source_sha256") != source_hashes(path):
            raise ModelDirError(
                f"{path / VARIANTS[variant]} was exported from other weights than the directory holds "
                f"now (stale export): run `polyhead export {path} --format onnx` again"
            )
        self.path = path
        self.settings = config.encoder
        self.max_length = int(self.settings["max_length"])
        self.normalize = bool(self.settings["normalize"])
        self.tasks = config.tasks
        from tokenizers import Tokenizer  # a core dependency (transformers needs it)

        check_tokenizer_files(path, config.raw)
        if not (path / "tokenizer.json").is_file():
            raise ModelDirError(f"{path} has no tokenizer.json; the onnx backend reads the tokenizer from it")
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        check_vocab_size(path, self.tokenizer.get_vocab_size(with_added_tokens=True))
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

    # ----------------------------------------------------------------- polyhead.predict's Backend
    def tokenize_texts(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        texts = clip_texts(texts, self.max_length)  # characters bounded before the tokenizer sees them
        return [{"input_ids": e.ids} for e in self.tokenizer.encode_batch(texts)]

    def tokenize_words(self, words: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
        encodings = self.tokenizer.encode_batch(clip_words(words, self.max_length), is_pretokenized=True)
        return [{"input_ids": e.ids, "word_ids": e.word_ids} for e in encodings]

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        firsts = clip_texts([a for a, _ in pairs], self.max_length)
        seconds = clip_texts([b for _, b in pairs], self.max_length)
        encodings = self.tokenizer.encode_batch(list(zip(firsts, seconds, strict=True)))
        return [{"input_ids": e.ids, "token_type_ids": e.type_ids} for e in encodings]

    def run_batch(
        self, encodings: Sequence[dict[str, Any]], outputs: Sequence[str], precision: str
    ) -> dict[str, np.ndarray]:
        """Pad one batch and run the session (``precision`` is the graph's own: fp32 or int8)."""
        width = max(len(e["input_ids"]) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e["input_ids"])
            ids[row, :n] = e["input_ids"]
            mask[row, :n] = 1
            if "token_type_ids" in e:
                types[row, :n] = e["token_type_ids"]
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = types
        return dict(zip(outputs, self.session.run(list(outputs), feeds), strict=True))

    # ----------------------------------------------------------------- API (polyhead.predict.Predictor)
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool = False,
        **_: Any,
    ) -> np.ndarray:
        vectors = pipeline.encode(self, texts, batch_size, normalize, show_progress=show_progress)
        return vectors if isinstance(texts, str) or len(vectors) else np.zeros((0, self.dim), dtype=np.float32)

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
        return pipeline.similarity(self, a, b, **kwargs)
