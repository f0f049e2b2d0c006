"""What a plugin writes to the host's log: one line per log call, sanitised, capped per call.

A guest's text reaches a terminal or a log file, so it must not forge lines or rewrite what the
user sees: every character that breaks or reorders a line is shown as a `\\uXXXX` escape (C0
and C1 controls, NEL, the Unicode line and paragraph separators, bidi and other format
controls). Each call may log `MAX_LINES` lines and `MAX_BYTES` in all, each line cut at
`MAX_LINE_CHARS`; what is over is dropped and counted in one line when the call ends.
"""

from __future__ import annotations

import logging
import re

from openkoi.plugins._call import CallContext, current

log = logging.getLogger("openkoi.plugins")

MAX_LINE_CHARS = 2000
MAX_LINES = 200
MAX_BYTES = 64 * 1024
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

# Unicode general categories Cc (controls, C1 and NEL included), Zl, Zp, Cf (format controls:
# bidi embeddings, overrides and isolates, zero-width characters, tags) and lone surrogates.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f\ud800-\udfff]"
)


def sanitize(text: str) -> str:
    """`text` as one printable line: every unsafe character as a visible `\\uXXXX` escape."""
    line = UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text[:MAX_LINE_CHARS])
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [cut]"


def write(plugin_id: str, level: str, message: str, *, source: str = "log") -> None:
    """Log one line for the plugin, counted against the caps of the call running now."""
    ctx = current()
    if ctx is not None and not _admit(ctx, len(message)):
        return
    prefix = "" if source == "log" else f"{source}: "
    log.log(
        LEVELS.get(level, logging.INFO), "plugin %s: %s%s", plugin_id, prefix, sanitize(message)
    )


def end_of_call(plugin_id: str, ctx: CallContext) -> None:
    """One line for what the call's caps dropped, if anything."""
    if ctx.log_dropped:
        log.warning(
            "plugin %s: %d log lines dropped (at most %d lines and %d bytes per call)",
            plugin_id,
            ctx.log_dropped,
            MAX_LINES,
            MAX_BYTES,
        )
        ctx.log_dropped = 0


def _admit(ctx: CallContext, size: int) -> bool:
    cost = min(size, MAX_LINE_CHARS)
    if ctx.log_lines >= MAX_LINES or ctx.log_bytes + cost > MAX_BYTES:
        ctx.log_dropped += 1
        return False
    ctx.log_lines += 1
    ctx.log_bytes += cost
    return True
