"""The Anthropic provider against the project's own fixtures (no corpus needed).

Bad input from the wire — a cut stream, an error event inside a 200 stream, an error body with a
200, HTML from a proxy, unknown events, tool arguments that are not JSON — each surfaces as the
right typed error with the usage seen so far. Also: auth headers (API key and OAuth), prompt-cache
breakpoints, request mapping, rate limits, and the CLI streaming from a local server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _server import Recorded, Reply, split_bytes
from openkoi import (
    AuthenticationError,
    ChatRequest,
    ContextOverflowError,
    InvalidRequestError,
    InvalidToolArgumentsError,
    MalformedResponseError,
    Message,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    ServerError,
    ToolCall,
    ToolDef,
    UnsupportedError,
)
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.anthropic import (
    OAUTH_BETA,
    AnthropicProvider,
    _apply_cache_breakpoints,
)

pytestmark = pytest.mark.anyio

KEY = "sk-ant-api03-secret-value-0123456789"
OAUTH_TOKEN = "sk-ant-oat01-oauth-access-token-0123456789"
HTML_502 = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
)
HTML_200 = "<html><body><h1>Sign in to the corporate proxy</h1></body></html>"


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def message_start(input_tokens: int = 25, cache_read: int = 0, cache_write: int = 0) -> str:
    usage = {
        "input_tokens": input_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "output_tokens": 1,
    }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "usage": usage,
    }
    return sse("message_start", {"type": "message_start", "message": message})


def text_block(index: int, *pieces: str) -> list[str]:
    return [
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        *(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": p},
                },
            )
            for p in pieces
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def tool_block(index: int, call_id: str, name: str, *fragments: str) -> list[str]:
    start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return [
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        ),
        *(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": f},
                },
            )
            for f in fragments
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def message_end(stop: str = "end_turn", output_tokens: int = 9) -> list[str]:
    return [
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


def stream_reply(events: list[str], chunk: int = 23, **kwargs: Any) -> Reply:
    """The events as one body cut into small chunks, so lines and events split across reads."""
    body = "".join(events).encode()
    return Reply(
        chunks=list(split_bytes(body, chunk)),
        headers={"content-type": "text/event-stream; charset=utf-8"},
        **kwargs,
    )


def provider_for(url: str, key: Secret | None = None, **options: Any) -> AnthropicProvider:
    return AnthropicProvider(
        ProviderSettings(
            id="anthropic",
            name="Anthropic",
            base_url=url,
            api_key=key or Secret(KEY),
            default_model="claude-sonnet-4-5",
            options=options,
        )
    )


def hello() -> ChatRequest:
    return ChatRequest(messages=[Message.user("hello")])


async def run_stream(server_url: str, **options: Any) -> Any:
    provider = provider_for(server_url, **options)
    try:
        return await collect(provider.chat_stream(hello()))
    finally:
        await provider.aclose()


async def run_chat(server_url: str) -> Any:
    provider = provider_for(server_url)
    try:
        return await provider.chat(hello())
    finally:
        await provider.aclose()


# -- streams --------------------------------------------------------------------------------


async def test_stream_text_tools_and_usage(serve: Any) -> None:
    events = [
        message_start(input_tokens=12, cache_read=100, cache_write=7),
        sse("ping", {"type": "ping"}),
        *text_block(0, "Héllo ", "wörld"),
        *tool_block(1, "toolu_a", "lookup", '{"q": ', '"x"}'),
        *tool_block(2, "toolu_b", "lookup", '{"q": "y"}'),
        *message_end("tool_use", output_tokens=31),
    ]
    server = serve(lambda r: stream_reply(events, chunk=7))
    provider = provider_for(server.url)
    chunks = []
    try:
        async for chunk in provider.chat_stream(hello()):
            chunks.append(chunk)
    finally:
        await provider.aclose()
    assert chunks[0].usage is not None and chunks[0].usage.input_tokens == 12
    deltas = [c.tool_calls[0] for c in chunks if c.tool_calls]
    assert [(d.index, d.id, d.name) for d in deltas if d.id] == [
        (0, "toolu_a", "lookup"),
        (1, "toolu_b", "lookup"),
    ]
    response = await collect(_replay(chunks))
    assert response.content == "Héllo wörld"
    assert [c.parsed_arguments() for c in response.tool_calls] == [{"q": "x"}, {"q": "y"}]
    assert response.stop_reason == "tool_use"
    assert response.model == "claude-test"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens) == (12, 31)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (100, 7)
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.json()["stream"] is True
    assert sent.headers["accept"] == "text/event-stream"


async def _replay(chunks: list[Any]) -> Any:
    for chunk in chunks:
        yield chunk


async def test_stream_cut_mid_event_reports_partial_usage(serve: Any) -> None:
    events = [message_start(input_tokens=40), *text_block(0, "partial answer")]
    body = "".join(events).encode()
    half = body + b'event: content_block_delta\ndata: {"type":"content_bl'
    pieces = split_bytes(half, 16)
    server = serve(
        lambda r: Reply(
            chunks=pieces, headers={"content-type": "text/event-stream"}, cut_after=len(pieces)
        )
    )
    provider = provider_for(server.url)
    seen = []
    try:
        with pytest.raises(MalformedResponseError) as info:
            async for chunk in provider.chat_stream(hello()):
                seen.append(chunk.delta)
    finally:
        await provider.aclose()
    assert "".join(seen) == "partial answer"
    assert info.value.transient
    assert info.value.partial_usage is not None
    assert info.value.partial_usage.input_tokens == 40


async def test_stream_that_ends_without_message_stop(serve: Any) -> None:
    events = [message_start(input_tokens=5), *text_block(0, "abc")]
    server = serve(lambda r: stream_reply(events))
    with pytest.raises(MalformedResponseError, match="message_stop") as info:
        await run_stream(server.url)
    assert info.value.partial_usage is not None
    assert info.value.partial_usage.input_tokens == 5


@pytest.mark.parametrize(
    ("etype", "expected"),
    [
        ("overloaded_error", OverloadedError),
        ("rate_limit_error", RateLimitedError),
        ("api_error", ServerError),
        ("invalid_request_error", InvalidRequestError),
    ],
)
async def test_error_event_inside_a_200_stream(
    etype: str, expected: type[ProviderError], serve: Any
) -> None:
    events = [
        message_start(input_tokens=33),
        *text_block(0, "so far"),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": None},
                "usage": {"output_tokens": 4},
            },
        ),
        sse("error", {"type": "error", "error": {"type": etype, "message": "Overloaded"}}),
    ]
    server = serve(lambda r: stream_reply(events))
    with pytest.raises(expected) as info:
        await run_stream(server.url)
    error = info.value
    assert type(error) is expected
    assert error.code == etype
    assert error.status is None  # it came inside a 200, not as an HTTP status
    assert error.transient == (etype != "invalid_request_error")
    assert error.partial_usage is not None
    assert (error.partial_usage.input_tokens, error.partial_usage.output_tokens) == (33, 4)


async def test_unknown_events_and_deltas_are_ignored(serve: Any) -> None:
    events = [
        message_start(),
        sse("content_block_flux", {"type": "content_block_flux", "index": 0}),
        *text_block(0, "fine"),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "hologram_delta", "x": 1},
            },
        ),
        ": a comment line\n\n",
        *message_end(),
    ]
    server = serve(lambda r: stream_reply(events))
    response = await run_stream(server.url)
    assert response.content == "fine"
    assert response.stop_reason == "end_turn"


async def test_event_that_is_not_json(serve: Any) -> None:
    events = [message_start(input_tokens=3), "event: content_block_delta\ndata: {oops\n\n"]
    server = serve(lambda r: stream_reply(events))
    with pytest.raises(MalformedResponseError, match="not JSON") as info:
        await run_stream(server.url)
    assert info.value.partial_usage is not None


async def test_tool_arguments_that_are_not_json_are_surfaced(serve: Any) -> None:
    events = [
        message_start(),
        *tool_block(0, "toolu_bad", "lookup", '{"q": ', "oops}"),
        *message_end("tool_use"),
    ]
    server = serve(lambda r: stream_reply(events))
    response = await run_stream(server.url)
    call = response.tool_calls[0]
    assert call.arguments == '{"q": oops}'  # kept as the model wrote it
    with pytest.raises(InvalidToolArgumentsError) as info:
        call.parsed_arguments()
    assert info.value.tool_call_id == "toolu_bad"


async def test_tool_input_sent_as_bad_json_text_is_surfaced(serve: Any) -> None:
    body = {
        "type": "message",
        "content": [{"type": "tool_use", "id": "toolu_s", "name": "f", "input": '{"a": 1,'}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    server = serve(lambda r: Reply.json(body))
    response = await run_chat(server.url)
    assert response.tool_calls[0].arguments == '{"a": 1,'
    with pytest.raises(InvalidToolArgumentsError):
        response.tool_calls[0].parsed_arguments()
    assert response.usage.input_tokens == 3


async def test_stream_answered_with_a_json_error_body_and_200(serve: Any) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server = serve(lambda r: Reply.json(body))
    with pytest.raises(OverloadedError):
        await run_stream(server.url)


# -- whole responses and error statuses -------------------------------------------------------


async def test_error_body_with_200(serve: Any) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server = serve(lambda r: Reply.json(body))
    with pytest.raises(OverloadedError) as info:
        await run_chat(server.url)
    assert info.value.transient


@pytest.mark.parametrize("streaming", [False, True])
async def test_html_502_from_a_proxy(streaming: bool, serve: Any) -> None:
    server = serve(
        lambda r: Reply(status=502, body=HTML_502, headers={"content-type": "text/html"})
    )
    with pytest.raises(ServerError, match="HTML page") as info:
        await (run_stream(server.url) if streaming else run_chat(server.url))
    assert info.value.status == 502
    assert "nginx" not in str(info.value)


@pytest.mark.parametrize("streaming", [False, True])
async def test_html_200_from_a_proxy(streaming: bool, serve: Any) -> None:
    server = serve(
        lambda r: Reply(status=200, body=HTML_200, headers={"content-type": "text/html"})
    )
    with pytest.raises(MalformedResponseError, match="HTML"):
        await (run_stream(server.url) if streaming else run_chat(server.url))


async def test_429_retry_after_and_rate_limit_headers(serve: Any) -> None:
    headers = {
        "retry-after": "7",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:07Z",
    }
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    server = serve(lambda r: Reply.json(body, status=429, headers=headers))
    provider = provider_for(server.url)
    try:
        with pytest.raises(RateLimitedError) as info:
            await provider.chat(hello())
    finally:
        await provider.aclose()
    assert info.value.retry_after == 7.0
    assert info.value.transient
    assert provider.last_rate_limits == {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:07Z",
    }


async def test_529_overloaded(serve: Any) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server = serve(lambda r: Reply.json(body, status=529))
    with pytest.raises(OverloadedError) as info:
        await run_stream(server.url)
    assert info.value.status == 529


async def test_prompt_too_long_is_context_overflow(serve: Any) -> None:
    message = "prompt is too long: 215000 tokens > 200000 maximum"
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    server = serve(lambda r: Reply.json(body, status=400))
    with pytest.raises(ContextOverflowError) as info:
        await run_chat(server.url)
    assert isinstance(info.value, InvalidRequestError)
    assert not info.value.transient


async def test_secrets_never_in_errors_or_reprs(serve: Any) -> None:
    body = {"type": "error", "error": {"type": "authentication_error", "message": f"bad key {KEY}"}}
    server = serve(lambda r: Reply.json(body, status=401))
    provider = provider_for(server.url)
    try:
        with pytest.raises(AuthenticationError) as info:
            await provider.chat(hello())
    finally:
        await provider.aclose()
    shown = str(info.value) + repr(info.value) + repr(provider) + repr(provider.settings)
    assert KEY not in shown
    assert "[REDACTED]" in str(info.value)


# -- what goes out --------------------------------------------------------------------------


async def test_api_key_and_oauth_headers(serve: Any) -> None:
    body = {
        "type": "message",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    server = serve(lambda r: Reply.json(body))
    key_provider = provider_for(server.url, betas="files-api-2025-04-14")
    oauth_provider = provider_for(server.url, key=Secret(OAUTH_TOKEN, kind="oauth"))
    try:
        assert (await key_provider.chat(hello())).content == "ok"
        assert (await oauth_provider.chat(hello())).content == "ok"
    finally:
        await key_provider.aclose()
        await oauth_provider.aclose()
    with_key, with_oauth = server.requests
    assert with_key.headers["x-api-key"] == KEY
    assert "authorization" not in with_key.headers
    assert with_key.headers["anthropic-beta"] == "files-api-2025-04-14"
    assert with_key.headers["anthropic-version"] == "2023-06-01"
    assert with_oauth.headers["authorization"] == f"Bearer {OAUTH_TOKEN}"
    assert "x-api-key" not in with_oauth.headers
    assert with_oauth.headers["anthropic-beta"] == OAUTH_BETA
    assert with_oauth.headers["anthropic-version"] == "2023-06-01"


def _conversation() -> ChatRequest:
    return ChatRequest(
        model="claude-sonnet-4-5",
        system="You are terse.",
        tools=[
            ToolDef(name="a", description="first", parameters={"type": "object", "properties": {}}),
            ToolDef(
                name="b", parameters={"type": "object", "properties": {"x": {"type": "string"}}}
            ),
        ],
        messages=[
            Message.user("question one"),
            Message.assistant("answer one"),
            Message.user("question two"),
            Message.assistant(
                "calling",
                [
                    ToolCall(id="t1", name="a", arguments="{}"),
                    ToolCall(id="t2", name="b", arguments='{"x": "1"}'),
                ],
            ),
            Message.tool_result("t1", "result one"),
            Message.tool_result("t2", "result two"),
            Message.user("and now?"),
        ],
        temperature=0.2,
        stop=["END"],
    )


def _cache_paths(body: dict[str, Any]) -> list[str]:
    found = []
    for i, block in enumerate(body.get("system", [])):
        if "cache_control" in block:
            found.append(f"system[{i}]")
    for i, tool in enumerate(body.get("tools", [])):
        if "cache_control" in tool:
            found.append(f"tools[{i}]")
    for t, turn in enumerate(body["messages"]):
        for b, block in enumerate(turn["content"]):
            if "cache_control" in block:
                found.append(f"messages[{t}][{b}]")
    return found


def _ok_reply(request: Recorded) -> Reply:
    return Reply.json(
        {
            "type": "message",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )


async def test_request_mapping_and_cache_breakpoints(serve: Any) -> None:
    server = serve(_ok_reply)
    provider = provider_for(server.url)
    try:
        await provider.chat(_conversation())
    finally:
        await provider.aclose()
    body = server.requests[0].json()
    assert body["max_tokens"] == 8192  # Anthropic requires it; the request named none
    assert body["temperature"] == 0.2 and body["stop_sequences"] == ["END"]
    assert body["system"][0]["text"] == "You are terse."
    assert [t["name"] for t in body["tools"]] == ["a", "b"]
    assert "description" not in body["tools"][1]
    assert [t["role"] for t in body["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    last = body["messages"][-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert [b.get("tool_use_id") for b in last[:2]] == ["t1", "t2"]
    assistant = body["messages"][3]["content"]
    assert assistant[1] == {"type": "tool_use", "id": "t1", "name": "a", "input": {}}
    assert assistant[2]["input"] == {"x": "1"}
    # system, last tool, the last message, and the user turn before it: four, the maximum
    assert _cache_paths(body) == ["system[0]", "tools[1]", "messages[2][0]", "messages[4][2]"]
    assert all(
        b["cache_control"] == {"type": "ephemeral"}
        for b in [body["system"][0], body["tools"][1], last[2]]
    )


async def test_prompt_caching_can_be_turned_off(serve: Any) -> None:
    server = serve(_ok_reply)
    provider = provider_for(server.url, prompt_caching=False)
    try:
        await provider.chat(_conversation())
    finally:
        await provider.aclose()
    assert "cache_control" not in server.requests[0].body.decode()


def test_breakpoints_never_exceed_four() -> None:
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    body: dict[str, Any] = {
        "system": [dict(marked), dict(marked), {"type": "text", "text": "y"}],
        "tools": [{"name": "t", "input_schema": {}}],
        "messages": [
            {"role": "user", "content": [dict(marked)]},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
        ],
    }
    assert _apply_cache_breakpoints(body) == 4
    assert json.dumps(body).count("cache_control") == 4
    assert "cache_control" in body["system"][2]  # the most valuable free slot went first
    assert "cache_control" not in body["tools"][0]


async def test_max_tokens_defaults(serve: Any) -> None:
    server = serve(_ok_reply)
    provider = provider_for(server.url)
    configured = provider_for(server.url, max_tokens=1234)
    try:
        await provider.chat(
            ChatRequest(model="claude-3-haiku-20240307", messages=[Message.user("x")])
        )
        await provider.chat(ChatRequest(messages=[Message.user("x")], max_tokens=77))
        await configured.chat(hello())
    finally:
        await provider.aclose()
        await configured.aclose()
    assert [r.json()["max_tokens"] for r in server.requests] == [4096, 77, 1234]


async def test_invalid_tool_arguments_in_history_are_refused() -> None:
    provider = provider_for("http://127.0.0.1:9")
    request = ChatRequest(
        messages=[
            Message.user("x"),
            Message.assistant(None, [ToolCall(id="t", name="f", arguments="{nope")]),
            Message.tool_result("t", "r"),
        ]
    )
    try:
        with pytest.raises(InvalidToolArgumentsError):
            await provider.chat(request)
    finally:
        await provider.aclose()


async def test_embeddings_are_unsupported() -> None:
    provider = provider_for("http://127.0.0.1:9")
    try:
        with pytest.raises(UnsupportedError) as info:
            await provider.embed(["text"])
    finally:
        await provider.aclose()
    assert not info.value.transient


async def test_registry_builds_the_provider_from_env(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openkoi import ProviderRegistry

    server = serve(lambda r: stream_reply([message_start(), *text_block(0, "hi"), *message_end()]))
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    registry = ProviderRegistry()
    provider, model = registry.resolve("anthropic/claude-haiku-4-5")
    try:
        assert isinstance(provider, AnthropicProvider)
        response = await collect(
            provider.chat_stream(ChatRequest(model=model, messages=[Message.user("x")]))
        )
    finally:
        await registry.aclose()
    assert response.content == "hi"
    assert server.requests[0].json()["model"] == "claude-haiku-4-5"


# -- the CLI ----------------------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL")) and k != "OPENKOI_MODEL"
    }
    full_env.update(HOME=str(home), OPENKOI_HOME=str(home / ".openkoi"), **env)
    return subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_streams_from_a_local_server(serve: Any, tmp_path: Path) -> None:
    events = [message_start(), *text_block(0, "Hello", ", ", "world"), *message_end()]
    server = serve(lambda r: stream_reply(events, chunk_delay=0.001))
    result = run_cli(
        ["--model", "anthropic/claude-haiku-4-5", "say hello"],
        {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world\n"
    sent = server.requests[0].json()
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["messages"][0]["content"][0]["text"] == "say hello"


def test_cli_reports_a_stream_error_in_one_line(serve: Any, tmp_path: Path) -> None:
    events = [
        message_start(),
        *text_block(0, "Hel"),
        sse(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
    ]
    server = serve(lambda r: stream_reply(events))
    result = run_cli(
        ["-m", "anthropic/claude-haiku-4-5", "hi"],
        {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url},
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout.startswith("Hel")
    assert "Overloaded" in result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout
