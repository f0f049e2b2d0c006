"""`openkoi._json.loads` is `json.loads`, faster: the same values where both parsers accept a
text, and the standard library's answer (value or `JSONDecodeError`) wherever jiter refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _json_same import same
from hypothesis import given, settings
from hypothesis import strategies as st
from openkoi._json import loads, loads_utf8

_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.booleans())
def test_any_json_text_gives_the_standard_library_s_value(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert same(loads(text), json.loads(text))
    assert same(loads(text.encode()), json.loads(text.encode()))
    assert same(loads_utf8(text.encode()), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        "[NaN, Infinity, -Infinity]",
        "123456789012345678901234567890",
        "1e400",
        '"\\ud800"',  # a lone surrogate: jiter refuses it, json.loads takes it
        '"\\ud83d\\ude00"',
        "[" * 300 + "]" * 300,  # deeper than jiter goes, not than json.loads goes
        " {} ",
        "-0",
        "5e-324",
    ],
)
def test_edge_cases_give_the_standard_library_s_value(text: str) -> None:
    assert same(loads(text), json.loads(text))
    assert same(loads_utf8(text.encode()), json.loads(text))


@pytest.mark.parametrize(
    "text", ["", "{", '{"a": 1} x', "[1,]", "nan", '"\x00"', "01", "1" * 5000, "\ufeff{}"]
)
def test_what_json_loads_refuses_is_refused_the_same_way(text: str) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        loads(text)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": "\xff"}',  # not UTF-8
        b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate is not UTF-8 either
        '{"a": 1}'.encode("utf-16"),  # json.loads(bytes) would sniff this and take it
        '{"a": 1}'.encode("utf-32-le"),
        b"\xef\xbb\xbf{}",  # a byte-order mark, which json.loads(str) refuses
        b"{",
    ],
)
def test_loads_utf8_is_json_loads_of_the_decoded_text(data: bytes) -> None:
    """`loads_utf8(data)` takes exactly what `json.loads(data.decode())` takes: bytes that are
    not UTF-8 are refused rather than sniffed for another encoding."""
    with pytest.raises(ValueError) as expected:
        json.loads(data.decode())
    with pytest.raises(ValueError) as got:
        loads_utf8(data)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)
