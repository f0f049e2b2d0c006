"""The OpenAI-compatible provider against the project's own fixtures: requests, tools, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _server import Recorded, Reply
from openkoi import (
    AuthenticationError,
    ChatRequest,
    InvalidRequestError,
    InvalidToolArgumentsError,
    MalformedResponseError,
    Message,
    NetworkError,
    OverloadedError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    ToolCall,
    ToolDef,
    UnsupportedError,
)
from openkoi._errors import ContextOverflowError
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi._timeouts import Timeouts
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

KEY = "sk-live-abcdef0123456789"


def provider(url: str, **options: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings(
            id="openai",
            name="OpenAI",
            base_url=url,
            api_key=Secret(KEY),
            default_model="gpt-test",
            options=options,
            timeouts=Timeouts(connect=2, first_token=2, idle=2),
        )
    )


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    data = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(data)}\n\n"


WEATHER = ToolDef(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


async def test_tools_round_trip_request_mapping(serve: Any) -> None:
    """Tool definitions go out; tool calls and tool results come back in later turns."""

    def handler(request: Recorded) -> Reply:
        return Reply.json(
            {
                "model": "gpt-test",
                "choices": [
                    {"index": 0, "message": {"content": "Sunny."}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2},
            }
        )

    server = serve(handler)
    p = provider(server.url)
    request = ChatRequest(
        system="be brief",
        messages=[
            Message.user("weather in Paris and Rome?"),
            Message.assistant(
                None,
                [
                    ToolCall(id="c1", name="get_weather", arguments='{"city":"Paris"}'),
                    ToolCall(id="c2", name="get_weather", arguments='{"city":"Rome"}'),
                ],
            ),
            Message.tool_result("c1", "sunny"),
            Message.tool_result("c2", "rain"),
        ],
        tools=[WEATHER],
        max_tokens=50,
        temperature=0.2,
        stop=["END"],
        extra={"seed": 7},
    )
    response = await p.chat(request)
    await p.aclose()
    assert response.content == "Sunny."
    assert response.usage.input_tokens == 5
    body = server.requests[0].json()
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "gpt-test"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["messages"][2]["tool_calls"][1]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Rome"}',
    }
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2
    assert body["stop"] == ["END"] and body["seed"] == 7


async def test_openai_uses_max_completion_tokens(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"choices": [{"index": 0, "message": {"content": "x"}}]}))
    p = provider(server.url, max_tokens_field="max_completion_tokens")
    await p.chat(ChatRequest(messages=[Message.user("hi")], max_tokens=10))
    await p.aclose()
    body = server.requests[0].json()
    assert body["max_completion_tokens"] == 10 and "max_tokens" not in body


async def test_parallel_tool_call_stream_keeps_calls_apart(serve: Any) -> None:
    events = [
        chunk({"role": "assistant"}),
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}
        ),
        chunk(
            {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"y":2}'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        "data: "
        + json.dumps({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
        + "\n\n",
        "data: [DONE]\n\n",
    ]
    server = serve(lambda r: Reply.sse(events))
    p = provider(server.url)
    response = await collect(p.chat_stream(ChatRequest(messages=[Message.user("go")])))
    await p.aclose()
    assert [(c.id, c.name, c.parsed_arguments()) for c in response.tool_calls] == [
        ("a", "f", {"x": 1}),
        ("b", "g", {"y": 2}),
    ]
    assert response.stop_reason == "tool_use"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 4)
    body = server.requests[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_invalid_tool_arguments_are_surfaced(serve: Any) -> None:
    events = [
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x": '}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        "data: [DONE]\n\n",
    ]
    server = serve(lambda r: Reply.sse(events))
    p = provider(server.url)
    response = await collect(p.chat_stream(ChatRequest(messages=[Message.user("go")])))
    await p.aclose()
    assert response.tool_calls[0].arguments == '{"x": '
    with pytest.raises(InvalidToolArgumentsError, match="not valid JSON"):
        response.tool_calls[0].parsed_arguments()


async def test_stream_without_done_is_an_error_with_partial_usage(serve: Any) -> None:
    events = [
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}, usage={"prompt_tokens": 3, "completion_tokens": 2}),
    ]
    server = serve(lambda r: Reply.sse(events))
    p = provider(server.url)
    got: list[str] = []
    with pytest.raises(MalformedResponseError, match=r"\[DONE\]") as info:
        async for c in p.chat_stream(ChatRequest(messages=[Message.user("hi")])):
            got.append(c.delta)
    await p.aclose()
    assert "".join(got) == "Hello"
    assert info.value.transient
    assert info.value.partial_usage is not None and info.value.partial_usage.output_tokens == 2


async def test_stream_cut_mid_event(serve: Any) -> None:
    whole = chunk({"content": "partial"}) + chunk({"content": "never arrives"})
    server = serve(lambda r: Reply.sse([whole[:70], whole[70:]], cut_after=1))
    p = provider(server.url)
    with pytest.raises(MalformedResponseError):
        await collect(p.chat_stream(ChatRequest(messages=[Message.user("hi")])))
    await p.aclose()


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retry_after"),
    [
        (
            429,
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
            {"retry-after": "7"},
            RateLimitedError,
            7.0,
        ),
        (
            429,
            {"error": {"message": "slow down"}},
            {"retry-after-ms": "1500"},
            RateLimitedError,
            1.5,
        ),
        (
            429,
            {"error": {"message": "quota", "code": "insufficient_quota"}},
            {},
            AuthenticationError,
            None,
        ),
        (503, {"error": {"message": "busy"}}, {}, OverloadedError, None),
        (529, {"error": {"message": "overloaded"}}, {}, OverloadedError, None),
        (500, {"error": {"message": "boom"}}, {}, ServerError, None),
        (
            401,
            {"error": {"message": "bad key", "code": "invalid_api_key"}},
            {},
            AuthenticationError,
            None,
        ),
        (403, {"error": {"message": "forbidden"}}, {}, AuthenticationError, None),
        (
            400,
            {"error": {"message": "too long", "code": "context_length_exceeded"}},
            {},
            ContextOverflowError,
            None,
        ),
        (
            400,
            {"error": {"message": "This model's maximum context length is exceeded"}},
            {},
            InvalidRequestError,
            None,
        ),
    ],
)
async def test_error_statuses(
    serve: Any,
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: type,
    retry_after: float | None,
) -> None:
    server = serve(lambda r: Reply.json(body, status=status, headers=headers))
    p = provider(server.url)
    with pytest.raises(expected) as info:
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    with pytest.raises(expected):
        await collect(p.chat_stream(ChatRequest(messages=[Message.user("hi")])))
    await p.aclose()
    assert type(info.value) is expected
    assert info.value.retry_after == retry_after
    assert info.value.status == status
    assert "\n" not in str(info.value)


async def test_retry_after_http_date(serve: Any) -> None:
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = serve(lambda r: Reply.json({"error": {"message": "x"}}, 429, {"retry-after": when}))
    p = provider(server.url)
    with pytest.raises(RateLimitedError) as info:
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    await p.aclose()
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31


async def test_html_error_page_from_a_proxy(serve: Any) -> None:
    page = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>" + "x" * 5000 + "</body></html>"
    server = serve(lambda r: Reply(status=502, body=page, headers={"content-type": "text/html"}))
    p = provider(server.url)
    with pytest.raises(ServerError) as info:
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    with pytest.raises(ServerError):
        await collect(p.chat_stream(ChatRequest(messages=[Message.user("hi")])))
    await p.aclose()
    assert "HTML" in str(info.value) and len(str(info.value)) < 200


async def test_html_page_with_200(serve: Any) -> None:
    page = "<html><body>Please log in to the captive portal</body></html>"
    server = serve(lambda r: Reply(status=200, body=page, headers={"content-type": "text/html"}))
    p = provider(server.url)
    with pytest.raises(MalformedResponseError, match="HTML"):
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    with pytest.raises(MalformedResponseError):
        await collect(p.chat_stream(ChatRequest(messages=[Message.user("hi")])))
    await p.aclose()


@pytest.mark.parametrize("body", ["", '{"choices": [', "not json at all"])
async def test_non_json_or_truncated_body(serve: Any, body: str) -> None:
    server = serve(
        lambda r: Reply(status=200, body=body, headers={"content-type": "application/json"})
    )
    p = provider(server.url)
    with pytest.raises(MalformedResponseError):
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    await p.aclose()


async def test_200_with_error_body(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"error": {"message": "upstream failed", "code": 502}}))
    p = provider(server.url)
    with pytest.raises(ServerError, match="upstream failed"):
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    await p.aclose()


async def test_key_echoed_by_server_is_redacted(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"error": {"message": f"key {KEY} is wrong"}}, 401))
    p = provider(server.url)
    with pytest.raises(AuthenticationError) as info:
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    await p.aclose()
    for text in (str(info.value), repr(info.value), info.value.message, repr(p)):
        assert KEY not in text
    assert "[REDACTED]" in str(info.value)


async def test_connection_refused_and_timeout(serve: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    p = provider(f"http://127.0.0.1:{free_port}")
    with pytest.raises(NetworkError) as info:
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    assert info.value.transient
    await p.aclose()

    server = serve(lambda r: Reply(body="{}", delay=3.0))
    p = provider(server.url)
    with pytest.raises(ProviderTimeoutError):
        await p.chat(ChatRequest(messages=[Message.user("hi")]))
    await p.aclose()


async def test_embeddings_unsupported_without_model(serve: Any) -> None:
    p = provider("http://127.0.0.1:9")
    with pytest.raises(UnsupportedError):
        await p.embed(["x"])
    await p.aclose()


async def test_embeddings_batch_order_and_base64(serve: Any) -> None:
    import base64
    from array import array

    vec = array("f", [0.5, -1.0, 2.0])

    def handler(request: Recorded) -> Reply:
        return Reply.json(
            {
                "data": [
                    {"index": 1, "embedding": [1.0, 2.0, 3.0]},
                    {"index": 0, "embedding": base64.b64encode(vec.tobytes()).decode()},
                ]
            }
        )

    server = serve(handler)
    p = provider(server.url)
    got = await p.embed(["a", "b"], model="text-embedding-3-small")
    await p.aclose()
    assert got == [[0.5, -1.0, 2.0], [1.0, 2.0, 3.0]]
