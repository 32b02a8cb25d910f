"""Training inputs: examples -> token ids with aligned labels, length-bucketed batches, padded tensors.

Tasks that read the same training file (e.g. topic + sentiment columns of one TSV, or intent + slots of
one JSONL) form a *group*: each batch of the group runs the encoder once and feeds every head.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polyhead.errors import DataError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.batching import pad_batch


@dataclass
class EncodedGroup:
    """Tokenised training data of one or more tasks that share their sentences.

    ``items[i]`` holds ``enc`` (id lists, plus ``word_ids`` for word-tokenised input), optionally
    ``pair`` (the second sentence of a pair, for task types that embed pairs) and ``labels`` ({task: encoded label}).
    """

    name: str
    tasks: list[str]
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [
            len(it["enc"]["input_ids"]) + len(it.get("pair", {}).get("input_ids", ())) for it in self.items
        ]

    def __len__(self) -> int:
        return len(self.items)


def encode_group(
    name: str, encoder: Any, specs: dict[str, TaskSpec], examples: dict[str, list[Any]]
) -> EncodedGroup:
    """Tokenise the shared sentences of a group once and attach every task's labels.

    ``examples`` maps task -> its examples, all of the same length and order (one file, several label
    columns). Groups with a token task are tokenised from words so sub-tokens align with word labels.
    """
    tasks = list(examples)
    rows = examples[tasks[0]]
    for task in tasks[1:]:
        if len(examples[task]) != len(rows):
            raise DataError(
                f"tasks {tasks[0]!r} and {task!r} share a file but read different numbers of examples"
            )
    word_task = next((t for t in tasks if specs[t].level == "token"), None)
    if word_task is not None:
        encs = encoder.tokenize_words([ex.words for ex in examples[word_task]])
    elif any(specs[t].task.input == "pair" for t in tasks):  # cross-encoded: both texts in one sequence
        encs = encoder.tokenize_pairs([(ex.text, ex.text_pair or "") for ex in rows])
    else:
        encs = encoder.tokenize_lists([ex.text for ex in rows])
    group = EncodedGroup(name, tasks)
    pairs = None
    if any(specs[t].task.embeds_pairs for t in tasks):
        pairs = encoder.tokenize_lists([ex.text_pair or "" for ex in rows])
    for i, enc in enumerate(encs):
        labels = {
            t: specs[t].task.encode_target(specs[t], examples[t][i].label, enc.get("word_ids"), examples[t][i].source)
            for t in tasks
        }
        item: dict[str, Any] = {"enc": enc, "labels": labels}
        if pairs is not None:
            item["pair"] = pairs[i]
        group.items.append(item)
    return group


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, key: str, bucket: bool
) -> list[list[int]]:
    """The batches of one pass over a group, a pure function of (seed, epoch, key) for exact resume.

    With ``bucket``, a shuffled pass is cut into chunks of 50 batches, each chunk sorted by length and cut
    into batches (so a batch pads only to similar lengths), and the batch order shuffled again.
    """
    rng = np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])
    order = rng.permutation(len(lengths)).tolist()
    if not bucket:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    chunk = batch_size * 50
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def collate(
    group: EncodedGroup, indices: Sequence[int], specs: dict[str, TaskSpec], pad_token_id: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Padded features and per-task target tensors for one batch.

    Groups of a task that embeds pairs put the first sentences then the second ones in one batch
    (2 * batch, seq_len); the loss splits the embeddings in half. Targets are each task type's own
    (``TaskType.collate_targets``), e.g. class ids (batch,) or aligned tag ids (batch, seq_len).
    """
    items = [group.items[i] for i in indices]
    encs = [it["enc"] for it in items]
    if "pair" in items[0]:
        encs = encs + [it["pair"] for it in items]
    features = pad_batch(encs, pad_token_id)
    width = features["input_ids"].shape[1]
    targets = {
        task: specs[task].task.collate_targets(specs[task], [it["labels"][task] for it in items], width)
        for task in group.tasks
    }
    return features, targets
