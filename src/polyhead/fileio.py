"""Whole-or-nothing file writes: every JSON, text and safetensors file polyhead writes is whole or not there.

Each write goes to a temporary sibling in the same directory (same file system, so the rename is
atomic; missing parent directories are created), is flushed to disk, and replaces the target with
``os.replace``; the directory is then synced so the rename itself survives a power cut. If anything fails
before the rename (serialisation, a full disk), the target keeps its old content and the temporary file
is removed; a process killed mid-write leaves the target whole and a hidden ``.<name>.<pid>-<hex>.tmp``
beside it. Importable without torch (safetensors' torch API is imported only when tensors are saved).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary path beside ``path``; when the block ends without an exception, the file
    written there is synced and renamed over ``path``. On an exception it is removed and ``path`` is left
    as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer, so two processes writing the same file never share a temporary file; created by
    # the writer with the usual permissions (umask), unlike tempfile's 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` whole or not at all (see the module docstring)."""
    with replacing(path) as tmp, open(tmp, "x", encoding=encoding) as f:
        f.write(text)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON (``indent`` spaces, a final newline), written atomically. ``data`` is serialised
    before the file is touched, so a value JSON can't hold raises with ``path`` unchanged."""
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def save_tensors_atomic(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors (contiguous CPU copies), atomically."""
    from safetensors.torch import save_file

    with replacing(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
