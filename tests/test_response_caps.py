"""A server cannot grow the host's memory without bound through a body it never ends: every
whole body a provider reads (an answer, an error, a model list, a token endpoint's reply) is
read under a cap (`openkoi._body`). Real loopback servers that count what they managed to send.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _server import Recorded, Reply
from openkoi._body import MAX_ERROR_BODY_BYTES, MAX_RESPONSE_BYTES
from openkoi._config import Config
from openkoi._errors import MalformedResponseError, ServerError
from openkoi._provider import HTTPProvider, ProviderSettings, collect
from openkoi._registry import ProviderRegistry
from openkoi._secrets import Secret
from openkoi._timeouts import Timeouts
from openkoi._types import ChatRequest, Message
from openkoi.credentials._device_flow import MAX_REPLY_BYTES, post
from openkoi_providers._listing import get_listing
from openkoi_providers.openai_compat import OpenAICompatibleProvider
from test_typed_failures import WIRES, _aws_env  # noqa: F401  (the fixture Bedrock needs)

pytestmark = pytest.mark.anyio

KEY = "sk-caps-0123456789abcdef"
CAP = 256 * 1024
PIECE = 64 * 1024
QUICK = Timeouts(connect=5.0, first_token=20.0, idle=20.0, total=30.0)


class Endless:
    """A body that never ends; counts the bytes it produced (what the client made it send)."""

    def __init__(self, start: bytes = b'{"choices": [{"message": {"content": "') -> None:
        self.start = start
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        self.sent += len(self.start)
        yield self.start
        while True:
            self.sent += PIECE
            yield b"x" * PIECE


def openai(url: str, cap: int = CAP) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings(
            id="openai",
            name="OpenAI",
            base_url=url + "/v1",
            api_key=Secret(KEY),
            timeouts=QUICK,
            max_response_bytes=cap,
        )
    )


REQUEST = ChatRequest(model="gpt-4o-mini", messages=[Message.user("hi")])


async def test_an_answer_that_never_ends_is_refused_at_the_cap(serve: Any) -> None:
    body = Endless()
    server = serve(lambda r: Reply(chunks=body, headers={"content-type": "application/json"}))
    provider = openai(server.url)
    started = time.monotonic()
    with pytest.raises(MalformedResponseError) as caught:
        await provider.chat(REQUEST)
    assert time.monotonic() - started < 5
    assert "larger than 262,144 bytes" in str(caught.value) and caught.value.transient
    # The read stopped at the cap: what the server got out is the cap plus what the sockets
    # buffer, not the seconds until a deadline at loopback speed.
    assert body.sent < CAP + 16 * 1024 * 1024
    await provider.aclose()


async def test_a_declared_length_over_the_cap_is_refused_before_reading(serve: Any) -> None:
    body = b'{"choices": []}' + b" " * (CAP + 1)
    server = serve(lambda r: Reply(body=body, headers={"content-type": "application/json"}))
    provider = openai(server.url)
    with pytest.raises(MalformedResponseError, match="larger than 262,144 bytes"):
        await provider.chat(REQUEST)
    await provider.aclose()


async def test_a_gzip_bomb_is_refused_at_the_cap(serve: Any) -> None:
    """1 MiB on the wire that decodes to 1 GiB: the cap counts decoded bytes."""
    bomb = gzip.compress(b"[" + b" " * (1024 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 2 * 1024 * 1024
    server = serve(
        lambda r: Reply(
            body=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"}
        )
    )
    provider = openai(server.url, cap=8 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(MalformedResponseError, match="larger than 8 MiB"):
        await provider.chat(REQUEST)
    assert time.monotonic() - started < 5
    await provider.aclose()


async def test_an_answer_at_the_cap_is_read_and_one_byte_over_is_not(serve: Any) -> None:
    def answer(size: int) -> bytes:
        shell = {"choices": [{"message": {"role": "assistant", "content": ""}}]}
        empty = len(json.dumps(shell))
        shell["choices"][0]["message"]["content"] = "a" * (size - empty)
        data = json.dumps(shell).encode()
        assert len(data) == size
        return data

    sizes = [CAP, CAP + 1]
    server = serve(
        lambda r: Reply(chunks=[answer(sizes.pop(0))], headers={"content-type": "application/json"})
    )
    provider = openai(server.url)
    response = await provider.chat(REQUEST)
    assert len(response.content) > CAP - 100
    with pytest.raises(MalformedResponseError):
        await provider.chat(REQUEST)
    await provider.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_an_error_body_that_never_ends_still_gives_the_mapped_error(
    serve: Any, stream: bool
) -> None:
    body = Endless(b'{"error": {"message": "upstream exploded", "type": "server_error"')
    server = serve(
        lambda r: Reply(status=500, chunks=body, headers={"content-type": "application/json"})
    )
    provider = openai(server.url)
    started = time.monotonic()
    with pytest.raises(ServerError) as caught:
        if stream:
            await collect(provider.chat_stream(REQUEST))
        else:
            await provider.chat(REQUEST)
    assert time.monotonic() - started < 5
    assert caught.value.status == 500
    assert body.sent < MAX_ERROR_BODY_BYTES + 16 * 1024 * 1024
    await provider.aclose()


@pytest.mark.parametrize("name", sorted(WIRES))
async def test_every_built_in_provider_caps_its_whole_answer(serve: Any, name: str) -> None:
    wire = WIRES[name]
    body = Endless(b'{"x": "')
    server = serve(lambda r: Reply(chunks=body, headers={"content-type": "application/json"}))
    provider: HTTPProvider = wire.make(server.url)
    provider.settings.max_response_bytes = CAP
    provider.settings.options["stream"] = False
    request = ChatRequest(model=wire.model, messages=[Message.user("hi")])
    with pytest.raises(MalformedResponseError, match="larger than"):
        await provider.chat(request)
    assert body.sent < CAP + 16 * 1024 * 1024
    await provider.aclose()


async def test_a_model_list_and_a_token_reply_are_capped(serve: Any) -> None:
    listing, token = Endless(b'{"data": ["'), Endless(b'{"access_token": "')
    server = serve(
        lambda r: Reply(
            chunks=listing if r.path.endswith("/models") else token,
            headers={"content-type": "application/json"},
        )
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(MalformedResponseError, match="the model list is larger than 1 MiB"):
            await get_listing(
                client,
                "/models",
                provider="openai",
                headers={},
                secrets=(),
                on_error=lambda response, text: RuntimeError(text),
                limit=1024 * 1024,
            )
        with pytest.raises(MalformedResponseError, match="larger than 1 MiB"):
            await post(client, server.url + "/token", provider="github", form={"a": "b"})
    assert listing.sent < 1024 * 1024 + 16 * 1024 * 1024
    assert token.sent < MAX_REPLY_BYTES + 16 * 1024 * 1024


def test_the_cap_is_set_per_provider_in_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = Config.model_validate({"providers": {"openai": {"max_response_bytes": 1 << 30}}})
    registry = ProviderRegistry(config)
    assert registry.settings("openai").max_response_bytes == 1 << 30
    assert registry.settings("anthropic").max_response_bytes == MAX_RESPONSE_BYTES
    with pytest.raises(ValueError, match="max_response_bytes"):
        Config.model_validate({"providers": {"openai": {"max_response_bytes": 10}}})


async def test_a_small_answer_reads_as_before(serve: Any) -> None:
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        return Reply.json({"choices": [{"message": {"role": "assistant", "content": "hello"}}]})

    server = serve(handler)
    provider = openai(server.url)
    assert (await provider.chat(REQUEST)).content == "hello"
    assert len(seen) == 1
    await provider.aclose()
