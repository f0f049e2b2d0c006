"""How a failure becomes an exit code: one clear line on stderr, never a traceback.

Shared by the click command group and the prompt's click-free path (`openkoi.cli._fast`), so a
failure reads the same whichever way the prompt was parsed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from openkoi._errors import OpenKoiError
from openkoi.cli._out import fail, reader_gone


class ReaderGone(Exception):
    """stdout's pipe closed. Not an OSError, so click does not turn it into exit status 1."""


def run_guarded(command: Callable[[], int]) -> int:
    """Run `command`; its exit code, or the code of the failure it raised.

    A closed stdout pipe is not a failure: the reader had what it wanted (0).
    """
    try:
        return command()
    except OpenKoiError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:  # as click says it of a Ctrl-C: a new line, then "aborted"
        sys.stderr.write("\n")
        return fail("aborted", 130)
    except (BrokenPipeError, ReaderGone):
        return reader_gone()
    except Exception as exc:  # the last line of defence: say what happened, in one line
        if os.environ.get("OPENKOI_DEBUG"):
            raise
        return fail(
            f"internal error: {type(exc).__name__}: {exc} (set OPENKOI_DEBUG=1 for a traceback)",
            70,
        )
