"""The guest SDK's shaped JSON parsing (`_jsonshape`), run natively: whatever a shape matches is
exactly what `json.loads` gives, and whatever it does not is parsed in full, errors included."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from _json_same import same
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "guest-sdk"))

from openkoi_guest import _lines
from openkoi_guest._jsonshape import MAX_TEXT, MISS, Memo, Shape


def _outcome(loads: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", loads(text)
    except ValueError as exc:
        return "error", (type(exc), str(exc))


def _agrees(memo: Memo, text: str) -> None:
    got = _outcome(lambda t: memo.loads(t, _lines.loads), text)
    want = _outcome(json.loads, text)
    assert got[0] == want[0], (text, got, want)
    if got[0] == "ok":
        assert same(got[1], want[1]), (text, got, want)
    else:
        assert got[1] == want[1]


def _chunk(content: str, obfuscation: str = "x") -> str:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1741,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": content},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            "obfuscation": obfuscation,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def test_a_stream_of_openai_chunks_is_matched_after_two_and_parses_exactly() -> None:
    memo = Memo()
    texts = [_chunk(f'tok{i} é\n"q"', "ab" * (i % 4)) for i in range(50)]
    for text in texts:
        _agrees(memo, text)
    assert len(memo.shapes) == 1
    shape = memo.shapes[0]
    assert shape.match(texts[7]) is not MISS
    # Every later chunk came from the shape, not a full parse: its source has two slots.
    assert shape.source.count("scan(") == 2


def test_values_are_fresh_each_time() -> None:
    memo = Memo()
    for i in range(3):
        memo.loads(_chunk(f"t{i}"), _lines.loads)
    first = memo.loads(_chunk("a"), _lines.loads)
    first["choices"][0]["delta"]["content"] = "mutated"
    first["choices"].append("more")
    second = memo.loads(_chunk("b"), _lines.loads)
    assert second == json.loads(_chunk("b"))


@pytest.mark.parametrize(
    "text",
    [
        _chunk("ok"),
        _chunk("bad \\x escape").replace("\\\\x", "\\x"),  # an invalid escape in a slot
        _chunk("ctrl").replace("ctrl", "c\ttrl"),  # a raw control character in a slot
        _chunk("ok")[:-1],  # cut short
        _chunk("ok") + " ",  # trailing whitespace is still JSON
        _chunk("ok") + "x",  # trailing garbage is not
        _chunk("ok").replace('"obfuscation":"x"', '"obfuscation":5'),  # a string slot's number
        _chunk("ok").replace('"created":1741', '"created":1742'),  # a constant changed
        _chunk("ok").replace('"created":1741', '"created":1741.0'),
        _chunk("ok").replace('"content"', '"Content"'),  # a key changed
        _chunk("\ud800"),  # a lone surrogate, as ensure_ascii writes it
        json.dumps(json.loads(_chunk("é")), ensure_ascii=True),
        _chunk("ok").replace('"x"}', '"x","obfuscation":"y"}'),  # a duplicate key
        "\ufeff" + _chunk("ok"),
        "",
        "null",
    ],
)
def test_what_a_shape_does_not_match_exactly_is_parsed_in_full(text: str) -> None:
    memo = Memo()
    for i in range(3):
        memo.loads(_chunk(f"t{i}", f"o{i}"), _lines.loads)
    assert memo.shapes
    _agrees(memo, text)


def test_number_slots_keep_ints_and_floats_apart() -> None:
    memo = Memo()
    for n in ("1", "2", "-0", "3.5", "1e3", "-0.0", "12345678901234567890", "0", "7E-2"):
        _agrees(memo, f'{{"a":{n},"b":[true,false,null]}}')
    assert memo.shapes and memo.shapes[0].source.count("number(") == 1
    huge = '{"a":' + "9" * 5000 + ',"b":[true,false,null]}'
    _agrees(memo, huge)  # the int conversion limit: the decoder's own error


def test_learning_stops_paying_when_nothing_repeats() -> None:
    """Texts that never share a shape: learning is tried a bounded number of times."""
    memo = Memo()
    attempts = 0
    learn = Shape.learn

    def counting(first: str, second: str) -> Shape | None:
        nonlocal attempts
        attempts += 1
        return learn(first, second)

    Shape.learn = counting  # type: ignore[method-assign]
    try:
        for i in range(5000):
            _agrees(memo, json.dumps({f"k{i}": i}))
    finally:
        Shape.learn = learn  # type: ignore[method-assign]
    assert memo.shapes == []
    assert attempts <= 16 + 5000 // 256 + 1


def test_long_texts_are_never_learnt() -> None:
    memo = Memo()
    for i in range(4):
        memo.loads(json.dumps({"a": str(i) * MAX_TEXT}), _lines.loads)
    assert memo.shapes == []


def test_an_sse_event_and_ndjson_go_through_the_memo() -> None:
    body = "".join(f"data: {_chunk(f'w{i}')}\n\n" for i in range(20))
    events = list(_lines.iter_sse([body]))
    assert [e.json()["choices"][0]["delta"]["content"] for e in events] == [
        f"w{i}" for i in range(20)
    ]
    lines = "".join(_chunk(f"n{i}") + "\n" for i in range(20))
    assert [v["choices"][0]["delta"]["content"] for v in _lines.iter_ndjson([lines])] == [
        f"n{i}" for i in range(20)
    ]


# -- properties ------------------------------------------------------------------------------

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_values = st.recursive(
    _leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def _replace_leaves(value: Any, draw: Any) -> Any:
    """The same tree with each string or number leaf perhaps replaced by another of its kind."""
    if isinstance(value, dict):
        return {k: _replace_leaves(v, draw) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_leaves(v, draw) for v in value]
    if isinstance(value, str):
        return draw(st.sampled_from([value, value + "x", "", '"\\\n', "é✓\ud800"]))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return draw(st.sampled_from([value, 0, -1, 2.5, 1e300, -0.0, 10**19]))
    return value


@settings(max_examples=300, deadline=None)
@given(value=_values, data=st.data(), ascii_only=st.booleans(), spaced=st.booleans())
def test_a_learnt_shape_matches_only_what_json_loads_agrees_with(
    value: Any, data: st.DataObject, ascii_only: bool, spaced: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")

    def dump(v: Any) -> str:
        return json.dumps(v, ensure_ascii=ascii_only, separators=separators)

    first = dump(value)
    second = dump(_replace_leaves(value, data.draw))
    shape = Shape.learn(first, second)
    for _ in range(5):
        third = dump(_replace_leaves(value, data.draw))
        if shape is not None:
            got = shape.match(third)
            if got is not MISS:
                assert same(got, json.loads(third))
        # A damaged text: one character changed, dropped or added anywhere.
        i = data.draw(st.integers(0, len(third)))
        char = data.draw(st.sampled_from(list('{}[]:,"\\ 0-.eE1aé')))
        how = data.draw(st.sampled_from(["replace", "drop", "insert"]))
        if how == "replace":
            damaged = third[:i] + char + third[i + 1 :]
        elif how == "drop":
            damaged = third[:i] + third[i + 1 :]
        else:
            damaged = third[:i] + char + third[i:]
        memo = Memo()
        memo.shapes = [shape] if shape is not None else []
        _agrees(memo, damaged)
        _agrees(memo, third)
