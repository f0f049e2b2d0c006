"""The `openkoi` command group: click, the lazily loaded subcommands, and how click's own
failures become exit codes. `openkoi.cli.main` imports it for anything but the plain prompt."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import click

from openkoi import __version__
from openkoi.cli._commands import DEFAULT_COMMAND as _DEFAULT_COMMAND
from openkoi.cli._commands import SUBCOMMANDS as _SUBCOMMANDS
from openkoi.cli._gc import resume_collector
from openkoi.cli._guard import ReaderGone, run_guarded
from openkoi.cli._typos import GUARD


class _LazyDefaultGroup(click.Group):
    """A group whose subcommands load lazily, and whose default command is the prompt."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        if cmd_name != _DEFAULT_COMMAND:
            resume_collector()  # the prompt resumes it itself, once its router is built
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

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """`openkoi --help | head -c1`: the help is printed while the context is made."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            raise ReaderGone() from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise ReaderGone() from None


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


def run_group(argv: list[str] | None) -> int:
    """Run the command line; every failure becomes one clear line and an exit code, never a
    traceback (`openkoi.cli._guard`)."""
    from openkoi.cli._sigint import aborted

    def click_main() -> int:
        try:
            result: Any = cli.main(args=argv, prog_name="openkoi", standalone_mode=False)
            return result if isinstance(result, int) else 0
        except click.exceptions.Abort:  # click already ended the `^C` line
            return aborted()
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code

    return run_guarded(click_main)
