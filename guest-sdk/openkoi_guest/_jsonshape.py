"""Parsing a stream's JSON events at a fraction of a full parse when they share a shape.

A streamed response's events are nearly all the same JSON text but for a few values: an OpenAI
chunk differs from the one before only in its `content` (and `obfuscation`), an Anthropic
`content_block_delta` only in its `text`. Inside a guest (CPython in WebAssembly) a full parse of
one such event costs about 3 us, most of what the guest spends on an event.

A `Shape` is learnt from two texts whose tokens are the same but for some string and number
values (its slots). It keeps the text between the slots and a compiled function that builds the
value. A text of that shape is checked segment by segment (`str.startswith`), its slots read
with the decoder's own `scanstring` and number grammar, and its value built in one call.

Why it is exact: string and number values are single tokens of JSON's grammar, so a text made of
a shape's segments with a string (or number) token in each slot parses to the same tree as the
texts the shape was learnt from, with the slot tokens' values in their places; the builder makes
fresh containers every time. Whatever does not match exactly is parsed in full, so what is
accepted, and every error, is the full decoder's. Learning costs a tokenization of two texts; it
is tried only on texts up to `MAX_TEXT` characters and only while shapes earn their keep
(`Memo`'s credit), so a stream whose events never repeat a shape pays almost nothing for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

MAX_TEXT = 2048  # learn only from texts this short: a tokenization is paid per learning
MAX_SLOTS = 32
MAX_DEPTH = 32  # the builder is Python source; its parser's nesting limit is far above this
MAX_SHAPES = 4

MISS: Any = object()  # what `Shape.match` gives for a text not of its shape

_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
# The C scanner's number grammar (ASCII digits only, unlike `json.scanner.NUMBER_RE`'s `\d`).
_NUMBER_PATTERN = r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?"
_NUMBER = re.compile(_NUMBER_PATTERN).match
_TOKEN = re.compile(
    r"""(?P<ws>[ \t\n\r]+)
    |(?P<punct>[{}\[\]:,])
    |(?P<str>"(?:[^"\\]|\\.)*")
    |(?P<num>(?:"""
    + _NUMBER_PATTERN
    + r"""))
    |(?P<lit>true|false|null|NaN|Infinity|-Infinity)""",
    re.VERBOSE | re.DOTALL,
).match
_LITERALS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": float("nan"),
    "Infinity": float("inf"),
    "-Infinity": float("-inf"),
}
_STR, _NUM = 0, 1


def _number(text: str) -> int | float:
    """A number token's value, as the decoder makes it."""
    _, fraction, exponent = _NUMBER(text).groups()  # type: ignore[union-attr]
    return float(text) if fraction or exponent else int(text)


def _tokens(text: str) -> list[tuple[str, str]] | None:
    """(kind, text) of every token, or None where the tokenizer cannot follow the text."""
    out: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    while pos < end:
        found = _TOKEN(text, pos)
        if found is None:
            return None
        kind = found.lastgroup
        assert kind is not None
        out.append((kind, found.group()))
        pos = found.end()
    return out


class Shape:
    """The texts that differ from two learnt ones only in their slots' values.

    `match` is Python source made for the shape and compiled once: the segments and their
    lengths as constants, one `startswith` per segment and one scan per slot, the value built
    by a literal, no loop and no list in between (each would cost the guest as much as the
    parse it replaces)."""

    __slots__ = ("match", "source")

    def __init__(self, match: Callable[[str], Any], source: str) -> None:
        self.match = match  # `json.loads(text)` if `text` has this shape, else `MISS`; raises
        # what the decoder raises for a slot that is not a valid token (then parse in full)
        self.source = source

    @classmethod
    def learn(cls, first: str, second: str) -> Shape | None:
        """The shape both texts (each a whole JSON value) have, if they differ only in string
        and number values; None otherwise."""
        a, b = _tokens(first), _tokens(second)
        if a is None or b is None or len(a) != len(b):
            return None
        segments: list[str] = []
        kinds: list[int] = []
        value: list[str] = []  # the builder's source, token by token
        constants: list[Any] = []
        segment: list[str] = []
        depth = 0
        for i, ((kind, text), (other_kind, other_text)) in enumerate(zip(a, b, strict=True)):
            if kind != other_kind:
                return None
            if kind == "ws":
                if text != other_text:
                    return None
                segment.append(text)
                continue
            if kind == "punct":
                if text != other_text:
                    return None
                depth += text in "{["
                if depth > MAX_DEPTH:
                    return None
                depth -= text in "}]"
                segment.append(text)
                value.append(text)
                continue
            if kind == "lit":
                if text != other_text:
                    return None
                segment.append(text)
                value.append(f"c{len(constants)}")
                constants.append(_LITERALS[text])
                continue
            is_key = kind == "str" and _followed_by_colon(a, i)
            if text == other_text or is_key:
                if text != other_text:
                    return None
                segment.append(text)
                if kind == "str":
                    value.append(repr(json.loads(text)))
                else:
                    value.append(f"c{len(constants)}")
                    constants.append(_number(text))
                continue
            if len(kinds) == MAX_SLOTS:
                return None
            if kind == "str":
                segment.append('"')  # a string slot's opening quote ends the segment before it
            segments.append("".join(segment))
            segment = []
            value.append(f"v{len(kinds)}")
            kinds.append(_STR if kind == "str" else _NUM)
        if not kinds:
            return None  # the same text twice: nothing varies, nothing to learn
        return cls._compile(segments, kinds, "".join(segment), "".join(value), constants)

    @classmethod
    def _compile(
        cls,
        segments: list[str],
        kinds: list[int],
        tail: str,
        value: str,
        constants: list[Any],
    ) -> Shape:
        names: dict[str, Any] = {"MISS": MISS, "scan": _scanstring, "number": _NUMBER}
        lines = ["def match(text):", "    startswith = text.startswith"]
        at = "0"
        for n, (segment, kind) in enumerate(zip(segments, kinds, strict=True)):
            names[f"s{n}"] = segment
            lines.append(f"    if not startswith(s{n}, {at}): return MISS")
            lines.append(
                f"    p = {at} + {len(segment)}" if at != "0" else f"    p = {len(segment)}"
            )
            if kind == _STR:
                lines.append(f"    v{n}, p = scan(text, p, True)")
            else:
                lines += [
                    "    found = number(text, p)",
                    "    if found is None: return MISS",
                    "    whole, fraction, exponent = found.groups()",
                    f"    v{n} = float(found.group()) if fraction or exponent else int(whole)",
                    "    p = found.end()",
                ]
            at = "p"
        names["tail"] = tail
        lines.append(f"    if len(text) - p != {len(tail)} or not startswith(tail, p): return MISS")
        lines.append(f"    return {value}")
        for n, constant in enumerate(constants):
            names[f"c{n}"] = constant
        source = "\n".join(lines)
        scope: dict[str, Any] = {"__builtins__": {"len": len, "int": int, "float": float}}
        scope.update(names)
        exec(compile(source, "<json shape>", "exec"), scope)
        return cls(scope["match"], source)


def _followed_by_colon(tokens: list[tuple[str, str]], i: int) -> bool:
    for kind, text in tokens[i + 1 :]:
        if kind != "ws":
            return text == ":"
    return False


class Memo:
    """The shapes a guest's streams have shown lately, most recently matched first.

    Learning is paid from a credit: each attempt costs one, each match earns a little back and
    each full parse a very little, so shapes are learnt readily while they are matched and
    rarely once they are not."""

    def __init__(self) -> None:
        self.shapes: list[Shape] = []
        self.pending: str | None = None  # the last text no shape matched, to learn from
        self.credit = 16.0

    def loads(self, text: str, full: Callable[[str], Any]) -> Any:
        """`full(text)` (a full parse, `json.loads`' value or error), from a shape if one fits."""
        shapes = self.shapes
        try:
            for shape in shapes:
                value = shape.match(text)
                if value is not MISS:
                    if shape is not shapes[0]:
                        shapes.remove(shape)
                        shapes.insert(0, shape)
                    if self.credit < 16.0:
                        self.credit += 0.0625
                    return value
        except ValueError:  # a slot the decoder refuses: the full parse says why
            return full(text)
        value = full(text)
        if self.credit < 16.0:
            self.credit += 0.00390625
        if len(text) <= MAX_TEXT:
            pending, self.pending = self.pending, text
            if pending is not None and self.credit >= 1.0:
                self.credit -= 1.0
                shape = Shape.learn(pending, text)
                if shape is not None:
                    self.pending = None
                    shapes.insert(0, shape)
                    del shapes[MAX_SHAPES:]
        return value
