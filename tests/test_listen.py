"""polyhead serve: a port in use is a one-line error (exit 2); 0.0.0.0 without a key warns (#22 item 8)."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import pytest

from polyhead.serving.listen import check_listen


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    from polyhead.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(sys, "argv", ["polyhead", "serve", str(tmp_path / "model"), "--port", str(port)])
        with pytest.raises(SystemExit) as exit_info:
            main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip() == f"error: --host 127.0.0.1 --port {port}: the address is already in use; choose another --port"


def test_listening_beyond_loopback_without_a_key_warns(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="polyhead.serving.listen"):
        check_listen("127.0.0.1", port, None)
        assert not caplog.records
        check_listen("0.0.0.0", port, "key")
        assert not caplog.records
        check_listen("0.0.0.0", port, None)
    assert "serving on 0.0.0.0 without an API key" in caplog.text
