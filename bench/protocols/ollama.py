"""Ollama /api/chat NDJSON, for bench_streaming.py."""

from __future__ import annotations

import json

from openkoi import ChatRequest, Message, ModelProvider
from openkoi._provider import ProviderSettings

NAME = "ollama (NDJSON)"
CONTENT_TYPE = "application/x-ndjson"


def stream_body(events: int) -> bytes:
    lines = []
    for i in range(events):
        message = {"role": "assistant", "content": f"tok{i} "}
        lines.append(
            {"model": "m", "created_at": "2025-01-01T00:00:00Z", "message": message, "done": False}
        )
    lines.append(
        {
            "model": "m",
            "created_at": "2025-01-01T00:00:01Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 5,
            "eval_count": events,
        }
    )
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def make_provider(base_url: str) -> ModelProvider:
    from openkoi_providers.ollama import create

    return create(ProviderSettings(id="ollama", name="Ollama", base_url=base_url))


def make_request() -> ChatRequest:
    return ChatRequest(model="m", messages=[Message.user("stream")])
