"""The assistant turn goes back to Anthropic as the API wrote it: thinking blocks with their
signatures, redacted thinking, server tool blocks and citations, whole or streamed.

Recorded exchanges from ../shared/corpus are replayed from a real socket; the second request's
assistant turn must hold the recorded blocks byte for byte. A thinking-with-tools loop of the
project's own (the corpus has none with a client tool) shows the blocks precede the tool call.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import load_case
from _round_trip import results_or, second_body
from _server import Reply
from openkoi import ChatRequest, Message, ToolDef
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi_providers.anthropic import AnthropicProvider

pytestmark = pytest.mark.anyio

FINAL = {
    "id": "msg_2",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Done."}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 5, "output_tokens": 2},
}


def _provider(url: str) -> AnthropicProvider:
    return AnthropicProvider(
        ProviderSettings(
            id="anthropic",
            name="Anthropic",
            base_url=url,
            api_key=Secret("sk-ant-round-trip-0123456789"),
            default_model="claude-sonnet-4-5",
            options={"prompt_caching": False},
        )
    )


def blocks_of_stream(body: bytes) -> list[dict[str, Any]]:
    """The content blocks an SSE stream spells out, built independently of the provider."""
    blocks: dict[int, dict[str, Any]] = {}
    inputs: dict[int, str] = {}
    for line in body.decode().splitlines():
        if not line.startswith("data:"):
            continue
        event = json.loads(line[5:])
        index = event.get("index")
        if event["type"] == "content_block_start":
            blocks[index] = dict(event["content_block"])
        elif event["type"] == "content_block_delta":
            delta, block = event["delta"], blocks[index]
            kind = delta["type"]
            if kind == "text_delta":
                block["text"] += delta["text"]
            elif kind == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif kind == "signature_delta":
                block["signature"] = block.get("signature", "") + delta["signature"]
            elif kind == "input_json_delta":
                inputs[index] = inputs.get(index, "") + delta["partial_json"]
            elif kind == "citations_delta":
                block.setdefault("citations", []).append(delta["citation"])
    for index, raw in inputs.items():
        blocks[index]["input"] = json.loads(raw) if raw else {}
    return [blocks[i] for i in sorted(blocks)]


@pytest.mark.parametrize("name", ["thinking", "thinking_stream", "web_search_server_tool_stream"])
async def test_recorded_blocks_go_back_byte_for_byte(name: str, serve: Any) -> None:
    case = load_case("anthropic", name)
    recorded = case.request["body"]
    request = ChatRequest(
        model=recorded["model"],
        messages=[
            Message.user(
                recorded["messages"][0]["content"][0]["text"]
                if isinstance(recorded["messages"][0]["content"], list)
                else recorded["messages"][0]["content"]
            )
        ],
        max_tokens=recorded["max_tokens"],
        reasoning=(recorded.get("thinking") or {}).get("budget_tokens"),
    )
    expected = blocks_of_stream(case.body) if case.is_stream else case.json()["content"]
    turn, (_, second) = await second_body(
        serve, _provider, case.reply(41), FINAL, request, results_or("Thanks.", ""),
        stream=case.is_stream,
    )  # fmt: skip
    assert turn.native is not None and turn.native.protocol == "anthropic"
    sent = second["messages"][1]
    assert sent["role"] == "assistant"
    assert sent["content"] == expected
    # the signatures and encrypted payloads are the very bytes the API wrote
    for block in expected:
        for key in ("signature", "data", "encrypted_content"):
            if key in block:
                assert json.dumps(block[key]) in json.dumps(sent["content"])
    assert second["messages"][2] == {
        "role": "user",
        "content": [{"type": "text", "text": "Thanks."}],
    }


THINK_AND_CALL = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "I should look it up.", "signature": "EqQBCgIYAhIM+sig=="},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 20, "output_tokens": 30},
}


def _sse_of(message: dict[str, Any]) -> Reply:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None}}
    ]
    for i, block in enumerate(message["content"]):
        if block["type"] == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"][:5]},
                {"type": "thinking_delta", "thinking": block["thinking"][5:]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        elif block["type"] == "tool_use":
            start = {**block, "input": {}}
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[:4]},
                {"type": "input_json_delta", "partial_json": raw[4:]},
            ]
        else:
            start, deltas = block, []
        events.append({"type": "content_block_start", "index": i, "content_block": start})
        events += [{"type": "content_block_delta", "index": i, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]}, "usage": {}}
    )
    events.append({"type": "message_stop"})
    return Reply.sse([f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events])


@pytest.mark.parametrize("stream", [False, True])
async def test_a_thinking_tool_loop_keeps_blocks_before_the_call(stream: bool, serve: Any) -> None:
    request = ChatRequest(
        messages=[Message.user("Weather in Paris?")],
        tools=[ToolDef(name="weather", parameters={"type": "object", "properties": {}})],
        reasoning="low",
    )
    first = _sse_of(THINK_AND_CALL) if stream else Reply.json(THINK_AND_CALL)
    turn, (_, second) = await second_body(
        serve, _provider, first, FINAL, request, results_or("", "18 C"), stream=stream
    )
    assert [c.name for c in turn.tool_calls] == ["weather"]
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert second["messages"][1] == {"role": "assistant", "content": THINK_AND_CALL["content"]}
    assert second["messages"][2]["content"][0]["type"] == "tool_result"


async def test_a_plain_answer_keeps_no_native_turn(serve: Any) -> None:
    server = serve(lambda r: Reply.json(FINAL))
    provider = _provider(server.url)
    try:
        response = await provider.chat(ChatRequest(messages=[Message.user("hi")]))
    finally:
        await provider.aclose()
    assert response.native is None
    assert response.message.content == "Done."
