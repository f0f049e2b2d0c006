"""Response bodies read under bounds: whole bodies under a cap, and what is left of a stream.

A JSON answer (a chat, embeddings, a token endpoint's reply) and an error's body are read whole
before they are parsed. Read without a bound, a server that never ends its body, or a small
gzip body that decodes to gigabytes, grows the process's memory until the deadline fires
(about 250 MB a second on loopback). So every whole-body read goes through here: the decoded
bytes are counted as they arrive and the read stops at the cap. An answer over its cap is a
`MalformedResponseError` (transient: the chain moves on); an error's body is cut at its cap,
since only its first few hundred characters are ever shown.

A stream is finished by its protocol's last event (`[DONE]`, `message_stop`) before its HTTP
body ends: the chunked body's terminator is still unread, so closing the response would close
its connection, and the next call would pay a new TCP connection and TLS handshake. `finish`
reads what is left, up to `FINISH_BYTES` and for at most `FINISH_SECONDS`, so the connection
goes back to the pool; a body that goes on, or does not end at once, is closed as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio
import httpx

from openkoi._deadline import clock_of
from openkoi._errors import MalformedResponseError

# The largest answers are embeddings of big batches (2,048 inputs of 3,072 floats: ~130 MB of
# JSON); per provider: `max_response_bytes` in `[providers.<id>]`.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024
FINISH_BYTES = 64 * 1024  # after a stream's last event: its terminator, a stray keep-alive line
FINISH_SECONDS = 0.05
_READER = "openkoi.stream-reader"  # response.extensions: (the stream's reader, what it reads)

T = TypeVar("T")


async def read_capped(
    response: httpx.Response, limit: int, *, provider: str, what: str = "the answer"
) -> bytes:
    """The decoded body, or `MalformedResponseError` as soon as it passes `limit` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(what, limit, provider, response.status_code)
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise _too_large(what, limit, provider, response.status_code)
        parts.append(part)
    return b"".join(parts)


async def read_answer(
    response: httpx.Response, limit: int, *, provider: str, what: str = "the answer"
) -> bytes:
    """A whole answer under `limit` (`read_capped`), or an error status's start (`read_start`),
    as the status says."""
    if response.status_code >= 400:
        return await read_start(response)
    return await read_capped(response, limit, provider=provider, what=what)


async def read_timed(
    response: httpx.Response, limit: int, *, provider: str, what: str = "the answer"
) -> bytes:
    """`read_answer` within the deadlines of the request's clock (`clock_of`), when it was sent
    with one: its headers were the answer's one event, so `idle` (and `total`) bound the rest
    of the body, as for any call that does not stream. Without this a server dripping a byte
    now and then holds the call for as long as it likes."""
    clock = clock_of(response)
    if clock is None:
        return await read_answer(response, limit, provider=provider, what=what)
    clock.event()
    return await clock.wait(read_answer(response, limit, provider=provider, what=what))


async def read_start(response: httpx.Response, limit: int = MAX_ERROR_BODY_BYTES) -> bytes:
    """At most the first `limit` decoded bytes of the body; the rest is never read."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        parts.append(part[: limit - size])
        size += len(parts[-1])
        if size >= limit:
            break
    return b"".join(parts)


def hold_reader(
    response: httpx.Response, batches: AsyncIterator[T], reads: AsyncIterator[Any]
) -> AsyncIterator[T]:
    """`batches` (the reader of a stream, reading `reads`), kept with its response, so `finish`
    can go on reading where it stopped and close it itself: left to the garbage collector, its
    closing would close the connection whenever it happened, even while `finish` reads."""
    response.extensions[_READER] = (batches, reads)
    return batches


async def finish(response: httpx.Response) -> bool:
    """Read the rest of a stream whose last event was handled, within the bounds, then close
    its reader; True when the body ended (its connection goes back to the pool when the
    response is closed). Never raises."""
    held = response.extensions.pop(_READER, None)
    if held is None or response.is_closed:
        return False
    batches, reads = held
    ended = False
    try:
        left = FINISH_BYTES
        with anyio.move_on_after(FINISH_SECONDS):
            async for part in reads:
                left -= len(part)
                if left < 0:
                    break
            else:
                ended = True
    except Exception:  # whatever went wrong, the response is closed (and its connection)
        ended = False
    await _close_reader(batches)
    return ended


async def forget_reader(response: httpx.Response) -> None:
    """Close the reader of a stream that did not finish (its connection is closed with it)."""
    held = response.extensions.pop(_READER, None)
    if held is not None:
        await _close_reader(held[0])


async def _close_reader(batches: Any) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await batches.aclose()


def _too_large(what: str, limit: int, provider: str, status: int) -> MalformedResponseError:
    return MalformedResponseError(
        f"{what} is larger than {_size(limit)} (the host's cap)",
        provider=provider,
        status=status,
    )


def _size(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{limit:,} bytes"
