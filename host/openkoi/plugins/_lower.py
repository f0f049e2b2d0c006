"""Lowering host values into component values through a plan made once per type.

wasmtime-py's `ValType.convert_to_c` asks the C API for the type's parts on every call, at every
level (a record's fields, a list's element, a variant's cases, each a fresh Python type object):
lowering one chat request cost about as much as the HTTP request it carries. `plan` walks the
type once and returns a function that lowers a value of it with the same rules wasmtime-py
applies (the same C values, the same Python types accepted, `Variant` for tagged variants and
the first matching case for untagged ones). Kinds openkoi's WIT does not use on a hot path
(scalars, flags, resources, bytes) are lowered by the type's own `convert_to_c`, which
needs no look-ups. The small C calls that allocate the values are made with the GIL held.

This reaches into wasmtime-py's private ctypes bindings like `_fastcall`; the dependency is
pinned below 51.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import Variant
from wasmtime.component import _types as types

# lower(store, value, the wasmtime_component_val_t to fill): the value itself, not a pointer to
# it, so that no level makes a pointer object and reads it back through `.contents`.
Lower = Callable[[Any, Any, Any], None]

_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
_VARIANT = ffi.WASMTIME_COMPONENT_VARIANT.value
_BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
_Val = ffi.wasmtime_component_val_t


def _held(name: str, restype: Any, *argtypes: Any) -> Any:
    """A wasmtime C function called with the GIL held. These only allocate and copy; ctypes'
    default releases the GIL around each call, which hands it to any thread that wants it
    (the event loop, another stream) once for each of a request's dozens of values."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ffi.dll))


_byte_vec_new = _held(
    "wasm_byte_vec_new", None, ctypes.POINTER(ffi.wasm_byte_vec_t), ctypes.c_size_t, ctypes.c_char_p
)


def _new_uninit(kind: str) -> Any:
    """`wasmtime_component_<kind>_new_uninit(out, size)`, for a record, list or tuple."""
    out = ctypes.POINTER(getattr(ffi, f"wasmtime_component_{kind}_t"))
    return _held(f"wasmtime_component_{kind}_new_uninit", None, out, ctypes.c_size_t)


_record_new = _new_uninit("valrecord")
_list_new = _new_uninit("vallist")
_tuple_new = _new_uninit("valtuple")
_val_new = _held(
    "wasmtime_component_val_new",
    ctypes.POINTER(ffi.wasmtime_component_val_t),
    ctypes.POINTER(ffi.wasmtime_component_val_t),
)


def _vec(data: bytes) -> Any:
    """A C byte vector holding a copy of `data` (one call; `ffi.bytes_to_capi` makes three)."""
    vec = ffi.wasm_byte_vec_t()
    _byte_vec_new(ctypes.byref(vec), len(data), data)
    return vec


def plan(ty: types.ValType) -> Lower:
    """A function lowering values of `ty`; keeps `ty` alive for the kinds it delegates."""
    if isinstance(ty, types.String):
        return _lower_string
    if isinstance(ty, types.RecordType):
        return _record([(name, name.encode("utf-8"), plan(t)) for name, t in ty.fields])
    if isinstance(ty, types.ListType) and not isinstance(ty.element, types.U8):
        return _list(plan(ty.element))
    if isinstance(ty, types.TupleType):
        return _tuple([plan(t) for t in ty.elements])
    if isinstance(ty, types.EnumType):
        return _lower_enum
    if isinstance(ty, types.VariantLikeType):
        return _variant_like(ty)
    return _delegated(ty)


def _delegated(ty: types.ValType) -> Lower:
    convert = ty.convert_to_c

    def lower(store: Any, val: Any, out: Any) -> None:
        convert(store, val, ctypes.pointer(out))

    return lower


def _lower_string(store: Any, val: Any, out: Any) -> None:
    if not isinstance(val, str):
        raise TypeError("expected string type")
    out.kind = _STRING
    out.of.string = _vec(val.encode("utf-8"))


def _lower_enum(store: Any, val: Any, out: Any) -> None:
    if not isinstance(val, str):
        raise TypeError("expected str type")
    out.kind = _ENUM
    out.of.enumeration = _vec(val.encode("utf-8"))


def _record(fields: list[tuple[str, bytes, Lower]]) -> Lower:
    count = len(fields)

    def lower(store: Any, val: Any, out: Any) -> None:
        raw = ffi.wasmtime_component_valrecord_t()
        _record_new(raw, count)
        i = 0
        try:
            data = raw.data
            for name, encoded, lower_field in fields:
                entry = data[i]
                lower_field(store, getattr(val, name), entry.val)
                entry.name = _vec(encoded)
                i += 1
        except BaseException:
            for j in range(i, count):
                raw.data[j].val.kind = _BOOL
                raw.data[j].val.of.boolean = False
            ffi.wasmtime_component_valrecord_delete(ctypes.byref(raw))
            raise
        out.kind = _RECORD
        out.of.record = raw

    return lower


def _fill(
    store: Any, raw: Any, count: int, items: Iterable[tuple[Lower, Any]], delete: Any
) -> None:
    """Lower each (plan, value) into `raw.data` in order; on a failure, free what was made."""
    i = 0
    try:
        data = raw.data
        for lower_element, element in items:
            lower_element(store, element, data[i])
            i += 1
    except BaseException:
        for j in range(i, count):
            raw.data[j].kind = _BOOL
            raw.data[j].of.boolean = False
        delete(ctypes.byref(raw))
        raise


def _list(lower_element: Lower) -> Lower:
    def lower(store: Any, val: Any, out: Any) -> None:
        if not isinstance(val, list):
            raise TypeError("expected list value")
        count = len(val)
        raw = ffi.wasmtime_component_vallist_t()
        _list_new(raw, count)
        items = zip(itertools.repeat(lower_element), val)
        _fill(store, raw, count, items, ffi.wasmtime_component_vallist_delete)
        out.kind = _LIST
        out.of.list = raw

    return lower


def _tuple(lower_elements: list[Lower]) -> Lower:
    """Tuples (a header's name and value): wasmtime-py asks for the element types per value."""
    count = len(lower_elements)

    def lower(store: Any, val: Any, out: Any) -> None:
        if not isinstance(val, tuple):
            raise TypeError("expected tuple type")
        if len(val) != count:
            raise TypeError("tuple length mismatch")
        raw = ffi.wasmtime_component_valtuple_t()
        _tuple_new(raw, count)
        items = zip(lower_elements, val, strict=True)
        _fill(store, raw, count, items, ffi.wasmtime_component_valtuple_delete)
        out.kind = _TUPLE
        out.of.tuple = raw

    return lower


def _variant_like(ty: types.VariantLikeType) -> Lower:
    """Variants, options and results, with wasmtime-py's rule for choosing the case: by tag
    when the cases' Python types overlap (the value is a `Variant`), else the first case whose
    payload type the value is an instance of (None for a case without payload)."""
    tagged = ty._tagged()
    cases: list[tuple[str, tuple[type, ...] | None, Lower | None]] = []
    for name, case_ty in ty._cases():
        if case_ty is None:
            cases.append((name, None, None))
        else:
            classes: set[type] = set()
            case_ty.add_classes(classes)
            cases.append((name, tuple(classes), plan(case_ty)))

    def choose(store: Any, val: Any) -> tuple[str, Any]:
        if tagged and not isinstance(val, Variant):
            raise TypeError("expected Variant type")
        for name, classes, lower_payload in cases:
            if tagged:
                if name != val.tag:
                    continue
            elif classes is None:
                if val is not None:
                    continue
            elif not isinstance(val, classes):
                continue
            if lower_payload is None:
                return name, None
            raw = _Val()
            lower_payload(store, val.payload if tagged else val, raw)
            return name, _val_new(ctypes.byref(raw))
        raise ValueError("value not valid for this variant")

    if isinstance(ty, types.OptionType):

        def lower_option(store: Any, val: Any, out: Any) -> None:
            _, raw = choose(store, val)
            out.kind = _OPTION
            out.of.option = raw

        return lower_option
    if isinstance(ty, types.ResultType):

        def lower_result(store: Any, val: Any, out: Any) -> None:
            name, raw = choose(store, val)
            out.kind = _RESULT
            result = out.of.result
            result.is_ok = name == "ok"
            result.val = raw

        return lower_result

    def lower_variant(store: Any, val: Any, out: Any) -> None:
        name, raw = choose(store, val)
        out.kind = _VARIANT
        variant = out.of.variant
        variant.discriminant = _vec(name.encode("utf-8"))
        variant.val = raw

    return lower_variant
