"""Checks before the server starts listening: the address is free (one-line error, not uvicorn's exit 3),
and a warning when the server listens beyond loopback without an API key."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from polyhead.errors import PolyheadError

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, port: int, api_key: str | None) -> None:
    """Refuse an address in use (or that can't be bound); warn about an open server without a key."""
    if not is_loopback(host) and not api_key:
        logger.warning(
            "serving on %s without an API key: anyone who can reach port %d can use the model; "
            "set --api-key (or POLYHEAD_API_KEY)", host, port,
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"can't be used ({exc.strerror})"
            raise PolyheadError(f"--host {host} --port {port}: the address {reason}; choose another --port") from exc
