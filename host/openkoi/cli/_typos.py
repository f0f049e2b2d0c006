"""A one-word prompt that looks like a command is refused, not sent to a paid model.

`openkoi stauts` means `openkoi status`; `openkoi run stauts` or `openkoi -- stauts` sends it.
The group records the command names in the context (`GUARD`) only when the prompt came without
`run` or `--`.
"""

from __future__ import annotations

import click

from openkoi._suggest import nearest

GUARD = "openkoi.typo-guard"
# Words that are not commands but mean one: `openkoi help` wants the help, not an answer.
ALSO = {
    "help": "--help",
    "version": "--version",
    "setup": "init",
    "login": "connect",
    "logout": "disconnect",
    "build": "plugin build",
    "approve": "plugin approve",
    "inspect": "plugin inspect",
}


class CommandTypo(click.ClickException):
    """A usage error (exit 2) printed as one line, without the prompt's usage text."""

    exit_code = 2


def refuse_command_typos(words: tuple[str, ...]) -> None:
    """Raise a usage error (exit 2) when `words` is one word close to a command name."""
    ctx = click.get_current_context(silent=True)
    commands: list[str] | None = ctx.meta.get(GUARD) if ctx is not None else None
    if not commands or len(words) != 1:
        return
    word = words[0].strip()
    if not word or any(c.isspace() for c in word):
        return
    found = nearest(word, [*commands, *ALSO])
    if found is None:
        return
    meant = ALSO.get(found, found)
    raise CommandTypo(
        f"{word!r} looks like a command: did you mean `openkoi {meant}`? "
        f"To send it as a prompt: openkoi run {word}"
    )
