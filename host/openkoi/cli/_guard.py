"""How a failure becomes an exit code: one clear line on stderr, never a traceback.

Shared by the click command group and the prompt's click-free path (`openkoi.cli._fast`), so a
failure reads the same whichever way the prompt was parsed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from openkoi._errors import OpenKoiError
from openkoi.cli._out import OutputError, cannot_write, fail, reader_gone
from openkoi.cli._sigint import aborted


class ReaderGone(Exception):
    """stdout's pipe closed. Not an OSError, so click does not turn it into exit status 1."""


def run_guarded(command: Callable[[], int]) -> int:
    """Run `command`; its exit code, or the code of the failure it raised.

    A closed stdout pipe is not a failure: the reader had what it wanted (0). stdout that
    cannot be written (a full disk) is the machine's failure, not a bug (1).
    """
    try:
        return command()
    except OpenKoiError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:  # as click says it of a Ctrl-C: a new line, then "aborted"
        return aborted(newline=True)
    except (BrokenPipeError, ReaderGone):
        return reader_gone()
    except OutputError as exc:
        return cannot_write(exc.error)
    except OSError as exc:
        if _echoed(exc):
            return cannot_write(exc)
        return _internal(exc)
    except Exception as exc:
        return _internal(exc)


def _echoed(exc: OSError) -> bool:
    """Whether `exc` was raised writing a standard stream in `click.echo` (the innermost frame
    of its traceback), which every click command prints with."""
    echo = getattr(sys.modules.get("click.utils"), "echo", None)
    tb = exc.__traceback__
    if echo is None or tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    stream = tb.tb_frame.f_locals.get("file")
    return tb.tb_frame.f_code is echo.__code__ and (stream is sys.stdout or stream is sys.stderr)


def _internal(exc: Exception) -> int:
    """The last line of defence, for a bug: say what happened, in one line (exit 70)."""
    if os.environ.get("OPENKOI_DEBUG"):
        raise exc
    return fail(
        f"internal error: {type(exc).__name__}: {exc} (set OPENKOI_DEBUG=1 for a traceback)", 70
    )
