"""Anthropic Messages SSE, for bench_streaming.py."""

from __future__ import annotations

import json

from openkoi import ChatRequest, Message, ModelProvider
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret

NAME = "anthropic (SSE)"
CONTENT_TYPE = "text/event-stream; charset=utf-8"


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def stream_body(events: int) -> bytes:
    usage = {"input_tokens": 5, "cache_read_input_tokens": 0, "output_tokens": 1}
    message = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "usage": usage,
    }
    parts = [
        _event("message_start", {"type": "message_start", "message": message}),
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _event("ping", {"type": "ping"}),
    ]
    for i in range(events):
        delta = {"type": "text_delta", "text": f"tok{i} "}
        parts.append(
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    parts.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    parts.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": events},
            },
        )
    )
    parts.append(_event("message_stop", {"type": "message_stop"}))
    return "".join(parts).encode()


def make_provider(base_url: str) -> ModelProvider:
    from openkoi_providers.anthropic import AnthropicProvider

    return AnthropicProvider(
        ProviderSettings(
            id="anthropic", name="Anthropic", base_url=base_url, api_key=Secret("sk-ant-bench")
        )
    )


def make_request() -> ChatRequest:
    return ChatRequest(model="m", messages=[Message.user("stream")])
