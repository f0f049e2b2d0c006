"""Whole response bodies, read under a cap.

A JSON answer (a chat, embeddings, a token endpoint's reply) and an error's body are read whole
before they are parsed. Read without a bound, a server that never ends its body, or a small
gzip body that decodes to gigabytes, grows the process's memory until the deadline fires
(about 250 MB a second on loopback). So every whole-body read goes through here: the decoded
bytes are counted as they arrive and the read stops at the cap. An answer over its cap is a
`MalformedResponseError` (transient: the chain moves on); an error's body is cut at its cap,
since only its first few hundred characters are ever shown.
"""

from __future__ import annotations

import httpx

from openkoi._errors import MalformedResponseError

# The largest answers are embeddings of big batches (2,048 inputs of 3,072 floats: ~130 MB of
# JSON); per provider: `max_response_bytes` in `[providers.<id>]`.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024


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


def _too_large(what: str, limit: int, provider: str, status: int) -> MalformedResponseError:
    return MalformedResponseError(
        f"{what} is larger than {_size(limit)} (the host's cap)",
        provider=provider,
        status=status,
    )


def _size(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{limit:,} bytes"
