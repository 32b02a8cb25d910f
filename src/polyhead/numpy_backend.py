"""What the torch-free backends (onnxruntime, OpenVINO) share: reading the model directory and its tokenizer
(``tokenizers``, on tokenizer.json), tokenising, padding a batch into numpy arrays, and the Predictor API.

A subclass reads its own export's files and implements ``run_batch`` (polyhead.predict.Backend) and ``dim``.
Nothing here imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyhead import predict as pipeline
from polyhead.errors import ModelDirError
from polyhead.modeldir import read_config
from polyhead.modeldir.tokenizer import check_tokenizer_files, check_vocab_size
from polyhead.tokens import clip_texts, clip_words

SOURCE_FILES = ("model.safetensors", "heads.safetensors", "2_Dense/model.safetensors")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_hashes(path: Path) -> dict[str, str]:
    """Hashes of the weights an export was made from (to detect a stale export)."""
    return {name: sha256(path / name) for name in SOURCE_FILES if (path / name).is_file()}


def physical_cores() -> int:
    """Physical cores (psutil when installed, else the logical count): the runtimes' intra-op threads."""
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1


class TokenizersBackend(pipeline.PipelineMethods):
    """A model directory's settings, tasks and tokenizer (checked against polyhead.json's record), the
    tokenising half of polyhead.predict's Backend, and the Predictor API on top of the pipeline."""

    def read_directory(self, path: Path, backend: str) -> None:
        """Read ``path``'s polyhead.json and tokenizer.json; ``backend`` names this backend in errors."""
        config = read_config(path)
        self.path = path
        self.settings = config.encoder
        self.max_length = int(self.settings["max_length"])
        self.normalize = bool(self.settings["normalize"])
        self.tasks = config.tasks
        from tokenizers import Tokenizer  # a core dependency (transformers needs it)

        check_tokenizer_files(path, config.raw)
        if not (path / "tokenizer.json").is_file():
            raise ModelDirError(f"{path} has no tokenizer.json; the {backend} backend reads the tokenizer from it")
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        check_vocab_size(path, self.tokenizer.get_vocab_size(with_added_tokens=True))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    @property
    def dim(self) -> int:
        return int(self.settings.get("projection_dim") or self.settings["hidden_size"])

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

    def pad(self, encodings: Sequence[dict[str, Any]], pad_id: int) -> dict[str, np.ndarray]:
        """``input_ids``, ``attention_mask``, ``token_type_ids``: (batch, longest) int64 arrays."""
        width = max(len(e["input_ids"]) for e in encodings)
        ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e["input_ids"])
            ids[row, :n] = e["input_ids"]
            mask[row, :n] = 1
            if "token_type_ids" in e:
                types[row, :n] = e["token_type_ids"]
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    # ----------------------------------------------------------------- API (polyhead.predict.Predictor)
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool = False,
        precision: str = "fp32",
        **_: Any,
    ) -> np.ndarray:
        vectors = pipeline.encode(self, texts, batch_size, normalize, precision, show_progress=show_progress)  # type: ignore[arg-type]
        return vectors if isinstance(texts, str) or len(vectors) else np.zeros((0, self.dim), dtype=np.float32)

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
        return pipeline.similarity(self, a, b, **kwargs)  # type: ignore[arg-type]
