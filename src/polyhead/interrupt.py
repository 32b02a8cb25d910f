"""Ctrl-C for the CLI: every command ends with exit status 130 when interrupted.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives; if that is inside a
``__del__`` or a callback from C, the exception is printed as "Exception ignored" and lost, and the command
runs on to the end and exits 0 (seen in ``predict --file`` while tokenising). So after the first Ctrl-C the
interrupt is raised again every ``repeat`` seconds until it surfaces. Set up by the CLI entry point only (a
library leaves its host's signals alone); the trainer installs its own handler while it trains.

A process started with Ctrl-C ignored (a script's ``cmd &``, ``trap '' INT``) keeps ignoring it, as Python itself
does, and so does code running outside the main thread, where Python can't set handlers.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any


def surfaced(exc: BaseException | None) -> bool:
    """Whether the exception being handled is the interrupt or was raised because of it (Click's Abort)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def may_handle_sigint() -> bool:
    """Whether a handler may be set: the main thread, and SIGINT not ignored by whoever started the process."""
    main = threading.current_thread() is threading.main_thread()
    return main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


@contextlib.contextmanager
def sigint_handler(handler: Callable[[int, Any], Any]) -> Iterator[None]:
    """``handler`` for SIGINT within the block, the previous one restored after (nothing changes unless
    ``may_handle_sigint``)."""
    if not may_handle_sigint():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def reliable_ctrl_c(repeat: float = 1.0) -> Iterator[None]:
    """Within the block, a Ctrl-C raises KeyboardInterrupt and keeps raising it until it is not swallowed."""
    if not hasattr(signal, "setitimer") or not may_handle_sigint():  # setitimer: not on Windows
        yield
        return
    pending = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal pending
        pending = True
        signal.setitimer(signal.ITIMER_REAL, repeat, repeat)
        raise KeyboardInterrupt

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if pending and not surfaced(sys.exc_info()[1]):
            raise KeyboardInterrupt

    def quiet(unraisable: sys.UnraisableHookArgs) -> None:  # the lost interrupt is raised again: no noise
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    previous, hook = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)), sys.unraisablehook
    try:  # installed inside the try: an interrupt that lands between the two still restores both
        signal.signal(signal.SIGINT, on_sigint)
        signal.signal(signal.SIGALRM, on_alarm)
        sys.unraisablehook = quiet
        yield
    finally:
        pending = False  # first: an alarm from here on (unwinding, "aborted", shutdown) must not raise again
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGALRM, previous[1])
        sys.unraisablehook = hook


def quiet_exit() -> None:
    """The CLI is exiting after an interrupt: ignore further Ctrl-C and stop any repeat timer (a KeyboardInterrupt
    escaping the entry point makes Python end by SIGINT, status -2, instead of the 130 it was about to return)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
