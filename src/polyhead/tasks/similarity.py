"""Similarity (bi-encoder): scored text pairs train the shared sentence embedding itself (CoSENT or cosine
MSE). No head parameters and no per-text prediction: the embedding is the product (encode / similarity)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from polyhead.config import SimilarityLoss
from polyhead.errors import PolyheadError
from polyhead.tasks import register
from polyhead.tasks.regression import ScoreTask

if TYPE_CHECKING:
    import torch

    from polyhead.modeldir.spec import TaskSpec

COSENT_SCALE = 20.0  # as in sentence-transformers' CoSENTLoss
LOSSES: tuple[str, ...] = get_args(SimilarityLoss)


def cosent_loss(cosine: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """CoSENT (Su 2022): log(1 + sum over pairs with s_i > s_j of exp(scale * (cos_j - cos_i)))."""
    import torch

    diff = COSENT_SCALE * (cosine[None, :] - cosine[:, None])  # diff[i, j] = scale * (cos_j - cos_i)
    keep = scores[:, None] > scores[None, :]
    diff = diff.masked_fill(~keep, float("-inf"))
    zero = torch.zeros(1, dtype=diff.dtype, device=diff.device)
    return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)


@register
class Similarity(ScoreTask):
    """The head returns the sentence embeddings of both sides, (2 * batch, dim); the loss compares halves."""

    name = "similarity"
    hub_task = "sentence-similarity"
    predicts = False
    embeds_pairs = True
    needs_pair_column = True

    def check_spec(self, spec: TaskSpec) -> None:
        if spec.loss not in LOSSES:
            raise PolyheadError(f"unknown similarity loss {spec.loss!r}; valid: {', '.join(LOSSES)}")

    def build_head(self, spec: TaskSpec, sentence_dim: int, token_dim: int) -> Any:
        from polyhead.modeling.heads import EmbeddingHead

        self.check_spec(spec)
        return EmbeddingHead()

    def loss(self, spec: TaskSpec, output: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import torch.nn.functional as F

        a, b = output.float().chunk(2)  # (batch, dim) each
        cosine = F.cosine_similarity(a, b, dim=-1)
        if spec.loss == "cosine":
            return F.mse_loss(cosine, target / scale)
        return cosent_loss(cosine, target)

    def loss_ranks_batch(self, spec: TaskSpec) -> bool:
        return spec.loss == "cosent"

    def loss_scale(self, labels: Sequence[Any]) -> float:
        """Gold scores are divided by the largest one in train, so cosine targets fall in [-1, 1]."""
        return max((abs(float(x)) for x in labels), default=1.0) or 1.0

    def predict_examples(
        self, model: Any, name: str, examples: Sequence[Any], batch_size: int, precision: str
    ) -> tuple[list[Any], list[Any]]:
        """Gold scores and the cosine of the two texts' embeddings."""
        a, b = (
            np.asarray(model.encode(texts, batch_size=batch_size, normalize=True, precision=precision))
            for texts in ([ex.text for ex in examples], [ex.text_pair for ex in examples])
        )
        return [float(ex.label) for ex in examples], (a * b).sum(axis=1).tolist()
