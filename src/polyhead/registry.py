"""Name -> object maps, so YAML configs and model directories can name task types by short name.

Modules register themselves with :func:`register`; lookups fail with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from polyhead.errors import PolyheadError

T = TypeVar("T")

_REGISTRIES: dict[str, dict[str, Any]] = {"task_type": {}}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: ``@register("task_type", "classification")``."""

    def wrap(obj: T) -> T:
        _REGISTRIES[kind][name] = obj
        return obj

    return wrap


def lookup(kind: str, name: str) -> Any:
    """The object registered under ``name``, or a one-line error listing the valid names."""
    table = _REGISTRIES[kind]
    if name not in table:
        raise PolyheadError(f"unknown {kind.replace('_', ' ')} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(_REGISTRIES[kind])
