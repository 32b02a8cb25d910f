"""Contrastive few-shot training (``few_shot: true`` on classification / multilabel tasks), after SetFit.

SetFit (Tunstall et al. 2022) fine-tunes a sentence transformer on pairs drawn from the labels, then fits
a classifier on the embeddings. Here the same two phases are stages of the plan, so checkpoints, exact
resume, Ctrl-C, logging, several processes and embedding preservation work as for any stage:

1. ``few_shot`` (contrastive): the encoder only. Each few-shot task gets ``training.few_shot.pairs_per_example``
   x examples pairs that share a label and as many that share none (seeded). ``pair_sampling: all_pairs``
   (the default) is SetFit's rule: every pair of examples, an example with itself included
   (``self_pairs``), listed in a seeded order and cycled, so each distinct pair is used as often as any
   other of its kind; ``per_example`` draws the partners for each example in turn. The loss is the mean
   squared error between the pair's cosine similarity and the Jaccard overlap of their label sets (1 or 0
   for single-label tasks: SetFit's ``CosineSimilarityLoss``).
   The tasks of one config draw pairs of their own, so several few-shot heads shape one encoder.
2. ``few_shot_heads``: the few-shot tasks' heads on the frozen, fine-tuned encoder (cached embeddings:
   no encoder pass per step) with a head learning rate, for ``head_steps`` steps.

Tasks without ``few_shot`` train in a normal stage before these (``training.stages``, when given, runs after
the contrastive stage instead, and trains what it says).
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polyhead.config import Config, FreezeConfig, OptimizerConfig
from polyhead.data.collate import EncodedGroup
from polyhead.data.readers import Example
from polyhead.errors import ConfigError, DataError
from polyhead.modeling.batching import pad_batch
from polyhead.modeling.encoder import autocast
from polyhead.tasks import get_task_type
from polyhead.training.plan import Stage
from polyhead.training.preserve import PRESERVE
from polyhead.training.step import TrainStep

logger = logging.getLogger(__name__)

CONTRASTIVE, HEADS = "few_shot", "few_shot_heads"  # the stages' names in logs and metrics.jsonl


def few_shot_tasks(config: Config) -> list[str]:
    return [name for name, task in config.tasks.items() if task.few_shot]


def add_stages(config: Config, stages: list[Stage]) -> list[Stage]:
    """The plan with the few-shot stages added (``stages`` unchanged when no task is few-shot).

    Without ``training.stages``: the other tasks' stage (if any), the contrastive stage, the heads stage.
    With ``training.stages``: the contrastive stage, then the user's stages as written.
    """
    tasks = few_shot_tasks(config)
    if not tasks:
        return stages
    fs, t = config.training.few_shot, config.training
    if t.freeze.mode == "encoder":
        raise ConfigError(
            f"tasks {', '.join(tasks)}: few_shot trains the encoder on pairs, and training.freeze.mode: encoder "
            "leaves it nothing to train; drop few_shot (the heads alone then train on the frozen encoder) or the freeze"
        )
    if t.stages:
        left = [task for task in tasks if not any(task in stage.tasks for stage in stages)]
        if left:
            logger.warning("training.stages train no head of %s: after the contrastive stage their heads stay as "
                           "initialised; name them in a stage", ", ".join(left))
    contrastive = Stage(
        CONTRASTIVE, [], fs.epochs, t.freeze, None, OptimizerConfig(lr=fs.lr, weight_decay=t.optimizer.weight_decay),
        pair_tasks=tasks, batch_size=fs.batch_size, bucket_by_length=fs.bucket_by_length,
    )  # fmt: skip
    if t.stages:
        return [contrastive, *stages]
    heads = Stage(
        HEADS, tasks, 1, FreezeConfig(mode="encoder", heads=t.freeze.heads), None,  # training.freeze.heads hold
        OptimizerConfig(lr=fs.head_lr, head_lr=fs.head_lr, weight_decay=t.optimizer.weight_decay), steps=fs.head_steps,
    )  # fmt: skip
    others = [name for name in config.tasks if name not in tasks]
    before = [Stage(s.name, others, s.epochs, s.freeze, s.gradual, s.optimizer) for s in stages] if others else []
    return [*before, contrastive, heads]


def label_sets(task_type: str, examples: Sequence[Example]) -> list[frozenset[str]]:
    """Each example's labels as a set (the type's ``label_counts``); no label at all is a class of its own."""
    tt = get_task_type(task_type)
    return [frozenset(tt.label_counts([ex.label])) or frozenset({""}) for ex in examples]


def check_classes(task: str, sets: list[frozenset[str]], examples: Sequence[Example]) -> None:
    """A positive pair needs two examples of a class: one line naming the first class that has one."""
    counts: dict[str, list[int]] = defaultdict(list)
    for i, labels in enumerate(sets):
        for label in labels:
            counts[label].append(i)
    single = sorted(label for label, rows in counts.items() if len(rows) == 1)
    if single:
        where = examples[counts[single[0]][0]].source or f"tasks.{task}.data.train"
        named = [repr(label) if label else "(no label)" for label in single]  # "": the rows without a label
        more = f" (and {len(single) - 1} more: {', '.join(named[1:4])})" if len(single) > 1 else ""
        raise DataError(
            f"{where}: tasks.{task}.few_shot needs at least 2 training examples of every class to pair; "
            f"class {named[0]} has 1{more}. Add an example of it, or drop few_shot for this task"
        )


def sample_pairs(
    sets: list[frozenset[str]], per_example: int, seed: int | Sequence[int], self_pairs: bool = False
) -> tuple[list[int], list[int], list[float]]:
    """Seeded contrastive pairs: for each example ``per_example`` partners sharing a label (positives) and
    ``per_example`` sharing none (negatives), when such partners exist. ``sets``: each example's non-empty
    label set (``label_sets``). ``self_pairs``: the example itself is one of its positive partners.

    Returns:
        first, second: Example indices of each pair; target: the Jaccard overlap of their label sets.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, labels in enumerate(sets):
        for label in labels:
            by_label[label].append(i)
    first: list[int] = []
    second: list[int] = []
    for i, labels in enumerate(sets):
        positives = sorted({j for label in labels for j in by_label[label] if self_pairs or j != i})
        others = len(sets) - 1 - len(positives) + self_pairs  # examples sharing no label with this one
        negatives = [j for j in range(len(sets)) if j != i and not labels & sets[j]] if others * 4 < len(sets) else None
        for _ in range(per_example):
            if positives:
                first.append(i)
                second.append(positives[int(rng.integers(len(positives)))])
            partner = draw_negative(rng, sets, i, negatives)
            if partner is not None:
                first.append(i)
                second.append(partner)
    return first, second, jaccard(sets, first, second)


def jaccard(sets: list[frozenset[str]], first: list[int], second: list[int]) -> list[float]:
    return [len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for a, b in zip(first, second, strict=True)]


MAX_ENUMERATED = 4_000_000  # all_pairs lists every pair up to this many; above, it draws pairs at random


def all_pairs(
    sets: list[frozenset[str]], per_example: int, seed: int | Sequence[int], self_pairs: bool = True
) -> tuple[list[int], list[int], list[float]]:
    """SetFit's pairs (``ContrastiveDataset`` with ``num_iterations``): every pair ``i <= j`` of examples
    (``i == j`` too with ``self_pairs``) in a seeded order, split into positives (sharing a label) and
    negatives, each list cycled to ``per_example x len(sets)`` pairs, so that every distinct pair is used
    as often as any other of its kind (to one). With more than ``MAX_ENUMERATED`` pairs, distinct pairs are
    drawn at random instead (what the first pairs of a shuffled list are), a kind's list only cycling
    when it runs out. Positives and negatives alternate.

    Returns:
        first, second: Example indices of each pair; target: the Jaccard overlap of their label sets.
    """
    rng = np.random.default_rng(seed)
    n, want = len(sets), per_example * len(sets)
    vocab = {label: k for k, label in enumerate(sorted(set().union(*sets)))}
    member = np.zeros((n, len(vocab)), dtype=bool)  # (examples, labels)
    for i, labels in enumerate(sets):
        member[i, [vocab[label] for label in labels]] = True
    if n * (n + 1) // 2 - (0 if self_pairs else n) <= MAX_ENUMERATED:
        a, b = np.triu_indices(n, 0 if self_pairs else 1)
        order = rng.permutation(len(a))
        a, b = a[order], b[order]
    else:  # enough random pairs that each kind has `want` distinct ones, or all of them
        a, b = random_pairs(rng, member, want, self_pairs)
    shared = (member[a] & member[b]).any(axis=1)  # (pairs,)
    kinds = [(a[shared], b[shared]), (a[~shared], b[~shared])]
    first: list[int] = []
    second: list[int] = []
    for k in range(want):
        for left, right in kinds:
            if len(left):
                first.append(int(left[k % len(left)]))
                second.append(int(right[k % len(left)]))
    return first, second, jaccard(sets, first, second)


def random_pairs(
    rng: np.random.Generator, member: np.ndarray, want: int, self_pairs: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pairs ``i <= j`` drawn at random (for ``all_pairs`` on large sets) until ``want`` positives
    and ``want`` negatives are found, or a draw finds no new positive (a rare class: they are then cycled).
    ``member``: (examples, labels) bool."""
    n = len(member)
    seen: dict[tuple[int, int], None] = {}  # distinct pairs in the order found
    counts = [0, 0]  # negatives, positives
    while min(counts) < want:
        i, j = rng.integers(n, size=(2, 4 * want))
        i, j = np.minimum(i, j), np.maximum(i, j)
        keep = i <= j if self_pairs else i < j
        before = list(counts)
        for x, y, pos in zip(i[keep], j[keep], (member[i[keep]] & member[j[keep]]).any(axis=1), strict=True):
            if (int(x), int(y)) not in seen and counts[int(pos)] < want:
                seen[int(x), int(y)] = None
                counts[int(pos)] += 1
        if any(counts[k] == before[k] < want for k in (0, 1)):  # a kind this rare: keep what was found
            break
    pairs = np.array(list(seen), dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def draw_negative(
    rng: np.random.Generator, sets: list[frozenset[str]], i: int, negatives: list[int] | None
) -> int | None:
    """A partner sharing no label: rejection sampling (few tries when the example's classes are a small
    part of the data: at least a quarter are partners), else the explicit list; None when there is none."""
    if negatives is not None:
        return negatives[int(rng.integers(len(negatives)))] if negatives else None
    while True:
        j = int(rng.integers(len(sets)))
        if j != i and not sets[i] & sets[j]:
            return j


@dataclass
class PairGroup(EncodedGroup):
    """Contrastive pairs of one task, as a batch group: row ``k`` pairs ``source.items[first[k]]`` with
    ``source.items[second[k]]``; ``target[k]`` is their label overlap. ``encode_once``: a batch runs each
    distinct example through the encoder once (``training.few_shot.encode_once``)."""

    source: EncodedGroup = field(default_factory=lambda: EncodedGroup("", []))
    first: list[int] = field(default_factory=list)
    second: list[int] = field(default_factory=list)
    target: list[float] = field(default_factory=list)
    encode_once: bool = True

    @property
    def lengths(self) -> list[int]:
        n = [len(it["enc"]["input_ids"]) for it in self.source.items]
        return [n[a] + n[b] for a, b in zip(self.first, self.second, strict=True)]

    def __len__(self) -> int:
        return len(self.first)


# training.few_shot.pair_sampling -> the sampler (config.PairSampling: tests/test_config_choices.py)
PAIR_SAMPLERS = {"per_example": sample_pairs, "all_pairs": all_pairs}


def pair_groups(
    config: Config, tasks: list[str], data: dict[str, Any], groups: dict[str, EncodedGroup]
) -> dict[str, PairGroup]:
    """One pair group per few-shot task, named ``few_shot:<task>``, its pairs a function of the seed."""
    out = {}
    fs = config.training.few_shot
    for task in tasks:
        source = next(g for g in groups.values() if task in g.tasks)
        examples = data[task].train
        sets = label_sets(config.tasks[task].type, examples)  # pairable: checked by build_specs, before the model
        seed = [config.training.seed, zlib.crc32(task.encode())]
        sampler = PAIR_SAMPLERS[fs.pair_sampling]
        first, second, target = sampler(sets, fs.pairs_per_example, seed, fs.self_pairs)
        name = f"{CONTRASTIVE}:{task}"
        out[name] = PairGroup(name, [], [], source, first, second, target, fs.encode_once)
        logger.info("few-shot %s: %d pairs from %d examples", task, len(first), len(examples))
    return out


def distinct(rows: list[int], n: int) -> tuple[list[int], torch.Tensor]:
    """The examples a pair batch encodes, and each row's position among them: ``rows`` are the ``n`` first
    sentences then their ``n`` partners; the encoder runs once per distinct example, ``embeddings[where]``
    gives every row's. An example paired with itself keeps two rows, so that dropout still makes its two sides
    differ (what a self pair learns from); other repeats share one row, and with dropout one mask."""
    keys = np.asarray(rows, dtype=np.int64)
    keys[n:] = np.where(keys[n:] == keys[:n], -1 - keys[n:], keys[n:])  # a self pair's partner: a key of its own
    unique, where = np.unique(keys, return_inverse=True)
    encoded = np.where(unique < 0, -1 - unique, unique)
    return encoded.tolist(), torch.from_numpy(where.reshape(-1))


def length_chunks(lengths: list[int], min_rows: int = 4, keep: float = 0.8) -> list[list[int]]:
    """Positions of ``lengths`` in runs of similar length: sorted by length, cut in two where the two runs pad
    to the fewest tokens, and again inside each run, while a cut pads at most ``keep`` of the tokens the run
    pads to alone and leaves ``min_rows`` rows a side (each run is one encoder call)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])

    def cut(run: list[int]) -> list[list[int]]:
        n, longest = len(run), lengths[run[-1]]
        splits = [(i * lengths[run[i - 1]] + (n - i) * longest, i) for i in range(min_rows, n - min_rows + 1)]
        padded, i = min(splits, default=(n * longest, n))
        return cut(run[:i]) + cut(run[i:]) if padded <= keep * n * longest else [run]

    return cut(order) if order else []


@dataclass
class ContrastiveStep(TrainStep):
    """The contrastive stage's step: pair groups give ``(cos(a, b) - overlap)^2`` averaged over the batch,
    logged under the task's name; the preservation group (a file of sentences), when there is one, is the
    parent's. Embedding preservation on the training sentences compares the pair's sentences."""

    def forward_batch(self, gname: str, local: list[int]) -> dict[str, torch.Tensor]:
        group = self.groups[gname]
        if not isinstance(group, PairGroup):
            return super().forward_batch(gname, local)
        task = gname.split(":", 1)[1]
        losses = {task: torch.zeros((), device=self.device)}
        preserving = self.preserve is not None and group.source.name in self.preserve.reference
        if preserving:  # the same keys in every process, with or without rows
            losses[PRESERVE] = torch.zeros((), device=self.device)
        if local:
            rows = [group.first[k] for k in local] + [group.second[k] for k in local]
            encoded, where = distinct(rows, len(local)) if group.encode_once else (rows, None)
            target = torch.tensor([group.target[k] for k in local], device=self.device)
            with autocast(self.precision, self.device):
                feats = self.encode_by_length([group.source.items[i]["enc"] for i in encoded])
                emb = feats["sentence_embedding"].float()  # (encoded, dim)
                if where is not None:
                    emb = emb[where.to(self.device)]  # (2 * batch, dim): first sentences, then partners
                cos = F.cosine_similarity(emb[: len(local)], emb[len(local) :], dim=-1)  # (batch,)
                losses[task] = F.mse_loss(cos, target)
                if preserving and self.preserve is not None:
                    losses[PRESERVE] = self.preserve.term(group.source.name, encoded, feats)  # type: ignore[assignment]
        if self.dist.distributed:  # each shard's mean, weighted by its share of the global batch
            count = torch.tensor([float(len(local))])
            total = float(self.dist.all_sum(count.clone())[0])
            share = self.dist.world * len(local) / max(total, 1.0)
            losses = {t: v * share for t, v in losses.items()}
        return losses

    def encode_by_length(self, encs: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """``sentence_embedding`` and ``pooled_embedding`` (rows, dim) of ``encs``, in their order, from one
        encoder pass per run of similar lengths (:func:`length_chunks`): a pair batch drawn at random mixes
        short sentences with long ones, and each run pads only to its own longest. The same function of the
        rows as one padded pass (rows do not interact in the encoder)."""
        chunks = length_chunks([len(e["input_ids"]) for e in encs])
        parts = []
        for chunk in chunks:
            features = pad_batch([encs[i] for i in chunk], self.model.encoder.pad_token_id)
            out = self.model.encoder({k: v.to(self.device) for k, v in features.items()})
            parts.append((out["sentence_embedding"], out["pooled_embedding"]))
        if len(parts) == 1:
            return {"sentence_embedding": parts[0][0], "pooled_embedding": parts[0][1]}
        back = torch.from_numpy(np.argsort(np.concatenate(chunks))).to(self.device)  # concatenated -> given order
        return {
            "sentence_embedding": torch.cat([p[0] for p in parts])[back],
            "pooled_embedding": torch.cat([p[1] for p in parts])[back],
        }

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pair losses summed as they come (one task per batch), plus the weighted preservation loss; the
        task weighting (static or learned) is for the heads' losses and stays out of it."""
        total = torch.zeros((), device=self.device)
        for name, loss in losses.items():
            weight = self.preserve.weight if name == PRESERVE and self.preserve is not None else 1.0
            total = total + weight * loss
        return total
