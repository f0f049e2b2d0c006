"""A plugin call's HTTP runs on its worker thread's own loop: a cancel, a deadline, a dropped
body, `aclose` and interpreter exit each end a request in flight there at once and close its
connection, and the host serves the next call normally.

The upstream servers are raw asyncio servers on the test's loop that note when the client hangs
up; the guest is the hostile test plugin (tests/plugins/hostile).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _plugins
import pytest
from openkoi._types import ChatRequest, Message
from openkoi.plugins._errors import PluginError, PluginLimitError
from openkoi.plugins._loader import load_plugin_file
from openkoi.plugins._provider import WasmProvider

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def hostile_wasm() -> Path:
    return _plugins.hostile()


@pytest.fixture(autouse=True)
def _shared_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))
    monkeypatch.setenv("HOSTILE_KEY", "sk-hostile-secret-value-0123456789")


@dataclass
class Upstream:
    """A raw HTTP server: `/silent` reads the request and never answers, `/slow` streams an
    SSE event every 10 ms for 100 s; `/echo` answers at once. It notes each hang-up."""

    url: str = ""
    requests: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    events_sent: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            self.requests.set()
            if b"/silent" in line:
                await reader.read()  # until the client hangs up
            elif b"/slow" in line:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for i in range(10_000):
                    data = f"data: {i}\n\n".encode()
                    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    await writer.drain()
                    self.events_sent += 1
                    await asyncio.sleep(0.01)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                await reader.read()
        except (ConnectionError, OSError):
            pass
        finally:
            self.hung_up.set()
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    up.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield up
    server.close()
    await server.wait_closed()


def _load(wasm: Path, up: Upstream, **limits: int) -> WasmProvider:
    return load_plugin_file(
        wasm,
        {
            "config": {"base": up.url},
            "network": {"extend": [up.url]},
            "limits": {"timeout_ms": 30_000, "event_timeout_ms": 30_000, **limits},
            "pool_size": 1,
        },
    )


def _silent(provider: WasmProvider, up: Upstream) -> Any:
    """A chat whose one request goes to a server that never answers."""
    request = ChatRequest(model="ssrf", messages=[Message.user(json.dumps([up.url + "/silent"]))])
    return provider.chat(request)


async def _wait_for(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def _serves(provider: WasmProvider) -> None:
    started = time.monotonic()
    assert await _plugins.attack(provider, "echo", "next") == "echo: next"
    assert time.monotonic() - started < 1.0


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("openkoi-plugin-hostile")]


async def test_cancelling_a_request_in_flight_on_the_worker_loop_ends_it_at_once(
    hostile_wasm: Path, upstream: Upstream
) -> None:
    provider = _load(hostile_wasm, upstream)
    try:
        task = asyncio.ensure_future(_silent(provider, upstream))
        await asyncio.wait_for(upstream.requests.wait(), 5.0)
        assert not task.done()
        started = time.monotonic()
        task.cancel()
        await asyncio.wait_for(upstream.hung_up.wait(), 1.0)  # its connection is closed
        runtime = provider.runtime
        assert await _wait_for(lambda: runtime.idle == runtime.size == 1)
        assert time.monotonic() - started < 1.0  # not the 30 s call limit
        with pytest.raises(asyncio.CancelledError):
            await task
        await _serves(provider)
    finally:
        await provider.aclose()


async def test_a_server_that_never_answers_ends_at_the_call_s_deadline(
    hostile_wasm: Path, upstream: Upstream
) -> None:
    provider = _load(hostile_wasm, upstream, timeout_ms=800)
    try:
        started = time.monotonic()
        try:
            answer = (await _silent(provider, upstream)).content
        except PluginLimitError as exc:  # the guest did not return before its deadline
            assert exc.limit == "time"
        else:  # it returned what the host told it
            assert json.loads(answer) == {upstream.url + "/silent": "timeout"}
        elapsed = time.monotonic() - started
        assert 0.7 < elapsed < 1.5, elapsed
        await asyncio.wait_for(upstream.hung_up.wait(), 1.0)
        await _serves(provider)
    finally:
        await provider.aclose()


async def test_a_body_the_guest_drops_mid_way_closes_its_connection_at_once(
    hostile_wasm: Path, upstream: Upstream
) -> None:
    provider = _load(hostile_wasm, upstream)
    try:
        stream: Any = provider.chat_stream(
            ChatRequest(model="drop-stream", messages=[Message.user("2")])
        )
        assert (await stream.__anext__()).delta == "0"
        assert (await stream.__anext__()).delta == "dropped"
        # the guest sleeps 2 s with its stream open: the body it let go of is closed already
        await asyncio.wait_for(upstream.hung_up.wait(), 0.5)
        assert upstream.events_sent < 100
        assert (await stream.__anext__()).delta == "done"
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        await _serves(provider)
    finally:
        await provider.aclose()


async def test_closing_a_stream_while_its_guest_waits_for_the_body_closes_upstream(
    hostile_wasm: Path, upstream: Upstream
) -> None:
    provider = _load(hostile_wasm, upstream)
    try:
        stream: Any = provider.chat_stream(ChatRequest(model="slow-stream"))
        assert (await stream.__anext__()).delta == "0"
        started = time.monotonic()
        await stream.aclose()
        await asyncio.wait_for(upstream.hung_up.wait(), 1.0)
        runtime = provider.runtime
        assert await _wait_for(lambda: runtime.idle == runtime.size == 1)
        assert time.monotonic() - started < 1.0
        await _serves(provider)
    finally:
        await provider.aclose()


async def test_aclose_with_a_request_in_flight_ends_it_and_every_worker_thread(
    hostile_wasm: Path, upstream: Upstream
) -> None:
    provider = _load(hostile_wasm, upstream)
    task = asyncio.ensure_future(_silent(provider, upstream))
    await asyncio.wait_for(upstream.requests.wait(), 5.0)
    assert _worker_threads()
    started = time.monotonic()
    await provider.aclose()
    assert time.monotonic() - started < 1.0
    assert not _worker_threads()  # each closed its connections on its own loop and ended
    try:  # the guest was told its request was cancelled; it may still answer with that
        assert json.loads((await task).content) == {upstream.url + "/silent": "other"}
    except PluginError as exc:
        assert "cancelled" in str(exc)
    await asyncio.wait_for(upstream.hung_up.wait(), 1.0)
    again = _load(hostile_wasm, upstream)
    try:
        await _serves(again)
    finally:
        await again.aclose()


_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, pathlib, socket, sys, time
    from openkoi._types import ChatRequest, Message
    from openkoi.plugins._loader import load_plugin_file

    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = "http://127.0.0.1:%d" % silent.getsockname()[1]
    provider = load_plugin_file(
        pathlib.Path(sys.argv[1]),
        {"network": {"extend": [url]}, "limits": {"timeout_ms": 600000}, "pool_size": 2},
    )

    async def main():
        hung = ChatRequest(model="ssrf", messages=[Message.user(json.dumps([url + "/x"]))])
        asyncio.ensure_future(provider.chat(hung))
        await asyncio.sleep(0.5)  # its request waits on the worker's loop now
        echo = ChatRequest(model="echo", messages=[Message.user("still")])
        print((await provider.chat(echo)).content, flush=True)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())  # the hung call is never cancelled, nor the loop closed
    print("exiting", time.monotonic(), flush=True)
    """
)


def test_the_process_exits_promptly_with_a_request_in_flight(hostile_wasm: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "host"), str(ROOT / "builtin-providers")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, str(hostile_wasm)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "echo: still"
    exiting_at = float(lines[1].split()[1])
    assert ended - exiting_at < 1.5, (ended - exiting_at, proc.stderr)
