"""Calling a guest export without wasmtime-py's per-value type introspection.

wasmtime-py converts a result by asking the C API for its type at every level, for every value:
a `list<variant>` of 500 stream events cost thousands of FFI calls (about 150 us per event,
measured), which made streaming through a plugin ten times slower than native. The C value is
self-describing, though: every value carries its kind, records their field names and variants
their case names. `FastCall` looks the parameter types up once per export and lifts the result
from the C value directly, producing exactly what wasmtime-py would for openkoi's WIT (records as
`Record`, variants as `Variant`, enums as their case name, flags as a set of names, options as
the value or None, results as their payload). `tests/test_plugin_fastcall.py` checks the two
agree on real calls.

This reaches into wasmtime-py's private ctypes bindings; the dependency is pinned below 51.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import Record, ResourceAny, Variant
from wasmtime.component._enter import enter_wasm

from openkoi.plugins._lower import plan

_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
_VARIANT = ffi.WASMTIME_COMPONENT_VARIANT.value
_ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
_FLAGS = ffi.WASMTIME_COMPONENT_FLAGS.value
_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_RESOURCE = ffi.WASMTIME_COMPONENT_RESOURCE.value
_SCALARS = {
    ffi.WASMTIME_COMPONENT_BOOL.value: "boolean",
    ffi.WASMTIME_COMPONENT_S8.value: "s8",
    ffi.WASMTIME_COMPONENT_U8.value: "u8",
    ffi.WASMTIME_COMPONENT_S16.value: "s16",
    ffi.WASMTIME_COMPONENT_U16.value: "u16",
    ffi.WASMTIME_COMPONENT_S32.value: "s32",
    ffi.WASMTIME_COMPONENT_U32.value: "u32",
    ffi.WASMTIME_COMPONENT_S64.value: "s64",
    ffi.WASMTIME_COMPONENT_U64.value: "u64",
    ffi.WASMTIME_COMPONENT_F32.value: "f32",
    ffi.WASMTIME_COMPONENT_F64.value: "f64",
}
_CHAR = ffi.WASMTIME_COMPONENT_CHAR.value


def _name(vec: Any) -> str:
    size = vec.size
    return ctypes.string_at(vec.data, size).decode("utf-8") if size else ""


class ValueTooLarge(Exception):
    """A value from the guest is larger than the host lifts; nothing past the cap was built."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Budget:
    """What one lifted value may cost the host, in bytes of Python objects (estimated: a string
    costs its length plus `STRING_COST`, a list `ITEM_COST` per element, a record
    `RECORD_COST`).

    Charged before each list, string or record is built, so a guest cannot make the host
    allocate past the cap. (wasmtime's own C copy of the value exists already when lifting
    starts; it is freed right after.)"""

    __slots__ = ("bytes",)

    def __init__(self, nbytes: int) -> None:
        self.bytes = nbytes


STRING_COST = 56
ITEM_COST = 40
RECORD_COST = 120
UNLIMITED = 1 << 62


def lift(value: Any, budget: Budget | None = None) -> Any:
    """A C component value as the Python value wasmtime-py would give (for openkoi's WIT)."""
    return _lift(value, budget or Budget(UNLIMITED))


def _lift(value: Any, budget: Budget) -> Any:
    kind = value.kind
    of = value.of
    if kind == _STRING:
        vec = of.string
        size = vec.size
        budget.bytes -= size + STRING_COST
        if budget.bytes < 0:
            raise ValueTooLarge(f"a string of {size:,} bytes took it past the cap")
        return ctypes.string_at(vec.data, size).decode("utf-8") if size else ""
    if kind == _VARIANT:
        case = of.variant
        payload = case.val
        return Variant(
            _name(case.discriminant), _lift(payload.contents, budget) if payload else None
        )
    if kind == _LIST:
        items = of.list
        size = items.size
        budget.bytes -= size * ITEM_COST
        if budget.bytes < 0:
            raise ValueTooLarge(f"a list of {size:,} elements took it past the cap")
        data = items.data
        return [_lift(data[i], budget) for i in range(size)]
    if kind == _RECORD:
        fields = of.record
        data = fields.data
        budget.bytes -= RECORD_COST
        out = Record()
        for i in range(fields.size):
            entry = data[i]
            setattr(out, _name(entry.name), _lift(entry.val, budget))
        return out
    if kind in _SCALARS:
        return getattr(of, _SCALARS[kind])
    if kind == _ENUM:
        return _name(of.enumeration)
    if kind == _OPTION:
        inner = of.option
        return _lift(inner.contents, budget) if inner else None
    if kind == _RESULT:
        inner = of.result.val
        return _lift(inner.contents, budget) if inner else None
    if kind == _FLAGS:
        flags = of.flags
        return {_name(flags.data[i]) for i in range(flags.size)}
    if kind == _TUPLE:
        items = of.tuple
        return tuple(_lift(items.data[i], budget) for i in range(items.size))
    if kind == _CHAR:
        return chr(of.character)
    if kind == _RESOURCE:
        return ResourceAny._from_ptr(ffi.take_pointer(of, "resource"))
    raise TypeError(f"cannot lift a component value of kind {kind}")


class FastCall:
    """One export of one instance, callable like `wasmtime.component.Func`."""

    __slots__ = ("_func", "_has_result", "_lowers", "_params")

    def __init__(self, func: Any, store: Any) -> None:
        ty = func.type(store)
        self._func = func
        self._params = [param for _, param in ty.params]
        self._lowers = [plan(param) for param in self._params]
        self._has_result = ty.result is not None

    def __call__(
        self,
        store: Any,
        *args: Any,
        budget: Budget | None = None,
        lifter: Callable[[Any, Budget], Any] | None = None,
    ) -> Any:
        """Call the export; its result is lifted by `lifter` (default: `lift`) under `budget`."""
        if len(args) != len(self._params):
            raise TypeError(f"expected {len(self._params)} arguments, got {len(args)}")
        params = (ffi.wasmtime_component_val_t * max(1, len(args)))()
        lowered = 0
        try:
            for lower, arg in zip(self._lowers, args, strict=True):
                lower(store, arg, params[lowered])
                lowered += 1
            result = ffi.wasmtime_component_val_t()
            func = self._func._func
            count = 1 if self._has_result else 0

            def run() -> Any:
                return ffi.wasmtime_component_func_call(
                    ctypes.byref(func),
                    store._context(),
                    params,
                    lowered,
                    ctypes.byref(result) if count else None,
                    count,
                )

            enter_wasm(run)
            if not count:
                return None
            try:
                return (lifter or _lift)(result, budget or Budget(UNLIMITED))
            finally:
                ffi.wasmtime_component_val_delete(ctypes.byref(result))
        finally:
            for i in range(lowered):
                ffi.wasmtime_component_val_delete(ctypes.byref(params[i]))
