"""Files the CLI writes where the user points it (``encode --out``, ``compare --markdown`` / ``--plot``):
nothing that exists is replaced unless the user says ``--overwrite``, and each file is written whole or not
at all (a temporary sibling renamed into place: polyhead.fileio)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from polyhead.errors import PolyheadError
from polyhead.fileio import replacing

if TYPE_CHECKING:
    import numpy as np


def check_output_file(path: Path | None, option: str, overwrite: bool, suffix: str | None = None) -> None:
    """Refuse an output path that would destroy something: a directory (also through a symlink), or an
    existing file or symlink unless ``overwrite``; with ``suffix``, a path not ending in it. None: not given."""
    if path is None:
        return
    if suffix is not None and path.suffix != suffix:
        raise PolyheadError(f"{option} {path}: must end in {suffix}")
    if path.is_dir():
        example = path / ("out" + (suffix or ""))
        raise PolyheadError(f"{option} {path} is a directory; give a file path (e.g. {example})")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise PolyheadError(f"{option} {path} already exists; pass --overwrite to replace it, or choose another file")


def check_output_files(paths: dict[str, Path | None], overwrite: bool) -> None:
    """``check_output_file`` for each option -> path given (None: not given)."""
    for option, path in paths.items():
        check_output_file(path, option, overwrite)


def check_output_dir(path: Path | None, option: str, overwrite: bool, names: list[str]) -> None:
    """A directory the CLI writes ``names`` into: not a file; none of the files there unless ``overwrite``."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise PolyheadError(f"{option} {path} is a file; give a directory (created if missing)")
    for name in names:
        check_output_file(path / name, option, overwrite)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``array`` as a .npy file, whole or not at all (a symlink at ``path`` is replaced, not followed)."""
    import numpy as np

    with replacing(path) as tmp, open(tmp, "xb") as f:
        np.save(f, array)
