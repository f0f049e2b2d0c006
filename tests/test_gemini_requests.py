"""What the Gemini provider sends for tool schemas, thinking and a schema next to tools.

Each request goes to a real loopback server. Tool schemas travel whole as `parametersJsonSchema`
(the `parameters` Schema proto rejects `$ref`, `const`, type lists and maps); thinking budgets
move into the range each 2.5 model takes, and one that leaves no room under `max_tokens` is
refused before sending; Gemini 3 efforts map to the levels each model documents; and before
Gemini 3, which refuses function calling with a JSON response, a schema next to tools goes as a
forced tool call whose arguments come back as the answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _server import Recorded, Reply
from openkoi import (
    ChatRequest,
    ChatResponse,
    InvalidRequestError,
    Message,
    ProviderError,
    ToolDef,
    UnsupportedError,
)
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.gemini import GeminiProvider

pytestmark = pytest.mark.anyio

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
    "required": ["city", "temp"],
}
# What pydantic writes for a model with a nested model, a one-value Literal, an Optional and a
# dict[str, str] field, plus a type list: all refused by the `parameters` Schema proto.
ORDER = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {
        "kind": {"const": "order", "type": "string"},
        "ship_to": {"$ref": "#/$defs/Address"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "code": {"type": ["string", "null"]},
    },
    "required": ["kind", "ship_to"],
}
WEATHER = ToolDef(name="weather", parameters={"type": "object", "properties": {"at": {}}})


def _answer(*parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": list(parts)}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
    }


TEXT = _answer({"text": "ok"})


async def _send(
    serve: Any, request: ChatRequest, answer: dict[str, Any] = TEXT, *, stream: bool = False
) -> tuple[ChatResponse | ProviderError, list[Any]]:
    """(the response, or the typed error raised; the bodies the server saw)."""
    seen: list[Recorded] = []

    def handler(recorded: Recorded) -> Reply:
        seen.append(recorded)
        if stream:
            return Reply.sse([f"data: {json.dumps(answer)}\r\n\r\n"])
        return Reply.json(answer)

    server = serve(handler)
    provider = GeminiProvider(
        ProviderSettings(id="google", name="Gemini", base_url=server.url, api_key=Secret("k"))
    )
    result: ChatResponse | ProviderError
    try:
        if stream:
            result = await collect(provider.chat_stream(request), request)
        else:
            result = await provider.chat(request)
    except ProviderError as exc:
        result = exc
    finally:
        await provider.aclose()
    return result, [r.json() for r in seen]


def _ask(model: str, **fields: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message.user("go")], **fields)


# -- tool schemas ---------------------------------------------------------------------------


async def test_tool_schemas_go_whole_as_json_schema(serve: Any) -> None:
    tool = ToolDef(name="create", description="Place an order", parameters=ORDER)
    _, [body] = await _send(serve, _ask("gemini-2.5-pro", tools=[tool]))
    without_dialect = {k: v for k, v in ORDER.items() if k != "$schema"}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "create",
                    "description": "Place an order",
                    "parametersJsonSchema": without_dialect,
                }
            ]
        }
    ]
    assert tool.parameters["$schema"]  # the caller's schema is left as it was


async def test_only_a_tool_that_takes_nothing_goes_without_a_schema(serve: Any) -> None:
    none = [
        ToolDef(name="a"),
        ToolDef(name="b", parameters={"type": "object"}),
        ToolDef(name="c", parameters={"type": "object", "additionalProperties": False}),
    ]
    mapping = {"type": "object", "additionalProperties": {"type": "string"}}
    tools = [*none, ToolDef(name="tags", parameters=mapping)]
    _, [body] = await _send(serve, _ask("gemini-2.5-flash", tools=tools))
    declarations = body["tools"][0]["functionDeclarations"]
    assert declarations[:3] == [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert declarations[3] == {"name": "tags", "parametersJsonSchema": mapping}


# -- thinking -------------------------------------------------------------------------------


async def test_thinking_budgets_move_into_the_model_range(serve: Any) -> None:
    cases = [
        ("gemini-2.5-pro", 50, 128),  # Pro cannot think less (nor be turned off)
        ("models/gemini-2.5-pro", 40000, 32768),
        ("gemini-2.5-flash", 30000, 24576),
        ("gemini-2.5-flash", 100, 100),
        ("gemini-2.5-flash-lite", 100, 512),
        ("gemini-2.5-flash-lite-preview-06-17", 30000, 24576),
        ("gemini-exp-1206", 50, 50),  # no known range: as given
    ]
    for model, reasoning, budget in cases:
        _, [body] = await _send(serve, _ask(model, reasoning=reasoning))
        assert body["generationConfig"]["thinkingConfig"] == {
            "includeThoughts": True,
            "thinkingBudget": budget,
        }, model


@pytest.mark.parametrize("stream", [False, True])
async def test_a_budget_that_fills_max_tokens_is_refused_before_sending(
    serve: Any, stream: bool
) -> None:
    for reasoning, max_tokens, budget in [("high", 1000, 24576), (50, 128, 128)]:
        request = _ask("gemini-2.5-pro", reasoning=reasoning, max_tokens=max_tokens)
        error, bodies = await _send(serve, request, stream=stream)
        assert isinstance(error, InvalidRequestError)
        assert f"max_tokens ({max_tokens}) must exceed the thinking budget ({budget})" in str(error)
        assert bodies == []
    _, [body] = await _send(serve, _ask("gemini-2.5-pro", reasoning=50, max_tokens=129))
    assert body["generationConfig"] == {
        "maxOutputTokens": 129,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 128},
    }


async def test_gemini_3_efforts_are_the_levels_each_model_takes(serve: Any) -> None:
    levels = {
        "gemini-3-flash-preview": ("low", "medium", "high"),
        "gemini-3.1-pro-preview": ("low", "medium", "high"),
        "gemini-3-pro-preview": ("low", "high", "high"),  # 3 Pro has no medium
    }
    for model, wanted in levels.items():
        sent = []
        for effort in ("low", "medium", "high"):
            _, [body] = await _send(serve, _ask(model, reasoning=effort))
            sent.append(body["generationConfig"]["thinkingConfig"]["thinkingLevel"])
        assert tuple(sent) == wanted, model


# -- a schema next to tools -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_before_gemini_3_a_schema_with_tools_is_a_forced_tool(
    serve: Any, stream: bool
) -> None:
    call = {"name": "structured_output", "args": {"city": "Oslo", "temp": 3}}
    answer = _answer({"functionCall": call, "thoughtSignature": "c2ln"})
    request = _ask("gemini-2.5-flash", tools=[WEATHER], schema=SCHEMA)
    response, [body] = await _send(serve, request, answer, stream=stream)
    assert "generationConfig" not in body  # no responseMimeType: 2.x refuses it with tools
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    declarations = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == ["weather", "structured_output"]
    assert declarations[1]["parametersJsonSchema"] == SCHEMA
    assert isinstance(response, ChatResponse)
    assert json.loads(response.content) == {"city": "Oslo", "temp": 3}
    assert response.parsed == {"city": "Oslo", "temp": 3}
    assert (response.tool_calls, response.stop_reason, response.native) == ([], "end_turn", None)


async def test_a_forced_schema_still_lets_the_model_call_the_callers_tools(serve: Any) -> None:
    answer = _answer({"functionCall": {"name": "weather", "args": {"at": "Oslo"}}})
    request = _ask("gemini-2.0-flash", tools=[WEATHER], schema=SCHEMA)
    response, [body] = await _send(serve, request, answer)
    assert "generationConfig" not in body
    assert isinstance(response, ChatResponse)
    assert [c.name for c in response.tool_calls] == ["weather"]
    assert response.stop_reason == "tool_use"
    refused, bodies = await _send(serve, request.model_copy(update={"tool_choice": "none"}))
    assert isinstance(refused, UnsupportedError) and bodies == []


async def test_gemini_3_takes_tools_and_a_json_response_together(serve: Any) -> None:
    request = _ask("gemini-3-flash-preview", tools=[WEATHER], schema=SCHEMA)
    response, [body] = await _send(serve, request, _answer({"text": '{"city": "Oslo", "temp": 3}'}))
    assert isinstance(response, ChatResponse) and response.parsed == {"city": "Oslo", "temp": 3}
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    }
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "weather", "parametersJsonSchema": WEATHER.parameters}]}
    ]
    assert "toolConfig" not in body
