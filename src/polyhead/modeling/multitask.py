"""MultiTaskModel: one shared SentenceEncoder and a ModuleDict of task heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyhead.errors import PolyheadError
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.heads import TaskSpec, build_head
from polyhead.tokens import (
    Word,
    decode_bio,
    first_subtoken_positions,
    split_words,
    tokenize_words,
    words_from_tokens,
)

logger = logging.getLogger(__name__)

TextInput = str | Sequence[str]  # raw text, or a pre-tokenised list of words


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
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> MultiTaskModel:
        """Load a model directory written by :meth:`save_pretrained` (see docs/model-directory.md)."""
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
            raise PolyheadError(
                f"unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(self.tasks)}"
            )
        return list(tasks)

    def run_heads(
        self, features: dict[str, torch.Tensor], tasks: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Apply heads to encoder features (also to cached ``sentence_embedding`` tensors)."""
        return {name: self.heads[name](features) for name in self.check_tasks(tasks)}

    def forward(
        self, features: dict[str, torch.Tensor], tasks: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """features: ``input_ids``/``attention_mask`` (batch, seq_len) -> {task: output}.

        Outputs: classification/multilabel (batch, labels); regression (batch,); token_classification
        (batch, seq_len, tags); similarity (batch, dim), the sentence embedding.
        """
        return self.run_heads(self.encoder(features), tasks)

    # ----------------------------------------------------------------- inference
    def encode(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        """The shared sentence embeddings, exactly as ``SentenceEncoder.encode`` gives them."""
        return self.encoder.encode(texts, **kwargs)

    def similarity(
        self, a: str | Sequence[str], b: str | Sequence[str] | None = None, **kwargs: Any
    ) -> np.ndarray:
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
        items = [texts] if isinstance(texts, str) else list(texts)
        need_words = any(self.tasks[t].level == "token" for t in names) or any(
            not isinstance(x, str) for x in items
        )
        words: list[list[Word]] = []
        if need_words:
            words = [as_words(x, i) for i, x in enumerate(items)]
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
                            results[index][name] = self.decode_tokens(
                                name, out, word_ids, words[index], source
                            )
                        else:
                            results[index][name] = self.decode_sentence(name, out)
        finally:
            self.train(was_training)
        return results

    def decode_sentence(self, name: str, output: torch.Tensor) -> dict[str, Any]:
        spec = self.tasks[name]
        if spec.type == "regression":
            return {"score": float(output)}
        if spec.type == "multilabel":
            probs = torch.sigmoid(output).tolist()
            return {
                "labels": [lab for lab, p in zip(spec.labels, probs, strict=True) if p >= spec.threshold],
                "probabilities": dict(zip(spec.labels, probs, strict=True)),
            }
        probs = torch.softmax(output, dim=-1).tolist()
        best = int(np.argmax(probs))
        return {
            "label": spec.labels[best],
            "score": probs[best],
            "probabilities": dict(zip(spec.labels, probs, strict=True)),
        }

    def decode_tokens(
        self,
        name: str,
        logits: torch.Tensor,
        word_ids: list[int | None],
        words: list[Word],
        text: str | None = None,
    ) -> dict[str, Any]:
        """logits: (seq_len, tags) -> word tags from first sub-tokens -> entity spans with offsets.

        ``text`` is the raw input (or the words joined by single spaces); an entity's ``text`` is
        ``text[start:end]``, so spacing inside an entity is kept as the user wrote it.
        """
        spec = self.tasks[name]
        positions = first_subtoken_positions(word_ids)
        probs = torch.softmax(logits, dim=-1)
        tags, scores = [], []
        for w in range(len(words)):
            if w in positions:
                p = probs[positions[w]]
                best = int(p.argmax())
                tags.append(spec.labels[best])
                scores.append(float(p[best]))
            else:  # cut by max_length, or a word the tokenizer maps to nothing
                tags.append("O")
                scores.append(0.0)
        entities = [
            {
                "type": kind,
                "text": text[words[first].start : words[last].end]
                if text is not None
                else " ".join(w.text for w in words[first : last + 1]),
                "start": words[first].start,
                "end": words[last].end,
                "word_start": first,
                "word_end": last + 1,
                "score": score,
            }
            for kind, first, last, score in decode_bio(tags, scores)
        ]
        # Words after the last one with a sub-token were cut only if the sequence hit max_length; otherwise
        # they are words the tokenizer maps to nothing (e.g. a zero-width space), not truncation.
        hit_limit = len(word_ids) >= self.encoder.max_length
        kept = max(positions) + 1 if positions else 0
        return {"entities": entities, "tags": tags, "truncated_words": len(words) - kept if hit_limit else 0}


def item_text(item: TextInput) -> str:
    """The text that character offsets point into: the raw string, or pre-tokenised words joined by spaces."""
    return item if isinstance(item, str) else words_from_tokens(list(item))[0]


def as_words(item: TextInput, index: int) -> list[Word]:
    if isinstance(item, str):
        return split_words(item)
    if not all(isinstance(w, str) for w in item):
        raise PolyheadError(f"text {index} must be a string or a list of word strings")
    return words_from_tokens(list(item))[1]
