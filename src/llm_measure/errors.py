"""One error type for bad input, and one error boundary that every command runs inside.

An :class:`InputError` names the file and, where there is one, the row and the column.
:func:`run_command` is the boundary of ``python -m src.fit``, ``src.report`` and
``src.simulate``: it turns every failure caused by the user's input, files, arguments or
environment (a full disk, a read-only folder) into ONE line and exit code 2, a signal
(Ctrl-C, SIGTERM) into exit code 128 + the signal's number, and anything else into the
traceback plus a line saying that it is an internal error (a bug to report), exit code 1.

Signals: PyMC and nutpie catch ``KeyboardInterrupt`` during sampling and return the draws
they have, so an interrupt cannot be left to propagate by itself. While a command runs,
SIGINT and SIGTERM are recorded here before they are raised; the sampler and the staged
output ask :func:`raise_if_interrupted` afterwards, so a swallowed interrupt still aborts.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE, for every command (1 means "some requests failed" to src.infer)


class InputError(Exception):
    """Bad user input: a file, a row, a column and what is wrong with them."""

    def __init__(
        self,
        message: str,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ):
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split())  # always one line


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM asked the command to stop."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is an InputError (one line, exit 2) instead of a usage
    block and SystemExit, so it goes through the same boundary as every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see {self.prog} --help)")


# ---- signals -------------------------------------------------------------------------------
_received: list[int] = []  # signals seen since the command started
_mode = {"value": "raise"}  # raise | defer (record only, raise at the end) | settled
_early = {"installed": False}  # handlers installed while the command's modules import
COMMANDS = ("src.fit", "src.report", "src.simulate")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if _mode["value"] == "raise":
        raise Interrupted(signum)


def received_signal() -> int | None:
    """The first signal received since the command started, or None."""
    return _received[0] if _received else None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived, even one a library swallowed."""
    if _received and _mode["value"] != "settled":
        raise Interrupted(_received[0])


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Record signals without raising them inside this block (cleanup and the final rename
    must not be cut in half); the caller checks :func:`raise_if_interrupted` afterwards."""
    before = _mode["value"]
    if before == "raise":
        _mode["value"] = "defer"
    try:
        yield
    finally:
        if before == "raise" and _mode["value"] == "defer":
            _mode["value"] = "raise"


def output_complete() -> None:
    """The command's output is in place: a signal from now on no longer undoes it (the
    command finishes its last prints and exits 0)."""
    _mode["value"] = "settled"


def record_signals_while_importing(argv: list[str]) -> None:
    """``python -m src.fit`` (report, simulate) spends seconds importing PyMC before its
    main() runs; record a signal from the very start (``src/__init__.py`` calls this) so
    that the command exits with its one line and 128 + the signal instead of a traceback."""
    try:
        command = argv[argv.index("-m") + 1]
    except (ValueError, IndexError):
        return
    if command in COMMANDS:
        defer_signals_while_importing()


def defer_signals_while_importing() -> None:
    """Record Ctrl-C / SIGTERM from now until the command's main() runs (the ``llm-measure``
    console command calls this before importing the command's module)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _mode["value"] = "defer"
    _early["installed"] = True
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _on_signal)


def _unraisable(
    hook: Callable[[sys.UnraisableHookArgs], object],
) -> Callable[[sys.UnraisableHookArgs], None]:
    """A signal raised inside a C callback (llvmlite's, while Numba compiles) is printed as
    "Exception ignored" and lost; it is recorded already, so print nothing and send it again,
    to land in ordinary Python code a moment later."""

    def handle(unraisable: sys.UnraisableHookArgs) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, Interrupted):
            if _mode["value"] == "raise":  # from another thread: never raise inside the hook
                threading.Timer(0.05, os.kill, (os.getpid(), exc.signum)).start()
            return
        hook(unraisable)

    return handle


@contextlib.contextmanager
def signals_recorded() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of one command."""
    real_command = _early["installed"]  # python -m src.fit, not main() called in process
    if not real_command:
        _received.clear()
    _early["installed"] = False
    _mode["value"] = "raise"
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        if real_command:
            # the process ends now: a signal while Python exits is recorded and ignored, so
            # a command that finished exits 0 rather than being killed with its output whole
            _mode["value"] = "settled"
        else:
            for s, handler in previous.items():
                signal.signal(s, handler)
            sys.unraisablehook = previous_hook
            _mode["value"] = "raise"


# ---- the boundary --------------------------------------------------------------------------
def os_error_line(exc: OSError) -> str:
    """A one-line message for an error of the environment (disk full, no permission)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device; nothing was written"
    where = exc.filename if exc.filename is not None else None
    return str(InputError(reason, file=where))


def run_command(name: str, body: Callable[[], int], internal_exit: int = EXIT_INTERNAL) -> int:
    """Run one command inside the error boundary and return its exit code."""
    with signals_recorded():
        try:
            raise_if_interrupted()  # a signal while the command's modules were importing
            code = body()
            raise_if_interrupted()
            return code
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            caught = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            print(
                f"interrupted ({signal.Signals(caught).name}): no output was written",
                file=sys.stderr,
            )
            return 128 + int(caught)
        except OSError as exc:  # the environment: a full disk, a read-only or missing folder
            print(f"error: {os_error_line(exc)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except MemoryError:
            print(
                "error: out of memory (try fewer draws, chains or items at a time)", file=sys.stderr
            )
            return EXIT_BAD_INPUT
        except Exception as exc:
            signum = received_signal()
            if signum is not None and _mode["value"] != "settled":
                # a library failing on its way out of the interrupt (nutpie's abort with no
                # draws yet raises ValueError): the signal is the cause, not a bug
                print(
                    f"interrupted ({signal.Signals(signum).name}): no output was written",
                    file=sys.stderr,
                )
                return 128 + int(signum)
            del exc
            traceback.print_exc()
            print(
                f"internal error in {name}: this is a bug in llm-measure, not a problem "
                "with your input; please report it with the traceback above",
                file=sys.stderr,
            )
            return internal_exit


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (used to tell a stale partial
    folder, whose writer was killed, from one another command is still writing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
