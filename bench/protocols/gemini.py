"""Gemini streamGenerateContent?alt=sse (CRLF-separated events), for bench_streaming.py."""

from __future__ import annotations

import json

from openkoi import ChatRequest, Message, ModelProvider
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret

NAME = "gemini (SSE)"
CONTENT_TYPE = "text/event-stream"


def stream_body(events: int) -> bytes:
    parts = []
    for i in range(events):
        candidate: dict[str, object] = {
            "content": {"parts": [{"text": f"tok{i} "}], "role": "model"},
            "index": 0,
        }
        if i == events - 1:
            candidate["finishReason"] = "STOP"
        data = {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": i + 1,
                "totalTokenCount": i + 6,
            },
            "modelVersion": "m",
        }
        parts.append(f"data: {json.dumps(data)}\r\n\r\n")  # Gemini frames events with CRLF CRLF
    return "".join(parts).encode()


def make_provider(base_url: str) -> ModelProvider:
    from openkoi_providers.gemini import GeminiProvider

    return GeminiProvider(
        ProviderSettings(
            id="google", name="Google Gemini", base_url=base_url, api_key=Secret("AIza-bench-key")
        )
    )


def make_request() -> ChatRequest:
    return ChatRequest(model="m", messages=[Message.user("stream")])
