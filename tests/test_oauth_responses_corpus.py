"""Every openai-responses case of the shared corpus through the ChatGPT provider, from a socket.

Streams are served in 61-byte chunks (cutting lines and UTF-8); JSON bodies go through the
non-streaming path. Expected values are read from the recording itself (deltas, output items,
usage) and some are pinned by hand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import Case, corpus_params, load_case
from _oauth_server import chatgpt_access_token
from _server import Recorded, Reply, split_bytes
from openkoi._errors import AuthenticationError, InvalidRequestError
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, ChatResponse, Message
from openkoi_providers.chatgpt import ChatGPTProvider

pytestmark = pytest.mark.anyio

TOKEN = chatgpt_access_token(3600, 1)
ERRORS = {
    "error_401_invalid_api_key": AuthenticationError,
    "error_400_model_not_found": InvalidRequestError,
}


def _events(case: Case) -> list[dict[str, Any]]:
    out = []
    for line in case.body.decode().splitlines():
        if line.startswith("data: ") and line[6:].strip() not in ("", "[DONE]"):
            out.append(json.loads(line[6:]))
    return out


def _final(case: Case) -> dict[str, Any]:
    """The response object: the body, or the stream's completed/incomplete event."""
    if not case.content_type.startswith("text/event-stream"):
        data: dict[str, Any] = case.json()
        return data
    last = [e for e in _events(case) if e["type"] in ("response.completed", "response.incomplete")]
    response: dict[str, Any] = last[-1]["response"]
    return response


def _serve(case: Case) -> Any:
    def handler(request: Recorded) -> Reply:
        assert request.path == "/backend-api/codex/responses"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["chatgpt-account-id"] == "acct-test-7f3a"
        body = request.json()
        assert body["store"] is False and body["model"] == case.request["body"]["model"]
        return case.reply(61)

    return handler


async def _run(case: Case, url: str) -> ChatResponse:
    streamed = case.content_type.startswith("text/event-stream") or case.request["body"].get(
        "stream"
    )
    provider = ChatGPTProvider(
        ProviderSettings(
            id="openai-oauth",
            name="ChatGPT",
            base_url=f"{url}/backend-api/codex",
            api_key=Secret(TOKEN, source="codex-cli:/test/auth.json", kind="oauth"),
            options={"stream": bool(streamed)},
        )
    )
    request = ChatRequest(model=case.request["body"]["model"], messages=[Message.user("hi")])
    try:
        if streamed:
            return await collect(provider.chat_stream(request))
        return await provider.chat(request)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("name", corpus_params("openai-responses"))
async def test_responses_case(name: str, serve: Any) -> None:
    case = load_case("openai-responses", name)
    server = serve(_serve(case))
    if name in ERRORS:
        with pytest.raises(ERRORS[name]) as info:
            await _run(case, server.url)
        assert info.value.status == case.status
        assert case.json()["error"]["message"][:30] in str(info.value)
        assert TOKEN not in str(info.value)
        return
    answer = await _run(case, server.url)
    final = _final(case)
    output = final.get("output") or []
    texts = [
        part["text"]
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    ]
    assert answer.content == "".join(texts)
    if case.content_type.startswith("text/event-stream"):
        deltas = [e["delta"] for e in _events(case) if e["type"] == "response.output_text.delta"]
        assert answer.content == "".join(deltas)
    calls = [item for item in output if item["type"] == "function_call"]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
        (c["call_id"], c["name"], json.loads(c["arguments"])) for c in calls
    ]
    usage = final["usage"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    assert answer.usage.cache_read_tokens == cached
    assert answer.usage.input_tokens == usage["input_tokens"] - cached
    assert answer.usage.output_tokens == usage["output_tokens"]
    expected_stop = {"incomplete": "max_tokens"}.get(
        final["status"], "tool_use" if calls else "end_turn"
    )
    assert answer.stop_reason == expected_stop


async def test_pinned_values(serve: Any) -> None:
    """A few values checked by hand against the recordings."""
    checks = {
        "text_stream": lambda a: a.content == "pong" and a.usage.input_tokens == 11,
        "function_call_stream": lambda a: (
            a.tool_calls[0].arguments == '{"a":1231,"b":2331}'
            and a.tool_calls[0].name == "multiply"
        ),
        "cached_tokens_hit": lambda a: (
            (a.usage.cache_read_tokens, a.usage.input_tokens) == (3584, 179)
        ),
        "cached_tokens_stream": lambda a: a.usage.cache_read_tokens == 1390,
        "parallel_function_calls_stream": lambda a: (
            len(a.tool_calls) == 2 and [c.parsed_arguments() for c in a.tool_calls] != [{}, {}]
        ),
        "max_output_tokens_incomplete_stream": lambda a: (
            a.stop_reason == "max_tokens" and a.content
        ),
        "reasoning_encrypted": lambda a: (
            a.usage.output_tokens == 85 and a.stop_reason == "tool_use"
        ),
    }
    for name, check in checks.items():
        case = load_case("openai-responses", name)
        server = serve(_serve(case))
        answer = await _run(case, server.url)
        assert check(answer), (name, answer)


async def test_stream_cut_before_completed_is_malformed(serve: Any) -> None:
    from openkoi._errors import MalformedResponseError

    case = load_case("openai-responses", "text_stream")
    cut = case.body[: case.body.index(b"event: response.completed")]

    def handler(request: Recorded) -> Reply:
        return Reply(
            chunks=list(split_bytes(cut, 97)), headers={"content-type": "text/event-stream"}
        )

    server = serve(handler)
    with pytest.raises(MalformedResponseError, match=r"response\.completed"):
        await _run(case, server.url)


async def test_failed_event_is_a_typed_error_with_partial_usage(serve: Any) -> None:
    from openkoi._errors import RateLimitedError

    events = [
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","output_index":0,"delta":"Hi"}\n\n',
        'event: response.failed\ndata: {"type":"response.failed","response":{"status":"failed",'
        '"error":{"code":"rate_limit_exceeded","message":"slow down please"},'
        '"usage":{"input_tokens":9,"output_tokens":1}}}\n\n',
    ]
    server = serve(lambda request: Reply.sse(events))
    case = load_case("openai-responses", "text_stream")
    with pytest.raises(RateLimitedError) as info:
        await _run(case, server.url)
    assert "slow down please" in str(info.value)
    assert info.value.partial_usage is not None and info.value.partial_usage.input_tokens == 9


async def test_usage_limit_sets_retry_after(serve: Any) -> None:
    from openkoi._errors import RateLimitedError

    body = {
        "error": {
            "type": "usage_limit_reached",
            "message": "You have hit your limit",
            "resets_in_seconds": 1234,
        }
    }
    server = serve(lambda request: Reply.json(body, 429))
    case = load_case("openai-responses", "text_stream")
    with pytest.raises(RateLimitedError) as info:
        await _run(case, server.url)
    assert info.value.retry_after == 1234
