"""How a moment is shown to a user: a time of day when it is today, with the date otherwise."""

from __future__ import annotations

import math
import time

# 9999-12-31 23:59:59 UTC: the last moment with a four-digit year, and one every platform's
# `gmtime` can show. A moment is shown within [0, _LAST]: it may come from stored data.
_LAST = 253_402_300_799.0


def _utc(when: float) -> time.struct_time:
    """`time.gmtime` for any float: out of range is clamped, where `gmtime` would raise."""
    return time.gmtime(min(max(when, 0.0), _LAST))


def utc_moment(when: float, now: float | None = None) -> str:
    """`14:05:09 UTC`, or `2026-12-03 14:05:09 UTC` when `when` falls on another (UTC) day than
    `now`: a cooldown that ends tomorrow must not read as one that ends this afternoon."""
    current = time.time() if now is None or math.isnan(now) else now
    if math.isnan(when):
        return "an unknown time"
    stamp = _utc(when)
    same_day = time.strftime("%Y-%m-%d", stamp) == time.strftime("%Y-%m-%d", _utc(current))
    return time.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC", stamp)
