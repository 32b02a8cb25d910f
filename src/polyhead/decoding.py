"""Head outputs -> user-facing predictions, in numpy only (shared by the torch and the ONNX backends)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polyhead.tokens import Word, decode_bio, first_subtoken_positions


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def decode_sentence(
    task_type: str, labels: Sequence[str], threshold: float, output: np.ndarray
) -> dict[str, Any]:
    """One sentence head's raw output -> {label, score, probabilities} | {labels, probabilities} | {score}."""
    output = np.asarray(output, dtype=np.float64)
    if task_type == "regression":
        return {"score": float(output)}
    if task_type == "multilabel":
        probs = (1.0 / (1.0 + np.exp(-output))).tolist()
        return {
            "labels": [lab for lab, p in zip(labels, probs, strict=True) if p >= threshold],
            "probabilities": dict(zip(labels, probs, strict=True)),
        }
    probs = softmax(output).tolist()
    best = int(np.argmax(probs))
    return {
        "label": labels[best],
        "score": probs[best],
        "probabilities": dict(zip(labels, probs, strict=True)),
    }


def decode_tokens(
    labels: Sequence[str],
    logits: np.ndarray,
    word_ids: Sequence[int | None],
    words: list[Word],
    max_length: int,
    text: str | None = None,
) -> dict[str, Any]:
    """logits: (seq_len, tags) -> word tags from first sub-tokens -> entity spans with offsets.

    ``text`` is the raw input (or the words joined by single spaces); an entity's ``text`` is
    ``text[start:end]``, so spacing inside an entity is kept as the user wrote it.
    """
    positions = first_subtoken_positions(word_ids)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    tags, scores = [], []
    for w in range(len(words)):
        if w in positions:
            p = probs[positions[w]]
            best = int(p.argmax())
            tags.append(labels[best])
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
    hit_limit = len(word_ids) >= max_length
    kept = max(positions) + 1 if positions else 0
    return {"entities": entities, "tags": tags, "truncated_words": len(words) - kept if hit_limit else 0}


def nothing_to_predict(tasks: Mapping[str, Any], names: Sequence[str] | None) -> str | None:
    """Why ``predict`` on these tasks (all when ``names`` is None) would return nothing, or None. Similarity
    heads have no per-text output (they are the embedding). Unknown names are left to predict's own error."""
    asked = list(tasks) if names is None else list(names)
    if any(name not in tasks for name in asked) or any(tasks[n].type != "similarity" for n in asked):
        return None
    return "the model has no heads that predict" if names is None else "the tasks asked for are similarity tasks"
