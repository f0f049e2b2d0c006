"""What the state and usage backends share: their health as `openkoi status` shows it, and their
URLs (`redis://`, `postgresql://`) as they may be shown, never with a password."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode


@dataclass(frozen=True)
class Health:
    """A backend in use; `where` never holds a password."""

    backend: str  # sqlite | redis | postgresql | memory
    where: str
    healthy: bool
    detail: str = ""


_SECRET_PARAMS = {"password", "passfile", "sslpassword"}


def redact_url(url: str) -> str:
    """`redis://:s3cret@host:6379/0` -> `redis://:***@host:6379/0`; query passwords too.

    The credentials are everything before the last `@`, however the rest parses: a password
    written with `/`, `?` or `#` unencoded ends the host part for a URL parser, which would show
    the password as the host or path. Masking too much is the safe side of that doubt."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(unparseable URL)"
    userinfo, at, location = rest.rpartition("@")
    shown = ""
    if at:
        user, colon, _password = userinfo.partition(":")
        if any(c in user for c in "/?#"):
            user, colon = "***", ""
        shown = f"{user}{':***' if colon else ''}@"
    location = location.split("#", 1)[0]
    where, question, query = location.partition("?")
    if question:
        try:
            pairs = parse_qsl(query, keep_blank_values=True)
        except ValueError:
            return f"{scheme}://{shown}{where}?***"
        query = urlencode(
            [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
        )
    return f"{scheme}://{shown}{where}" + (f"?{query}" if query else "")


def url_secrets(url: str) -> tuple[str, ...]:
    """What of `url` no message may show: its password (after the user's `:`, before the last
    `@`) and query passwords, with the pieces a parser cuts them into at `/`, `?`, `#`, `@` or
    `:` (a client's error names the piece it could not read, e.g. a "port" of `slash`)."""
    found: set[str] = set()
    rest = url.partition("://")[2]
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        found.add(userinfo.partition(":")[2])
    with contextlib.suppress(ValueError):
        for key, value in parse_qsl(location.partition("?")[2].split("#", 1)[0]):
            if key.lower() in _SECRET_PARAMS:
                found.add(value)
    for secret in list(found):
        found.update(p for p in re.split(r"[/?#@:]", secret) if len(p) >= 4)
        found.add(unquote(secret))
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def describe_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """A backend error's class and first line, leaving out any text that could hold a URL and
    masking `secrets` (`url_secrets` of the backend's URL) in what is left."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    for secret in secrets:
        text = text.replace(secret, "***")
    name = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
    return f"{name}: {text}" if text and "@" not in text and "://" not in text else name
