"""The plain prompt without click: `openkoi [-m PROVIDER/MODEL] [-s SYSTEM] words...`.

click costs a one-shot prompt 8-10 ms before its first token (about 200 ms; pydantic already
imports much of what click needs). The prompt's common spellings are simple enough to read here, and they mean exactly what
click would read them as; anything else (another option, `--`, `-h`, a missing value, a value
that starts with `-`, no words at all, a first word that is a command, or one word that looks
like a command) is left to click, which parses it, explains it or refuses it.
"""

from __future__ import annotations

from openkoi.cli._ask import ROLE_OPTIONS, Ask
from openkoi.cli._commands import SUBCOMMANDS, command_meant

# option spelling -> the Ask field (or role) it sets; each takes one value.
_VALUED = {
    "-m": "model",
    "--model": "model",
    "-s": "system",
    "--system": "system",
    **{f"--{role}": role for role in ROLE_OPTIONS},
}


def simple_prompt(args: list[str]) -> Ask | None:
    """The prompt `args` asks for, when they are one of the plain spellings; else None."""
    if not args or args[0] in SUBCOMMANDS:
        return None
    values: dict[str, str] = {}
    words: list[str] = []
    rest = iter(args)
    for arg in rest:
        if not arg.startswith("-"):
            words.append(arg)
            continue
        name, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        target = _VALUED.get(name)
        if target is None:
            return None
        if not equals:
            value = next(rest, "-")  # a missing value is click's to report
            if value.startswith("-"):
                return None
        values[target] = value  # the last one wins, as with click
    if not words or command_meant(tuple(words), sorted(SUBCOMMANDS)) is not None:
        return None
    return Ask(
        text=" ".join(words),
        model=values.get("model"),
        roles={role: values.get(role) for role in ROLE_OPTIONS},
        system=values.get("system"),
    )
