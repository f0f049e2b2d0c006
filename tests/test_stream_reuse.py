"""A finished stream gives its connection back to the pool (`openkoi._body.finish`): the next
call does not pay a new TCP connection and TLS handshake. A stream that is not finished (the
reader stopped early, the body goes on past its last event or does not end at once) closes its
connection as before, and nothing of it reaches the caller. Real loopback servers that count
the connections they accept."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _server import Recorded, Reply
from openkoi._body import FINISH_SECONDS
from openkoi._config import Config
from openkoi._provider import collect
from openkoi._registry import ProviderRegistry
from openkoi._transport import DEFAULT_IDLE_CONNECTIONS
from openkoi._types import ChatRequest, Message
from test_response_caps import openai  # the OpenAI-compatible provider, short deadlines
from test_typed_failures import WIRES, Wire, _aws_env, _streaming  # noqa: F401

pytestmark = pytest.mark.anyio

KEY = "sk-reuse-0123456789abcdef"
REQUEST = ChatRequest(model="gpt-4o-mini", messages=[Message.user("hi")])


def delta(text: str) -> str:
    event = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(event)}\n\n"


def answer(words: list[str], after_done: list[str] | None = None) -> Reply:
    return Reply.sse([*(delta(w) for w in words), "data: [DONE]\n\n", *(after_done or [])])


async def text_of(provider: Any, request: ChatRequest = REQUEST) -> str:
    return (await collect(provider.chat_stream(request))).content


async def test_streams_one_after_another_share_one_connection(serve: Any) -> None:
    server = serve(lambda r: answer(["a", "b", "c"]))
    provider = openai(server.url)
    for _ in range(5):
        assert await text_of(provider) == "abc"
    assert server.connections == 1
    assert len(server.requests) == 5
    await provider.aclose()


@pytest.mark.parametrize("name", sorted(WIRES))
async def test_every_built_in_provider_reuses_a_finished_streams_connection(
    serve: Any, name: str
) -> None:
    wire: Wire = WIRES[name]
    server = serve(lambda r: wire.frame(wire.events))
    make = _streaming(wire.make) if name == "openai-oauth" else wire.make
    provider = make(server.url)
    request = ChatRequest(model=wire.model, messages=[Message.user("hi")])
    texts = [await text_of(provider, request) for _ in range(3)]
    assert texts[0] and texts == [texts[0]] * 3
    assert server.connections == 1, f"{name}: {server.connections} connections for 3 streams"
    await provider.aclose()


async def test_many_concurrent_streams_reuse_their_connections(serve: Any) -> None:
    server = serve(lambda r: answer([f"w{i} " for i in range(50)]))
    provider = openai(server.url)
    expected = "".join(f"w{i} " for i in range(50))
    for _ in range(5):
        texts = await asyncio.gather(*(text_of(provider) for _ in range(100)))
        assert texts == [expected] * 100
    assert len(server.requests) == 500
    # every round after the first found the connections kept idle (and only those) in the pool
    assert server.connections <= 100 + 4 * (100 - DEFAULT_IDLE_CONNECTIONS)
    assert not server.errors
    await provider.aclose()


async def test_a_body_that_goes_on_after_done_is_closed_not_reused(serve: Any) -> None:
    """Past its last event the body is not read for long: more than the bound, or a body that
    does not end at once, closes the connection; the caller has its answer either way."""

    def endless() -> Iterator[str]:
        yield delta("a")
        yield "data: [DONE]\n\n"
        while True:
            yield ": keep-alive " + "x" * 4096 + "\n"

    replies = [Reply.sse(endless()), answer(["b"], after_done=[": late\n"])]
    # the answer and its [DONE] at once, then silence for 3 s before the body goes on
    stalled = Reply.sse([delta("c") + "data: [DONE]\n\n", ": never ends\n"], chunk_delay=3.0)
    queue = [replies[0], replies[1], stalled, answer(["d"])]
    server = serve(lambda r: queue.pop(0))
    provider = openai(server.url)
    assert await text_of(provider) == "a"  # the endless tail: closed after the bound
    assert await text_of(provider) == "b"  # a short tail that ends: read, connection kept
    started = time.monotonic()
    assert await text_of(provider) == "c"  # a tail that stalls: not waited for
    assert time.monotonic() - started < 1.0
    assert await text_of(provider) == "d"
    # endless (closed), short tail (kept, then reused by the stalled one, which closes it), d
    assert server.connections == 3
    await provider.aclose()


async def test_a_reader_that_stops_early_closes_the_connection(serve: Any) -> None:
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        return Reply.sse(
            [delta(f"w{i}") for i in range(200)] + ["data: [DONE]\n\n"], chunk_delay=0.01
        )

    server = serve(handler)
    provider = openai(server.url)
    stream = provider.chat_stream(REQUEST)
    first = await anext(stream)
    assert first.delta == "w0"
    await stream.aclose()  # type: ignore[attr-defined]
    started = time.monotonic()
    assert (await text_of(provider)).startswith("w0w1")
    assert time.monotonic() - started < 10
    assert server.connections == 2  # the abandoned stream's connection was not handed on
    await provider.aclose()


def test_the_finish_bound_is_short() -> None:
    assert FINISH_SECONDS <= 0.1


async def test_idle_connections_is_the_number_kept_open(serve: Any) -> None:
    server = serve(lambda r: answer(["a"]))
    provider = openai(server.url)
    provider.settings.idle_connections = 0
    for _ in range(3):
        assert await text_of(provider) == "a"
    assert server.connections == 3  # none kept: each call connects anew
    await provider.aclose()
    assert DEFAULT_IDLE_CONNECTIONS >= 1


def test_idle_connections_is_set_per_provider_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = Config.model_validate({"providers": {"openai": {"idle_connections": 0}}})
    registry = ProviderRegistry(config)
    assert registry.settings("openai").idle_connections == 0
    assert registry.settings("anthropic").idle_connections == DEFAULT_IDLE_CONNECTIONS
    with pytest.raises(ValueError, match="idle_connections"):
        Config.model_validate({"providers": {"openai": {"idle_connections": -1}}})
