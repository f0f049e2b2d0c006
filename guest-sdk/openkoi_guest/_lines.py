"""Splitting a body that arrives in arbitrary chunks into lines, SSE events or NDJSON values.

Chunk boundaries fall anywhere (mid-line, between `\\r` and `\\n`); these splitters keep the
remainder until the next chunk. They also keep a count of complete items read from the network
but not yet handed out, so the stream glue can return a batch of events to the host as soon as
the next event would need another network read.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from openkoi_guest._jsonshape import Memo

_buffered = 0
# The decoder's own scanner, called directly: `json.loads` adds three Python calls and two
# regular-expression matches per value, which a guest (CPython in WebAssembly, 2-3x slower than
# native) pays on every streamed event.
_scan = json.scanner.make_scanner(json.JSONDecoder())


def loads(text: str) -> Any:
    """`json.loads(text)`: the same value, or the same error."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):  # whitespace, a second value, or not JSON: the full decoder decides
        return json.loads(text)
    return value


_events = Memo()


def loads_event(text: str) -> Any:
    """`loads(text)` for one event of a stream: through the shapes recent events have shown
    (`_jsonshape`), the same value or the same error."""
    return _events.loads(text, loads)


def buffered() -> int:
    """Complete lines read from the network and not yet consumed, across all splitters."""
    return _buffered


def iter_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines without their terminator (`\\n`, `\\r\\n` or `\\r`); a last unterminated line too."""
    global _buffered
    rest = ""
    for chunk in chunks:
        if not chunk:
            continue
        text = rest + chunk
        # A trailing '\r' may be the first half of '\r\n': keep it for the next chunk.
        hold_cr = text.endswith("\r")
        if hold_cr:
            text = text[:-1]
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        rest = lines.pop() + ("\r" if hold_cr else "")
        pending = len(lines)
        _buffered += pending
        try:
            for line in lines:
                pending -= 1
                _buffered -= 1
                yield line
        finally:
            _buffered -= pending
    rest = rest.rstrip("\r")
    if rest:
        yield rest


@dataclass(slots=True)
class SSEEvent:
    """One server-sent event: `event` defaults to "message"; `data` joins multi-line data."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return loads_event(self.data)


def _sse_block(block: str, last_id: str | None) -> tuple[SSEEvent | None, str | None]:
    """One event's lines (the text between blank lines) as an event, or None for comments."""
    if block.startswith("data: ") and "\n" not in block:  # the common one-line event
        return SSEEvent("message", block[6:], last_id), last_id
    event = ""
    data: list[str] = []
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value
    if not data and not event:
        return None, last_id
    return SSEEvent(event or "message", "\n".join(data), last_id), last_id


def iter_sse(chunks: Iterable[str]) -> Iterator[SSEEvent]:
    """Server-sent events (the WHATWG framing): comments and retry fields are skipped.

    Works on whole blocks (the text between blank lines) rather than line by line: a stream of
    many small events is parsed with a few string operations per event.
    """
    global _buffered
    rest = ""
    last_id: str | None = None
    for chunk in chunks:
        if not chunk:
            continue
        text = rest + chunk
        hold_cr = text.endswith("\r")  # maybe the first half of "\r\n"
        if hold_cr:
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        blocks = text.split("\n\n")
        rest = blocks.pop() + ("\r" if hold_cr else "")
        pending = len(blocks)
        _buffered += pending
        try:
            for block in blocks:
                pending -= 1
                _buffered -= 1
                if block.startswith("data: ") and "\n" not in block:  # the common one-line event
                    yield SSEEvent("message", block[6:], last_id)
                    continue
                event, last_id = _sse_block(block, last_id)
                if event is not None:
                    yield event
        finally:
            _buffered -= pending
    tail = rest.rstrip("\r\n")
    if tail:
        event, last_id = _sse_block(tail.replace("\r\n", "\n").replace("\r", "\n"), last_id)
        if event is not None and event.data:
            yield event


def iter_ndjson(chunks: Iterable[str]) -> Iterator[Any]:
    """One JSON value per non-empty line."""
    for line in iter_lines(chunks):
        if line.strip():
            yield loads_event(line)
