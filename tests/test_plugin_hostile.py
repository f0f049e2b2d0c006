"""Hostile plugins are contained, and the host keeps serving afterwards.

One hostile component (tests/plugins/hostile) carries every attack; the requested model picks
it. Each test runs real wasm against real loopback servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import _plugins
import pytest
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import ProviderError
from openkoi._types import ChatRequest, Message
from openkoi.plugins._errors import (
    PluginDeniedError,
    PluginLimitError,
    PluginTrapError,
)
from openkoi.plugins._loader import load_plugin_file
from openkoi.plugins._provider import WasmProvider

pytestmark = pytest.mark.anyio

SECRET = "sk-hostile-secret-value-0123456789"
LIMITS = {
    "timeout_ms": 2000,
    "event_timeout_ms": 1000,
    "memory_mb": 64,
    "max_response_bytes": 1_000_000,
    "max_requests": 20,
}


@pytest.fixture(scope="session")
def hostile_wasm() -> Path:
    return _plugins.hostile()


@pytest.fixture(autouse=True)
def _shared_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))
    monkeypatch.setenv("HOSTILE_KEY", SECRET)
    monkeypatch.setenv("HOST_ONLY_MARKER", "the guest must not see this")
    monkeypatch.setenv("COHERE_API_KEY", _plugins.COHERE_KEY)


def _handler(request: Recorded) -> Reply:
    if request.path == "/echo":
        return Reply.json(
            {"headers": request.headers, "target": request.target, "body": request.body.decode()}
        )
    if request.path == "/huge":
        return Reply(body=b"x" * 3_000_000)
    if request.path == "/slow":
        return Reply.sse([f"data: {i}\n\n" for i in range(200)], chunk_delay=0.02)
    return Reply.json({"ok": True})


@pytest.fixture
async def hostile(
    hostile_wasm: Path, serve: Callable[..., LoopbackServer]
) -> AsyncIterator[tuple[WasmProvider, LoopbackServer]]:
    server = serve(_handler)
    provider = load_plugin_file(
        hostile_wasm,
        {
            "config": {"base": server.url, "port": str(server.port)},
            "network": {"extend": [server.url]},
            "limits": LIMITS,
            "pool_size": 2,
        },
    )
    yield provider, server
    await provider.aclose()


attack = _plugins.attack


async def still_serving(provider: WasmProvider) -> None:
    assert await attack(provider, "echo", "ping") == "echo: ping"


async def test_the_sandbox_has_no_sockets_files_or_environment(
    hostile: tuple[WasmProvider, LoopbackServer],
) -> None:
    provider, server = hostile
    # The guest's CPython has no `socket` module at all: the attack fails inside the guest, which
    # reports it as a plugin error, before anything reaches the host. What the host answers a
    # guest that calls wasi:sockets itself: tests/test_plugin_wasi_sockets.py.
    with pytest.raises(ProviderError) as no_socket:
        await attack(provider, "socket")
    assert type(no_socket.value) is ProviderError
    assert str(no_socket.value) == (
        "hostile: plugin failed: ModuleNotFoundError: No module named 'socket'"
    )
    assert server.connections == 0 and server.requests == []

    files = json.loads(await attack(provider, "file"))
    assert len(files) == 3
    assert all(outcome.startswith("blocked") for outcome in files), files
    assert not Path("/tmp/openkoi-hostile").exists()

    environment = json.loads(await attack(provider, "env"))
    assert environment == {}
    assert os.environ["HOST_ONLY_MARKER"]  # the host has variables; the guest saw none
    await still_serving(provider)


async def test_an_undeclared_host_is_denied_with_the_manifest_line(
    hostile: tuple[WasmProvider, LoopbackServer],
) -> None:
    provider, _ = hostile
    with pytest.raises(PluginDeniedError) as caught:
        await attack(provider, "undeclared")
    assert caught.value.transient is False
    assert 'network.allow = ["https://undeclared.example.net"]' in str(caught.value)
    await still_serving(provider)


async def test_a_redirect_to_an_undeclared_origin_is_refused(
    hostile_wasm: Path, serve: Callable[..., LoopbackServer]
) -> None:
    elsewhere = serve(lambda request: Reply.json({"stolen": True}))
    front = serve(lambda request: Reply(status=302, headers={"location": elsewhere.url + "/x"}))
    provider = load_plugin_file(
        hostile_wasm,
        {"config": {"base": front.url}, "network": {"extend": [front.url]}, "limits": LIMITS},
    )
    try:
        with pytest.raises(PluginDeniedError) as caught:
            await attack(provider, "redirect")
        assert "a redirect was refused" in str(caught.value)
        assert f'network.allow = ["{elsewhere.url}"]' in str(caught.value)
        assert [r.path for r in front.requests] == ["/redirect"]
        assert elsewhere.requests == [] and elsewhere.connections == 0
    finally:
        await provider.aclose()


def _spellings(port: int) -> list[str]:
    """127.0.0.1, [::1], 169.254.169.254 and private addresses, spelled every way we know."""
    loopback = [
        f"http://127.0.0.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://0x7f.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://127.0.0.1.:{port}/",
        f"http://%31%32%37.0.0.1:{port}/",
        f"http://１２７.０.０.１:{port}/",  # noqa: RUF001 - fullwidth digits, on purpose
        f"http://localhost:{port}/",
        f"http://LOCALHOST.:{port}/",
        f"http://api.hostile.example@127.0.0.1:{port}/",
        f"http://127.0.0.1:{port}\\@api.hostile.example/",
        f"http://127.0.0.1\\api.hostile.example:{port}/",
        f"http://[::1]:{port}/",
        f"http://[0:0:0:0:0:0:0:1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://0:{port}/",
        f"http://[::]:{port}/",
    ]
    metadata = [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://[::ffff:169.254.169.254]/",
        "https://api.hostile.example@169.254.169.254/",
    ]
    private = [
        "http://10.0.0.1/",
        "http://0x0a000001/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
    ]
    return loopback + metadata + private


async def test_loopback_metadata_and_private_addresses_are_refused_in_every_spelling(
    hostile_wasm: Path, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve(_handler)
    provider = load_plugin_file(
        # Dozens of refused requests in one call: a roomy time limit keeps a loaded machine
        # from turning this into a time-limit test.
        hostile_wasm,
        {
            "limits": {**LIMITS, "max_requests": 200, "timeout_ms": 30000},
            "config": {"base": server.url},
        },
    )
    try:
        urls = _spellings(server.port)
        outcomes = json.loads(await attack(provider, "ssrf", json.dumps(urls)))
        assert set(outcomes) == set(urls)
        leaked = {u: o for u, o in outcomes.items() if o not in ("denied", "invalid-request")}
        assert leaked == {}
        assert server.requests == [] and server.connections == 0
    finally:
        await provider.aclose()


async def test_a_declared_name_that_resolves_to_a_private_address_is_refused(
    hostile_wasm: Path, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve(_handler)
    names = {"rebind.test": "127.0.0.1", "meta.test": "169.254.169.254", "lan.test": "10.1.2.3"}

    async def resolver(host: str, port: int) -> list[str]:
        return [names[host]]

    grants = [f"http://{name}:{server.port}" for name in names]
    provider = load_plugin_file(
        hostile_wasm, {"network": {"extend": grants}, "limits": LIMITS}, resolver=resolver
    )
    try:
        urls = [f"http://{name}:{server.port}/" for name in names]
        outcomes = json.loads(await attack(provider, "ssrf", json.dumps(urls)))
        assert outcomes == dict.fromkeys(urls, "denied")
        assert server.connections == 0
    finally:
        await provider.aclose()


async def test_secret_placeholders_only_reach_declared_origins_in_headers(
    hostile: tuple[WasmProvider, LoopbackServer],
) -> None:
    provider, server = hostile
    refusals = {
        "secret-undeclared-host": "not in network.allow",
        "secret-in-url": "never in the URL",
        "secret-in-body": "never in the body",
        "secret-undeclared-name": "'OTHER_KEY'",
        "host-header": "Host header",
    }
    for name, expected in refusals.items():
        with pytest.raises(PluginDeniedError) as caught:
            await attack(provider, name)
        assert expected in str(caught.value), name
        assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert server.requests == []  # none of those left the host

    # On an allowed origin, in a header, the host substitutes it; the guest never reads it back.
    echoed = await attack(provider, "secret-echo")
    assert server.requests[-1].headers["authorization"] == SECRET
    assert SECRET not in echoed
    assert json.loads(echoed)["headers"]["authorization"] == "[REDACTED]"
    await still_serving(provider)


async def test_an_infinite_loop_a_memory_bomb_and_a_trap_are_contained(
    hostile: tuple[WasmProvider, LoopbackServer], serve: Callable[..., LoopbackServer]
) -> None:
    provider, _ = hostile
    stats = provider.runtime.stats

    started = time.monotonic()
    with pytest.raises(PluginLimitError) as looped:
        await attack(provider, "loop")
    assert looped.value.limit == "time"
    assert "limits.timeout_ms" in str(looped.value)
    assert 1.9 <= time.monotonic() - started < 4.0
    await still_serving(provider)

    with pytest.raises(PluginLimitError) as bombed:
        await attack(provider, "memory")
    assert bombed.value.limit == "memory"
    assert "64 MiB" in str(bombed.value)
    await still_serving(provider)

    with pytest.raises(PluginTrapError) as trapped:
        await attack(provider, "trap")
    assert "instance was discarded" in str(trapped.value)
    assert stats.traps >= 2 and stats.instances_discarded == 3
    await still_serving(provider)
    assert provider.runtime.size <= provider.runtime.pool_size

    # Another plugin in the same process is unaffected.
    async with _plugins.cohere_provider(serve) as (cohere, _):
        answer = await cohere.chat(ChatRequest(model="command-a", messages=[Message.user("hi")]))
        assert answer.content == "Hello from Cohere"


async def test_a_huge_response_and_a_request_flood_hit_their_limits(
    hostile: tuple[WasmProvider, LoopbackServer],
) -> None:
    provider, server = hostile
    with pytest.raises(PluginLimitError) as huge:
        await attack(provider, "huge")
    assert huge.value.limit == "response-bytes"
    assert "limits.max_response_bytes" in str(huge.value)

    with pytest.raises(PluginLimitError) as flood:
        await attack(provider, "flood")
    assert flood.value.limit == "requests"
    assert len([r for r in server.requests if r.path == "/ok"]) == LIMITS["max_requests"]
    await still_serving(provider)


async def test_a_trap_in_the_middle_of_a_stream(
    hostile: tuple[WasmProvider, LoopbackServer],
) -> None:
    provider, _ = hostile
    seen: list[str] = []
    with pytest.raises(PluginTrapError):
        async for chunk in provider.chat_stream(ChatRequest(model="trap-stream")):
            seen.append(chunk.delta)
    assert seen == ["partial"]
    await still_serving(provider)


async def test_a_guest_that_never_returns_from_next(
    hostile: tuple[WasmProvider, LoopbackServer],
) -> None:
    provider, _ = hostile
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(PluginLimitError) as caught:
        async for chunk in provider.chat_stream(ChatRequest(model="hang-next")):
            seen.append(chunk.delta)
    assert seen == ["first"]
    assert caught.value.limit == "event-time"
    assert "limits.event_timeout_ms" in str(caught.value)
    assert time.monotonic() - started < 3.0
    await still_serving(provider)


async def _wait_for(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_closing_a_stream_closes_upstream_and_frees_the_instance(
    hostile_wasm: Path,
) -> None:
    """A raw server that notices the client hanging up mid-body."""
    disconnected = asyncio.Event()
    sent = 0

    async def serve_slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def count() -> None:
            nonlocal sent
            sent += 1

        try:
            await _plugins.drip_sse(reader, writer, interval=0.01, count=10_000, sent=count)
        finally:
            disconnected.set()

    server = await asyncio.start_server(serve_slow, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    provider = load_plugin_file(
        hostile_wasm,
        {"config": {"base": url}, "network": {"extend": [url]}, "limits": LIMITS, "pool_size": 1},
    )
    try:
        stream: Any = provider.chat_stream(ChatRequest(model="slow-stream"))
        first = [await stream.__anext__(), await stream.__anext__()]
        assert [c.delta for c in first] == ["0", "1"]
        await stream.aclose()
        await asyncio.wait_for(disconnected.wait(), 3.0)
        count_at_close = sent
        assert count_at_close < 500
        runtime = provider.runtime
        assert await _wait_for(lambda: runtime.idle == runtime.size == 1)
        # the freed instance serves the next call at once
        assert await attack(provider, "echo", "again") == "echo: again"
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()


async def test_host_config_and_log_give_nothing_away(
    hostile: tuple[WasmProvider, LoopbackServer], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    provider, server = hostile
    with caplog.at_level(logging.DEBUG, "openkoi.plugins"):
        seen = json.loads(await attack(provider, "host"))
    assert seen == {"declared": server.url, "undeclared": None, "secret": None}
    lines = [r.getMessage() for r in caplog.records if "line one" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("plugin hostile: line one\\u000aline two\\u001b[31m")
    assert "\x1b" not in lines[0] and "\n" not in lines[0]
    assert len(lines[0]) <= len("plugin hostile: ") + 2000 + len(" [cut]")
