"""The example plugins (guest-sdk/examples), built with the SDK and run sandboxed against fake
services on 127.0.0.1: Cohere v2 (its own JSON and SSE events) and a Replicate-style prediction
API (create, then poll or follow its stream). Also: the pool, the compiled cache, and the CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _plugins
import pytest
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import (
    AuthenticationError,
    OutputValidationError,
    RateLimitedError,
    ServerError,
    UnsupportedError,
)
from openkoi._provider import ModelProvider, collect
from openkoi._types import Attachment, ChatRequest, Message, ToolDef
from openkoi.plugins._loader import load_plugin_file

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))
    monkeypatch.setenv("COHERE_API_KEY", _plugins.COHERE_KEY)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8-test-token-0123456789")


# -- Cohere -------------------------------------------------------------------------------------


async def test_cohere_chat_maps_the_request_and_the_answer(
    serve: Callable[..., LoopbackServer],
) -> None:
    async with _plugins.cohere_provider(serve) as (cohere, server):
        assert isinstance(cohere, ModelProvider)
        request = ChatRequest(
            model="command-a-03-2025",
            system="Be brief.",
            messages=[Message.user("Hi")],
            max_tokens=50,
            temperature=0.3,
            stop=["END"],
        )
        answer = await cohere.chat(request)
        assert answer.content == "Hello from Cohere"
        assert answer.stop_reason == "end_turn"
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (12, 4)
        sent = server.requests[-1]
        assert sent.path == "/v2/chat"
        assert sent.headers["authorization"] == f"Bearer {_plugins.COHERE_KEY}"
        assert sent.json() == {
            "model": "command-a-03-2025",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
            "stream": False,
            "max_tokens": 50,
            "temperature": 0.3,
            "stop_sequences": ["END"],
        }


async def test_cohere_streams_its_own_sse_events_cut_at_odd_boundaries(
    serve: Callable[..., LoopbackServer],
) -> None:
    async with _plugins.cohere_provider(serve) as (cohere, _):
        chunks = [c async for c in cohere.chat_stream(ChatRequest(model="command-a"))]
        text = "".join(c.delta for c in chunks)
        assert text == "Hello from Cohere"
        assert chunks[0].model == "command-a"
        assert chunks[-1].stop_reason == "end_turn"
        usage = [c.usage for c in chunks if c.usage]
        assert usage and usage[-1].input_tokens == 12 and usage[-1].output_tokens == 3


async def test_cohere_tool_calls_stream_and_round_trip(
    serve: Callable[..., LoopbackServer],
) -> None:
    tool = ToolDef(
        name="get_weather",
        description="Weather for a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    async with _plugins.cohere_provider(serve) as (cohere, server):
        request = ChatRequest(model="command-a", messages=[Message.user("Paris?")], tools=[tool])
        streamed = await collect(cohere.chat_stream(request))
        assert streamed.stop_reason == "tool_use"
        assert [(c.id, c.name) for c in streamed.tool_calls] == [("call_1", "get_weather")]
        assert streamed.tool_calls[0].parsed_arguments() == {"city": "Paris"}

        whole = await cohere.chat(request)
        assert whole.tool_calls[0].parsed_arguments() == {"city": "Paris"}
        follow_up = request.model_copy(
            update={
                "messages": [
                    *request.messages,
                    Message.assistant("I will look it up", whole.tool_calls),
                    Message.tool_result("call_1", "18 C, clear"),
                ]
            }
        )
        await cohere.chat(follow_up)
        sent = server.requests[-1].json()
        assert sent["tools"][0] == {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": tool.parameters,
            },
        }
        assert sent["messages"][1] == {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
            "tool_plan": "I will look it up",
        }
        assert sent["messages"][2] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "18 C, clear",
        }


async def test_cohere_embeddings_models_and_errors(
    serve: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _plugins.cohere_provider(serve) as (cohere, server):
        vectors = await cohere.embed(["a", "b"])
        assert vectors == [[0.5, -0.25, 0.0], [0.5, -0.25, 1.0]]
        assert server.requests[-1].json()["model"] == "embed-v4.0"

        models = await cohere.models()
        assert [(m.id, m.context_window, m.supports_tools) for m in models] == [
            ("command-a-03-2025", 256000, True),
            ("command-r7b", 128000, False),
        ]

        with pytest.raises(RateLimitedError) as limited:
            await cohere.chat(ChatRequest(model="busy", messages=[Message.user("x")]))
        assert limited.value.retry_after == 7.0
        assert limited.value.status == 429
        assert "rate limit" in limited.value.message

    monkeypatch.setenv("COHERE_API_KEY", "co-wrong-key-000000")
    async with _plugins.cohere_provider(serve) as (cohere, _):
        with pytest.raises(AuthenticationError) as denied:
            await cohere.chat(ChatRequest(model="command-a", messages=[Message.user("x")]))
        assert "invalid api token" in str(denied.value)
        assert "co-wrong-key" not in str(denied.value)


async def test_cohere_without_a_key_says_which_variable_to_set(
    serve: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from openkoi._errors import CredentialsMissingError

    monkeypatch.delenv("COHERE_API_KEY")
    async with _plugins.cohere_provider(serve) as (cohere, server):
        with pytest.raises(CredentialsMissingError) as missing:
            await cohere.chat(ChatRequest(model="command-a", messages=[Message.user("x")]))
        assert "COHERE_API_KEY" in str(missing.value)
        assert server.requests == []


# -- Replicate ----------------------------------------------------------------------------------


class _Replicate:
    """Predictions that take two polls to finish; a stream URL when streaming was asked."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.polls: dict[str, int] = {}
        self.url = ""

    def __call__(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != "Bearer r8-test-token-0123456789":
            return Reply.json({"detail": "Unauthenticated"}, status=401)
        if request.method == "POST" and request.path.endswith("/predictions"):
            body = request.json()
            pid = f"p{next(self.ids)}"
            if "broken" in request.path:
                pid = "fail-" + pid
            self.polls[pid] = 0
            urls = {"get": f"{self.url}/v1/predictions/{pid}"}
            if body.get("stream"):
                urls["stream"] = f"{self.url}/stream/{pid}"
            return Reply.json({"id": pid, "status": "starting", "urls": urls}, status=201)
        if request.path.startswith("/v1/predictions/"):
            pid = request.path.rsplit("/", 1)[1]
            self.polls[pid] += 1
            urls = {"get": f"{self.url}/v1/predictions/{pid}"}
            if pid.startswith("fail-"):
                return Reply.json(
                    {"id": pid, "status": "failed", "error": "CUDA out of memory", "urls": urls}
                )
            done = self.polls[pid] >= 2
            return Reply.json(
                {
                    "id": pid,
                    "status": "succeeded" if done else "processing",
                    "output": ["Hel", "lo", " there"] if done else ["Hel"],
                    "metrics": {"input_token_count": 6, "output_token_count": 3},
                    "urls": urls,
                }
            )
        if request.path.startswith("/stream/"):
            return Reply.sse(
                [
                    "event: output\ndata: Hel\n\n",
                    "event: output\ndata: lo\n\n",
                    "event: output\ndata:  there\n\n",
                    "event: done\ndata: {}\n\n",
                ]
            )
        return Reply.json({"detail": "not found"}, status=404)


def _replicate(serve: Callable[..., LoopbackServer], **config: str) -> tuple[Any, _Replicate, Any]:
    fake = _Replicate()
    server = serve(fake)
    fake.url = server.url
    provider = load_plugin_file(
        _plugins.replicate(),
        {
            "config": {"base_url": server.url + "/v1", "poll_interval_ms": "5", **config},
            "network": {"extend": [server.url]},
        },
    )
    return provider, fake, server


async def test_replicate_creates_a_prediction_then_polls_it(
    serve: Callable[..., LoopbackServer],
) -> None:
    provider, _, server = _replicate(serve)
    try:
        answer = await provider.chat(
            ChatRequest(model="meta/llama", system="Be nice.", messages=[Message.user("Hi")])
        )
        assert answer.content == "Hello there"
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (6, 3)
        created = server.requests[0]
        assert created.path == "/v1/models/meta/llama/predictions"
        assert created.json() == {
            "input": {"prompt": "Hi", "system_prompt": "Be nice."},
            "stream": False,
        }
        assert [r.method for r in server.requests] == ["POST", "GET", "GET"]

        with pytest.raises(ServerError) as failed:
            await provider.chat(ChatRequest(model="meta/broken", messages=[Message.user("x")]))
        assert "CUDA out of memory" in str(failed.value)
    finally:
        await provider.aclose()


async def test_replicate_streams_by_following_the_stream_url_or_by_polling(
    serve: Callable[..., LoopbackServer],
) -> None:
    provider, _, server = _replicate(serve)
    try:
        chunks = [c async for c in provider.chat_stream(ChatRequest(model="meta/llama"))]
        assert [c.delta for c in chunks if c.delta] == ["Hel", "lo", " there"]
        assert chunks[-1].stop_reason == "end_turn"
        assert any(r.path.startswith("/stream/") for r in server.requests)
    finally:
        await provider.aclose()

    provider, _, server = _replicate(serve, use_stream="no")
    try:
        chunks = [c async for c in provider.chat_stream(ChatRequest(model="meta/llama"))]
        assert [c.delta for c in chunks if c.delta] == ["Hel", "lo there"]
        assert not any(r.path.startswith("/stream/") for r in server.requests)
    finally:
        await provider.aclose()


# -- the pool, the cache, the CLI ---------------------------------------------------------------


async def test_the_pool_runs_calls_in_parallel_and_never_exceeds_its_size(
    serve: Callable[..., LoopbackServer],
) -> None:
    in_flight = 0
    most = 0

    async def slow(request: Recorded) -> Reply:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        return _plugins.cohere_handler(request)

    server = serve(slow)
    provider = load_plugin_file(
        _plugins.cohere(),
        {"config": {"base_url": server.url}, "network": {"extend": [server.url]}, "pool_size": 3},
    )
    try:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                provider.chat(ChatRequest(model="command-a", messages=[Message.user(str(i))]))
                for i in range(9)
            )
        )
        elapsed = time.monotonic() - started
        assert [a.content for a in answers] == ["Hello from Cohere"] * 9
        assert most == 3  # three instances, three requests at a time
        assert elapsed < 9 * 0.3 * 0.6  # in parallel, not one after another
        assert provider.runtime.size == 3
    finally:
        await provider.aclose()


def test_a_second_process_loads_the_compiled_plugin_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "compiled"
    script = (
        "import sys, time, json; from pathlib import Path\n"
        "t = time.perf_counter()\n"
        "from openkoi.plugins._loader import load_plugin_file\n"
        "p = load_plugin_file(Path(sys.argv[1]), {})\n"
        "print(json.dumps({'cached': p.runtime.from_cache, 'load': p.runtime.load_seconds,"
        " 'total': time.perf_counter() - t}))\n"
    )
    env = {**os.environ, "OPENKOI_WASM_CACHE": str(cache)}

    def run() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", script, str(_plugins.cohere())],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    first = run()
    assert first["cached"] is False
    assert len(list(cache.glob("*.cwasm"))) == 1
    second = run()
    assert second["cached"] is True
    assert second["load"] < first["load"] / 5
    assert second["load"] < 1.0


def _configure_cohere(path: Path, url: str) -> None:
    """config.toml loading the Cohere example plugin, pointed at the fake on 127.0.0.1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[plugins]\n"
        f'wasm = ["{_plugins.cohere()}"]\n\n'
        "[plugins.cohere]\n"
        f'config = {{ base_url = "{url}" }}\n'
        f'network = {{ extend = ["{url}"] }}\n',
        encoding="utf-8",
    )


def test_openkoi_model_plugin_streams_through_the_cli(
    serve: Callable[..., LoopbackServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from openkoi._paths import config_path
    from openkoi.cli import main

    server = serve(_plugins.cohere_handler)
    _configure_cohere(config_path(), server.url)
    with pytest.raises(SystemExit) as exited:
        main(["--model", "cohere/command-a-03-2025", "Say hello"])
    out = capsys.readouterr()
    assert exited.value.code == 0, out.err
    assert out.out == "Hello from Cohere\n"
    sent = server.requests[-1].json()
    assert sent["model"] == "command-a-03-2025" and sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]


async def test_cancelling_a_chat_frees_its_instance_at_once(
    serve: Callable[..., LoopbackServer],
) -> None:
    release = False

    async def slow(request: Recorded) -> Reply:
        waited = 0.0
        while request.json()["model"] == "slow" and not release and waited < 5:
            await asyncio.sleep(0.02)
            waited += 0.02
        return _plugins.cohere_handler(request)

    server = serve(slow)
    provider = load_plugin_file(
        _plugins.cohere(),
        {"config": {"base_url": server.url}, "network": {"extend": [server.url]}, "pool_size": 1},
    )
    try:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                provider.chat(ChatRequest(model="slow", messages=[Message.user("x")])), 0.3
            )
        runtime = provider.runtime
        while not (runtime.idle == runtime.size == 1) and time.monotonic() - started < 2:
            await asyncio.sleep(0.01)
        assert runtime.idle == runtime.size == 1
        assert time.monotonic() - started < 2  # not the 5 s the server would have taken
        answer = await provider.chat(ChatRequest(model="command-a", messages=[Message.user("y")]))
        assert answer.content == "Hello from Cohere"
    finally:
        release = True
        await provider.aclose()


async def test_cohere_takes_images_a_schema_tool_choice_and_thinking(
    serve: Callable[..., LoopbackServer],
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(40)
    async with _plugins.cohere_provider(serve) as (cohere, server):
        request = ChatRequest(
            model="command-a-vision",
            messages=[Message.user("What is this?", [Attachment.of(png)])],
            tools=[ToolDef(name="get_weather")],
            tool_choice="required",
            reasoning="low",
            schema={"type": "object"},
        )
        with pytest.raises(OutputValidationError):  # the fake answers in plain text
            await cohere.chat(request.model_copy(update={"tools": []}))
        sent = server.requests[-1].json()
        assert sent["messages"][0]["content"] == [
            {"type": "image_url", "image_url": {"url": Attachment.of(png).data_url()}},
            {"type": "text", "text": "What is this?"},
        ]
        assert sent["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}
        assert sent["thinking"] == {"type": "enabled", "token_budget": 2048}
        await cohere.chat(request.model_copy(update={"output_schema": None}))
        assert server.requests[-1].json()["tool_choice"] == "REQUIRED"
        count = len(server.requests)
        for unsupported in (
            request.model_copy(update={"tool_choice": "get_weather"}),
            request.model_copy(
                update={"messages": [Message.user("hear", [Attachment.of(b"ID3" + bytes(20))])]}
            ),
        ):
            with pytest.raises(UnsupportedError, match="Cohere"):
                await cohere.chat(unsupported)
        assert len(server.requests) == count  # the plugin refused before sending


def test_an_attachment_reaches_a_plugin_from_the_cli(
    serve: Callable[..., LoopbackServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from openkoi._paths import config_path
    from openkoi.cli import main

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    server = serve(_plugins.cohere_handler)
    _configure_cohere(config_path(), server.url)
    with pytest.raises(SystemExit) as exited:
        main(["--model", "cohere/command-a-vision", "-a", str(photo), "What is this?"])
    out = capsys.readouterr()
    assert exited.value.code == 0, out.err
    content = server.requests[-1].json()["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert content[1] == {"type": "text", "text": "What is this?"}


async def test_replicate_refuses_what_one_prompt_cannot_carry(
    serve: Callable[..., LoopbackServer],
) -> None:
    provider, _fake, server = _replicate(serve)
    try:
        for request in (
            ChatRequest(
                model="meta/llama", messages=[Message.user("x", [Attachment.of(b"%PDF-1")])]
            ),
            ChatRequest(
                model="meta/llama", messages=[Message.user("x")], schema={"type": "object"}
            ),
        ):
            with pytest.raises(UnsupportedError, match="Replicate"):
                await provider.chat(request)
        assert not server.requests  # refused before anything was sent
    finally:
        await provider.aclose()
