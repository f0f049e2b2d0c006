"""Ollama: every case of the shared corpus from a real socket, the project's own bad-input
fixtures, the probe, the default-model choice, and the CLI against a local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from _corpus import Case, corpus_params, load_case
from _server import Recorded, Reply, split_bytes
from openkoi import (
    ChatRequest,
    InvalidRequestError,
    InvalidToolArgumentsError,
    MalformedResponseError,
    Message,
    NetworkError,
    ServerError,
    ToolCall,
    ToolDef,
)
from openkoi._provider import ProviderSettings, collect
from openkoi_providers.ollama import (
    OllamaProbe,
    OllamaProvider,
    create,
    normalize_host,
    pick_default_model,
    probe,
)
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

NDJSON = {"content-type": "application/x-ndjson"}


def _provider(url: str, **changes: Any) -> OllamaProvider:
    settings = ProviderSettings(id="ollama", name="Ollama", base_url=url, **changes)
    return create(settings)


def _lines(*objects: Any) -> list[bytes]:
    return [json.dumps(o).encode() + b"\n" for o in objects]


def _done(**extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 7,
        "eval_count": 3,
        **extra,
    }


def _text(text: str) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": False}


# -- the corpus --------------------------------------------------------------------------------


def _neutral_request(body: dict[str, Any]) -> ChatRequest:
    """The neutral request that should produce the recorded body's messages, tools, options."""
    messages = []
    for i, raw in enumerate(body.get("messages") or []):
        calls = [
            ToolCall(
                id=c.get("id") or f"call_{i}_{j}",
                name=c["function"]["name"],
                arguments=json.dumps(c["function"]["arguments"]),
            )
            for j, c in enumerate(raw.get("tool_calls") or [])
        ]
        messages.append(Message(role=raw["role"], content=raw.get("content"), tool_calls=calls))
    tools = [
        ToolDef(
            name=t["function"]["name"],
            description=t["function"].get("description", ""),
            parameters=t["function"]["parameters"],
        )
        for t in body.get("tools") or []
    ]
    options = dict(body.get("options") or {})
    temperature = options.pop("temperature", None)
    return ChatRequest(
        model=body["model"],
        messages=messages,
        tools=tools,
        temperature=temperature,
        extra={"options": options} if options else {},
    )


def _without_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        message = dict(message)
        if "tool_calls" in message:
            message["tool_calls"] = [
                {k: v for k, v in c.items() if k != "id"} for c in message["tool_calls"]
            ]
        out.append(message)
    return out


def _replay(case: Case, chunk_size: int = 23) -> Any:
    def handler(request: Recorded) -> Reply:
        if request.path == "/api/embed" and case.request["path"] == "/api/embeddings":
            # An Ollama older than /api/embed: Go's plain-text 404 for an unknown route.
            return Reply(
                status=404, body="404 page not found", headers={"content-type": "text/plain"}
            )
        assert request.path == case.request["path"]
        return case.reply(chunk_size)

    return handler


def _expected(case: Case) -> dict[str, Any]:
    """A naive reading of the recording: text, thinking, tool calls and the final counts."""
    text, thinking, calls, final = [], [], [], {}
    for line in case.body.decode().splitlines():
        data = json.loads(line)
        message = data.get("message") or {}
        text.append(message.get("content") or data.get("response") or "")
        thinking.append(message.get("thinking") or "")
        calls += message.get("tool_calls") or []
        if data.get("done"):
            final = data
    return {"text": "".join(text), "thinking": "".join(thinking), "calls": calls, "final": final}


@pytest.mark.parametrize("name", corpus_params("ollama"))
async def test_ollama_case(name: str, serve: Any) -> None:
    case = load_case("ollama", name)
    server = serve(_replay(case))
    body = case.request["body"]
    if name == "openai_compat_chat":  # Ollama's OpenAI-compatible endpoint, same provider family
        compat = OpenAICompatibleProvider(
            ProviderSettings(id="ollama-compat", name="Ollama", base_url=server.url + "/v1")
        )
        try:
            answer = await compat.chat(
                ChatRequest(model=body["model"], messages=[Message.user("q")])
            )
        finally:
            await compat.aclose()
        assert answer.content == case.json()["choices"][0]["message"]["content"]
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (21, 16)
        return
    provider = _provider(server.url)
    try:
        if name == "embeddings_legacy":
            vectors = await provider.embed([body["prompt"]], model=body["model"])
            assert vectors == [case.json()["embedding"]]
            assert [r.path for r in server.requests] == ["/api/embed", "/api/embeddings"]
            assert server.requests[1].json() == {"model": "llama3", "prompt": "all-minilm"}
            return
        if case.status >= 400:
            with pytest.raises(InvalidRequestError) as info:
                await provider.chat(_neutral_request(body))
            assert info.value.status == 404
            assert "nonexistent-model:latest" in info.value.message
            assert "ollama pull" in info.value.message
            return
        if case.request["path"] == "/api/generate":
            if body["stream"]:
                response = await collect(provider.generate_stream(body["prompt"], model="llama3"))
            else:
                response = await provider.generate(body["prompt"], model="llama3")
            sent = server.requests[0].json()
            assert (sent["prompt"], sent["stream"]) == (body["prompt"], body["stream"])
        else:
            request = _neutral_request(body)
            if body["stream"]:
                response = await collect(provider.chat_stream(request))
            else:
                response = await provider.chat(request)
            sent = server.requests[0].json()
            assert _without_ids(sent["messages"]) == _without_ids(body["messages"])
            assert sent.get("tools", []) == body.get("tools", [])
            assert sent.get("options", {}) == body.get("options", {})
            assert sent["stream"] == body["stream"]
        want = _expected(case)
        assert response.content == want["text"]
        assert response.reasoning == want["thinking"]
        assert response.usage.input_tokens == want["final"]["prompt_eval_count"]
        assert response.usage.output_tokens == want["final"]["eval_count"]
        assert [(c.id, c.name, c.parsed_arguments()) for c in response.tool_calls] == [
            (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in want["calls"]
        ]
        assert response.stop_reason == ("tool_use" if want["calls"] else "end_turn")
        assert response.model == want["final"]["model"]
    finally:
        await provider.aclose()


async def test_corpus_specifics(serve: Any) -> None:
    """Facts about particular recordings, spelled out so a regression names itself."""
    case = load_case("ollama", "chat_tool_calls")
    server = serve(_replay(case))
    provider = _provider(server.url)
    try:
        response = await provider.chat(_neutral_request(case.request["body"]))
    finally:
        await provider.aclose()
    [call] = response.tool_calls
    assert call.id == "call_gsiiy8py" and call.name == "get_current_weather"
    assert call.parsed_arguments() == {"city": "Paris"}
    assert response.stop_reason == "tool_use"
    assert response.reasoning.startswith("Thinking Process:")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (292, 143)

    case = load_case("ollama", "chat_stream_thinking_ndjson")
    server = serve(_replay(case, chunk_size=7))
    provider = _provider(server.url)
    chunks = []
    try:
        async for chunk in provider.chat_stream(_neutral_request(case.request["body"])):
            chunks.append(chunk)
    finally:
        await provider.aclose()
    assert chunks[0].reasoning_delta == "Here" and not chunks[0].delta
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 889
    assert "".join(c.delta for c in chunks) == "1\n2\n3\n4\n5"


# -- requests going out ------------------------------------------------------------------------


async def test_request_mapping(serve: Any) -> None:
    server = serve(lambda r: Reply(chunks=_lines(_text("ok"), _done()), headers=NDJSON))
    provider = _provider(server.url)
    request = ChatRequest(
        model="llama3.3",
        system="be brief",
        messages=[
            Message.user("weather?"),
            Message.assistant(
                "", [ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}')]
            ),
            Message.tool_result("c1", "sunny"),
        ],
        tools=[ToolDef(name="weather", description="look it up")],
        max_tokens=50,
        temperature=0.2,
        stop=["END"],
        extra={"options": {"num_ctx": 8192}, "keep_alive": "5m", "think": True},
    )
    try:
        response = await collect(provider.chat_stream(request))
    finally:
        await provider.aclose()
    assert response.content == "ok"
    sent = server.requests[0].json()
    assert server.requests[0].path == "/api/chat"
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_name": "weather", "tool_call_id": "c1"},
    ]
    assert sent["tools"][0]["function"]["name"] == "weather"
    assert sent["options"] == {
        "num_predict": 50,
        "temperature": 0.2,
        "stop": ["END"],
        "num_ctx": 8192,
    }
    assert (sent["stream"], sent["keep_alive"], sent["think"]) == (True, "5m", True)


async def test_bad_outgoing_tool_arguments_are_surfaced(serve: Any) -> None:
    server = serve(lambda r: Reply.json(_done()))
    provider = _provider(server.url)
    bad = Message.assistant(None, [ToolCall(id="c1", name="f", arguments="{not json")])
    try:
        with pytest.raises(InvalidToolArgumentsError):
            await provider.chat(ChatRequest(model="m", messages=[Message.user("x"), bad]))
    finally:
        await provider.aclose()
    assert server.requests == []


# -- the project's own bad-input fixtures ------------------------------------------------------


async def _stream_error(serve: Any, reply: Reply) -> tuple[Any, list[Any]]:
    server = serve(lambda r: reply)
    provider = _provider(server.url)
    seen: list[Any] = []
    try:
        with pytest.raises(Exception) as info:
            async for chunk in provider.chat_stream(
                ChatRequest(model="m", messages=[Message.user("x")])
            ):
                seen.append(chunk)
    finally:
        await provider.aclose()
    return info.value, seen


async def test_stream_cut_mid_line(serve: Any) -> None:
    body = b"".join(_lines(_text("Hel"), _text("lo"), _done()))
    cut = body.index(b'"done": true') - 5
    error, seen = await _stream_error(
        serve, Reply(chunks=[body[:20], body[20:cut], body[cut:]], cut_after=2, headers=NDJSON)
    )
    assert isinstance(error, MalformedResponseError)
    assert "".join(c.delta for c in seen) == "Hello"
    # Ollama reports usage only on its final line, so nothing was counted before the cut.
    assert error.partial_usage is None


async def test_stream_ending_without_done_line(serve: Any) -> None:
    error, seen = await _stream_error(serve, Reply(chunks=_lines(_text("Hi")), headers=NDJSON))
    assert isinstance(error, MalformedResponseError)
    assert "done" in error.message
    assert [c.delta for c in seen] == ["Hi"]


async def test_error_line_inside_a_200_stream(serve: Any) -> None:
    lines = _lines(_text("partial"), {"error": "an error was encountered while running the model"})
    error, seen = await _stream_error(serve, Reply(chunks=lines, headers=NDJSON))
    assert isinstance(error, ServerError) and error.transient
    assert "running the model" in error.message
    assert [c.delta for c in seen] == ["partial"]


async def test_200_with_an_error_body(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"error": "model requires more system memory"}))
    provider = _provider(server.url)
    try:
        with pytest.raises(ServerError) as info:
            await provider.chat(ChatRequest(model="m", messages=[Message.user("x")]))
        assert info.value.status == 200 and "system memory" in info.value.message
        # The same body where a stream was expected.
        with pytest.raises(ServerError) as info:
            await collect(
                provider.chat_stream(ChatRequest(model="m", messages=[Message.user("x")]))
            )
        assert "system memory" in info.value.message
    finally:
        await provider.aclose()


@pytest.mark.parametrize("status", [200, 502])
async def test_html_from_a_proxy(serve: Any, status: int) -> None:
    html = "<!DOCTYPE html><html><body><h1>Bad gateway</h1></body></html>"
    error, _ = await _stream_error(
        serve, Reply(status=status, body=html, headers={"content-type": "text/html"})
    )
    assert isinstance(error, MalformedResponseError if status == 200 else ServerError)
    assert "HTML" in error.message and "<body>" not in error.message


async def test_unknown_lines_are_ignored(serve: Any) -> None:
    lines = _lines(
        {"status": "loading model"},
        {"model": "m", "created_at": "x", "some_new_field": {"a": 1}, "done": False},
        _text("fine"),
        _done(brand_new_stat=3),
    )
    server = serve(lambda r: Reply(chunks=[b"\n", *lines], headers=NDJSON))
    provider = _provider(server.url)
    try:
        response = await collect(
            provider.chat_stream(ChatRequest(model="m", messages=[Message.user("x")]))
        )
    finally:
        await provider.aclose()
    assert response.content == "fine"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)


async def test_tool_calls_in_a_stream(serve: Any) -> None:
    calls = [
        {"function": {"name": "a", "arguments": {"x": 1}}},
        {"function": {"name": "b", "arguments": "{not json"}},
    ]
    lines = _lines(
        {
            "model": "m",
            "message": {"role": "assistant", "content": "", "tool_calls": calls},
            "done": False,
        },
        _done(),
    )
    server = serve(lambda r: Reply(chunks=split_bytes(b"".join(lines), 9), headers=NDJSON))
    provider = _provider(server.url)
    try:
        response = await collect(
            provider.chat_stream(ChatRequest(model="m", messages=[Message.user("x")]))
        )
    finally:
        await provider.aclose()
    assert response.stop_reason == "tool_use"
    first, second = response.tool_calls
    assert first.id and second.id and first.id != second.id  # generated, unique
    assert (first.name, first.parsed_arguments()) == ("a", {"x": 1})
    assert second.arguments == "{not json"
    with pytest.raises(InvalidToolArgumentsError):
        second.parsed_arguments()


async def test_length_stop_reason(serve: Any) -> None:
    server = serve(
        lambda r: Reply.json(
            {**_done(), "done_reason": "length", "message": {"role": "assistant", "content": "cut"}}
        )
    )
    provider = _provider(server.url)
    try:
        response = await provider.chat(ChatRequest(model="m", messages=[Message.user("x")]))
    finally:
        await provider.aclose()
    assert (response.content, response.stop_reason) == ("cut", "max_tokens")


# -- models, defaults, embeddings --------------------------------------------------------------


def _tags(*names: str) -> dict[str, Any]:
    return {
        "models": [
            {"name": n, "model": n, "details": {"family": "bert" if "embed" in n else "llama"}}
            for n in names
        ]
    }


async def test_default_model_comes_from_installed_models(serve: Any) -> None:
    def handler(request: Recorded) -> Reply:
        if request.path == "/api/tags":
            return Reply.json(_tags("llama3.1:8b", "nomic-embed-text:latest", "qwen2.5-coder:7b"))
        return Reply(chunks=_lines(_text("hi"), _done()), headers=NDJSON)

    server = serve(handler)
    provider = _provider(server.url)
    try:
        response = await collect(provider.chat_stream(ChatRequest(messages=[Message.user("x")])))
        models = await provider.models()
    finally:
        await provider.aclose()
    assert response.content == "hi"
    assert server.requests[1].json()["model"] == "qwen2.5-coder:7b"
    embedder = next(m for m in models if m.id == "nomic-embed-text:latest")
    assert embedder.supports_embeddings and not embedder.supports_tools


async def test_no_model_installed_says_ollama_pull(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"models": []}))
    provider = _provider(server.url)
    try:
        with pytest.raises(InvalidRequestError) as info:
            await provider.chat(ChatRequest(messages=[Message.user("x")]))
    finally:
        await provider.aclose()
    assert "ollama pull llama3.3" in str(info.value)
    assert [r.path for r in server.requests] == ["/api/tags"]


async def test_unreachable_server_says_how_to_start_it() -> None:
    provider = _provider("http://127.0.0.1:9")
    try:
        with pytest.raises(NetworkError) as info:
            await collect(
                provider.chat_stream(ChatRequest(model="m", messages=[Message.user("x")]))
            )
    finally:
        await provider.aclose()
    assert "ollama serve" in str(info.value) and info.value.transient


async def test_batch_embeddings(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"model": "e", "embeddings": [[0.1, 0.2], [0.3, 0.4]]}))
    provider = _provider(server.url)
    try:
        vectors = await provider.embed(["a", "b"], model="nomic-embed-text")
        with pytest.raises(InvalidRequestError, match="nomic-embed-text"):
            await provider.embed(["a"])
    finally:
        await provider.aclose()
    assert vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert server.requests[0].path == "/api/embed"
    assert server.requests[0].json() == {"model": "nomic-embed-text", "input": ["a", "b"]}


async def test_embedding_count_mismatch_is_malformed(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"embeddings": [[0.1]]}))
    provider = _provider(server.url)
    try:
        with pytest.raises(MalformedResponseError):
            await provider.embed(["a", "b"], model="e")
    finally:
        await provider.aclose()


# -- probe and the host variable ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("localhost:11434", "http://localhost:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:11434"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("example.com", "http://example.com:11434"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com/ollama/", "https://example.com:443/ollama"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
        ("host:notaport", "http://host:11434"),
    ],
)
def test_normalize_host(spelling: str | None, url: str) -> None:
    assert normalize_host(spelling) == url


@pytest.mark.parametrize(
    ("installed", "chosen"),
    [
        (["llama3.1:8b", "mistral:latest", "qwen2.5-coder:7b"], "qwen2.5-coder:7b"),
        (["gemma2:2b", "codestral:22b", "deepseek-coder-v2:16b"], "codestral:22b"),
        (["mistral-nemo:12b", "llama3.3:70b"], "llama3.3:70b"),
        (["phi3:mini", "gemma2:9b"], "gemma2:9b"),
        (["phi3:mini", "tinyllama:latest"], "phi3:mini"),
        (["qwen2.5:7b", "qwen2.5-coder"], "qwen2.5-coder"),  # no tag at all
        ([], None),
    ],
)
def test_pick_default_model(installed: list[str], chosen: str | None) -> None:
    assert pick_default_model(installed) == chosen


async def test_probe_finds_models_via_ollama_host(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(lambda r: Reply.json(_tags("llama3.3:latest", "gemma2:2b")))
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")  # no scheme, as users write it
    found = await probe()
    assert found == OllamaProbe(server.url, True, ["llama3.3:latest", "gemma2:2b"])
    assert server.requests[0].path == "/api/tags"
    assert pick_default_model(found.models) == "llama3.3:latest"


async def test_probe_unreachable_and_slow_within_timeout(serve: Any) -> None:
    refused = await probe("http://127.0.0.1:9", timeout=0.5)
    assert refused == OllamaProbe("http://127.0.0.1:9", False, [])
    slow = serve(lambda r: Reply(delay=3.0, body="{}"))
    start = time.monotonic()
    found = await probe(slow.url, timeout=0.3)
    elapsed = time.monotonic() - start
    assert not found.reachable and found.models == []
    assert elapsed < 1.5


async def test_probe_of_something_that_is_not_ollama(serve: Any) -> None:
    html = serve(
        lambda r: Reply(body="<html><body>hi</body></html>", headers={"content-type": "text/html"})
    )
    assert not (await probe(html.url)).reachable
    missing = serve(lambda r: Reply(status=404, body="nope"))
    assert not (await probe(missing.url)).reachable


# -- the CLI -----------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_cli_streams_from_ollama(serve: Any) -> None:
    server = serve(
        lambda r: Reply(
            chunks=split_bytes(
                b"".join(_lines(_text("Hello"), _text(" from Ollama"), _done())), 11
            ),
            headers=NDJSON,
        )
    )
    result = _cli(
        "--model", "ollama/llama3.3", "say hi", env={"OLLAMA_HOST": f"127.0.0.1:{server.port}"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from Ollama\n"
    sent = server.requests[0].json()
    assert (sent["model"], sent["messages"][-1]["content"]) == ("llama3.3", "say hi")


def test_cli_with_ollama_down_is_one_clear_line() -> None:
    result = _cli("--model", "ollama/llama3.3", "hi", env={"OLLAMA_HOST": "127.0.0.1:9"})
    assert result.returncode == 1
    assert "ollama serve" in result.stderr and "Traceback" not in result.stderr
