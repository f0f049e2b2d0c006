"""Time in the sandbox: a guest that sleeps, spins or waits ends at its deadline, a cancel frees
its instance at once, and the process exits promptly whatever its guests are doing.

The guest sleeps through WASI (`time.sleep` is `monotonic-clock.subscribe-duration` then
`pollable.block`), which openkoi implements itself so that the wait ends at the call's deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _plugins
import pytest
from openkoi._errors import ProviderTimeoutError
from openkoi._timeouts import Timeouts
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


def _load(wasm: Path, pool_size: int = 1, **limits: int) -> WasmProvider:
    return load_plugin_file(wasm, {"limits": limits, "pool_size": pool_size})


@pytest.fixture
async def sleeper(hostile_wasm: Path) -> AsyncIterator[WasmProvider]:
    provider = _load(hostile_wasm, timeout_ms=1500, event_timeout_ms=1000)
    await provider.chat(ChatRequest(model="echo", messages=[Message.user("warm")]))
    yield provider
    await provider.aclose()


_chat = _plugins.attack


async def test_a_guest_sleeping_past_its_call_limit_ends_at_the_limit(
    sleeper: WasmProvider,
) -> None:
    started = time.monotonic()
    with pytest.raises(PluginLimitError) as caught:
        await _chat(sleeper, "sleep", "6")
    elapsed = time.monotonic() - started
    assert caught.value.limit == "time"
    assert "1.5 s per call" in str(caught.value)
    assert 1.4 <= elapsed < 1.5 + 0.3, elapsed
    assert await _chat(sleeper, "echo", "after") == "echo: after"


async def test_a_short_sleep_is_a_legitimate_wait(sleeper: WasmProvider) -> None:
    started = time.monotonic()
    assert await _chat(sleeper, "sleep", "0.3") == "woke"
    assert 0.29 <= time.monotonic() - started < 1.0


async def test_a_stream_event_sleeping_past_its_event_limit_ends_at_the_limit(
    sleeper: WasmProvider,
) -> None:
    stream: Any = sleeper.chat_stream(
        ChatRequest(model="sleep-stream", messages=[Message.user("5")])
    )
    first = await stream.__anext__()
    assert first.delta == "first"
    started = time.monotonic()
    with pytest.raises(PluginLimitError) as caught:
        await stream.__anext__()
    elapsed = time.monotonic() - started
    assert caught.value.limit == "event-time"
    assert elapsed < 1.0 + 0.3, elapsed
    await stream.aclose()
    assert await _chat(sleeper, "echo", "after") == "echo: after"


async def test_cancelling_a_sleeping_call_frees_its_instance_at_once(
    sleeper: WasmProvider,
) -> None:
    sleeper.runtime.limits = sleeper.runtime.limits.__class__(
        **{**sleeper.runtime.limits.__dict__, "call_seconds": 60.0}
    )
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(_chat(sleeper, "sleep", "30"), 0.3)
    started = time.monotonic()
    # pool of one: this call needs the instance (or the slot) the sleeper held
    assert await _chat(sleeper, "echo", "next") == "echo: next"
    assert time.monotonic() - started < 1.0


async def test_cancelling_a_spinning_call_frees_its_slot_at_once(hostile_wasm: Path) -> None:
    provider = _load(hostile_wasm, timeout_ms=60_000)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_chat(provider, "loop"), 0.5)
        started = time.monotonic()
        assert await _chat(provider, "echo", "next") == "echo: next"
        assert time.monotonic() - started < 2.0  # a fresh instance, not the 60 s limit
    finally:
        await provider.aclose()


async def test_closing_a_sleeping_stream_frees_its_instance(sleeper: WasmProvider) -> None:
    stream: Any = sleeper.chat_stream(
        ChatRequest(model="sleep-stream", messages=[Message.user("30")])
    )
    assert (await stream.__anext__()).delta == "first"
    await stream.aclose()
    started = time.monotonic()
    assert await _chat(sleeper, "echo", "next") == "echo: next"
    assert time.monotonic() - started < 1.0


async def test_a_call_ends_at_its_total_deadline_when_that_comes_first(
    hostile_wasm: Path,
) -> None:
    provider = _load(hostile_wasm, timeout_ms=10_000)
    request = ChatRequest(model="sleep", messages=[Message.user("6")], timeouts=Timeouts(total=0.8))
    try:
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError) as caught:
            await provider.chat(request)
        elapsed = time.monotonic() - started
        assert caught.value.deadline == "total"
        assert "0.8 s (total deadline)" in str(caught.value)
        assert 0.75 <= elapsed < 0.8 + 0.5, elapsed
        started = time.monotonic()  # pool of one: the sleeper's instance (or slot) is free
        assert await _chat(provider, "echo", "after") == "echo: after"
        assert time.monotonic() - started < 2.0
    finally:
        await provider.aclose()


async def test_a_stream_that_never_ends_ends_at_its_total_deadline(hostile_wasm: Path) -> None:
    """Each event comes well within the event limit, for ever: only the total ends it."""
    hung_up = asyncio.Event()

    async def serve_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _plugins.drip_sse(reader, writer, interval=0.05, count=100_000):
            hung_up.set()

    server = await asyncio.start_server(serve_forever, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    provider = load_plugin_file(
        hostile_wasm,
        {
            "config": {"base": url},
            "network": {"extend": [url]},
            "limits": {"timeout_ms": 10_000, "event_timeout_ms": 1000},
            "pool_size": 1,
        },
    )
    request = ChatRequest(model="slow-stream", timeouts=Timeouts(total=1.5))
    deltas: list[str] = []
    try:
        started = time.monotonic()

        async def read_all() -> None:
            async for chunk in provider.chat_stream(request):
                deltas.append(chunk.delta)

        with pytest.raises(ProviderTimeoutError) as caught:
            await asyncio.wait_for(read_all(), 10.0)  # the test's own bound
        elapsed = time.monotonic() - started
        assert caught.value.deadline == "total"
        assert 1.45 <= elapsed < 1.5 + 0.5, elapsed
        assert len(deltas) >= 5 and deltas[:3] == ["0", "1", "2"]
        await asyncio.wait_for(hung_up.wait(), 3.0)  # the upstream response was closed
        started = time.monotonic()  # the stream's instance was freed for the next call
        assert await _chat(provider, "echo", "after") == "echo: after"
        assert time.monotonic() - started < 2.0
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()


async def test_calls_waiting_for_an_instance_when_the_plugin_closes_are_told_it_closed(
    hostile_wasm: Path,
) -> None:
    provider = _load(hostile_wasm, timeout_ms=10_000)
    busy = asyncio.ensure_future(_chat(provider, "sleep", "5"))
    await asyncio.sleep(0.3)  # it holds the one instance
    queued = [asyncio.ensure_future(_chat(provider, "echo", str(i))) for i in range(5)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await provider.aclose()
    outcomes = await asyncio.gather(busy, *queued, return_exceptions=True)
    assert time.monotonic() - started < 2.0
    for outcome in outcomes[1:]:
        assert type(outcome) is PluginError, repr(outcome)
        assert str(outcome).endswith("plugin hostile is closed")
    assert isinstance(outcomes[0], PluginError)  # the running call was cancelled


_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, pathlib, sys, time
    from openkoi._types import ChatRequest, Message
    from openkoi.plugins._loader import load_plugin_file

    async def main(mode):
        provider = load_plugin_file(pathlib.Path(sys.argv[1]), {"limits": {"timeout_ms": 600000}})
        request = ChatRequest(model="sleep", messages=[Message.user("1e9")])
        task = asyncio.ensure_future(provider.chat(request))
        await asyncio.sleep(1.0)  # the guest is asleep now
        if mode == "cancel":
            task.cancel()
        await provider.aclose()
        print("closed", time.monotonic(), flush=True)

    asyncio.run(main(sys.argv[2]))
    """
)


@pytest.mark.parametrize("mode", ["cancel", "abandon"])
def test_the_process_exits_promptly_with_a_sleeping_guest(hostile_wasm: Path, mode: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "host"), str(ROOT / "builtin-providers")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, str(hostile_wasm), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr
    closed_at = float(proc.stdout.split()[1])
    assert ended - closed_at < 1.5, (ended - closed_at, proc.stderr)


async def test_what_a_guest_can_observe_of_time_randomness_and_its_environment(
    sleeper: WasmProvider,
) -> None:
    seen = json.loads(await _chat(sleeper, "observe"))
    # wall clock: whole seconds only
    assert all(float(t).is_integer() for t in seen["wall"]), seen["wall"]
    assert abs(seen["wall"][0] - time.time()) < 5
    # monotonic clocks: millisecond steps at the finest
    for steps in (seen["mono_steps"], seen["perf_steps"]):
        assert all(step % 1_000_000 == 0 for step in steps), steps
    # counted from the instance's own origin, not the host's monotonic clock
    assert seen["mono"] < 3_600 * 10**9
    # randomness is real (two draws differ); the environment is empty
    assert seen["urandom"][0] != seen["urandom"][1]
    assert seen["environ"] == {}
    assert seen["stdin"] == "ALLOWED: "  # closed: end of file at once
    assert seen["stdout"] == "ALLOWED: None"  # accepted, and discarded
    assert seen["cwd"].startswith("blocked") or seen["cwd"] in ("ALLOWED: /", "ALLOWED: ")


SPIN_AT_START = """
(component
  (core module $m
    (func $spin (loop $again (br $again)))
    (start $spin))
  (core instance (instantiate $m)))
"""


def test_instantiation_runs_under_the_calls_deadline_not_a_fixed_one() -> None:
    """A guest whose start function never returns is stopped at the deadline the runtime gives
    instantiation (the plugin's own per-call limit)."""
    from openkoi.plugins._call import CallContext, activate
    from openkoi.plugins._engine import engine
    from openkoi.plugins._limits import DEFAULT_LIMITS
    from openkoi.plugins._linker import instantiate, prepare
    from openkoi.plugins._runtime import new_store
    from wasmtime import WasmtimeError
    from wasmtime.component import Component

    component = Component(engine(), SPIN_AT_START)
    prepare(component)
    ctx = CallContext("spin", None, None, {})
    ctx.start(1.0, "time")
    started = time.monotonic()
    with activate(ctx), pytest.raises(WasmtimeError):
        instantiate(new_store(DEFAULT_LIMITS), component)
    assert 0.9 < time.monotonic() - started < 1.3
