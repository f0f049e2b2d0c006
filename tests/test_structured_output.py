"""`ChatResponse.parsed`: the answer validated against the request's schema, whether the
provider has native structured output or gets the schema as a forced tool call (the caller
sees no difference), whole or streamed; a mismatch is a typed error that keeps the raw text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _server import Reply
from openkoi import ChatRequest, Message, OutputValidationError
from openkoi._jsonschema import check
from openkoi._provider import collect
from pydantic import BaseModel
from test_bedrock import event, stream_reply
from test_typed_failures import WIRES
from test_typed_failures import _aws_env as _aws_env  # fake AWS credentials, autouse

pytestmark = pytest.mark.anyio


class Weather(BaseModel):
    city: str
    temp: int


SCHEMA = Weather.model_json_schema()


def _openai_answer(text: str) -> dict[str, Any]:
    return {
        "id": "c",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }


async def _chat(name: str, reply: Reply, request: ChatRequest, serve: Any) -> Any:
    server = serve(lambda r: reply)
    wire = WIRES[name]
    provider = wire.make(server.url)
    try:
        return await provider.chat(request.model_copy(update={"model": wire.model}))
    finally:
        await provider.aclose()


async def test_a_pydantic_model_gives_an_instance(serve: Any) -> None:
    request = ChatRequest(messages=[Message.user("w?")], schema=Weather)
    reply = Reply.json(_openai_answer('{"city": "Paris", "temp": 18}'))
    response = await _chat("openai", reply, request, serve)
    assert response.parsed == Weather(city="Paris", temp=18)


async def test_a_dict_schema_gives_json(serve: Any) -> None:
    request = ChatRequest(messages=[Message.user("w?")], schema=SCHEMA)
    reply = Reply.json(_openai_answer('{"city": "Paris", "temp": 18}'))
    response = await _chat("openai", reply, request, serve)
    assert response.parsed == {"city": "Paris", "temp": 18}


@pytest.mark.parametrize("schema", [Weather, SCHEMA])
@pytest.mark.parametrize(
    "text", ['{"city": "Paris"}', '{"city": "Paris", "temp": "hot"}', "Paris, 18"]
)
async def test_output_that_does_not_match_keeps_the_raw_text(
    schema: Any, text: str, serve: Any
) -> None:
    request = ChatRequest(messages=[Message.user("w?")], schema=schema)
    with pytest.raises(OutputValidationError) as caught:
        await _chat("openai", Reply.json(_openai_answer(text)), request, serve)
    assert caught.value.raw_text == text


def _bedrock_forced(arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "t1",
                            "name": "structured_output",
                            "input": arguments,
                        }
                    }
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 4},
    }


async def test_a_forced_tool_answer_reads_as_text(serve: Any) -> None:
    request = ChatRequest(messages=[Message.user("w?")], schema=Weather)
    reply = Reply.json(_bedrock_forced({"city": "Paris", "temp": 18}))
    response = await _chat("bedrock", reply, request, serve)
    assert json.loads(response.content) == {"city": "Paris", "temp": 18}
    assert response.tool_calls == [] and response.stop_reason == "end_turn"
    assert response.parsed == Weather(city="Paris", temp=18)
    assert response.native is None


async def test_a_streamed_forced_tool_answer_streams_as_text(serve: Any) -> None:
    raw = json.dumps({"city": "Paris", "temp": 18})
    parts = [
        event("messageStart", {"role": "assistant"}),
        event(
            "contentBlockStart",
            {
                "contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": "t", "name": "structured_output"}},
            },
        ),
        event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": raw[:7]}}}
        ),
        event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": raw[7:]}}}
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4}}),
    ]
    server = serve(lambda r: stream_reply(parts))
    wire = WIRES["bedrock"]
    provider = wire.make(server.url)
    request = ChatRequest(model=wire.model, messages=[Message.user("w?")], schema=Weather)
    try:
        chunks = [c async for c in provider.chat_stream(request)]
        response = await collect(provider.chat_stream(request), request)
    finally:
        await provider.aclose()
    assert "".join(c.delta for c in chunks) == raw
    assert not any(c.tool_calls for c in chunks)
    assert response.stop_reason == "end_turn"
    assert response.parsed == Weather(city="Paris", temp=18)


def test_the_schema_checker() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            "n": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
            "kid": {"$ref": "#/$defs/Kid"},
        },
        "required": ["tags"],
        "additionalProperties": False,
        "$defs": {"Kid": {"type": "object", "properties": {"age": {"type": "integer"}}}},
    }
    assert check({"tags": ["a"], "n": None, "kid": {"age": 3}}, schema) is None
    assert check({"tags": ["c"]}, schema) == "$.tags[0]: 'c' is not one of ['a', 'b']"
    assert "missing required" in (check({}, schema) or "")
    assert "unexpected property" in (check({"tags": [], "x": 1}, schema) or "")
    assert "anyOf" in (check({"tags": [], "n": -1}, schema) or "")
    assert "expected integer" in (check({"tags": [], "kid": {"age": True}}, schema) or "")
    assert "more than 2" in (check({"tags": ["a", "a", "b"]}, schema) or "")
