"""The command names, and which one-word prompts mean one of them. Click-free, so the prompt's
fast path (`openkoi.cli._fast`) can tell a prompt from a command without importing click."""

from __future__ import annotations

from openkoi._suggest import nearest

# name -> "module:attribute"; each subcommand module owns one noun.
SUBCOMMANDS: dict[str, str] = {
    "run": "openkoi.cli._prompt:run",
    "connect": "openkoi.cli._connect:connect",
    "disconnect": "openkoi.cli._connect:disconnect",
    "status": "openkoi.cli._status:status",
    "models": "openkoi.cli._models:models",
    "init": "openkoi.cli._init:init",
    "plugin": "openkoi.cli._plugin:plugin",
    "demo": "openkoi.cli._demo:demo",
}
DEFAULT_COMMAND = "run"

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


def command_meant(words: tuple[str, ...], commands: list[str]) -> str | None:
    """What a one-word prompt close to a command name means (`stauts` -> `status`), else None."""
    if len(words) != 1:
        return None
    word = words[0].strip()
    if not word or any(c.isspace() for c in word):
        return None
    found = nearest(word, [*commands, *ALSO])
    if found is None:
        return None
    return ALSO.get(found, found)
