"""A Bedrock Converse turn that reasoned goes back with its reasoningContent and signature.

The recorded ConverseStream exchange with reasoning deltas (../shared/corpus) is replayed from a
real socket; a tool loop of the project's own, whole and streamed, shows the reasoning block
precedes the tool call in the second request exactly as the model wrote it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import load_case
from _round_trip import results_or, second_body
from _server import Reply
from botocore.eventstream import EventStreamBuffer
from openkoi import ChatRequest, Message, ToolDef
from test_bedrock import EVENT_STREAM, _provider, event, stream_reply
from test_bedrock import _aws_env as _aws_env  # fake AWS credentials, autouse

pytestmark = pytest.mark.anyio

MODEL = "anthropic.claude-sonnet-4-20250514"
FINAL = {
    "output": {"message": {"role": "assistant", "content": [{"text": "Done."}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
}


def blocks_of_stream(body: bytes) -> list[dict[str, Any]]:
    """The content blocks a ConverseStream spells out, decoded here with botocore."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    blocks: dict[int, dict[str, Any]] = {}
    for message in buffer:
        if message.headers.get(":message-type") != "event":
            continue
        data = json.loads(message.payload)
        index = data.get("contentBlockIndex", 0)
        kind = message.headers[":event-type"]
        if kind == "contentBlockStart" and "toolUse" in data.get("start", {}):
            blocks[index] = {"toolUse": {**data["start"]["toolUse"], "input": ""}}
        elif kind == "contentBlockDelta":
            delta = data["delta"]
            if "text" in delta:
                blocks.setdefault(index, {"text": ""})["text"] += delta["text"]
            elif "toolUse" in delta:
                blocks[index]["toolUse"]["input"] += delta["toolUse"]["input"]
            elif "reasoningContent" in delta:
                text = blocks.setdefault(index, {"reasoningContent": {"reasoningText": {}}})[
                    "reasoningContent"
                ]["reasoningText"]
                for key in ("text", "signature"):
                    if key in delta["reasoningContent"]:
                        text[key] = text.get(key, "") + delta["reasoningContent"][key]
    for block in blocks.values():
        if "toolUse" in block:
            raw = block["toolUse"]["input"]
            block["toolUse"]["input"] = json.loads(raw) if raw else {}
    return [blocks[i] for i in sorted(blocks)]


async def test_the_recorded_reasoning_goes_back_with_its_signature(serve: Any) -> None:
    case = load_case("bedrock", "converse_stream_reasoning")
    expected = blocks_of_stream(case.body)
    signed = [
        b for b in expected if "signature" in b.get("reasoningContent", {}).get("reasoningText", {})
    ]
    assert signed, "the recording carries a reasoning signature"
    reply = Reply(
        chunks=[case.body[i : i + 29] for i in range(0, len(case.body), 29)], headers=EVENT_STREAM
    )
    request = ChatRequest(model=MODEL, messages=[Message.user("Hello")], reasoning=1024)
    turn, (_, second) = await second_body(
        serve, _provider, reply, FINAL, request, results_or("Thanks.", ""), stream=True
    )
    assert turn.native is not None and turn.native.protocol == "bedrock-converse"
    assert second["messages"][1] == {"role": "assistant", "content": expected}
    assert second["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }


REASONED_CALL = [
    {"reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": "c2lnbmF0dXJl"}}},
    {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}},
]


def _stream_of(blocks: list[dict[str, Any]]) -> Reply:
    parts = [event("messageStart", {"role": "assistant"})]
    for i, block in enumerate(blocks):
        if "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            parts.append(event("contentBlockStart", {"contentBlockIndex": i, "start": start}))
            raw = json.dumps(use["input"])
            for piece in (raw[:3], raw[3:]):
                delta = {"toolUse": {"input": piece}}
                parts.append(event("contentBlockDelta", {"contentBlockIndex": i, "delta": delta}))
        else:
            text = block["reasoningContent"]["reasoningText"]
            for delta in (
                {"text": text["text"][:4]},
                {"text": text["text"][4:]},
                {"signature": text["signature"]},
            ):
                parts.append(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": i, "delta": {"reasoningContent": delta}},
                    )
                )
        parts.append(event("contentBlockStop", {"contentBlockIndex": i}))
    parts.append(event("messageStop", {"stopReason": "tool_use"}))
    parts.append(event("metadata", {"usage": {"inputTokens": 5, "outputTokens": 9}}))
    return stream_reply(parts)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_reasoning_tool_loop_round_trips(stream: bool, serve: Any) -> None:
    first = (
        _stream_of(REASONED_CALL)
        if stream
        else Reply.json(
            {
                "output": {"message": {"role": "assistant", "content": REASONED_CALL}},
                "stopReason": "tool_use",
                "usage": {"inputTokens": 5, "outputTokens": 9},
            }
        )
    )
    request = ChatRequest(
        model=MODEL,
        messages=[Message.user("Weather in Paris?")],
        tools=[ToolDef(name="weather", parameters={"type": "object", "properties": {}})],
        reasoning="low",
    )
    turn, (_, second) = await second_body(
        serve, _provider, first, FINAL, request, results_or("", "18 C"), stream=stream
    )
    assert [c.id for c in turn.tool_calls] == ["tooluse_1"]
    assert second["messages"][1] == {"role": "assistant", "content": REASONED_CALL}
    assert second["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "tooluse_1"
