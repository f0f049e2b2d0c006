"""Splitting a text stream into server-sent events or lines, a network read at a time.

A read of 16 KiB carries a hundred events; returning them as one list lets the stream reader
wait on the network once per read instead of once per event (an async generator layer and a
deadline check per event cost more than parsing the event). Events follow the WHATWG rules as
httpx-sse reads them: lines end at CR LF, LF or CR, `:` starts a comment, a blank line
dispatches. A line a server never ends is capped, so it cannot grow without bound.
"""

from __future__ import annotations

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


# One server-sent event: (type, data, id, retry): its type (`message` unless the stream named
# one), its data lines joined by LF, the last event id the stream set, and the retry time this
# event set.
SSEvent = tuple[str, str, str, int | None]
# What the splitter gives for an event: a plain one (type `message`, no id, no retry: nearly
# every event of every LLM stream) is its data string alone, any other a full `SSEvent`. A read
# brings a hundred events that stay alive while the consumer takes them one by one; strings are
# not tracked by the garbage collector, so a batch of them costs it nothing, while a hundred
# tuples per read made a thousand concurrent streams run 75% more collections.
SSEItem = str | SSEvent


class SSESplitter:
    """Server-sent events completed by the text fed so far.

    Most events of a fast stream are one `data:` line and a blank line, so a read is first cut
    at its blank lines (`\\n\\n` once line ends are LF) and such an event is sliced out whole;
    any other event (comments, several fields, several data lines) is read line by line.
    """

    __slots__ = (
        "_data",
        "_event",
        "_held",
        "_id",
        "_limit",
        "_parts",
        "_provider",
        "_retry",
        "_size",
        "_skip_lf",
    )

    def __init__(self, provider: str, limit: int = MAX_LINE_CHARS) -> None:
        self._provider = provider
        self._limit = limit
        self._parts: list[str] = []  # the unfinished last line, as the reads brought it
        self._held = 0  # its length
        self._skip_lf = False  # the last read ended in CR: an LF starting the next ends nothing
        self._size = 0  # characters of data in the event being read
        self._event = ""
        self._data: list[str] = []
        self._id = ""  # per the spec, the last event id carries over to later events
        self._retry: int | None = None

    def feed(self, text: str) -> list[SSEItem]:
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        if "\r" in text:
            # A CR ends a line even when an LF follows in the next read: skip that LF then.
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            self._hold(text)
            return []
        if self._parts:
            self._parts.append(text)
            text = "".join(self._parts)
            self._parts, self._held = [], 0
        blocks = text.split("\n\n")
        tail = blocks.pop()
        events: list[SSEItem] = []
        if blocks:
            limit = self._limit
            started = bool(self._data or self._event or self._retry is not None)
            for block in blocks:
                if started or block[:5] != "data:" or "\n" in block:
                    started = False
                    self._decode(block.split("\n"), events)
                    self._decode(_BLANK, events)
                    continue
                value = block[6:] if block[5:6] == " " else block[5:]
                if len(value) > limit:
                    raise self._too_long("an event")
                events.append(("message", value, self._id, None) if self._id else value)
        lines = tail.split("\n")
        last = lines.pop()
        if lines:
            self._decode(lines, events)
        self._hold(last)
        return events

    def flush(self) -> list[SSEItem]:
        """Events the end of the stream completes (an event needs its blank line: none)."""
        self._parts, self._held = [], 0
        return []

    def _hold(self, text: str) -> None:
        """Keep `text`, more of a line no read has ended yet, within the line cap (joined only
        when the line ends, so a long line costs its length once, not once per read)."""
        if text:
            self._parts.append(text)
            self._held += len(text)
            if self._held > self._limit:
                raise self._too_long("a line")

    def _too_long(self, what: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"the stream sent {what} longer than {self._limit:,} characters",
            provider=self._provider,
        )

    def _decode(self, lines: list[str] | tuple[str], events: list[SSEItem]) -> None:
        data = self._data
        for line in lines:
            if not line:
                if self._event or self._id or self._retry is not None:
                    events.append(
                        (self._event or "message", "\n".join(data), self._id, self._retry)
                    )
                elif data:
                    events.append("\n".join(data))
                else:
                    continue  # nothing to dispatch
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
                    raise self._too_long("an event")
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self._retry = int(value)


_BLANK = ("",)
