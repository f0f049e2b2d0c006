"""The `openkoi` command. Subcommands live in their own modules and are imported on first use.

openkoi "prompt"                      one-shot prompt, streamed (the default command)
openkoi --model openai/gpt-5.2 "…"    pick the model
echo "…" | openkoi                    prompt from stdin
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from importlib import import_module
from typing import Any, NoReturn

import click

from openkoi import __version__
from openkoi.cli._typos import GUARD

# name -> "module:attribute"; each subcommand module owns one noun.
_SUBCOMMANDS: dict[str, str] = {
    "run": "openkoi.cli._prompt:run",
    "connect": "openkoi.cli._connect:connect",
    "disconnect": "openkoi.cli._connect:disconnect",
    "status": "openkoi.cli._status:status",
    "models": "openkoi.cli._models:models",
    "init": "openkoi.cli._init:init",
    "plugin": "openkoi.cli._plugin:plugin",
    "demo": "openkoi.cli._demo:demo",
}
_DEFAULT_COMMAND = "run"


class _ReaderGone(Exception):
    """stdout's pipe closed. Not an OSError, so click does not turn it into exit status 1."""


class _LazyDefaultGroup(click.Group):
    """A group whose subcommands load lazily, and whose default command is the prompt."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(import_module(module), attr)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is None or (
            first not in _SUBCOMMANDS and first not in ("--help", "-h", "--version")
        ):
            if "--" not in args:  # `openkoi -- stauts` is a prompt on purpose
                ctx.meta[GUARD] = sorted(_SUBCOMMANDS)
            args = [_DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One line per command, never cut off with `...` (long summaries wrap)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The prompt's own options first: `openkoi -m openai/gpt-5.2 "..."` is the main use."""
        prompt = self.get_command(ctx, _DEFAULT_COMMAND)
        if prompt is not None:
            with click.Context(prompt, info_name="run", parent=ctx) as sub:
                records = [
                    p.get_help_record(sub)
                    for p in prompt.get_params(sub)
                    if isinstance(p, click.Option)
                ]
            rows = [r for r in records if r is not None and not r[0].startswith("-h")]
            with formatter.section('Prompt options (openkoi [OPTIONS] "PROMPT")'):
                formatter.write_dl(rows)
        super().format_options(ctx, formatter)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _ReaderGone() from None


@click.group(
    cls=_LazyDefaultGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=False,
)
@click.version_option(__version__, "--version", prog_name="openkoi")
def cli() -> None:
    """openkoi: one way to talk to any LLM provider.

    \b
    Run a prompt (the answer streams to stdout):
      openkoi "Explain SSE in one line"
      openkoi -m anthropic/claude-sonnet-4-5 -s "Answer briefly" "What is TCP?"
      echo "Summarize this" | openkoi
      openkoi run status        a prompt that is also a command name (or: openkoi -- status)

    First time? `openkoi init` sets up a provider; `openkoi models` lists what it offers.
    """


def _tolerant_streams() -> None:
    """A terminal or pipe that cannot encode a character (`LANG=C`, `PYTHONIOENCODING=ascii`)
    gets a `?` for it instead of a crash halfway through an answer."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="replace")


def _reader_gone() -> int:
    """The reader of stdout went away (`openkoi ... | head -c1`): a normal end, exit 0.

    stdout is pointed at /dev/null so the interpreter's last flush does not fail again.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _without_httpx_cli() -> None:
    """`import httpx` also imports httpx's own command line (`httpx._main`: rich and pygments,
    about a tenth of a second) when they are installed, as they are with openkoi. The `openkoi`
    process never runs it, so it is marked as absent, as httpx expects when its CLI extra is not
    installed (`httpx.main` then says so). Only in a process `openkoi` owns, before httpx loads;
    openkoi's own rich output still imports rich when it prints some."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes one clear line and a non-zero exit, never a traceback.

    A closed stdout pipe is not a failure: the reader had what it wanted (exit 0, silently).
    Run as the `openkoi` command (no `argv`), the process ends through `_exit_now`; a caller
    passing `argv` gets `SystemExit` as usual.
    """
    from openkoi._errors import OpenKoiError
    from openkoi.cli._out import fail as _fail

    if argv is None:
        _without_httpx_cli()
    _tolerant_streams()
    try:
        result: Any = cli.main(args=argv, prog_name="openkoi", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Abort:
        code = _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except OpenKoiError as exc:
        code = _fail(str(exc))
    except KeyboardInterrupt:
        code = _fail("interrupted", 130)
    except (BrokenPipeError, _ReaderGone):
        code = _reader_gone()
    except Exception as exc:  # the last line of defence: say what happened, in one line
        if os.environ.get("OPENKOI_DEBUG"):
            raise
        code = _fail(
            f"internal error: {type(exc).__name__}: {exc} (set OPENKOI_DEBUG=1 for a traceback)",
            70,
        )
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_gone()
    if argv is None:
        _exit_now(code)
    sys.exit(code)


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
