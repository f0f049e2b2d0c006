"""OpenAI Chat Completions SSE, for bench_streaming.py."""

from __future__ import annotations

import json

from openkoi import ChatRequest, Message, ModelProvider
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret

NAME = "openai-compatible (SSE)"
CONTENT_TYPE = "text/event-stream"


def stream_body(events: int) -> bytes:
    parts = []
    for i in range(events):
        data = {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
        parts.append(f"data: {json.dumps(data)}\n\n")
    parts.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    parts.append(
        'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":'
        + str(events)
        + "}}\n\n"
    )
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def make_provider(base_url: str) -> ModelProvider:
    from openkoi_providers.openai_compat import OpenAICompatibleProvider

    return OpenAICompatibleProvider(
        ProviderSettings(id="openai", name="OpenAI", base_url=base_url, api_key=Secret("sk-bench"))
    )


def make_request() -> ChatRequest:
    return ChatRequest(model="m", messages=[Message.user("stream")])
