"""A refusal ends with the same stop reason streamed or whole, on every protocol that has one.

OpenAI ends a refusal with finish_reason "stop" and the Responses API with status "completed";
the whole answer turns that into "refusal", and the stream must agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import load_case
from _oauth_server import chatgpt_access_token
from _server import Recorded, Reply
from openkoi import ChatRequest, Message
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.chatgpt import ChatGPTProvider
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio


def _openai(url: str) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings(
            id="openai", name="OpenAI", base_url=url + "/v1", api_key=Secret("sk-test-123456")
        )
    )


@pytest.mark.parametrize("name", ["refusal", "refusal_stream"])
async def test_openai_corpus_refusal_stops_as_refusal(name: str, serve: Any) -> None:
    case = load_case("openai-chat", name)
    server = serve(lambda _: case.reply(61))
    provider = _openai(server.url)
    request = ChatRequest(model=case.request["body"]["model"], messages=[Message.user("hi")])
    try:
        if case.is_stream:
            chunks = [chunk async for chunk in provider.chat_stream(request)]
            stops = [c.stop_reason for c in chunks if c.stop_reason is not None]
            assert stops == ["refusal"]
            response = await collect(provider.chat_stream(request))
        else:
            response = await provider.chat(request)
    finally:
        await provider.aclose()
    assert response.refusal
    assert response.stop_reason == "refusal"


async def test_openai_stream_without_refusal_still_ends_the_turn(serve: Any) -> None:
    events = [
        'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        "data: [DONE]\n\n",
    ]
    server = serve(lambda _: Reply.sse(events))
    provider = _openai(server.url)
    try:
        response = await collect(provider.chat_stream(ChatRequest(model="m", messages=[])))
    finally:
        await provider.aclose()
    assert (response.content, response.stop_reason) == ("Hi", "end_turn")


def _responses_events() -> list[str]:
    item = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    }
    events: list[dict[str, Any]] = [
        {"type": "response.refusal.delta", "output_index": 0, "delta": "I can't"},
        {"type": "response.refusal.delta", "output_index": 0, "delta": " help with that."},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {
            "type": "response.completed",
            "response": {"status": "completed", "model": "gpt-5", "output": [item]},
        },
    ]
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


async def test_responses_stream_refusal_stops_as_refusal(serve: Any) -> None:
    def handler(request: Recorded) -> Reply:
        return Reply.sse(_responses_events())

    server = serve(handler)
    provider = ChatGPTProvider(
        ProviderSettings(
            id="openai-oauth",
            name="ChatGPT",
            base_url=f"{server.url}/backend-api/codex",
            api_key=Secret(
                chatgpt_access_token(3600, 1), source="codex-cli:/test/auth.json", kind="oauth"
            ),
            options={"stream": True},
        )
    )
    try:
        response = await collect(
            provider.chat_stream(ChatRequest(model="gpt-5", messages=[Message.user("hi")]))
        )
    finally:
        await provider.aclose()
    assert response.refusal == "I can't help with that."
    assert response.stop_reason == "refusal"
