"""`ChatResponse.parsed`: the answer validated against the request's schema, whether the
provider has native structured output or gets the schema as a forced tool call (the caller
sees no difference), whole or streamed; a mismatch is a typed error that keeps the raw text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _server import Reply
from openkoi import ChatRequest, Message, OutputValidationError
from openkoi._errors import UnsupportedError
from openkoi._jsonschema import check
from openkoi._provider import collect
from openkoi._structured import strict_form
from pydantic import BaseModel, Field
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


# -- the schema as each vendor takes it ------------------------------------------------------


class Props(BaseModel):
    color: str


class Feature(BaseModel):  # GeoJSON's shape: fields named like JSON-schema keywords
    type: str
    properties: Props
    items: list[int] = [1]


def test_strict_form_walks_fields_named_like_keywords_as_fields() -> None:
    schema, strict = strict_form(Feature.model_json_schema())
    fields = schema["properties"]
    assert set(fields) == {"type", "properties", "items"}  # nothing added among the fields
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Props"]["additionalProperties"] is False
    assert "additionalProperties" not in fields["items"]  # an array, not an object
    assert fields["items"]["default"] == [1]
    assert strict is False  # `items` has a default, so it is not required
    assert strict_form(Props.model_json_schema())[1] is True


class Person(BaseModel):
    name: str = Field(max_length=5, description="Given name")
    age: int = Field(ge=0, le=150)
    tags: list[str] = Field(min_length=2)


class Labelled(BaseModel):
    labels: dict[str, str]


def _anthropic_answer(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }  # fmt: skip


async def _anthropic(serve: Any, reply: dict[str, Any], request: ChatRequest) -> Any:
    server = serve(lambda r: Reply.json(reply))
    provider = WIRES["anthropic"].make(server.url)
    try:
        request = request.model_copy(update={"model": "claude-sonnet-4-5"})
        return await provider.chat(request), server.requests
    finally:
        await provider.aclose()


async def test_anthropic_gets_the_bounds_it_refuses_as_descriptions(serve: Any) -> None:
    """Anthropic's structured output refuses numeric, length and count bounds: they go into the
    description, and the answer is still held to them here."""
    fits = json.dumps({"name": "Ann", "age": 40, "tags": ["a", "b"]})
    request = ChatRequest(messages=[Message.user("x")], schema=Person)
    answer, sent = await _anthropic(serve, _anthropic_answer(fits), request)
    assert answer.parsed == Person(name="Ann", age=40, tags=["a", "b"])
    schema = sent[0].json()["output_config"]["format"]["schema"]
    fields = schema["properties"]
    assert (fields["name"]["description"], fields["name"]["type"]) == (
        "Given name (maxLength 5)",
        "string",
    )
    assert fields["age"]["description"] == "minimum 0, maximum 150"
    assert fields["tags"]["description"] == "minItems 2"
    for field in fields.values():
        assert not {"minimum", "maximum", "maxLength", "minItems"} & set(field)
    too_old = json.dumps({"name": "Ann", "age": 200, "tags": ["a", "b"]})
    with pytest.raises(OutputValidationError, match="age"):
        await _anthropic(serve, _anthropic_answer(too_old), request)


async def test_a_map_field_goes_to_anthropic_as_a_forced_tool(serve: Any) -> None:
    """An object open to properties of its own cannot be said in Anthropic's structured output
    (every object must be closed): the schema goes as a forced tool call, as it does for a model
    without native structured output, and is refused up front with thinking on."""
    call = {
        "type": "tool_use",
        "id": "t1",
        "name": "structured_output",
        "input": {"labels": {"a": "b"}},
    }
    reply = {**_anthropic_answer(""), "content": [call], "stop_reason": "tool_use"}
    request = ChatRequest(messages=[Message.user("x")], schema=Labelled)
    answer, sent = await _anthropic(serve, reply, request)
    assert answer.parsed == Labelled(labels={"a": "b"})
    body = sent[0].json()
    assert "output_config" not in body
    assert body["tool_choice"]["name"] == "structured_output"
    assert body["tools"][0]["input_schema"]["properties"]["labels"]["additionalProperties"] == {
        "type": "string"
    }
    thinking = request.model_copy(update={"reasoning": "low"})
    with pytest.raises(UnsupportedError, match="open to properties"):
        await _anthropic(serve, reply, thinking)
