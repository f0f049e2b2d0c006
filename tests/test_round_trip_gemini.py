"""A Gemini model turn goes back with its thought signatures where Gemini put them.

Every recorded exchange in ../shared/corpus whose answer carries a thoughtSignature or thought
parts is replayed from a real socket; the second request, sent by a fresh provider (so nothing
is remembered by the instance), must hold the recorded parts byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import load_case
from _round_trip import results_or, second_body
from openkoi import ChatRequest, Message, ToolDef
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi_providers.gemini import GeminiProvider

pytestmark = pytest.mark.anyio

FINAL = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "Done."}]}, "finishReason": "STOP"}
    ],
    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
}


def _provider(url: str) -> GeminiProvider:
    return GeminiProvider(
        ProviderSettings(
            id="google",
            name="Google Gemini",
            base_url=url,
            api_key=Secret("gm-round-trip-0123456789"),
            default_model="gemini-2.5-flash",
        )
    )


def recorded_parts(body: bytes) -> list[dict[str, Any]]:
    """Every part of the first candidate, in order, from a whole answer, SSE or a JSON array."""
    text = body.decode()
    if text.lstrip().startswith("data:") or "\ndata:" in text:
        events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    else:
        loaded = json.loads(text)
        events = loaded if isinstance(loaded, list) else [loaded]
    parts: list[dict[str, Any]] = []
    for event in events:
        for candidate in (event.get("candidates") or [])[:1]:
            parts += (candidate.get("content") or {}).get("parts") or []
    return parts


@pytest.mark.parametrize(
    "name",
    [
        "parallel_function_calls",
        "parallel_function_calls_stream_sse",
        "stream_json_array_function_call",
        "thinking_stream_sse",
    ],
)
async def test_recorded_parts_go_back_byte_for_byte(name: str, serve: Any) -> None:
    case = load_case("gemini", name)
    stream = "stream" in case.request["path"]
    expected = recorded_parts(case.body)
    assert any("thoughtSignature" in p or p.get("thought") for p in expected)
    names = sorted({p["functionCall"]["name"] for p in expected if "functionCall" in p})
    request = ChatRequest(
        messages=[Message.user("Go.")],
        tools=[ToolDef(name=n, parameters={"type": "object", "properties": {}}) for n in names],
    )
    first = case.reply(41, chunked=case.is_stream or stream)
    turn, (_, second) = await second_body(
        serve, _provider, first, FINAL, request, results_or("Thanks.", '{"ok": true}'),
        stream=stream,
    )  # fmt: skip
    sent = second["contents"]
    assert sent[1] == {"role": "model", "parts": expected}
    for part in expected:
        if "thoughtSignature" in part:
            assert json.dumps(part["thoughtSignature"]) in json.dumps(sent[1])
    if turn.tool_calls:
        responses = [p["functionResponse"]["name"] for p in sent[2]["parts"]]
        assert responses == [c.name for c in turn.tool_calls]
