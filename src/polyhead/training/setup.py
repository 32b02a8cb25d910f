"""Builders: config -> examples, label lists, model, task groups. Plain arguments into modules."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from polyhead.config import Config, DataConfig, TaskConfig, resolve_path
from polyhead.data.readers import Example, ReaderOptions, read_examples, split_examples
from polyhead.data.shards import is_sharded, shard_files
from polyhead.data.vocab import build_labels, unseen_labels
from polyhead.errors import ConfigError, DataError
from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.tasks import get_task_type

logger = logging.getLogger(__name__)


@dataclass
class TaskData:
    train: list[Example]
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)


def reader_options(data: DataConfig, role: str = "train") -> ReaderOptions:
    """Reader settings for one of data.train / dev / test (``role``)."""
    split = data.split.get(role) if isinstance(data.split, dict) else data.split  # type: ignore[call-overload]
    return ReaderOptions(
        format=data.format,
        text_column=data.text_column,
        label_column=data.label_column,
        pair_column=data.pair_column,
        tokens_column=data.tokens_column,
        label_separator=data.label_separator,
        conll_token_column=data.conll_token_column,
        conll_tag_column=data.conll_tag_column,
        limit=data.limit,
        split=split,
        role=role,
    )


def read_split(task: str, data: DataConfig, split: str, task_type: str) -> list[Example]:
    """One split of a task's data (``task_type``: the registered type name), or [] when the config has none."""
    value = getattr(data, split)
    if value is None:
        return []
    path = resolve_path(value)
    if is_sharded(path):  # Parquet shards: a directory or a glob, checked (with the files named) as they are read
        shard_files(path, f"tasks.{task}.data.{split}:")
    elif not path.exists():  # a file, or a datasets directory
        raise DataError(
            f"tasks.{task}.data.{split}: file {value!r} not found (relative paths are read from the current directory)"
        )
    return read_examples(path, get_task_type(task_type), reader_options(data, split))


def load_task_data(name: str, task: TaskConfig, seed: int) -> TaskData:
    """Read train/dev/test; carve dev/test from train when the config asks (seeded, deterministic)."""
    data = task.data
    train = read_split(name, data, "train", task.type)
    dev = read_split(name, data, "dev", task.type)
    test = read_split(name, data, "test", task.type)
    if data.test_fraction and not test:
        train, test = split_examples(train, data.test_fraction, seed)
    if data.dev_fraction and not dev:
        train, dev = split_examples(train, data.dev_fraction, seed + 1)
    return TaskData(train, dev, test)


def load_all_data(config: Config) -> dict[str, TaskData]:
    return {name: load_task_data(name, task, config.training.seed) for name, task in config.tasks.items()}


def build_specs(config: Config, data: dict[str, TaskData]) -> dict[str, TaskSpec]:
    """Label lists from the training split (or the config), checked; unseen dev/test labels reported."""
    specs = {}
    for name, task in config.tasks.items():
        task_type = get_task_type(task.type)
        labels = list(task.labels) if task.labels else build_labels(task_type, data[name].train)
        for split in ("dev", "test"):
            unseen = unseen_labels(task_type, labels, getattr(data[name], split))
            if unseen:
                logger.warning("task %s: %s labels not seen in train (predicted as never): %s", name, split, unseen)
        head, train, key = task.head, [ex.label for ex in data[name].train], f"tasks.{name}"
        specs[name] = TaskSpec(
            type=task.type,
            labels=labels,
            hidden=list(head.hidden),
            activation=head.activation,
            dropout=head.dropout,
            threshold=head.threshold,
            loss=head.loss,
            class_weights=task_type.class_weight_values(task.class_weights, labels, train, f"{key}.class_weights"),
            pos_weight=task_type.class_weight_values(task.pos_weight, labels, train, f"{key}.pos_weight"),
            label_smoothing=task.label_smoothing,
        )
        if task.few_shot:  # every class can be paired: checked here, before the model loads
            from polyhead.training.fewshot import check_classes, label_sets

            check_classes(name, label_sets(task.type, data[name].train), data[name].train)
        problem = task_type.threshold_problem(specs[name]) if task.tune_thresholds else None
        if problem:
            raise ConfigError(f"tasks.{name}.tune_thresholds: {problem}")
        if (task.tune_thresholds or task.calibrate) and not data[name].dev:
            raise ConfigError(
                f"tasks.{name}: tune_thresholds and calibrate fit on the dev split; give data.dev or data.dev_fraction"
            )
        if specs[name].class_weights or specs[name].pos_weight:
            logger.info("task %s: loss weights per label %s", name, specs[name].class_weights or specs[name].pos_weight)
    return specs


def build_model(config: Config, specs: dict[str, TaskSpec]) -> MultiTaskModel:
    enc = config.encoder
    encoder = SentenceEncoder.from_pretrained(
        enc.model,
        revision=enc.revision,
        device="cpu",  # the trainer moves the model to training.device
        pooling=enc.pooling,
        projection_dim=enc.projection_dim,
        normalize=enc.normalize,
        max_length=enc.max_length,
    )
    torch.manual_seed(config.training.seed)  # the projection and heads initialise the same way every run
    if encoder.dense is not None:
        encoder.dense.linear.reset_parameters()
    return MultiTaskModel(encoder, specs)


def task_groups(config: Config, tasks: list[str]) -> dict[str, list[str]]:
    """Tasks reading the same training file (same reader settings but label columns) share batches."""
    groups: dict[Any, list[str]] = {}
    for name in tasks:
        d = config.tasks[name].data
        if get_task_type(config.tasks[name].type).embeds_pairs:  # pairs of texts: a group of its own
            key: Any = ("pairs", name)
        else:  # pair tasks read (text, pair) as one sequence: never batched with single-text tasks
            task_type = get_task_type(config.tasks[name].type)
            pair = d.pair_column if task_type.input == "pair" else None
            key = (d.train, d.format, repr(d.split), d.limit, d.dev_fraction, d.test_fraction, task_type.input, pair)
        groups.setdefault(key, []).append(name)
    return {"+".join(members): members for members in groups.values()}


def check_stage_tasks(config: Config) -> None:
    if config.training.stages is not None and not config.training.stages:
        raise ConfigError("training.stages is an empty list; give at least one stage or remove the key")
