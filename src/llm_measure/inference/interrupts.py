"""SIGINT and SIGTERM during a run: stop cleanly, never in the middle of a write.

``install()`` makes both signals raise :class:`Interrupted` in the main thread. Inside
``protected()`` (appending finished ratings to raw.jsonl) the signal is held and raised when
the block ends, so a line is written whole or not at all. What was rated before the signal
is on disk; a rerun of the same command resumes from it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Interrupted(Exception):
    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


_state: dict[str, Any] = {"depth": 0, "pending": None}
stop_event = threading.Event()  # worker threads poll it to stop retrying


def _handler(signum: int, frame: FrameType | None) -> None:
    stop_event.set()
    if _state["depth"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


def install() -> None:
    if threading.current_thread() is threading.main_thread():
        stop_event.clear()
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


@contextlib.contextmanager
def protected() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done (it must be short)."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        pending, _state["pending"] = _state["pending"], None
        if pending and not _state["depth"]:
            raise Interrupted(pending)
