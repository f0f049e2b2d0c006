"""What the state and usage backends share: their health as `openkoi status` shows it, and their
URLs (`redis://`, `postgresql://`) as they may be shown, never with a password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit


@dataclass(frozen=True)
class Health:
    """A backend in use; `where` never holds a password."""

    backend: str  # sqlite | redis | postgresql | memory
    where: str
    healthy: bool
    detail: str = ""


_SECRET_PARAMS = {"password", "passfile", "sslpassword"}


def redact_url(url: str) -> str:
    """`redis://:s3cret@host:6379/0` -> `redis://:***@host:6379/0`; query passwords too."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}{':***' if sep else ''}@{hostport}"
        query = urlencode(
            [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    except ValueError:
        return url.partition("://")[0] + "://(unparseable URL)"


def describe_error(exc: BaseException) -> str:
    """A backend error's class and first line, leaving out any text that could hold a URL."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    name = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
    return f"{name}: {text}" if text and "@" not in text and "://" not in text else name
