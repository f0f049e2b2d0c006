"""Whole answers read outside `_post_json` keep to the call's deadlines too: a model listing
(`models()` of every provider that asks its server) and Gemini's JSON-array answer to a stream.

Each server is real and misbehaves for real: it never answers (the first_token deadline), or it
sends its headers and then drips the body a byte at a time (idle). The call must fail within
its deadline plus a second, naming that deadline."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _fault_providers import make
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import ProviderTimeoutError
from openkoi._provider import collect
from openkoi._types import ChatRequest, Message

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
SLACK = 1.0
DEADLINE = 1.0
LISTING_FAMILIES = ("openai", "anthropic", "google", "ollama")


def spaces() -> Iterator[bytes]:
    """A JSON body that never completes: one space a chunk, sent every 0.3 s for a minute."""
    yield b"["
    for _ in range(200):
        yield b" "


def dripping(request: Recorded) -> Reply:
    return Reply(chunks=spaces(), chunk_delay=0.3, headers={"content-type": "application/json"})


async def times_out(call: Callable[[], Awaitable[Any]], deadline: str) -> float:
    """Run `call`; it must fail on `deadline` within DEADLINE + SLACK s. Bounded, so a broken
    deadline fails the test rather than hanging it."""
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as info, anyio.fail_after(DEADLINE + SLACK + 5):
        await call()
    elapsed = time.monotonic() - started
    assert info.value.deadline == deadline and deadline in str(info.value)
    assert DEADLINE - 0.05 <= elapsed <= DEADLINE + SLACK, f"failed after {elapsed:.2f} s"
    return elapsed


@pytest.mark.parametrize("family", LISTING_FAMILIES)
async def test_a_dripped_listing_hits_idle(serve: Serve, family: str) -> None:
    server = serve(dripping)
    provider = make(family, server.url, first_token=10.0, idle=DEADLINE, total=30.0)
    try:
        await times_out(provider.models, "idle")
    finally:
        await provider.aclose()


@pytest.mark.parametrize("family", LISTING_FAMILIES)
async def test_a_listing_never_answered_hits_first_token(serve: Serve, family: str) -> None:
    server = serve(lambda r: Reply(delay=3600))
    provider = make(family, server.url, first_token=DEADLINE, idle=10.0, total=30.0)
    try:
        await times_out(provider.models, "first_token")
    finally:
        await provider.aclose()


async def test_a_listing_in_time_is_still_read(serve: Serve) -> None:
    server = serve(lambda r: Reply.json({"data": [{"id": "m-1"}]}))
    provider = make("openai", server.url, first_token=DEADLINE, idle=DEADLINE)
    try:
        with anyio.fail_after(10):
            assert [m.id for m in await provider.models()] == ["m-1"]
    finally:
        await provider.aclose()


async def test_gemini_json_array_stream_dripped_hits_idle(serve: Serve) -> None:
    server = serve(dripping)
    provider = make("google", server.url, first_token=10.0, idle=DEADLINE, total=30.0)
    request = ChatRequest(messages=[Message.user("hi")])
    try:
        await times_out(lambda: collect(provider.chat_stream(request)), "idle")
    finally:
        await provider.aclose()


async def test_gemini_json_array_stream_dripped_hits_total(serve: Serve) -> None:
    server = serve(dripping)
    provider = make("google", server.url, first_token=10.0, idle=10.0, total=DEADLINE)
    request = ChatRequest(messages=[Message.user("hi")])
    try:
        await times_out(lambda: collect(provider.chat_stream(request)), "total")
    finally:
        await provider.aclose()
