"""The event-stream frame decoder: message for message what botocore's parser reads from the
recorded Bedrock streams, however the bytes are cut; every kind of corruption a typed error,
including under random bytes and random damage to real frames."""

from __future__ import annotations

import itertools
import json
import random
import struct
import uuid
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import pytest
from _corpus import CORPUS, case_names, load_case
from _fault_providers import event_frame
from _server import Reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openkoi import MalformedResponseError
from openkoi_providers._eventstream import (
    MAX_HEADERS_LENGTH,
    MAX_MESSAGE_LENGTH,
    EventStreamDecoder,
    Message,
)
from test_bedrock import EVENT_STREAM, _aws_env, _fails, stream_reply, text_stream


def _botocore(body: bytes) -> list[Message]:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(m.headers, m.payload) for m in buffer]


def _decode(pieces: list[bytes]) -> tuple[list[Message], int]:
    decoder = EventStreamDecoder("bedrock")
    messages = [m for piece in pieces for m in decoder.feed(piece)]
    return messages, decoder.pending


def _cuts(body: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randint(1, 40))))
    return [body[a:b] for a, b in itertools.pairwise([0, *points, len(body)])]


def _chunkings(body: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [body]
    for size in (1, 2, 3, 7, 12, 13, 16, 100, 4096):
        yield f"{size}-byte", [body[i : i + size] for i in range(0, len(body), size)]
    for seed in range(20):
        yield f"random cuts {seed}", _cuts(body, seed)


def _stream_names() -> list[Any]:
    names = [
        n
        for n in case_names("bedrock")
        if "eventstream"
        in json.loads((CORPUS / "bedrock" / f"{n}.meta.json").read_text()).get("content_type", "")
    ]
    return names or [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]


@pytest.mark.parametrize("name", _stream_names())
def test_recorded_streams_decode_as_botocore_reads_them(name: str) -> None:
    body = load_case("bedrock", name).body
    expected = _botocore(body)
    assert expected, "the recorded stream holds messages"
    for how, pieces in _chunkings(body):
        assert _decode(pieces) == (expected, 0), how


def _frame(header_block: bytes, payload: bytes = b"{}") -> bytes:
    prelude = struct.pack(">II", 12 + len(header_block) + len(payload) + 4, len(header_block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + header_block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _header(name: str, kind: int, raw: bytes = b"") -> bytes:
    return bytes([len(name.encode())]) + name.encode() + bytes([kind]) + raw


ID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e").bytes
EVERY_TYPE = b"".join(
    [
        _header("yes", 0),
        _header("no", 1),
        _header("byte", 2, struct.pack(">b", -7)),
        _header("short", 3, struct.pack(">h", -30000)),
        _header("int", 4, struct.pack(">i", -(2**31))),
        _header("long", 5, struct.pack(">q", 2**63 - 1)),
        _header("bytes", 6, struct.pack(">H", 3) + b"\x00\xff\x10"),
        _header("string", 7, struct.pack(">H", 6) + "héllo".encode()),
        _header("timestamp", 8, struct.pack(">q", 1_700_000_000_123)),
        _header("uuid", 9, ID),
        _header("empty", 7, struct.pack(">H", 0)),
    ]
)


def test_every_header_type() -> None:
    body = _frame(EVERY_TYPE, b"payload") * 2
    messages, pending = _decode([body])
    assert pending == 0
    assert messages == _botocore(body)
    headers, payload = messages[0]
    assert payload == b"payload"
    assert headers == {
        "yes": True,
        "no": False,
        "byte": -7,
        "short": -30000,
        "int": -(2**31),
        "long": 2**63 - 1,
        "bytes": b"\x00\xff\x10",
        "string": "héllo",
        "timestamp": 1_700_000_000_123,
        "uuid": ID,
        "empty": "",
    }
    for size in (1, 5):
        assert _decode([body[i : i + size] for i in range(0, len(body), size)])[0] == messages


def test_shared_headers_are_read_only() -> None:
    # Messages that repeat a header block share one parsed mapping, so no caller may change it.
    decoder = EventStreamDecoder("bedrock")
    (first, _), (second, _) = decoder.feed(_frame(EVERY_TYPE) * 2)
    with pytest.raises(TypeError):
        first["yes"] = False  # type: ignore[index]
    assert second["yes"] is True and decoder.feed(_frame(EVERY_TYPE))[0][0]["yes"] is True


def test_a_message_without_headers_or_payload() -> None:
    body = _frame(b"", b"")
    assert len(body) == 16
    assert _decode([body]) == ([({}, b"")], 0) == (_botocore(body), 0)


def _corrupt(pieces: list[bytes], match: str) -> None:
    decoder = EventStreamDecoder("bedrock")
    with pytest.raises(MalformedResponseError, match=match) as info:
        for piece in pieces:
            decoder.feed(piece)
    assert info.value.provider == "bedrock" and "corrupt" in info.value.message


GOOD = b"".join(text_stream("Hel", "lo"))


def test_corrupt_prelude_checksum() -> None:
    for byte in range(12):  # a lengths byte or the checksum itself
        broken = bytearray(GOOD)
        broken[byte] ^= 0x01
        _corrupt([bytes(broken)], "prelude checksum")
    broken = bytearray(GOOD)
    broken[0] ^= 0x01
    _corrupt([bytes(broken[:12])], "prelude checksum")  # known before the message arrives


def test_corrupt_message_checksum() -> None:
    first = len(text_stream()[0])
    for byte in (12, 20, first - 5, first - 1, len(GOOD) - 1):
        broken = bytearray(GOOD)
        broken[byte] ^= 0x80
        _corrupt([bytes(broken)], "message checksum")
        _corrupt([bytes(broken[i : i + 3]) for i in range(0, len(broken), 3)], "message checksum")


def test_truncated_frame_is_held_not_returned() -> None:
    decoder = EventStreamDecoder("bedrock")
    assert len(decoder.feed(GOOD[:-1])) == 5
    assert decoder.pending == len(text_stream()[-1]) - 1  # the caller reports the cut
    assert len(decoder.feed(GOOD[-1:])) == 1 and decoder.pending == 0


def _prelude(total: int, headers_length: int) -> bytes:
    lengths = struct.pack(">II", total, headers_length)
    return lengths + struct.pack(">I", zlib.crc32(lengths))


def test_oversized_lengths_are_refused_from_the_prelude() -> None:
    _corrupt([_prelude(MAX_MESSAGE_LENGTH + 1, 0)], "over the limit")
    _corrupt([_prelude(2**32 - 1, 0)], "over the limit")
    _corrupt([_prelude(100_000, MAX_HEADERS_LENGTH + 1)], "over the limit")
    # The largest message the service may send is accepted (prelude only: nothing is refused).
    decoder = EventStreamDecoder("bedrock")
    assert decoder.feed(_prelude(MAX_MESSAGE_LENGTH, MAX_HEADERS_LENGTH)) == []


def test_lengths_that_do_not_add_up() -> None:
    for total, headers_length in ((0, 0), (15, 0), (20, 5)):
        _corrupt([_prelude(total, headers_length) + b"\x00" * 32], "do not add up")


def test_a_bad_prelude_after_a_good_message_is_refused_in_the_same_read() -> None:
    # The decoder reads a message's checksum and the prelude after it together: that prelude is
    # checked then, not left for the next read.
    _corrupt([GOOD + _prelude(0, 0)], "do not add up")
    _corrupt([GOOD + _prelude(MAX_MESSAGE_LENGTH + 1, 0)], "over the limit")
    broken = bytearray(GOOD + _prelude(100, 10))
    broken[-1] ^= 0x01
    _corrupt([bytes(broken)], "prelude checksum")
    # A whole prelude after the last message waits, checked, for the rest of its message.
    decoder = EventStreamDecoder("bedrock")
    assert len(decoder.feed(GOOD + _prelude(100, 10))) == 6 and decoder.pending == 12


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (_header("x", 7, struct.pack(">H", 50) + b"short"), "past the header block"),
        (_header("x", 6, b"\x00"), "past the header block"),
        (_header("x", 5, b"\x00\x00\x00"), "past the header block"),
        (_header("x", 9, b"\x00" * 15), "past the header block"),
        (b"\x05ab", "past the header block"),
        (b"\x01x", "past the header block"),
        (_header("x", 10), "unknown header value type 10"),
        (_header("x", 0) + _header("x", 1), "appears twice"),
        (b"\x01\xff\x00", "not UTF-8"),
        (_header("x", 7, struct.pack(">H", 1) + b"\xff"), "not UTF-8"),
    ],
)
def test_bad_header_blocks(block: bytes, match: str) -> None:
    _corrupt([text_stream()[0] + _frame(block)], match)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_fuzz_random_bytes(data: bytes, cuts: list[int]) -> None:
    points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    decoder = EventStreamDecoder("bedrock")
    fed = 0
    try:
        for a, b in itertools.pairwise(points):
            for headers, payload in decoder.feed(data[a:b]):
                assert isinstance(headers, Mapping) and isinstance(payload, bytes)
            fed += b - a
            assert decoder.pending <= fed
    except MalformedResponseError:
        pass


# Header blocks a stream may repeat: two of the same length that differ in one byte, so the
# decoder's in-place comparison with the last block is put to the test, and an empty one.
_BLOCKS = [
    _header(":event-type", 7, struct.pack(">H", 5) + b"delta"),
    _header(":event-type", 7, struct.pack(">H", 5) + b"delts"),
    _header(":message-type", 7, struct.pack(">H", 5) + b"event") + EVERY_TYPE,
    b"",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(
        st.tuples(st.integers(0, len(_BLOCKS) - 1), st.binary(max_size=40)), min_size=1, max_size=12
    ),
    cuts=st.lists(st.integers(1, 600), max_size=12),
)
def test_fuzz_valid_streams_decode_as_botocore_reads_them(
    messages: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    body = b"".join(_frame(_BLOCKS[block], payload) for block, payload in messages)
    points = sorted({c for c in cuts if c < len(body)} | {0, len(body)})
    pieces = [body[a:b] for a, b in itertools.pairwise(points)]
    assert _decode(pieces) == (_botocore(body), 0)


MESSAGES = _botocore(GOOD)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.integers(0, len(GOOD) - 1),
    how=st.sampled_from(["flip", "insert", "delete", "truncate", "set"]),
    value=st.integers(0, 255),
    size=st.integers(1, 64),
)
def test_fuzz_damaged_frames(where: int, how: str, value: int, size: int) -> None:
    damaged = bytearray(GOOD)
    if how == "flip":
        damaged[where] ^= value or 1
    elif how == "insert":
        damaged[where:where] = bytes([value])
    elif how == "delete":
        del damaged[where]
    elif how == "truncate":
        del damaged[where:]
    elif damaged[where] != value:
        damaged[where] = value
    else:
        damaged[where] ^= 0x40
    decoder = EventStreamDecoder("bedrock")
    out: list[Message] = []
    try:
        for i in range(0, len(damaged), size):
            out += decoder.feed(bytes(damaged[i : i + size]))
    except MalformedResponseError:
        pass
    else:
        assert how == "truncate" or decoder.pending  # damage is never silently accepted
    # Whatever came out is the stream as sent, message for message, up to the damage.
    assert out == MESSAGES[: len(out)]


@pytest.mark.anyio
@pytest.mark.usefixtures(_aws_env.__name__)
async def test_an_oversized_frame_fails_the_stream_at_once(serve: Any) -> None:
    """The server announces a 64 MiB message and then trickles bytes for ever: the stream fails
    on the prelude instead of buffering (or waiting for) the announced size."""

    def forever() -> Iterator[bytes]:
        yield text_stream()[0] + _prelude(64 * 1024 * 1024, 0)
        while True:
            yield b"\x00" * 1024

    with anyio.fail_after(10):
        error, seen = await _fails(
            serve, Reply(chunks=forever(), chunk_delay=0.01, headers=EVENT_STREAM)
        )
    assert isinstance(error, MalformedResponseError) and "over the limit" in error.message
    assert seen == []


@pytest.mark.anyio
@pytest.mark.usefixtures(_aws_env.__name__)
async def test_a_payload_that_is_not_utf8_is_malformed(serve: Any) -> None:
    headers = {":event-type": "contentBlockDelta", ":message-type": "event"}
    parts = text_stream("ok")
    bad = event_frame(headers, b'{"delta": {"text": "\xff"}}')
    error, seen = await _fails(serve, stream_reply([*parts[:2], bad, *parts[2:]]))
    assert isinstance(error, MalformedResponseError) and "not JSON" in error.message
    assert [c.delta for c in seen if c.delta] == ["ok"]
