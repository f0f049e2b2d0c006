"""API keys as the CLI reads them (`connect --key-stdin`, `init`, the pickers): checked with the
reason a pasted key is refused, and read from stdin to a bounded length."""

from __future__ import annotations

import sys

from openkoi._errors import ConfigError

# No provider's key comes near this (the longest, JWT-like tokens, are about 1-2k characters);
# anything longer is a file or a stream piped by mistake, refused before it is saved.
MAX_KEY_CHARS = 4096


def stdin_key(title: str) -> str:
    """One line of stdin as a key, read to at most `MAX_KEY_CHARS` (+ its line end), so
    `cat big.bin | openkoi connect ...` is refused rather than read whole."""
    try:
        line = sys.stdin.readline(MAX_KEY_CHARS + 2)
    except UnicodeDecodeError:
        raise _refused(title, "it has bytes that are not text") from None
    if len(line.rstrip("\r\n")) > MAX_KEY_CHARS:
        raise _refused(title, f"it is longer than {MAX_KEY_CHARS:,} characters")
    return checked_key(line, title)


def checked_key(raw: str, title: str) -> str:
    """`raw` without its surrounding whitespace, when it can be a key; else a ConfigError that
    says why not (spaces, control or non-printable characters, length)."""
    from openkoi.credentials._flows import clean_key

    key = raw.strip()
    if len(key) > MAX_KEY_CHARS:
        raise _refused(title, f"it is longer than {MAX_KEY_CHARS:,} characters")
    if any(not c.isprintable() and not c.isspace() for c in key):
        raise _refused(title, "it has control or non-printable characters")
    return clean_key(key, title)


def _refused(title: str, why: str) -> ConfigError:
    return ConfigError(f"that does not look like an API key for {title} ({why})")
