"""Label vocabularies from the training split; unseen dev/test labels counted for the report."""

from __future__ import annotations

from typing import Any

from polyhead.tasks import TaskType, get_task_type


def build_labels(task: TaskType | str, train: list[Any]) -> list[str]:
    """The task type's (or type name's) label list from the training examples (sorted class names; BIO:
    "O", then B-X, I-X)."""
    task = get_task_type(task) if isinstance(task, str) else task
    source = train[0].source.rsplit(":", 1)[0] if train else "the training data"
    return task.build_labels([ex.label for ex in train], source)


def unseen_labels(task: TaskType | str, labels: list[str], examples: list[Any]) -> dict[str, int]:
    """Labels (or tags) in ``examples`` that are not in ``labels``, with their counts."""
    task = get_task_type(task) if isinstance(task, str) else task
    known = set(labels)
    counts = task.label_counts([ex.label for ex in examples])
    return {k: v for k, v in sorted(counts.items()) if k not in known}
