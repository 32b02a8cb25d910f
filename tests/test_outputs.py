"""encode --out / compare --markdown: refused over existing files unless --overwrite; written whole (#22 item 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyhead.errors import PolyheadError
from polyhead.outputs import check_output_file, save_npy_atomic


def test_overwrite_replaces_a_file_and_a_symlink_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "precious.npy"
    target.write_bytes(b"keep")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    check_output_file(link, "--out", overwrite=True, suffix=".npy")
    save_npy_atomic(link, np.ones((2, 3), dtype=np.float32))
    assert target.read_bytes() == b"keep" and not link.is_symlink()
    assert np.load(link).shape == (2, 3)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "v.npy"
    save_npy_atomic(out, np.zeros(3))
    old = out.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_npy_atomic(out, np.ones(3))
    assert out.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["v.npy"]


def test_cli_encode_overwrite(tmp_path: Path, tiny_model_dir: Path, monkeypatch, capsys) -> None:
    import sys

    from polyhead.cli import main

    out = tmp_path / "a.npy"
    out.write_bytes(b"keep")
    monkeypatch.setattr(sys, "argv", ["polyhead", "encode", "x", "--model", str(tiny_model_dir), "--out", str(out)])
    with pytest.raises(SystemExit) as refused:
        main()
    assert refused.value.code == 2 and out.read_bytes() == b"keep"
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--overwrite"])
    main()
    assert np.load(out).shape == (1, 32)
    with pytest.raises(PolyheadError, match="must end in .npy"):
        check_output_file(tmp_path / "a.txt", "--out", True, ".npy")
