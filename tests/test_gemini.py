"""The Gemini provider against the project's own fixtures (no corpus needed).

Bad input from the wire — a cut stream, an error inside a 200 stream, an error body with a 200,
HTML from a proxy, unknown parts, a blocked prompt — each surfaces as the right typed error with
the usage seen so far. Also: the key only ever in a header, request mapping (system, tools,
function responses), finish reasons, embeddings, the paged model list, and the CLI.
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
    ContentPolicyError,
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
)
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.gemini import GeminiProvider

pytestmark = pytest.mark.anyio

KEY = "AIzaSyOWN-fixture-key-0123456789abcdef"
HTML_502 = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>gfe</body></html>"
HTML_200 = "<html><body><h1>Captive portal: please sign in</h1></body></html>"


def usage(prompt: int, out: int = 0, cached: int = 0, thoughts: int = 0) -> dict[str, int]:
    meta = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out,
        "totalTokenCount": prompt + out,
    }
    if cached:
        meta["cachedContentTokenCount"] = cached
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def response(
    parts: list[dict[str, Any]], finish: str | None = None, meta: dict[str, int] | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    data: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-test"}
    if meta:
        data["usageMetadata"] = meta
    return data


def sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\r\n\r\n"  # Gemini separates events with CRLF CRLF


def stream_reply(events: list[str], chunk: int = 19, **kwargs: Any) -> Reply:
    body = "".join(events).encode()
    return Reply(
        chunks=list(split_bytes(body, chunk)),
        headers={"content-type": "text/event-stream"},
        **kwargs,
    )


def provider_for(url: str, key: Secret | None = None, **options: Any) -> GeminiProvider:
    return GeminiProvider(
        ProviderSettings(
            id="google",
            name="Google Gemini",
            base_url=url,
            api_key=key or Secret(KEY),
            default_model="gemini-2.5-flash",
            embedding_model="gemini-embedding-001",
            options=options,
        )
    )


def hello(model: str = "") -> ChatRequest:
    return ChatRequest(model=model, messages=[Message.user("hello")])


async def run_stream(url: str, request: ChatRequest | None = None) -> Any:
    provider = provider_for(url)
    try:
        return await collect(provider.chat_stream(request or hello()))
    finally:
        await provider.aclose()


async def run_chat(url: str, request: ChatRequest | None = None) -> Any:
    provider = provider_for(url)
    try:
        return await provider.chat(request or hello())
    finally:
        await provider.aclose()


# -- streams --------------------------------------------------------------------------------


async def test_stream_text_calls_and_usage(serve: Any) -> None:
    call = {"name": "lookup", "args": {"q": "x"}}
    events = [
        sse(response([{"text": "thinking…", "thought": True}], meta=usage(20, 0, 8, 5))),
        sse(response([{"text": "Grüße, "}], meta=usage(20, 3, 8, 5))),
        sse(response([{"text": "welt"}, {"functionCall": call}], meta=usage(20, 9, 8, 5))),
        sse(response([{"functionCall": call}], "STOP", usage(20, 12, 8, 5))),
    ]
    server = serve(lambda r: stream_reply(events, chunk=5))
    result = await run_stream(server.url)
    assert result.content == "Grüße, welt"
    assert result.reasoning == "thinking…"
    assert [c.name for c in result.tool_calls] == ["lookup", "lookup"]
    ids = [c.id for c in result.tool_calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert result.tool_calls[0].parsed_arguments() == {"q": "x"}
    assert result.stop_reason == "tool_use"  # Gemini says STOP when it wants function results
    assert (result.usage.input_tokens, result.usage.cache_read_tokens) == (12, 8)
    assert result.usage.output_tokens == 12 + 5
    sent = server.requests[0]
    assert sent.target.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert sent.headers["x-goog-api-key"] == KEY
    assert KEY not in sent.target


async def test_stream_cut_mid_event_reports_partial_usage(serve: Any) -> None:
    body = (
        sse(response([{"text": "half an "}], meta=usage(30, 2))) + 'data: {"candidates": [{"con'
    ).encode()
    pieces = split_bytes(body, 11)
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
    assert "".join(seen) == "half an "
    assert info.value.partial_usage is not None
    assert info.value.partial_usage.input_tokens == 30


async def test_stream_that_ends_without_a_finish_reason(serve: Any) -> None:
    server = serve(lambda r: stream_reply([sse(response([{"text": "abc"}], meta=usage(4, 1)))]))
    with pytest.raises(MalformedResponseError, match="finishReason") as info:
        await run_stream(server.url)
    assert info.value.partial_usage is not None
    assert info.value.partial_usage.output_tokens == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."},
            OverloadedError,
        ),
        ({"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota"}, RateLimitedError),
        ({"code": 500, "status": "INTERNAL", "message": "An internal error"}, ServerError),
        ({"code": 400, "status": "INVALID_ARGUMENT", "message": "Bad"}, InvalidRequestError),
    ],
)
async def test_error_inside_a_200_stream(
    error: dict[str, Any], expected: type[ProviderError], serve: Any
) -> None:
    events = [sse(response([{"text": "so far"}], meta=usage(17, 3))), sse({"error": error})]
    server = serve(lambda r: stream_reply(events))
    with pytest.raises(expected) as info:
        await run_stream(server.url)
    assert type(info.value) is expected
    assert info.value.code == error["status"]
    assert info.value.partial_usage is not None
    assert (info.value.partial_usage.input_tokens, info.value.partial_usage.output_tokens) == (
        17,
        3,
    )


async def test_unknown_parts_and_fields_are_ignored(serve: Any) -> None:
    events = [
        sse({"somethingNew": {"x": 1}}),
        sse(response([{"executableCode": {"code": "print(1)"}}, {"text": "ok"}])),
        ": keep-alive comment\r\n\r\n",
        sse(response([{"videoMetadata": {}}], "STOP", usage(2, 1))),
    ]
    server = serve(lambda r: stream_reply(events))
    result = await run_stream(server.url)
    assert result.content == "ok"
    assert result.stop_reason == "end_turn"


async def test_event_that_is_not_json(serve: Any) -> None:
    server = serve(
        lambda r: stream_reply([sse(response([{"text": "a"}], meta=usage(1))), "data: {no\r\n\r\n"])
    )
    with pytest.raises(MalformedResponseError, match="not JSON"):
        await run_stream(server.url)


async def test_blocked_prompt(serve: Any) -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": usage(9)}
    server = serve(
        lambda r: stream_reply([sse(blocked)]) if "alt" in r.query else Reply.json(blocked)
    )
    for run in (run_stream, run_chat):
        with pytest.raises(ContentPolicyError) as info:
            await run(server.url)
        assert info.value.code == "PROHIBITED_CONTENT"
        assert not info.value.transient
        assert info.value.partial_usage is not None
        assert info.value.partial_usage.input_tokens == 9


@pytest.mark.parametrize(
    ("reason", "stop"),
    [
        ("STOP", "end_turn"),
        ("MAX_TOKENS", "max_tokens"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("SOMETHING_NEW", "other"),
    ],
)
async def test_finish_reasons(reason: str, stop: str, serve: Any) -> None:
    server = serve(lambda r: Reply.json(response([{"text": "x"}], reason, usage(1, 1))))
    assert (await run_chat(server.url)).stop_reason == stop


async def test_stream_answered_as_a_json_array(serve: Any) -> None:
    """A proxy that drops `alt=sse` gets the JSON-array form; it is read, not refused."""
    items = [
        response([{"text": "one "}], meta=usage(3, 1)),
        response([{"text": "two"}], "STOP", usage(3, 2)),
    ]
    body = json.dumps(items, indent=1).encode()
    server = serve(
        lambda r: Reply(chunks=split_bytes(body, 13), headers={"content-type": "application/json"})
    )
    result = await run_stream(server.url)
    assert result.content == "one two"
    assert result.usage.output_tokens == 2


# -- whole responses and error statuses ---------------------------------------------------------


async def test_error_body_with_200(serve: Any) -> None:
    body = {"error": {"code": 503, "status": "UNAVAILABLE", "message": "overloaded"}}
    server = serve(lambda r: Reply.json(body))
    with pytest.raises(OverloadedError):
        await run_chat(server.url)
    with pytest.raises(OverloadedError):
        await run_stream(server.url)  # a JSON error object where a stream was expected


@pytest.mark.parametrize("streaming", [False, True])
async def test_html_502_from_a_proxy(streaming: bool, serve: Any) -> None:
    server = serve(
        lambda r: Reply(status=502, body=HTML_502, headers={"content-type": "text/html"})
    )
    with pytest.raises(ServerError, match="HTML page") as info:
        await (run_stream(server.url) if streaming else run_chat(server.url))
    assert info.value.status == 502


@pytest.mark.parametrize("streaming", [False, True])
async def test_html_200_from_a_proxy(streaming: bool, serve: Any) -> None:
    server = serve(
        lambda r: Reply(status=200, body=HTML_200, headers={"content-type": "text/html"})
    )
    with pytest.raises(MalformedResponseError, match="HTML"):
        await (run_stream(server.url) if streaming else run_chat(server.url))


async def test_404_json_body_sent_as_event_stream(serve: Any) -> None:
    body = json.dumps(
        {"error": {"code": 404, "message": "models/nope is not found", "status": "NOT_FOUND"}}
    )
    server = serve(
        lambda r: Reply(status=404, body=body, headers={"content-type": "text/event-stream"})
    )
    with pytest.raises(InvalidRequestError) as info:
        await run_stream(server.url, hello("nope"))
    assert info.value.status == 404 and info.value.code == "NOT_FOUND"


async def test_429_retry_delay(serve: Any) -> None:
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "Quota exceeded",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}],
        }
    }
    server = serve(lambda r: Reply.json(body, status=429))
    with pytest.raises(RateLimitedError) as info:
        await run_chat(server.url)
    assert info.value.retry_after == 12.0
    assert info.value.transient


async def test_key_never_in_url_or_error(serve: Any) -> None:
    body = {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": f"API key not valid: {KEY}",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    server = serve(lambda r: Reply.json(body, status=400))
    provider = provider_for(server.url)
    try:
        with pytest.raises(AuthenticationError) as info:
            await provider.chat(hello())
        with pytest.raises(AuthenticationError):
            await provider.embed(["x"])
    finally:
        await provider.aclose()
    shown = str(info.value) + repr(info.value) + repr(provider) + repr(provider.settings)
    assert KEY not in shown
    assert info.value.code == "API_KEY_INVALID"
    for request in server.requests:
        assert KEY not in request.target
        assert request.headers["x-goog-api-key"] == KEY


async def test_connection_failure_does_not_leak_the_key() -> None:
    provider = provider_for("http://127.0.0.1:9")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.chat(hello())
    finally:
        await provider.aclose()
    assert info.value.transient
    assert KEY not in str(info.value) + repr(info.value)


# -- what goes out --------------------------------------------------------------------------


def _ok(request: Recorded) -> Reply:
    return Reply.json(response([{"text": "ok"}], "STOP", usage(1, 1)))


async def test_request_mapping(serve: Any) -> None:
    server = serve(_ok)
    request = ChatRequest(
        model="gemini-2.5-flash",
        system="Be brief.",
        tools=[
            ToolDef(name="now", description="the time"),
            ToolDef(
                name="find",
                parameters={
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"q": {"type": "string"}},
                    "additionalProperties": False,
                },
            ),
        ],
        messages=[
            Message.user("what now?"),
            Message.assistant(
                "checking",
                [
                    ToolCall(id="c1", name="now", arguments="{}"),
                    ToolCall(id="c2", name="find", arguments='{"q": "z"}'),
                ],
            ),
            Message.tool_result("c1", "noon"),
            Message.tool_result("c2", '{"hits": 3}'),
            Message.user("thanks"),
        ],
        max_tokens=100,
        temperature=0.5,
        stop=["END"],
        extra={"safetySettings": []},
    )
    await run_chat(server.url, request)
    body = server.requests[0].json()
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.5,
        "stopSequences": ["END"],
    }
    assert body["safetySettings"] == []
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "now", "description": "the time"},
                {
                    "name": "find",  # as given, less the dialect name
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"q": {"type": "string"}},
                        "additionalProperties": False,
                    },
                },
            ]
        }
    ]
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        {"text": "checking"},
        {"functionCall": {"name": "now", "args": {}}},
        {"functionCall": {"name": "find", "args": {"q": "z"}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "now", "response": {"output": "noon"}}},
        {"functionResponse": {"name": "find", "response": {"hits": 3}}},
        {"text": "thanks"},
    ]


async def test_tool_result_for_an_unknown_call() -> None:
    provider = provider_for("http://127.0.0.1:9")
    request = ChatRequest(messages=[Message.user("x"), Message.tool_result("ghost", "r")])
    try:
        with pytest.raises(InvalidRequestError, match="ghost"):
            await provider.chat(request)
    finally:
        await provider.aclose()


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


async def test_unknown_signature_gets_the_stand_in_on_gemini_3(serve: Any) -> None:
    server = serve(_ok)
    history = [
        Message.user("x"),
        Message.assistant(None, [ToolCall(id="a", name="f"), ToolCall(id="b", name="f")]),
        Message.tool_result("a", "1"),
        Message.tool_result("b", "2"),
    ]
    await run_chat(server.url, ChatRequest(model="gemini-3-pro-preview", messages=history))
    await run_chat(server.url, ChatRequest(model="gemini-2.5-flash", messages=history))
    gemini3, gemini25 = (r.json()["contents"][1]["parts"] for r in server.requests)
    assert gemini3[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in gemini3[1]
    assert all("thoughtSignature" not in p for p in gemini25)


async def test_base_url_that_already_names_the_version(serve: Any) -> None:
    server = serve(_ok)
    provider = provider_for(server.url + "/v1beta")
    try:
        await provider.chat(hello("models/gemini-2.0-flash"))
    finally:
        await provider.aclose()
    assert server.requests[0].path == "/v1beta/models/gemini-2.0-flash:generateContent"


async def test_embeddings(serve: Any) -> None:
    def handler(request: Recorded) -> Reply:
        count = len(request.json()["requests"])
        return Reply.json({"embeddings": [{"values": [float(i), 0.5]} for i in range(count)]})

    server = serve(handler)
    provider = provider_for(
        server.url, embedding_dimensions=2, embedding_task_type="RETRIEVAL_DOCUMENT"
    )
    try:
        vectors = await provider.embed(["a", "b", "c"])
        assert await provider.embed([]) == []
    finally:
        await provider.aclose()
    assert vectors == [[0.0, 0.5], [1.0, 0.5], [2.0, 0.5]]
    sent = server.requests[0]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.json()["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "outputDimensionality": 2,
        "taskType": "RETRIEVAL_DOCUMENT",
        "content": {"parts": [{"text": "b"}]},
    }
    assert len(server.requests) == 1  # an empty batch never reaches the server


async def test_embeddings_count_mismatch(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"embeddings": [{"values": [1.0]}]}))
    provider = provider_for(server.url)
    try:
        with pytest.raises(MalformedResponseError):
            await provider.embed(["a", "b"])
    finally:
        await provider.aclose()


async def test_model_list_stops_on_a_repeated_page_token(serve: Any) -> None:
    page = {
        "models": [{"name": "models/m", "supportedGenerationMethods": ["generateContent"]}],
        "nextPageToken": "same",
    }
    server = serve(lambda r: Reply.json(page))
    provider = provider_for(server.url)
    try:
        models = await provider.models()
    finally:
        await provider.aclose()
    assert [m.id for m in models] == ["m", "m"]
    assert len(server.requests) == 2
    assert server.requests[1].query["pageToken"] == "same"


async def test_registry_alias_and_env(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from openkoi import ProviderRegistry

    server = serve(lambda r: stream_reply([sse(response([{"text": "hi"}], "STOP", usage(1, 1)))]))
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", server.url)
    registry = ProviderRegistry()
    provider, model = registry.resolve("gemini/gemini-2.5-flash")
    try:
        assert isinstance(provider, GeminiProvider) and provider.id == "google"
        result = await collect(provider.chat_stream(hello(model)))
    finally:
        await registry.aclose()
    assert result.content == "hi"


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
    events = [
        sse(response([{"text": "Hello"}], meta=usage(2, 1))),
        sse(response([{"text": ", world"}], "STOP", usage(2, 3))),
    ]
    server = serve(lambda r: stream_reply(events, chunk_delay=0.001))
    result = run_cli(
        ["--model", "google/gemini-2.5-flash", "say hello"],
        {"GOOGLE_API_KEY": KEY, "GOOGLE_BASE_URL": server.url},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world\n"
    sent = server.requests[0]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.json()["contents"] == [{"role": "user", "parts": [{"text": "say hello"}]}]


def test_cli_reports_a_bad_key_in_one_line(serve: Any, tmp_path: Path) -> None:
    body = {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": "API key not valid. Please pass a valid API key.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    server = serve(lambda r: Reply.json(body, status=400))
    result = run_cli(
        ["-m", "google/gemini-2.5-flash", "hi"],
        {"GOOGLE_API_KEY": KEY, "GOOGLE_BASE_URL": server.url},
        tmp_path,
    )
    assert result.returncode == 1
    assert "API key not valid" in result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout
