"""Defining host functions whose arguments are lifted under a cap.

wasmtime-py's `LinkerInstance.add_func` converts every argument with no limit before the host
function sees it, through a type lookup per value. Functions defined here are called through
openkoi's own callback instead: arguments are lifted by `_fastcall.lift` under a `Budget` (list
elements and string bytes in total per call), so a guest that passes a million headers or a
huge log line makes the call trap with a limit, and the host never builds the oversized value.
Results are lowered as wasmtime-py does, through a plan made once per function and instance
(`_lower`).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime.component import ResourceAny
from wasmtime.component._enter import catch_exceptions
from wasmtime.component._types import FuncType

from openkoi.plugins._call import current
from openkoi.plugins._fastcall import Budget, ValueTooLarge, lift
from openkoi.plugins._lower import Lower, plan

if TYPE_CHECKING:
    from wasmtime.component import LinkerInstance

# What one host call's arguments may cost the host (see `_fastcall.Budget`): an HTTP request
# (body and headers) may be large; a log line, a config key or a stdout write may not.
REQUEST_ARG_BYTES = 64 * 1024 * 1024
SMALL_ARG_BYTES = 1024 * 1024
VALUES_BREACH = "values"


def _host_call(
    idx: Any, context: Any, ty_raw: Any, args: Any, nargs: int, results: Any, nresults: int
) -> Any:
    address = ctypes.cast(context, ctypes.c_void_p).value or 0  # the calling store's

    def run(store: Any) -> None:
        func, cap = _REGISTERED[idx or 0]
        budget = Budget(cap)
        try:
            pyargs = [lift(args[i], budget) for i in range(nargs)]
        except ValueTooLarge as exc:
            ctx = current()
            if ctx is not None:
                ctx.breach = VALUES_BREACH
            raise WasmtimeError(
                f"openkoi: a host call's arguments exceed the host's cap: {exc.what}"
            ) from None
        try:
            result = func(store, *pyargs)
            if nresults:
                with FuncType._from_ptr(ty_raw, owner=store) as fty:
                    result_ty = fty.result
                    assert result_ty is not None
                    _result_plan((idx or 0, address), result_ty)(store, result, results[0])
        except WasmtimeError:
            raise
        except Exception as exc:  # never park an exception in wasmtime-py's global
            raise WasmtimeError(f"openkoi: host function failed ({type(exc).__name__})") from None
        finally:
            _end_borrows(store, pyargs)

    return catch_exceptions(context, run)


_callback = ffi.wasmtime_component_func_callback_t(_host_call)
# The lowering plan of each host function's result, per store (an instance's types are its
# own); checked against the type of the call at hand, so a store's reused address cannot mislead it.
_PLANS: dict[tuple[int, int], tuple[Any, Lower]] = {}
_MAX_PLANS = 4096


def _result_plan(key: tuple[int, int], result_ty: Any) -> Lower:
    cached = _PLANS.get(key)
    if cached is not None and cached[0] == result_ty:
        return cached[1]
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    made = plan(result_ty)
    _PLANS[key] = (result_ty, made)
    return made


# Host functions live as long as the process: the Linker is made once and never redefined.
_REGISTERED: list[tuple[Callable[..., Any], int]] = [(lambda *_: None, 0)]
_lock = threading.Lock()
_keep = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: None)


def _end_borrows(store: Any, values: list[Any]) -> None:
    """End the borrows the guest lent for this call (wasmtime requires it before returning)."""
    for value in values:
        if isinstance(value, list):
            _end_borrows(store, value)
        elif isinstance(value, ResourceAny) and not value.owned:
            with contextlib.suppress(WasmtimeError):
                value.drop(store)


def add_func(
    instance: LinkerInstance, name: str, func: Callable[..., Any], *, cap: int = SMALL_ARG_BYTES
) -> None:
    """`instance.add_func(name, func)`, its arguments lifted under `cap` (see `Budget`)."""
    instance._assert_not_locked()
    encoded = name.encode("utf-8")
    with _lock:
        idx = len(_REGISTERED)
        _REGISTERED.append((func, cap))
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(encoded), len(encoded), _callback, idx, _keep
    )
    if err:
        raise WasmtimeError._from_ptr(err)
