"""AWS event-stream framing (`application/vnd.amazon.eventstream`), decoded as bytes arrive.

One message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes; all u32
big-endian), the headers, the payload and a CRC32 of everything before it. botocore's parser
copies its buffer for every field it reads, which made it the cost of a Bedrock stream; this one
slices each message straight out of the bytes read, joins a message's pieces only once it is all
there, and checks every CRC and length before trusting it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from openkoi._errors import MalformedResponseError

HeaderValue = bool | int | bytes | str
# A message's headers are read-only: one parsed header block is shared by every message that
# repeats it.
Message = tuple[Mapping[str, HeaderValue], bytes]

PRELUDE_LENGTH: Final = 12
MAX_HEADERS_LENGTH: Final = 128 * 1024  # the service's limit on one message's headers
MAX_PAYLOAD_LENGTH: Final = 16 * 1024 * 1024  # the service's limit on one message's payload
MAX_MESSAGE_LENGTH: Final = PRELUDE_LENGTH + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH + 4

_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_CRC_AND_PRELUDE = struct.Struct(">IIII")  # a checksum, then the prelude after it
_crc32 = zlib.crc32
# value type -> width of a fixed-size signed integer (2 byte, 3 short, 4 int, 5 long, 8 timestamp)
_INTEGERS: Final = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8}
_CACHE_LIMIT: Final = 64  # distinct header blocks remembered; a stream repeats a handful


class _Corrupt(Exception):
    """Why the bytes are not an event stream; turned into the provider's typed error."""


class EventStreamDecoder:
    """Feed it bytes as they arrive; it returns the (headers, payload) of each message they
    complete and keeps the rest. `pending` is the number of bytes held that are not yet a whole
    message, so a stream that ends with `pending > 0` ended inside one."""

    __slots__ = ("_headers_seen", "_held", "_last", "_need", "_parts", "_provider")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._parts: list[bytes] = []  # bytes received after the last whole message
        self._held = 0  # their total length
        self._need = PRELUDE_LENGTH  # bytes needed before parsing is worth trying again
        # Bedrock sends the same few header blocks over and over: parse each once. A run of
        # deltas repeats the last block, which is compared in place without slicing it out.
        self._headers_seen: dict[bytes, Mapping[str, HeaderValue]] = {}
        self._last: tuple[bytes, Mapping[str, HeaderValue]] = (b"", MappingProxyType({}))

    @property
    def pending(self) -> int:
        return self._held

    def feed(self, data: bytes) -> list[Message]:
        """The messages `data` completes; a corrupt or oversized frame is a
        `MalformedResponseError` (raised as soon as its prelude arrives, for a bad prelude)."""
        held = self._held + len(data)
        if held < self._need:  # a message still arriving: keep the piece, join once it is whole
            if data:
                self._parts.append(bytes(data))
                self._held = held
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
        size = len(data)
        start = 0
        need = PRELUDE_LENGTH
        messages: list[Message] = []
        seen = self._headers_seen
        last_block, last_headers = self._last
        last_length = len(last_block)
        try:
            if size >= PRELUDE_LENGTH:
                total, headers_length, prelude_crc = _PRELUDE.unpack_from(data, 0)
                while True:  # at `start` is a prelude: `total`, `headers_length`, `prelude_crc`
                    if _crc32(data[start : start + 8]) != prelude_crc:
                        raise _Corrupt("prelude checksum mismatch")
                    if total > MAX_MESSAGE_LENGTH or headers_length > MAX_HEADERS_LENGTH:
                        raise _Corrupt(f"a {total}-byte message is over the limit")
                    if total < PRELUDE_LENGTH + headers_length + 4:
                        raise _Corrupt("the lengths in a prelude do not add up")
                    end = start + total
                    if end > size:
                        need = total
                        break
                    payload_end = end - 4
                    # A message's checksum and the next message's prelude are read in one go.
                    if end + PRELUDE_LENGTH <= size:
                        crc, total, next_headers_length, prelude_crc = _CRC_AND_PRELUDE.unpack_from(
                            data, payload_end
                        )
                    else:
                        crc = _CRC.unpack_from(data, payload_end)[0]
                        total = next_headers_length = -1
                    if _crc32(data[start:payload_end]) != crc:
                        raise _Corrupt("message checksum mismatch")
                    headers_start = start + PRELUDE_LENGTH
                    headers_end = headers_start + headers_length
                    if headers_length != last_length or not data.startswith(
                        last_block, headers_start
                    ):
                        block = data[headers_start:headers_end]
                        found = seen.get(block)
                        if found is None:
                            found = MappingProxyType(_parse_headers(block))
                            if len(seen) < _CACHE_LIMIT:
                                seen[block] = found
                        last_block, last_headers, last_length = block, found, headers_length
                    messages.append((last_headers, data[headers_end:payload_end]))
                    start = end
                    if total < 0:  # fewer than a prelude's bytes are left
                        break
                    headers_length = next_headers_length
        except _Corrupt as exc:
            raise MalformedResponseError(
                f"the event stream is corrupt ({exc})", provider=self._provider
            ) from None
        finally:
            self._last = (last_block, last_headers)
        rest = data[start:] if start else data
        self._parts = [rest] if rest else []
        self._held = len(rest)
        self._need = need
        return messages


def _parse_headers(block: bytes) -> dict[str, HeaderValue]:
    """A message's headers: name (u8 length, UTF-8), type byte, value. Types per the spec:
    0 true, 1 false, 2-5 signed 8/16/32/64-bit, 6 bytes and 7 string (u16 length), 8 timestamp
    (ms since the epoch, an int as botocore gives it), 9 UUID (16 raw bytes)."""
    headers: dict[str, HeaderValue] = {}
    end = len(block)
    pos = 0
    try:
        while pos < end:
            name_end = pos + 1 + block[pos]
            if name_end >= end:
                raise _Corrupt("a header runs past the header block")
            name = block[pos + 1 : name_end].decode()
            kind = block[name_end]
            pos = name_end + 1
            value: HeaderValue
            if kind == 7 or kind == 6:
                start = pos + 2
                pos = start + int.from_bytes(block[pos:start], "big")
                if pos > end:
                    raise _Corrupt("a header runs past the header block")
                value = block[start:pos].decode() if kind == 7 else block[start:pos]
            elif kind == 0 or kind == 1:
                value = kind == 0
            elif kind in _INTEGERS:
                start = pos
                pos += _INTEGERS[kind]
                if pos > end:
                    raise _Corrupt("a header runs past the header block")
                value = int.from_bytes(block[start:pos], "big", signed=True)
            elif kind == 9:
                start = pos
                pos += 16
                if pos > end:
                    raise _Corrupt("a header runs past the header block")
                value = block[start:pos]
            else:
                raise _Corrupt(f"unknown header value type {kind}")
            if name in headers:
                raise _Corrupt("a header name appears twice")
            headers[name] = value
    except UnicodeDecodeError:
        raise _Corrupt("a header is not UTF-8") from None
    return headers
