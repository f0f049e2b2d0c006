"""How a moment is shown to a user: a time of day when it is today, with the date otherwise."""

from __future__ import annotations

import time


def utc_moment(when: float, now: float | None = None) -> str:
    """`14:05:09 UTC`, or `2026-12-03 14:05:09 UTC` when `when` falls on another (UTC) day than
    `now`: a cooldown that ends tomorrow must not read as one that ends this afternoon."""
    current = time.time() if now is None else now
    stamp = time.gmtime(when)
    same_day = time.strftime("%Y-%m-%d", stamp) == time.strftime("%Y-%m-%d", time.gmtime(current))
    return time.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC", stamp)
