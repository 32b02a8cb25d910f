"""Label vocabularies from the training split; unseen dev/test labels counted for the report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from polyhead.errors import DataError


def flat_labels(task_type: str, examples: list[Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for ex in examples:
        if task_type in ("multilabel", "token_classification"):
            counts.update(ex.label)
        elif task_type == "classification":
            counts[ex.label] += 1
    return counts


def build_labels(task_type: str, train: list[Any]) -> list[str]:
    """Sorted class names; for BIO tags "O" first, then B-X and I-X for every type X seen."""
    if task_type in ("regression", "similarity"):
        return []
    counts = flat_labels(task_type, train)
    source = train[0].source.rsplit(":", 1)[0] if train else "the training data"
    if task_type == "token_classification":
        types = sorted({tag[2:] for tag in counts if tag != "O"})
        if not types:
            raise DataError(f"{source}: no entity tags in the training data (every tag is 'O')")
        return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    labels = sorted(counts)
    if task_type == "classification" and len(labels) < 2:
        raise DataError(f"{source}: a classification task needs at least 2 labels in train, found {labels}")
    return labels


def unseen_labels(task_type: str, labels: list[str], examples: list[Any]) -> dict[str, int]:
    """Labels (or tags) in ``examples`` that are not in ``labels``, with their counts."""
    known = set(labels)
    return {k: v for k, v in sorted(flat_labels(task_type, examples).items()) if k not in known}
