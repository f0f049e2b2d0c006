"""Splitting a body that arrives in arbitrary chunks into lines, SSE events or NDJSON values.

Chunk boundaries fall anywhere (mid-line, between `\\r` and `\\n`); these splitters keep the
remainder until the next chunk. They also keep a count of complete items read from the network
but not yet handed out, so the stream glue can return a batch of events to the host as soon as
the next event would need another network read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_buffered = 0


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


@dataclass
class SSEEvent:
    """One server-sent event: `event` defaults to "message"; `data` joins multi-line data."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse(chunks: Iterable[str]) -> Iterator[SSEEvent]:
    """Server-sent events (the WHATWG framing): comments and retry fields are skipped."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    for line in iter_lines(chunks):
        if not line:
            if data or event:
                yield SSEEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data), last_id)


def iter_ndjson(chunks: Iterable[str]) -> Iterator[Any]:
    """One JSON value per non-empty line."""
    for line in iter_lines(chunks):
        if line.strip():
            yield json.loads(line)
