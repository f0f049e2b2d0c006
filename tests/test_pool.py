"""The connection pool holds real concurrency: 500 long streams through one provider at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest
from _routing_support import delta
from _server import LoopbackServer, Recorded, Reply
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, Message
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

STREAMS = 500
EVENTS = 40
GAP = 0.1  # seconds between two events: each stream lasts about 4 s


def long_stream(request: Recorded) -> Reply:
    events = [delta(f"w{i} ") for i in range(EVENTS)]
    events.append('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
    events.append("data: [DONE]\n\n")
    return Reply.sse(events, chunk_delay=GAP)


async def test_500_concurrent_long_streams_all_complete(
    serve: Callable[[Callable[[Recorded], Reply]], LoopbackServer],
) -> None:
    server = serve(long_stream)
    provider = OpenAICompatibleProvider(
        ProviderSettings(
            id="openai",
            name="OpenAI",
            base_url=server.url,
            api_key=Secret("sk-test-0123456789"),
            default_model="m",
        )
    )
    request = ChatRequest(messages=[Message.user("hi")])
    first_chunk: list[float] = []
    finished: list[float] = []
    texts: list[str] = []

    async def one() -> None:
        parts = []
        async for chunk in provider.chat_stream(request):
            if not parts:
                first_chunk.append(time.monotonic())
            parts.append(chunk.delta)
        finished.append(time.monotonic())
        texts.append("".join(parts))

    started = time.monotonic()
    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for _ in range(STREAMS):
                    group.start_soon(one)
    finally:
        await provider.aclose()
    elapsed = time.monotonic() - started
    expected = "".join(f"w{i} " for i in range(EVENTS))
    assert len(texts) == STREAMS and all(text == expected for text in texts)
    # They ran at once, not a hundred at a time: every stream had started before any ended.
    assert max(first_chunk) < min(finished), "some streams waited for a connection slot"
    assert server.connections == STREAMS
    print(f"{STREAMS} streams of {EVENTS} events in {elapsed:.1f} s")
