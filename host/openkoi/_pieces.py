"""Network reads cut into bounded pieces before a stream's splitter sees them.

A read is normally a few kilobytes, but a compressed stream decodes each one whole: 64 KiB of
gzip can be 64 MiB of text. Handed to the SSE or NDJSON splitter in one go, that was tens of
seconds of work in one synchronous call, during which no deadline could fire (a blank-line bomb
held a call with a 5 s total for 35 s). Cut into pieces, the splitter's work per piece is
bounded and the call's clock is asked between pieces, as between network reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

S = TypeVar("S", str, bytes)

MAX_PIECE = 64 * 1024  # characters or bytes: several network reads' worth


async def pieces(reads: AsyncIterator[S], limit: int = MAX_PIECE) -> AsyncIterator[S]:
    """Each item of `reads`, or for one longer than `limit`, its consecutive slices of `limit`.
    Closing this closes `reads`."""
    try:
        async for data in reads:
            if len(data) <= limit:
                yield data
                continue
            for start in range(0, len(data), limit):
                yield data[start : start + limit]
    finally:
        aclose = getattr(reads, "aclose", None)
        if aclose is not None:
            await aclose()
