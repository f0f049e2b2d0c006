"""The `openkoi` command. Subcommands live in their own modules and are imported on first use.

openkoi "prompt"                      one-shot prompt, streamed (the default command)
openkoi --model openai/gpt-5.2 "…"    pick the model
echo "…" | openkoi                    prompt from stdin

This module stays small (no click, no pydantic): `main()` sets the process up for start-up
before the command group (`openkoi.cli._group`) and everything it needs are imported. The plain
prompt (`openkoi -m provider/model "..."`) runs without click at all (`openkoi.cli._fast`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

from openkoi.cli._gc import pause_collector, resume_collector


def _tolerant_streams() -> None:
    """A terminal or pipe that cannot encode a character (`LANG=C`, `PYTHONIOENCODING=ascii`)
    gets a `?` for it instead of a crash halfway through an answer."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="replace")


def _without_httpx_cli() -> None:
    """`import httpx` also imports httpx's own command line (`httpx._main`: rich and pygments,
    about a tenth of a second) when they are installed, as they are with openkoi, and httpcore
    imports trio wherever trio is installed (another tenth). The `openkoi` process runs neither
    (its loop is asyncio's), so both are marked as absent, as httpx and httpcore expect when they
    are not installed. Only in a process `openkoi` owns, before httpx loads; openkoi's own rich
    output still imports rich when it prints some."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    if "httpcore" not in sys.modules:
        sys.modules.setdefault("trio", None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes one clear line and a non-zero exit, never a traceback.

    A closed stdout pipe is not a failure: the reader had what it wanted (exit 0, silently).
    Run as the `openkoi` command (no `argv`), start-up runs with the cyclic collector paused
    (`openkoi.cli._gc`) and the process ends through `_exit_now`; a caller passing `argv` keeps
    its collector as it is and gets `SystemExit` as usual.
    """
    if argv is None:
        _without_httpx_cli()
        pause_collector()
    try:
        _tolerant_streams()
        code = _run(argv)
    finally:
        resume_collector()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_gone()
    except OSError as exc:  # a full disk: the answer is not all there
        code = _cannot_write(exc, code)
    if argv is None:
        _exit_now(code)
    _settle()
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    """The plain prompt on its click-free path; every other command line through click."""
    from openkoi.cli._fast import simple_prompt

    asked = simple_prompt(sys.argv[1:] if argv is None else argv)
    if asked is None:
        from openkoi.cli._group import run_group

        return run_group(argv)
    from openkoi.cli._ask import ask
    from openkoi.cli._guard import run_guarded

    def prompt() -> int:
        ask(asked)
        return 0

    return run_guarded(prompt)


def _reader_gone() -> int:
    from openkoi.cli._out import reader_gone

    return reader_gone()


def _cannot_write(error: OSError, code: int) -> int:
    from openkoi.cli._out import cannot_write

    return cannot_write(error, code or 1)


def _settle() -> None:
    """A caller of `main(argv)` goes on: Ctrl-C works again after an interrupted command."""
    settle = getattr(sys.modules.get("openkoi.cli._sigint"), "settle", None)
    if settle is not None:
        settle()


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown (freeing every module and object:
    about a tenth of a second after the answer, for nothing a one-shot command needs).

    What must persist is done first: the `atexit` hooks (the ledger writer's flush, the plugin
    linker's close, `weakref.finalize`, logging) run, then stdout and stderr are flushed. The
    ledger row itself was committed when the call ended (`Router.aclose`). A thread still
    running (none on the prompt's path) gets the ordinary exit, which waits for it.
    """
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            code = _reader_gone() if stream is sys.stdout else code
        except (OSError, ValueError):
            pass
    os._exit(code)
