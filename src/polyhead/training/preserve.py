"""Embedding preservation: keep the shared sentence embedding close to the starting encoder's while heads train.

Learning without Forgetting (Li & Hoiem 2017) with sentence-transformers' ``MSELoss`` distillation as the
measure: the starting encoder's L2-normalised sentence vectors are computed once per sentence, before the
first step, and kept (in the run directory, so a resumed run compares with the same reference); each step
adds ``weight x mean(1 - cos(e, e_ref))`` (or the squared distance of the unit vectors, ``mse``) over the
batch's sentences to the task losses.

``data: train`` compares on the training sentences themselves, reusing the encoder pass the heads already
run (no extra forward). A file of general sentences becomes one more batch group, drawn by the task sampler
as often as the average task's group whatever its size, whose only loss is this one; so do the texts of the
pairs (each alone) when every task cross-encodes pairs and ``data`` is ``train``. Stages whose encoder is
frozen skip it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from polyhead.config import PreserveEmbeddingConfig, resolve_path
from polyhead.data.collate import EncodedGroup
from polyhead.data.lines import read_text_lines
from polyhead.errors import ConfigError
from polyhead.fileio import save_tensors_atomic
from polyhead.modeling.multitask import MultiTaskModel

logger = logging.getLogger(__name__)

PRESERVE = "preserve_embedding"  # the loss's name in logs and curves (a task may not use it)
REFERENCE_FILE = "preserve_reference.safetensors"


@dataclass
class Preservation:
    """The reference vectors and how to compare with them.

    Attributes:
        weight: Multiplies the loss before it is added to the weighted task losses.
        loss: ``cosine`` (mean 1 - cos) or ``mse`` (mean squared distance of the unit vectors, = 2 x cosine).
        reference: Group -> (rows, dim) unit vectors of the starting encoder, rows in the group's order
            (a group that embeds pairs has its texts, then their pairs).
        extra: The general sentences' group (``data`` a file), or None for ``data: train``.
    """

    weight: float
    loss: str
    reference: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: EncodedGroup | None = None

    def term(self, gname: str, local: list[int], features: dict[str, Any]) -> torch.Tensor | None:
        """The unweighted preservation loss of one micro-batch, or None when the group has no reference.

        ``features["pooled_embedding"]``: (rows, dim) of the batch as the encoder ran it (texts, then pairs
        for groups that embed pairs).
        """
        ref = self.reference.get(gname)
        if ref is None or not local:
            return None
        pooled = features["pooled_embedding"]
        n = len(ref) // 2 if len(pooled) == 2 * len(local) else len(ref)
        rows = local + [n + i for i in local] if len(pooled) == 2 * len(local) else local
        emb = F.normalize(pooled.float(), dim=-1)  # (rows, dim)
        target = ref[rows].to(emb.device)
        if self.loss == "mse":
            return ((emb - target) ** 2).sum(-1).mean()
        return (1.0 - (emb * target).sum(-1)).mean()


def prepare(
    options: PreserveEmbeddingConfig,
    model: MultiTaskModel,
    groups: dict[str, EncodedGroup],
    batch_size: int,
    precision: str,
    run_dir: Path | None,
    resume: bool,
    save: bool = True,
    pair_examples: list[list[Any]] | None = None,
) -> Preservation:
    """The reference vectors: loaded from ``run_dir`` when resuming a run that saved them, else computed from
    the current (starting) encoder and saved there. Groups whose inputs are cross-encoded pairs are left out
    (their pooled vector is not a sentence embedding); when every group is one, ``data: train`` compares on
    the texts of ``pair_examples`` (the pair tasks' training examples, one list per task), each alone, as a
    group of its own."""
    preservation = Preservation(options.weight, options.loss)
    eligible = {
        g: grp for g, grp in groups.items() if not any(model.tasks[t].task.input == "pair" for t in grp.tasks)
    }
    if options.data != "train" or not eligible:
        lines = read_sentences(options) if options.data != "train" else pair_texts(pair_examples or [])
        if not lines:
            raise ConfigError(
                "training.preserve_embedding: data 'train' has no sentences to preserve on; set "
                "training.preserve_embedding.data to a file of general sentences, one a line"
            )
        preservation.extra = sentence_group(model, lines[: options.limit] if options.limit else lines)
        eligible = {PRESERVE: preservation.extra}
    saved = run_dir / REFERENCE_FILE if run_dir is not None else None
    if resume and saved is not None and saved.is_file():
        preservation.reference = load_file(str(saved))
        logger.info("embedding preservation: reference vectors read from %s", saved)
        return preservation
    preservation.reference = reference_vectors(model, eligible, batch_size, precision)
    if saved is not None and save:
        save_tensors_atomic(preservation.reference, saved)
    return preservation


def reference_vectors(
    model: MultiTaskModel, groups: dict[str, EncodedGroup], batch_size: int, precision: str
) -> dict[str, torch.Tensor]:
    """Group -> (rows, dim) L2-normalised sentence vectors of the encoder as it is now, one pass per sentence."""
    out = {}
    for gname, group in groups.items():
        encs = [it["enc"] for it in group.items] + [it["pair"] for it in group.items if "pair" in it]
        vectors = torch.zeros((len(encs), model.encoder.dim))
        for batch, features in model.encoder.iter_batches(encs, batch_size, None, False, precision):
            vectors[batch] = F.normalize(model.encoder(features)["pooled_embedding"].float(), dim=-1)
        out[gname] = vectors
    return out


def read_sentences(options: PreserveEmbeddingConfig) -> list[str]:
    """The general sentences of the file ``options.data``, one a line."""
    path = resolve_path(options.data)
    if not path.is_file():
        raise ConfigError(
            f"training.preserve_embedding.data: {options.data!r} is neither 'train' nor a file (one sentence a line)"
        )
    return read_text_lines(path, "training.preserve_embedding.data")


def sentence_group(model: MultiTaskModel, lines: list[str]) -> EncodedGroup:
    """Sentences to preserve on, tokenised as a group with no tasks."""
    group = EncodedGroup(PRESERVE, [])
    group.items = [{"enc": enc, "labels": {}} for enc in model.encoder.tokenize_lists(lines)]
    return group


def pair_texts(examples: list[list[Any]]) -> list[str]:
    """Both texts of every pair in ``examples`` (one list per task), each once, in the order first seen."""
    return list(dict.fromkeys(text for rows in examples for ex in rows for text in (ex.text, ex.text_pair) if text))
