"""Lifting one `next` of a stream straight into text where it is cheap to.

A stream batch is `result<option<list<stream-event>>, provider-error>`, and nearly every event
in it is a text delta (`text`, or from 0.2.1 guests a `text-run` of several). `lift_batch` lifts
those as plain `str`s directly from the C value, without the intermediate `Variant` the generic
lifting (`_fastcall.lift`) makes and `_convert` then reads; every other value goes through the
generic lifting. It charges the `Budget` as the generic lifting does, and a run's pieces as that
many `text` events, so the host's cap on what a guest's values cost is the same.

The text stays a `str` until the stream's reader makes it a chunk, one at a time as it is read
(`_provider`): the lift runs on the guest's worker thread, between two calls into the guest, so
every microsecond it holds the GIL there is taken from the guest's pace, and a batch of hundreds
of chunks made at once would be live together when the collector runs, each one scanned and
promoted; the reader's thread has time to spare, and one chunk at a time is all it keeps.

The list is read as raw bytes (one copy of its element array, unpacked with `struct`) rather
than through a ctypes structure per field: each ctypes access builds a Python object, and a
text event took about a dozen of them (several microseconds, under the GIL). The layout is
taken from wasmtime-py's own ctypes declarations and checked at import.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from wasmtime import _ffi as ffi

from openkoi.plugins._fastcall import (
    _LIST,
    _OPTION,
    _RESULT,
    _STRING,
    _VARIANT,
    ITEM_COST,
    STRING_COST,
    Budget,
    ValueTooLarge,
    _lift,
)

_TEXT = b"text"
_TEXT_RUN = b"text-run"
_TEXT_NAME_SIZES = (len(_TEXT), len(_TEXT_RUN))  # a case name of another length is not text
RUN_SEPARATOR = "\x1e"  # joins the pieces of a `text-run` (U+001E, the record separator)
_VAL = ffi.wasmtime_component_val_t
_VAL_SIZE = ctypes.sizeof(_VAL)


def _offset(structure: Any, field: str) -> int:
    """Where `field` sits in a ctypes structure (its descriptor knows)."""
    return int(getattr(structure, field).offset)


_OF = _offset(_VAL, "of")
_VARIANT_CASE = _OF + _offset(ffi.wasmtime_component_valvariant_t, "discriminant")
_VARIANT_VAL = _OF + _offset(ffi.wasmtime_component_valvariant_t, "val")
_NAME_SIZE = _offset(ffi.wasm_byte_vec_t, "size")
_NAME_DATA = _offset(ffi.wasm_byte_vec_t, "data")


def _layout(*fields: tuple[int, str]) -> struct.Struct:
    """A `struct` reading the given (offset, format code) fields of one C component value."""
    fmt, at = "<", 0
    for offset, code in fields:
        fmt += f"{offset - at}x{code}"
        at = offset + struct.calcsize(code)
    return struct.Struct(f"{fmt}{_VAL_SIZE - at}x")


# An element: its kind and, for a variant, its case name (size, data) and payload pointer.
_ELEMENT = _layout(
    (_offset(_VAL, "kind"), "B"),
    (_VARIANT_CASE + _NAME_SIZE, "Q"),
    (_VARIANT_CASE + _NAME_DATA, "Q"),
    (_VARIANT_VAL, "Q"),
)
# A payload: its kind and, for a string, its size and data.
_PAYLOAD = _layout((_offset(_VAL, "kind"), "B"), (_OF + _NAME_SIZE, "Q"), (_OF + _NAME_DATA, "Q"))
assert ctypes.sizeof(ctypes.c_size_t) == ctypes.sizeof(ctypes.c_void_p) == 8
_string_at = ctypes.string_at


class LiftedBatch(list[Any]):
    """A stream batch's events: `str` for each text delta, the generic lifting's value for each
    other event; `others` counts the latter (none, nearly always: nothing is left to convert)."""

    others = 0


def lift_batch(value: Any, budget: Budget) -> Any:
    """A stream batch as a `LiftedBatch`; None at the end; an error as `lift` gives it."""
    items = _ok_list(value)
    if items is None:
        return _lift(value, budget)
    size = items.size
    budget.bytes -= size * ITEM_COST
    if budget.bytes < 0:
        raise ValueTooLarge(f"a list of {size:,} elements took it past the cap")
    out = LiftedBatch()
    if not size:
        return out
    data = items.data
    address = ctypes.cast(data, ctypes.c_void_p).value
    if not address:  # wasmtime never makes one; reading it would crash the process
        raise TypeError("a non-empty list without elements")
    append = out.append
    for i, (kind, name_size, name_data, payload) in enumerate(
        _ELEMENT.iter_unpack(_string_at(address, size * _VAL_SIZE))
    ):
        if kind == _VARIANT and payload and name_size in _TEXT_NAME_SIZES:
            name = _string_at(name_data, name_size)
            if name in (_TEXT, _TEXT_RUN):
                payload_kind, length, text = _PAYLOAD.unpack(_string_at(payload, _VAL_SIZE))
                if payload_kind == _STRING:
                    budget.bytes -= length + STRING_COST
                    if budget.bytes < 0:
                        raise ValueTooLarge(f"a string of {length:,} bytes took it past the cap")
                    lifted = _string_at(text, length).decode("utf-8") if length else ""
                    if name == _TEXT:
                        append(lifted)
                    else:
                        out.extend(_run(lifted, budget))
                    continue
        append(_lift(data[i], budget))
        out.others += 1
    return out


def _run(joined: str, budget: Budget) -> list[str]:
    """A `text-run`'s pieces, charged as that many `text` events would be."""
    more = joined.count(RUN_SEPARATOR)
    budget.bytes -= more * (ITEM_COST + STRING_COST)
    if budget.bytes < 0:
        raise ValueTooLarge(f"a run of {more + 1:,} texts took it past the cap")
    return joined.split(RUN_SEPARATOR)


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
