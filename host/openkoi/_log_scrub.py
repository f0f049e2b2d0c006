"""Secrets kept out of the HTTP stack's own log lines.

httpx and httpcore log what they send and receive at DEBUG; httpcore's line for a response's
head holds every header value, so a server that echoes the key in a header put it in the log of
anyone who turned DEBUG on to look at a problem. Every call registers the secrets it sends
(`keep_out_of_logs`), and a filter on the stack's loggers redacts them, and any run of their
first characters, from a record before a handler sees it. A logger makes a record only when it
is enabled for the level, so with logging off this costs a set update per call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from openkoi._errors import redact

# The loggers httpx and httpcore write to (a filter on a logger sees only its own records).
STACK_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
# Keys rarely change; OAuth tokens do, every hour or so. The newest are kept.
MAX_KEPT = 256

_kept: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
_installed = False


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _kept:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: the handler says so
            return True
        clean = redact(text, tuple(_kept))
        if clean != text:
            record.msg, record.args = clean, None
        return True


def keep_out_of_logs(secrets: Iterable[str | None]) -> None:
    """From now on, `secrets` never appear in a log line of httpx or httpcore."""
    global _installed
    for secret in secrets:
        if secret and secret not in _kept:
            _kept[secret] = None
            if len(_kept) > MAX_KEPT:
                del _kept[next(iter(_kept))]
    if not _installed and _kept:
        _installed = True
        scrub = _Scrub()
        for name in STACK_LOGGERS:
            logging.getLogger(name).addFilter(scrub)
