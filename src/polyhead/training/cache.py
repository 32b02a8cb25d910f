"""Encoder outputs computed once, for stages whose encoder is frozen: the heads train on cached features."""

from __future__ import annotations

import torch

from polyhead.data.collate import EncodedGroup
from polyhead.modeling.multitask import MultiTaskModel


class EmbeddingCache:
    """Encoder outputs computed once per example, for stages whose encoder is frozen.

    Holds ``pooled_embedding`` and ``sentence_embedding`` (n, dim) per group and, for groups with a token
    task, each example's
    token vectors (len_i, hidden), padded per batch to the same width the uncached collator pads to.
    """

    def __init__(self) -> None:
        self.sentence: dict[str, torch.Tensor] = {}
        self.pooled: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, list[torch.Tensor]] = {}

    @classmethod
    def build(
        cls, model: MultiTaskModel, groups: dict[str, EncodedGroup], batch_size: int, precision: str
    ) -> EmbeddingCache:
        cache = cls()
        for gname, group in groups.items():
            encs = [it["enc"] for it in group.items] + [it["pair"] for it in group.items if "pair" in it]
            want_tokens = any(model.tasks[t].level == "token" for t in group.tasks)  # token heads read token vectors
            sentence = torch.zeros((len(encs), model.encoder.dim))
            pooled = torch.zeros((len(encs), model.encoder.dim))
            tokens: list[torch.Tensor] = [torch.empty(0)] * len(encs)
            for batch, features in model.encoder.iter_batches(encs, batch_size, None, False, precision):
                out = model.encoder(features)
                sentence[batch] = out["sentence_embedding"].float()
                pooled[batch] = out["pooled_embedding"].float()
                if want_tokens:
                    for row, i in enumerate(batch):
                        tokens[i] = out["token_embeddings"][row, : len(encs[i]["input_ids"])].float().clone()
            cache.sentence[gname] = sentence
            cache.pooled[gname] = pooled
            if want_tokens:
                cache.tokens[gname] = tokens
        return cache

    def features(self, gname: str, indices: list[int], attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(self.sentence[gname]) // (2 if len(attention_mask) == 2 * len(indices) else 1)
        rows = indices + [n + i for i in indices] if len(attention_mask) == 2 * len(indices) else indices
        feats = {
            "sentence_embedding": self.sentence[gname][rows],
            "pooled_embedding": self.pooled[gname][rows],
            "attention_mask": attention_mask,
        }
        if gname in self.tokens:
            width = attention_mask.shape[1]
            vectors = [self.tokens[gname][i] for i in rows]
            padded = torch.zeros((len(rows), width, vectors[0].shape[-1]))
            for row, v in enumerate(vectors):
                padded[row, : len(v)] = v
            feats["token_embeddings"] = padded
        return {k: v.to(attention_mask.device) for k, v in feats.items()}
