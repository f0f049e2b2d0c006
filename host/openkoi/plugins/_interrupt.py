"""Ending a running guest at its call's deadline or at a cancel, whatever it computes.

Each Store gets an epoch-deadline callback. When its epoch deadline passes, wasmtime calls it
instead of trapping; it looks at the call running on this thread (`_call.current()`): past the
deadline, cancelled (after a short grace to return cleanly), or no call at all, it traps the
guest; otherwise the guest runs on for at
most `SLICE_TICKS` more ticks. So a guest in a busy loop is stopped within a slice of its
deadline, and within a slice of a cancel, however long its own limit is.
"""

from __future__ import annotations

import ctypes
from typing import Any

from wasmtime import _bindings
from wasmtime import _ffi as ffi

from openkoi.plugins._call import current
from openkoi.plugins._engine import ticks_for

SLICE_TICKS = 5  # 50 ms: how long a guest computes between two looks at its call
TRAP_MESSAGE = b"openkoi: the call's deadline passed or it was cancelled"
_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE

_signature = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[1]


def _on_deadline(context: Any, env: Any, delta: Any, kind: Any) -> int:
    ctx = current()
    if ctx is None or ctx.must_stop():
        error = ffi.wasmtime_error_new(TRAP_MESSAGE)
        return ctypes.cast(error, ctypes.c_void_p).value or 0
    delta[0] = max(1, min(SLICE_TICKS, ticks_for(min(ctx.remaining(), 60.0)) - 1))
    kind[0] = _CONTINUE
    return 0


_callback = _signature(_on_deadline)
_no_finalizer = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[3]()


def install(store: Any) -> None:
    """Give `store` the deadline callback; the first deadline is set by the runtime per call."""
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _callback, None, _no_finalizer)
