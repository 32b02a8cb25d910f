"""Sentence-pair tasks (cross-encoders): a text pair encoded together, ``[CLS] a [SEP] b``, classified
(paraphrase, entailment, relevance) or scored. The head reads the pooled vector of the joint sequence.

Beside the bi-encoder ``similarity`` type, which embeds each text alone and trains the embedding itself,
these read both texts at once (more accurate on pair judgements, but no reusable embedding): what
sentence-transformers' ``CrossEncoder`` does, as heads on the shared encoder.
"""

from __future__ import annotations

from typing import Any, ClassVar

from polyhead.tasks import register
from polyhead.tasks.classification import Classification, positive_label
from polyhead.tasks.regression import Regression

__all__ = ["PairClassification", "PairRegression", "positive_label"]


@register
class PairClassification(Classification):
    """(text, pair) -> a class; metrics add ``f1``: the F1 of the positive class for two labels (GLUE's MRPC
    metric), the macro F1 otherwise."""

    name = "pair_classification"
    input = "pair"
    few_shot = False  # cross-encoded pairs have no sentence embedding to pull together
    needs_pair_column = True
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "f1")

    def metrics(self, gold: list[Any], pred: list[Any], labels: list[str]) -> dict[str, float]:
        from sklearn.metrics import f1_score

        out = super().metrics(gold, pred, labels)
        if len(labels) == 2:
            # the positive class's F1 (average="binary" would refuse gold labels the head doesn't know)
            out["f1"] = float(f1_score(gold, pred, labels=[positive_label(labels)], average="macro", zero_division=0))
        else:
            out["f1"] = out["macro_f1"]
        return out


@register
class PairRegression(Regression):
    """(text, pair) -> a score (relevance, similarity as a cross-encoder scores it)."""

    name = "pair_regression"
    input = "pair"
    needs_pair_column = True
