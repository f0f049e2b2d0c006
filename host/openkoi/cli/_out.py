"""How the CLI writes: text that comes from servers, users, files or config is printed literally
(never read as rich markup, so `openkoi[bedrock]` keeps its brackets), and tables are never cut
when the output is a pipe or a file."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# Wide enough that no table or line is wrapped or cut when nobody will read it in a terminal.
PIPE_WIDTH = 100_000


class OutputError(Exception):
    """Writing stdout failed for the machine's reason (a full disk, an I/O error): the
    environment's failure, not a bug, so exit 1 with one line rather than 70. Not an OSError, so
    click does not handle it on its own way."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


def write_out(text: str) -> None:
    """`text` on stdout, flushed. A reader gone stays a BrokenPipeError; any other failure to
    write is an `OutputError`."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(exc) from exc


@functools.cache
def _console_type() -> type[Console]:
    """rich's Console, ending like the rest of the CLI when its stream fails (rich itself exits
    with status 1 on a broken pipe and lets any other OSError out as a bug)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """stdout's reader went away: a BrokenPipeError, which the CLI makes exit 0. A
            stderr nobody reads is ignored: there is nowhere left to say anything."""
            self.quiet = True
            if not self.stderr:
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        def _check_buffer(self) -> None:  # rich's one place that writes the buffer out
            try:
                super()._check_buffer()
            except BrokenPipeError:
                raise
            except OSError as exc:
                self.quiet = True
                if not self.stderr:
                    raise OutputError(exc) from exc

    return _Console


def console(*, stderr: bool = False) -> Console:
    """A rich console; full width (nothing truncated) when the stream is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (ValueError, OSError):  # a closed stream
        terminal = False
    return _console_type()(
        stderr=stderr, highlight=False, soft_wrap=True, width=None if terminal else PIPE_WIDTH
    )


def literal(text: object, style: str = "") -> Text:
    """`text` as it is: brackets stay brackets."""
    from rich.text import Text

    return Text(str(text), style=style)


def styled(label: str, style: str, message: object) -> Text:
    """`label` in `style`, then `message` printed literally."""
    from rich.text import Text

    return Text.assemble((label, style), str(message))


def fail(message: object, code: int = 1) -> int:
    """One `error: ...` line on stderr; returns the exit code to use."""
    console(stderr=True).print(styled("error: ", "bold red", message))
    return code


def note(message: object) -> None:
    """A dim line on stderr (what happened on the way; stdout stays the answer alone)."""
    console(stderr=True).print(literal(message, "dim"))


def reader_gone() -> int:
    """The reader of stdout went away (`openkoi ... | head -c1`): a normal end, exit 0."""
    _discard_stdout()
    return 0


def cannot_write(error: OSError, code: int = 1) -> int:
    """stdout cannot be written (`openkoi status >/dev/full`): one line on stderr, exit 1."""
    _discard_stdout()
    return fail(f"cannot write the output: {error.strerror or error}", code)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
