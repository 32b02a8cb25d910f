"""Task types, one module each, registered by name (the ``type`` of a task in the config and polyhead.json).

Built in: classification, multilabel, regression, token_classification, similarity (bi-encoder pairs),
pair_classification and pair_regression (cross-encoded pairs). A new type is one
module (here or anywhere, e.g. a test file or the user's own package)::

    from polyhead.tasks import TaskType, register

    @register
    class MyType(TaskType):
        name = "my_type"
        ...

Registering before a config is loaded (or a model directory read) is all it takes; see
docs/architecture.md.
"""

from __future__ import annotations

from typing import TypeVar

from polyhead.registry import lookup, names
from polyhead.registry import register as register_object
from polyhead.tasks.base import DecodeInput, TaskType

T = TypeVar("T", bound=type[TaskType])


def register(cls: T) -> T:
    """Class decorator: register one instance of a TaskType subclass under its ``name``."""
    register_object("task_type", cls.name)(cls())
    return cls


def get_task_type(name: str) -> TaskType:
    """The registered task type called ``name``, or a one-line error listing the valid ones."""
    return lookup("task_type", name)  # type: ignore[no-any-return]


def task_type_names() -> list[str]:
    return names("task_type")


# the built-in types register themselves on import
from polyhead.tasks import (  # noqa: E402
    classification,
    multilabel,
    pair,
    regression,
    similarity,
    token_classification,
)

__all__ = [
    "DecodeInput",
    "TaskType",
    "classification",
    "get_task_type",
    "multilabel",
    "pair",
    "register",
    "regression",
    "similarity",
    "task_type_names",
    "token_classification",
]
