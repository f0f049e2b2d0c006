"""What the state and usage backends share: their health as `openkoi status` shows it, and their
URLs (`redis://`, `postgresql://`) as they may be shown, never with a password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode


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


def describe_error(exc: BaseException) -> str:
    """A backend error's class and first line, leaving out any text that could hold a URL."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    name = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
    return f"{name}: {text}" if text and "@" not in text and "://" not in text else name
