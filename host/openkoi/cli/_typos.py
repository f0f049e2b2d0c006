"""A one-word prompt that looks like a command is refused, not sent to a paid model.

`openkoi stauts` means `openkoi status`; `openkoi run stauts` or `openkoi -- stauts` sends it.
The group records the command names in the context (`GUARD`) only when the prompt came without
`run` or `--`.
"""

from __future__ import annotations

import click

from openkoi.cli._commands import command_meant

GUARD = "openkoi.typo-guard"


class CommandTypo(click.ClickException):
    """A usage error (exit 2) printed as one line, without the prompt's usage text."""

    exit_code = 2


def refuse_command_typos(words: tuple[str, ...]) -> None:
    """Raise a usage error (exit 2) when `words` is one word close to a command name."""
    ctx = click.get_current_context(silent=True)
    commands: list[str] | None = ctx.meta.get(GUARD) if ctx is not None else None
    if not commands:
        return
    meant = command_meant(words, commands)
    if meant is None:
        return
    word = words[0].strip()
    raise CommandTypo(
        f"{word!r} looks like a command: did you mean `openkoi {meant}`? "
        f"To send it as a prompt: openkoi run {word}"
    )
