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
from polyhead.modeling.batching import pad_batch
from polyhead.modeling.heads import TaskSpec
from polyhead.tokens import IGNORE_INDEX, align_labels, tokenize_words


@dataclass
class EncodedGroup:
    """Tokenised training data of one or more tasks that share their sentences.

    ``items[i]`` holds ``enc`` (id lists, plus ``word_ids`` for word-tokenised input), optionally
    ``pair`` (the second sentence of a similarity pair) and ``labels`` ({task: encoded label}).
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


def encode_label(spec: TaskSpec, label: Any, word_ids: Sequence[int | None] | None, source: str) -> Any:
    """Label value -> what the loss needs: class id, multi-hot ids, float, or aligned tag ids."""
    index = {name: i for i, name in enumerate(spec.labels)}
    try:
        if spec.type == "classification":
            return index[label]
        if spec.type == "multilabel":
            return [index[x] for x in label]
        if spec.type == "token_classification":
            assert word_ids is not None
            return align_labels(word_ids, [index[t] for t in label])
    except KeyError as exc:
        raise DataError(
            f"{source}: label {exc.args[0]!r} is not in the label list {spec.labels[:10]}"
        ) from exc
    return float(label)


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
        words = [ex.words for ex in examples[word_task]]
        encs = tokenize_words(encoder.tokenizer, words, encoder.max_length)
    else:
        encs = encoder.tokenize_lists([ex.text for ex in rows])
    group = EncodedGroup(name, tasks)
    pairs = None
    if any(specs[t].type == "similarity" for t in tasks):
        pairs = encoder.tokenize_lists([ex.text_pair or "" for ex in rows])
    for i, enc in enumerate(encs):
        labels = {
            t: encode_label(specs[t], examples[t][i].label, enc.get("word_ids"), examples[t][i].source)
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

    Similarity groups put the first sentences then the second ones in one batch (2 * batch, seq_len);
    the loss splits the embeddings in half. Targets: class ids (batch,), multi-hot (batch, labels),
    floats (batch,), aligned tag ids (batch, seq_len) padded with IGNORE_INDEX.
    """
    items = [group.items[i] for i in indices]
    encs = [it["enc"] for it in items]
    if "pair" in items[0]:
        encs = encs + [it["pair"] for it in items]
    features = pad_batch(encs, pad_token_id)
    width = features["input_ids"].shape[1]
    targets: dict[str, torch.Tensor] = {}
    for task in group.tasks:
        spec, values = specs[task], [it["labels"][task] for it in items]
        if spec.type == "classification":
            targets[task] = torch.tensor(values, dtype=torch.long)
        elif spec.type == "multilabel":
            hot = torch.zeros((len(values), len(spec.labels)))
            for row, ids in enumerate(values):
                hot[row, ids] = 1.0
            targets[task] = hot
        elif spec.type == "token_classification":
            targets[task] = torch.tensor(
                [v + [IGNORE_INDEX] * (width - len(v)) for v in values], dtype=torch.long
            )
        else:
            targets[task] = torch.tensor(values, dtype=torch.float32)
    return features, targets
