"""Label vocabularies: B-/I- completion, the <2 labels error, unseen dev labels counted."""

from __future__ import annotations

import pytest

from polyhead.data.readers import Example
from polyhead.data.vocab import build_labels, unseen_labels
from polyhead.errors import DataError


def test_bio_completion() -> None:
    train = [Example("a b c", ["B-PER", "O", "I-LOC"], words=["a", "b", "c"], source="t.conll:1")]
    assert build_labels("token_classification", train) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_one_label_classification_is_error() -> None:
    train = [Example("x", "pos", source="train.tsv:2"), Example("y", "pos", source="train.tsv:3")]
    with pytest.raises(DataError, match=r"train.tsv.*pos"):
        build_labels("classification", train)


def test_unseen_dev_labels_counted() -> None:
    dev = [Example("x", "neg"), Example("y", "neutral"), Example("z", "neutral")]
    assert unseen_labels("classification", ["neg", "pos"], dev) == {"neutral": 2}
    assert build_labels("regression", [Example("x", 1.0)]) == []
