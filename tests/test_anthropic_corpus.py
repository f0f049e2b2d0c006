"""Every anthropic case of the shared corpus, served from a real socket in small chunks.

Each case is checked twice over: the response parses to what the recording says (text, tool calls,
reasoning, usage with cache tokens, stop reason, rate-limit headers, typed errors), and the
recorded request, read back into neutral types, goes out as the same Messages API body.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import Case, corpus_params, load_case
from _server import Recorded, Reply
from openkoi import (
    AuthenticationError,
    ChatRequest,
    ChatResponse,
    InvalidRequestError,
    Message,
    ProviderError,
    ToolCall,
    ToolDef,
)
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.anthropic import AnthropicProvider

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-key-0123456789"

ERRORS: dict[str, type[ProviderError]] = {
    "error_400_invalid_request": InvalidRequestError,
    "error_401_authentication": AuthenticationError,
    "error_404_not_found": InvalidRequestError,
}


def _replay(case: Case, chunk_size: int = 37) -> Any:
    def handler(request: Recorded) -> Reply:
        assert request.method == "POST"
        assert request.path == case.request["path"]
        assert request.headers["x-api-key"] == KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        return case.reply(chunk_size)

    return handler


def _provider(url: str, **options: Any) -> AnthropicProvider:
    return AnthropicProvider(
        ProviderSettings(
            id="anthropic",
            name="Anthropic",
            base_url=url,
            api_key=Secret(KEY),
            default_model="claude-sonnet-4-5",
            options=options,
        )
    )


# -- the recorded request, read back into neutral types ------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content)


def neutral_request(body: dict[str, Any]) -> ChatRequest:
    """A Messages API body as the neutral request that should produce it."""
    known = {"model", "max_tokens", "messages", "system", "tools", "stop_sequences", "temperature"}
    extra = {k: v for k, v in body.items() if k not in known and k != "stream"}
    tools: list[ToolDef] = []
    if all("input_schema" in t for t in body.get("tools", [])):
        tools = [
            ToolDef(
                name=t["name"], description=t.get("description", ""), parameters=t["input_schema"]
            )
            for t in body.get("tools", [])
        ]
    else:  # server tools (web search) have no neutral form: they travel in `extra`
        extra["tools"] = body["tools"]
    messages: list[Message] = []
    for turn in body["messages"]:
        blocks = _blocks(turn["content"])
        if turn["role"] == "assistant":
            text = "".join(b["text"] for b in blocks if b["type"] == "text") or None
            calls = [
                ToolCall(id=b["id"], name=b["name"], arguments=json.dumps(b["input"]))
                for b in blocks
                if b["type"] == "tool_use"
            ]
            messages.append(Message.assistant(text, calls))
            continue
        for block in blocks:
            if block["type"] == "tool_result":
                messages.append(
                    Message.tool_result(block["tool_use_id"], _text_of(block["content"]))
                )
            else:
                messages.append(Message.user(block["text"]))
    system = body.get("system")
    return ChatRequest(
        model=body["model"],
        system=_text_of(system) if system else None,
        messages=messages,
        tools=tools,
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        stop=body.get("stop_sequences", []),
        extra=extra,
    )


def normalized(body: dict[str, Any]) -> dict[str, Any]:
    """Drop cache markers and spell string content as blocks, so bodies compare by meaning."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "cache_control"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = strip(body)
    out.pop("stream", None)
    if isinstance(out.get("system"), str):
        out["system"] = _blocks(out["system"])
    for turn in out["messages"]:
        turn["content"] = _blocks(turn["content"])
    for tool in out.get("tools", []):
        if tool.get("description") == "":
            del tool["description"]  # an empty description says nothing; we leave it out
    return out


def _markers(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if value.get("cache_control") else 0
        return own + sum(_markers(v) for v in value.values())
    if isinstance(value, list):
        return sum(_markers(v) for v in value)
    return 0


# -- what the recorded response says -------------------------------------------------------


def expected_stream(case: Case) -> dict[str, Any]:
    """A deliberately naive reading of the recorded SSE."""
    text, reasoning, usage, stop = [], [], {}, None
    tools: dict[int, dict[str, Any]] = {}
    for line in case.body.decode().splitlines():
        if not line.startswith("data: "):
            continue
        data = json.loads(line[6:])
        if data["type"] == "message_start":
            usage = dict(data["message"]["usage"])
        elif data["type"] == "content_block_start" and data["content_block"]["type"] == "tool_use":
            block = data["content_block"]
            tools[data["index"]] = {"id": block["id"], "name": block["name"], "args": ""}
        elif data["type"] == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                text.append(delta["text"])
            elif delta["type"] == "thinking_delta":
                reasoning.append(delta["thinking"])
            elif delta["type"] == "input_json_delta" and data["index"] in tools:
                tools[data["index"]]["args"] += delta["partial_json"]
        elif data["type"] == "message_delta":
            usage.update(data["usage"])
            stop = data["delta"]["stop_reason"]
    return {
        "text": "".join(text),
        "reasoning": "".join(reasoning),
        "tools": [tools[i] for i in sorted(tools)],
        "usage": usage,
        "stop": stop,
    }


def expected_message(case: Case) -> dict[str, Any]:
    data = case.json()
    blocks = data["content"]
    return {
        "text": "".join(b["text"] for b in blocks if b["type"] == "text"),
        "reasoning": "".join(b["thinking"] for b in blocks if b["type"] == "thinking"),
        "tools": [
            {"id": b["id"], "name": b["name"], "args": json.dumps(b["input"])}
            for b in blocks
            if b["type"] == "tool_use"
        ],
        "usage": data["usage"],
        "stop": data["stop_reason"],
    }


def _check(response: ChatResponse, want: dict[str, Any]) -> None:
    assert response.content == want["text"]
    assert response.reasoning == want["reasoning"]
    assert [(c.id, c.name) for c in response.tool_calls] == [
        (t["id"], t["name"]) for t in want["tools"]
    ]
    for call, tool in zip(response.tool_calls, want["tools"], strict=True):
        assert call.parsed_arguments() == json.loads(tool["args"] or "{}")
    usage = want["usage"]
    assert response.usage.input_tokens == usage["input_tokens"]
    assert response.usage.output_tokens == usage["output_tokens"]
    assert response.usage.cache_read_tokens == (usage.get("cache_read_input_tokens") or 0)
    assert response.usage.cache_write_tokens == (usage.get("cache_creation_input_tokens") or 0)
    assert response.stop_reason == want["stop"]  # every recorded reason has a same-named mapping


@pytest.mark.parametrize("name", corpus_params("anthropic"))
async def test_anthropic_case(name: str, serve: Any) -> None:
    case = load_case("anthropic", name)
    server = serve(_replay(case))
    provider = _provider(server.url)
    streaming = bool(case.request["body"].get("stream"))
    try:
        if name in ERRORS:  # error_400 was provoked with a malformed body; send a plain one
            request = ChatRequest(
                model=case.request["body"]["model"], messages=[Message.user("hi")]
            )
            with pytest.raises(ERRORS[name]) as info:
                await provider.chat(request)
            error = info.value
            assert error.status == case.status
            assert error.code == case.json()["error"]["type"]
            assert error.message == case.json()["error"]["message"]
            assert not error.transient
            assert KEY not in repr(error) + str(error)
            return
        request = neutral_request(case.request["body"])
        if streaming:
            response = await collect(provider.chat_stream(request))
            _check(response, expected_stream(case))
        else:
            response = await provider.chat(request)
            _check(response, expected_message(case))
        recorded = {
            k: v for k, v in case.response_headers().items() if k.startswith("anthropic-ratelimit-")
        }
        assert provider.last_rate_limits == recorded
    finally:
        await provider.aclose()
    assert server.errors == []
    sent = server.requests[0].json()
    assert normalized(sent) == normalized(case.request["body"])
    assert sent.get("stream", False) == streaming
    assert 0 < _markers(sent) <= 4
    if sent.get("system"):
        assert sent["system"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_corpus_specifics(serve: Any) -> None:
    """Facts about particular recordings, spelled out so a regression names itself."""
    checks = {
        "parallel_tool_use_stream": lambda r: (
            len(r.tool_calls) == 2 and r.stop_reason == "tool_use" and r.content
        ),
        "tool_use_stream_empty_input": lambda r: (
            r.tool_calls[0].arguments == "{}" and r.tool_calls[0].parsed_arguments() == {}
        ),
        "web_search_server_tool_stream": lambda r: (
            r.tool_calls == [] and r.stop_reason == "end_turn" and "weekend" in r.content
        ),
        "thinking_stream": lambda r: r.reasoning.startswith("The user wants") and r.content,
        "cache_creation_stream": lambda r: (
            r.usage.cache_write_tokens == 1165 and r.usage.input_tokens == 4
        ),
        "cache_read": lambda r: r.usage.cache_read_tokens > 0,
        "max_tokens_stream": lambda r: r.stop_reason == "max_tokens",
        "stop_sequence_stream": lambda r: r.stop_reason == "stop_sequence",
        "text_stream": lambda r: r.content == "Hello" and r.model == "claude-haiku-4-5-20251001",
    }
    for name, check in checks.items():
        case = load_case("anthropic", name)
        server = serve(_replay(case))
        provider = _provider(server.url)
        request = neutral_request(case.request["body"])
        try:
            if case.request["body"].get("stream"):
                response = await collect(provider.chat_stream(request))
            else:
                response = await provider.chat(request)
            assert check(response), name
        finally:
            await provider.aclose()


async def test_tool_results_merge_into_one_user_turn(serve: Any) -> None:
    """The recorded follow-up: two parallel results answer in one user turn, in call order."""
    case = load_case("anthropic", "tool_result_followup_stream")
    server = serve(_replay(case))
    provider = _provider(server.url)
    try:
        await collect(provider.chat_stream(neutral_request(case.request["body"])))
    finally:
        await provider.aclose()
    turns = server.requests[0].json()["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "tool_result"]
    assert [b["tool_use_id"] for b in turns[2]["content"]] == [
        b["id"] for b in turns[1]["content"] if b["type"] == "tool_use"
    ]
