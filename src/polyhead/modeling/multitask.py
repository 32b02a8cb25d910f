"""MultiTaskModel: one shared SentenceEncoder and a ModuleDict of task heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyhead.decoding import decode_sentence, decode_tokens
from polyhead.errors import PolyheadError
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.heads import TaskSpec, build_head
from polyhead.tokens import TextInput, Word, item_text, prediction_inputs, tokenize_words

logger = logging.getLogger(__name__)


class MultiTaskModel(nn.Module):
    """Encoder + heads keyed by task name.

    ``forward(features, tasks)`` runs the encoder once and then only the requested heads.
    """

    def __init__(self, encoder: SentenceEncoder, tasks: dict[str, TaskSpec]) -> None:
        super().__init__()
        self.encoder = encoder
        self.tasks = dict(tasks)
        self.heads = nn.ModuleDict(
            {name: build_head(spec, encoder.dim, encoder.hidden_size) for name, spec in self.tasks.items()}
        )

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "torch", variant: str = "fp32", **kwargs: Any) -> Any:
        """Load a model directory written by :meth:`save_pretrained` (see docs/model-directory.md).

        ``backend="onnx"`` returns a :class:`polyhead.onnx_backend.OnnxModel` with the same
        encode/similarity/predict API on onnxruntime (``variant``: ``fp32`` or ``int8``), after
        ``polyhead export``.
        """
        if backend == "onnx":
            from polyhead.onnx_backend import OnnxModel

            return OnnxModel(Path(path), variant)
        if backend != "torch":
            raise PolyheadError(f"unknown backend {backend!r}; valid: torch, onnx")
        from polyhead.io import load_pretrained

        return load_pretrained(Path(path), **kwargs)

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        from polyhead.io import save_pretrained

        return save_pretrained(self, Path(path), overwrite=overwrite)

    # ----------------------------------------------------------------- forward
    def check_tasks(self, tasks: Sequence[str] | None) -> list[str]:
        """The requested task names (all when None); unknown names are an error listing the valid ones."""
        if tasks is None:
            return list(self.tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise PolyheadError(f"unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(self.tasks)}")
        return list(tasks)

    def run_heads(
        self, features: dict[str, torch.Tensor], tasks: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Apply heads to encoder features (also to cached ``sentence_embedding`` tensors)."""
        return {name: self.heads[name](features) for name in self.check_tasks(tasks)}

    def forward(self, features: dict[str, torch.Tensor], tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """features: ``input_ids``/``attention_mask`` (batch, seq_len) -> {task: output}.

        Outputs: classification/multilabel (batch, labels); regression (batch,); token_classification
        (batch, seq_len, tags); similarity (batch, dim), the sentence embedding.
        """
        return self.run_heads(self.encoder(features), tasks)

    # ----------------------------------------------------------------- inference
    def encode(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        """The shared sentence embeddings, exactly as ``SentenceEncoder.encode`` gives them."""
        return self.encoder.encode(texts, **kwargs)

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
        return self.encoder.similarity(a, b, **kwargs)

    def predict(
        self,
        texts: TextInput | Sequence[TextInput],
        tasks: Sequence[str] | None = None,
        batch_size: int = 32,
        precision: str = "fp32",
    ) -> list[dict[str, Any]]:
        """One encoder pass per batch -> every requested head's decoded output, per text.

        A text is a string or a pre-tokenised list of words. Similarity tasks have no per-text output
        (use :meth:`similarity`). Returns a list (input order) of ``{task: result}``; see docs/python-api.md.
        """
        names = [t for t in self.check_tasks(tasks) if self.tasks[t].type != "similarity"]
        items, item_words = prediction_inputs(texts, any(self.tasks[t].level == "token" for t in names))
        words: list[list[Word]] = item_words or []
        if item_words is not None:
            encodings = tokenize_words(
                self.encoder.tokenizer, [[w.text for w in ws] for ws in words], self.encoder.max_length
            )
        else:
            encodings = self.encoder.tokenize_lists(items)  # type: ignore[arg-type]
        results: list[dict[str, Any]] = [{} for _ in items]
        was_training = self.training
        self.eval()  # heads too: no dropout at prediction
        try:
            for batch, features in self.encoder.iter_batches(encodings, batch_size, 16384, False, precision):
                outputs = self(features, names)
                for name in names:
                    for row, index in enumerate(batch):
                        out = outputs[name][row].float()
                        if self.tasks[name].level == "token":
                            word_ids = encodings[index]["word_ids"]
                            source = item_text(items[index])
                            results[index][name] = self.decode_tokens(name, out, word_ids, words[index], source)
                        else:
                            results[index][name] = self.decode_sentence(name, out)
        finally:
            self.train(was_training)
        return results

    def decode_sentence(self, name: str, output: torch.Tensor) -> dict[str, Any]:
        spec = self.tasks[name]
        return decode_sentence(spec.type, spec.labels, spec.threshold, output.detach().float().cpu().numpy())

    def decode_tokens(
        self,
        name: str,
        logits: torch.Tensor,
        word_ids: list[int | None],
        words: list[Word],
        text: str | None = None,
    ) -> dict[str, Any]:
        """logits: (seq_len, tags) -> entity spans (see polyhead.decoding.decode_tokens)."""
        array = logits.detach().float().cpu().numpy()
        return decode_tokens(self.tasks[name].labels, array, word_ids, words, self.encoder.max_length, text)
