"""Splitting a text stream into server-sent events or lines, a network read at a time.

A read of 16 KiB carries a hundred events; returning them as one list lets the stream reader
wait on the network once per read instead of once per event (an async generator layer and a
deadline check per event cost more than parsing the event). Events follow the WHATWG rules as
httpx-sse reads them: lines end at CR LF, LF or CR, `:` starts a comment, a blank line
dispatches. A line a server never ends is capped, so it cannot grow without bound.
"""

from __future__ import annotations

from httpx_sse import ServerSentEvent

from openkoi._errors import MalformedResponseError

# The longest line (one SSE field, one NDJSON object) a stream may send: far above any real
# event (a large tool call's arguments), far below what would hurt the process.
MAX_LINE_CHARS = 32 * 1024 * 1024


class LineSplitter:
    """Complete lines of the text fed so far (without their ends); the rest waits for more."""

    __slots__ = ("_limit", "_provider", "_rest")

    def __init__(self, provider: str, limit: int = MAX_LINE_CHARS) -> None:
        self._rest = ""
        self._provider = provider
        self._limit = limit

    def lines(self, text: str) -> list[str]:
        if self._rest:
            text = self._rest + text
        if "\r" in text:
            # A CR ending the read may be the first half of a CR LF: decide with the next read.
            held = text.endswith("\r")
            if held:
                text = text[:-1]
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            lines = text.split("\n")
            last = lines.pop()
            self._rest = last + "\r" if held else last
        else:
            lines = text.split("\n")
            self._rest = lines.pop()
        if len(self._rest) > self._limit:
            raise MalformedResponseError(
                f"the stream sent a line longer than {self._limit:,} characters",
                provider=self._provider,
            )
        return lines

    def flush(self) -> list[str]:
        """The unterminated last line, if any (the stream has ended)."""
        rest, self._rest = self._rest, ""
        if rest.endswith("\r"):
            rest = rest[:-1]
            return [rest]
        return [rest] if rest else []


class SSESplitter:
    """Server-sent events completed by the text fed so far."""

    __slots__ = ("_data", "_event", "_id", "_limit", "_lines", "_provider", "_retry", "_size")

    def __init__(self, provider: str, limit: int = MAX_LINE_CHARS) -> None:
        self._lines = LineSplitter(provider, limit)
        self._provider = provider
        self._limit = limit
        self._size = 0  # characters of data in the event being read
        self._event = ""
        self._data: list[str] = []
        self._id = ""  # per the spec, the last event id carries over to later events
        self._retry: int | None = None

    def feed(self, text: str) -> list[ServerSentEvent]:
        return self._decode(self._lines.lines(text))

    def flush(self) -> list[ServerSentEvent]:
        """Events the end of the stream completes (an event needs its blank line: none)."""
        self._decode(self._lines.flush())
        return []

    def _decode(self, lines: list[str]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if self._event or data or self._id or self._retry is not None:
                    events.append(
                        ServerSentEvent(
                            event=self._event, data="\n".join(data), id=self._id, retry=self._retry
                        )
                    )
                    self._event, self._retry, self._size = "", None, 0
                    data = self._data = []
                continue
            name, _, value = line.partition(":")
            if not name:
                continue  # a comment
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
                self._size += len(value)
                if self._size > self._limit:
                    raise MalformedResponseError(
                        f"the stream sent an event longer than {self._limit:,} characters",
                        provider=self._provider,
                    )
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self._retry = int(value)
        return events
