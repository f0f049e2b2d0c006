"""Ctrl-C: the first SIGINT interrupts the command as it always has; every later one is ignored
while the command winds down, for at most `WIND_DOWN` seconds.

A terminal's Ctrl-C reaches the whole foreground process group, and `uv run` forwards the one it
gets, so the CLI often sees two SIGINTs a few milliseconds apart (more when the key is pressed
twice). The second one used to land in the call's wind-down (`Router.aclose`, which writes the
call's ledger row) or in the "aborted" line's own import of rich: a lost row, or a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from openkoi.cli._out import fail

# How long an interrupted command may take to end: enough for its ledger row and its
# connections to close (milliseconds; a plugin's cancelled call stops within 0.2 s), short
# enough that a wind-down that hangs still ends the process promptly.
WIND_DOWN = 3.0


class _State:
    """What the first interrupt changed, so `settle` can put it back."""

    winding_down = False
    said = False  # "aborted" is on stderr already
    alarm: Any = None  # SIGALRM's handler before the watchdog's


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _give_up(signum: int, frame: FrameType | None) -> None:
    """SIGALRM: the wind-down took longer than `WIND_DOWN`; end the process as interrupted."""
    with contextlib.suppress(OSError):
        if not _State.said:
            os.write(2, b"\nerror: aborted\n")
    os._exit(130)


def winding_down() -> None:
    """From now on SIGINT is ignored, and the process ends within `WIND_DOWN` seconds.

    Safe in a signal handler: no lock is taken (the watchdog is an alarm, not a thread)."""
    if not _in_main_thread() or _State.winding_down:
        return
    _State.winding_down = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "setitimer"):
        _State.alarm = signal.signal(signal.SIGALRM, _give_up)
        signal.setitimer(signal.ITIMER_REAL, WIND_DOWN)


def aborted(*, newline: bool = False) -> int:
    """The interrupted command's one line on stderr (after a new line, to end a `^C` the
    terminal echoed); returns its exit status (130)."""
    winding_down()
    if newline:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("\n")
    code = fail("aborted", 130)
    _State.said = True
    return code


@contextlib.contextmanager
def first_interrupt_only() -> Iterator[None]:
    """Inside `anyio.run`: the first SIGINT does what the event loop's handler does (cancel the
    call, whose wind-down then runs), later ones are ignored (`winding_down`)."""
    previous = signal.getsignal(signal.SIGINT)
    if not _in_main_thread() or not callable(previous):
        yield
        return

    def first(signum: int, frame: FrameType | None) -> Any:
        winding_down()
        return previous(signum, frame)

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is first:  # not interrupted: as it was
            signal.signal(signal.SIGINT, previous)


def settle() -> None:
    """For a caller of `main(argv)` that goes on: stop the watchdog and take Ctrl-C again."""
    if not _State.winding_down or not _in_main_thread():
        return
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if _State.alarm is None else _State.alarm)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _State.winding_down, _State.said, _State.alarm = False, False, None
