"""Lifting one `next` of a stream straight into chunks where it is cheap to.

A stream batch is `result<option<list<stream-event>>, provider-error>`, and nearly every event
in it is a text delta. `lift_batch` builds those as `ChatChunk`s directly from the C value,
without the intermediate `Variant` the generic lifting (`_fastcall.lift`) makes and `_convert`
then reads; every other value goes through the generic lifting. It charges the `Budget` exactly
as the generic lifting does, so the host's cap on what a guest's values cost is the same.
"""

from __future__ import annotations

import ctypes
from typing import Any

from openkoi._types import text_chunk
from openkoi.plugins._fastcall import (
    _LIST,
    _OPTION,
    _RESULT,
    _STRING,
    _VARIANT,
    ITEM_COST,
    Budget,
    ValueTooLarge,
    _lift,
)

_TEXT = b"text"


def lift_batch(value: Any, budget: Budget) -> Any:
    """A stream batch as a list whose text events are `ChatChunk`s and whose other events are
    lifted as `_fastcall.lift` lifts them; None at the end; an error as `lift` gives it."""
    items = _ok_list(value)
    if items is None:
        return _lift(value, budget)
    size = items.size
    budget.bytes -= size * ITEM_COST
    if budget.bytes < 0:
        raise ValueTooLarge(f"a list of {size:,} elements took it past the cap")
    data = items.data
    out: list[Any] = []
    for i in range(size):
        element = data[i]
        if element.kind == _VARIANT:
            case = element.of.variant
            name = case.discriminant
            payload = case.val
            if (
                payload
                and name.size == len(_TEXT)
                and ctypes.string_at(name.data, name.size) == _TEXT
                and payload.contents.kind == _STRING
            ):
                out.append(text_chunk(_lift(payload.contents, budget)))
                continue
        out.append(_lift(element, budget))
    return out


def _ok_list(value: Any) -> Any:
    """The C list inside `ok(some(list))`, or None for any other shape."""
    if value.kind != _RESULT or not value.of.result.is_ok:
        return None
    ok = value.of.result.val
    if not ok or ok.contents.kind != _OPTION:
        return None
    some = ok.contents.of.option
    if not some or some.contents.kind != _LIST:
        return None
    return some.contents.of.list
