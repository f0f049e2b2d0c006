"""An error's message comes from a string field only, never from a Python repr of whatever a
server put under "message" or "error"; secrets are still scrubbed from what is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _server import Reply
from openkoi import ChatRequest, MalformedResponseError, Message, ProviderError, ServerError
from openkoi._http import extract_error
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.anthropic import AnthropicProvider
from openkoi_providers.gemini import GeminiProvider
from openkoi_providers.ollama import create as ollama
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

KEY = "sk-error-text-0123456789abcdef"
NOT_TEXT = {"role": "assistant", "content": f"leaked {KEY}"}


def _request() -> ChatRequest:
    return ChatRequest(model="m", messages=[Message.user("hi")])


def _no_repr(error: ProviderError) -> None:
    shown = str(error) + repr(error)
    assert "{'" not in shown and "['" not in shown
    assert KEY not in shown


def test_extract_error_reads_strings_only() -> None:
    assert extract_error({"message": NOT_TEXT}) == (None, None, None)
    assert extract_error({"error": {"message": ["a"], "code": {"x": 1}, "type": 3}}) == (
        None,
        None,
        "3",
    )
    assert extract_error({"error": {"message": "bad", "code": 429}}) == ("bad", "429", None)


async def test_ollama_whole_answer_where_a_stream_was_asked(serve: Any) -> None:
    """Ollama's non-streaming 200 answer has a dict under "message": not an error text."""
    answer = {"model": "m", "message": NOT_TEXT, "done": True, "done_reason": "stop"}
    server = serve(lambda _: Reply.json(answer))
    provider = ollama(ProviderSettings(id="ollama", name="Ollama", base_url=server.url))
    try:
        with pytest.raises(MalformedResponseError) as info:
            await collect(provider.chat_stream(_request()))
    finally:
        await provider.aclose()
    _no_repr(info.value)
    assert "stream" in info.value.message


async def test_ollama_error_that_is_not_text(serve: Any) -> None:
    server = serve(lambda _: Reply.json({"error": NOT_TEXT}))
    provider = ollama(ProviderSettings(id="ollama", name="Ollama", base_url=server.url))
    try:
        with pytest.raises(ServerError) as info:
            await provider.chat(_request())
    finally:
        await provider.aclose()
    _no_repr(info.value)


async def test_openai_error_message_that_is_not_text(serve: Any) -> None:
    body = {"error": {"message": NOT_TEXT, "code": {"nested": KEY}, "type": ["x"]}}
    server = serve(lambda _: Reply.json(body, status=500))
    provider = OpenAICompatibleProvider(
        ProviderSettings(id="openai", name="OpenAI", base_url=server.url, api_key=Secret(KEY))
    )
    try:
        with pytest.raises(ServerError) as info:
            await provider.chat(_request())
    finally:
        await provider.aclose()
    _no_repr(info.value)
    assert info.value.code is None


async def test_anthropic_stream_error_message_that_is_not_text(serve: Any) -> None:
    event = {"type": "error", "error": {"type": {"x": 1}, "message": NOT_TEXT}}
    server = serve(lambda _: Reply.sse([f"event: error\ndata: {json.dumps(event)}\n\n"]))
    provider = AnthropicProvider(
        ProviderSettings(id="anthropic", name="Anthropic", base_url=server.url, api_key=Secret(KEY))
    )
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider.chat_stream(_request()))
    finally:
        await provider.aclose()
    _no_repr(info.value)
    assert "reported an error" in info.value.message


async def test_gemini_error_message_that_is_not_text(serve: Any) -> None:
    body = {"error": {"code": 500, "message": NOT_TEXT, "status": ["INTERNAL"]}}
    server = serve(lambda _: Reply.json(body, status=500))
    provider = GeminiProvider(
        ProviderSettings(id="google", name="Gemini", base_url=server.url, api_key=Secret(KEY))
    )
    try:
        with pytest.raises(ServerError) as info:
            await provider.chat(_request())
    finally:
        await provider.aclose()
    _no_repr(info.value)
