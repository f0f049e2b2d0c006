"""The SSE and line splitters: every way a network read can cut a stream gives the same events."""

from __future__ import annotations

import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given, settings
from hypothesis import strategies as st
from openkoi._errors import MalformedResponseError
from openkoi._sse import LineSplitter, SSEItem, SSESplitter, SSEvent

STREAM = (
    ": a comment\r\n"
    "event: message_start\r\n"
    'data: {"a": 1}\r\n'
    "\r\n"
    "id: 7\n"
    "data: line one\n"
    "data:line two\n"
    "\n"
    "retry: 1500\r"
    "data: after a bare CR\r"
    "\r"
    "retry: ²\n"
    "data: the id carries over\n"
    "\n"
    "data: never finished"
)
EXPECTED = [
    ServerSentEvent(event="message_start", data='{"a": 1}'),
    ServerSentEvent(data="line one\nline two", id="7"),
    ServerSentEvent(data="after a bare CR", id="7", retry=1500),
    ServerSentEvent(data="the id carries over", id="7"),
]


def full_event(item: SSEItem) -> SSEvent:
    """The event an item stands for: a plain message event comes as its data alone."""
    return ("message", item, "", None) if isinstance(item, str) else item


def split_all(pieces: list[str]) -> list[SSEvent]:
    splitter = SSESplitter("p")
    events = [e for piece in pieces for e in splitter.feed(piece)]
    return [full_event(e) for e in events + splitter.flush()]


def as_tuples(events: list[ServerSentEvent]) -> list[SSEvent]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 1000])
def test_every_cut_gives_the_same_events(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert split_all(pieces) == as_tuples(EXPECTED)


def test_a_cr_lf_split_between_reads_is_one_line_end() -> None:
    splitter = SSESplitter("p")
    assert splitter.feed("data: x\r") == []
    assert splitter.feed("\n\r\n") == ["x"]  # a plain message event is its data alone


def test_lines_keep_the_unfinished_last_one_for_flush() -> None:
    splitter = LineSplitter("p")
    assert splitter.lines('{"a":1}\n{"b"') == ['{"a":1}']
    assert splitter.lines(":2}\r\n") == ['{"b":2}']
    assert splitter.lines("tail\r") == []
    assert splitter.flush() == ["tail"]
    assert splitter.flush() == []


def test_a_line_that_never_ends_is_refused_at_the_cap() -> None:
    splitter = LineSplitter("p", limit=100)
    splitter.lines("x" * 100)
    with pytest.raises(MalformedResponseError, match="longer than 100"):
        splitter.lines("x")


def test_an_event_of_endless_data_lines_is_refused_at_the_cap() -> None:
    splitter = SSESplitter("p", limit=100)
    splitter.feed("data: " + "x" * 60 + "\n")
    with pytest.raises(MalformedResponseError, match="event longer than 100"):
        splitter.feed("data: " + "x" * 60 + "\n")


# Pieces a stream is made of: every field, every line end, comments, blank lines, odd spacing.
_PIECES = st.sampled_from(
    [
        "data: ",
        "data:",
        "data",
        "event: ",
        "event:e",
        "id: 7",
        "id:\0",
        "retry: 15",
        "retry: x",
        ":c",
        "x",
        ' {"a": 1}',
        "é",
        "\n",
        "\r",
        "\r\n",
        "\n\n",
        "\r\n\r\n",
    ]
)


def reference(text: str) -> list[tuple[str, str, str, int | None]]:
    """The events httpx-sse's own decoders find in `text`, read whole (a CR ending the stream
    ends a line, so `flush`)."""
    lines, decoder = SSELineDecoder(), SSEDecoder()
    found = [decoder.decode(line) for line in lines.decode(text) + lines.flush()]
    return as_tuples([e for e in found if e is not None])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_PIECES, st.booleans()), max_size=40), st.integers(1, 5))
def test_any_stream_cut_anywhere_gives_httpx_sse_s_events(
    pieces: list[tuple[str, bool]], size: int
) -> None:
    """Reads end after the pieces marked so (a CR, say, whose LF comes in the next read), and
    long reads are cut again every `size` characters (inside a field or a character run)."""
    text = "".join(piece for piece, _ in pieces)
    reads, read = [], ""
    for piece, cut in pieces:
        read += piece
        if cut:
            reads += [read[i : i + size] for i in range(0, len(read), size)] if size < 5 else [read]
            read = ""
    reads.append(read)
    assert split_all(reads) == reference(text)


def test_an_sse_line_that_never_ends_is_refused_at_the_cap() -> None:
    splitter = SSESplitter("p", limit=100)
    for _ in range(9):
        assert splitter.feed("x" * 10) == []
    splitter.feed("x" * 10)
    with pytest.raises(MalformedResponseError, match="line longer than 100"):
        splitter.feed("x")


def test_a_one_line_event_over_the_cap_is_refused() -> None:
    splitter = SSESplitter("p", limit=100)
    assert splitter.feed("data: " + "x" * 100 + "\n\n") == ["x" * 100]
    with pytest.raises(MalformedResponseError, match="event longer than 100"):
        splitter.feed("data: " + "x" * 101 + "\n\n")
