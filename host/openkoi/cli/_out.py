"""How the CLI writes: text that comes from servers, users, files or config is printed literally
(never read as rich markup, so `openkoi[bedrock]` keeps its brackets), and tables are never cut
when the output is a pipe or a file."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# Wide enough that no table or line is wrapped or cut when nobody will read it in a terminal.
PIPE_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    """A rich console; full width (nothing truncated) when the stream is not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (ValueError, OSError):  # a closed stream
        terminal = False
    return Console(
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
    """The reader of stdout went away (`openkoi ... | head -c1`): a normal end, exit 0.

    stdout is pointed at /dev/null so the interpreter's last flush does not fail again.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
