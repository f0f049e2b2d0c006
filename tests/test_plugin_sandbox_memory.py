"""Memory in the sandbox: the Store's limits on tables, instances and memories, and the host's
caps on what it lifts from a guest, each proved against a guest that tries to grow past them.

Hand-written components (WAT) go where a Python guest cannot reach (a `funcref` table, core
instances); the hostile Python guest covers values crossing the boundary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import _plugins
import pytest
from openkoi._types import ChatRequest, Message
from openkoi.plugins._call import CallContext, activate
from openkoi.plugins._engine import engine
from openkoi.plugins._errors import PluginLimitError
from openkoi.plugins._limits import DEFAULT_LIMITS, INSTANCES, MIB, TABLE_ELEMENTS
from openkoi.plugins._linker import instantiate, prepare
from openkoi.plugins._loader import load_plugin_file
from openkoi.plugins._provider import WasmProvider
from openkoi.plugins._runtime import new_store
from wasmtime import WasmtimeError
from wasmtime.component import Component

pytestmark = pytest.mark.anyio

TABLE_BOMB = """
(component
  (core module $m
    (table $t 1 funcref)
    (func (export "grow") (param $n i32) (result i32)
      (table.grow $t (ref.null func) (local.get $n))))
  (core instance $i (instantiate $m))
  (func (export "grow") (param "n" s32) (result s32) (canon lift (core func $i "grow"))))
"""


def _instance_bomb(count: int) -> str:
    instances = "\n".join("  (core instance (instantiate $m))" for _ in range(count))
    return f"(component\n  (core module $m (memory 1))\n{instances}\n)"


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _run(store: Any, component: Component) -> Any:
    ctx = CallContext("bomb", None, None, {})
    ctx.start(10.0, "time")
    with activate(ctx):
        return instantiate(store, component), ctx


def test_a_table_grown_past_the_store_limit_is_refused() -> None:
    component = Component(engine(), TABLE_BOMB)
    prepare(component)
    store = new_store(DEFAULT_LIMITS)
    instance, ctx = _run(store, component)
    grow = instance.get_func(store, instance.get_export_index(store, "grow"))
    before = rss()
    with activate(ctx):
        assert grow(store, 45_000_000) == -1  # refused: no 344 MiB table in the host
        assert grow(store, TABLE_ELEMENTS * 2) == -1
        assert grow(store, 1000) == 1  # growth under the limit still works
    assert rss() - before < 8 * MIB


def test_a_component_with_too_many_core_instances_is_refused() -> None:
    component = Component(engine(), _instance_bomb(INSTANCES + 1))
    prepare(component)
    before = rss()
    with pytest.raises(WasmtimeError) as caught:
        _run(new_store(DEFAULT_LIMITS), component)
    assert "instance" in str(caught.value) or "memor" in str(caught.value)
    assert rss() - before < 16 * MIB
    # a component within the limits instantiates in the same kind of store
    _run(new_store(DEFAULT_LIMITS), Component(engine(), _instance_bomb(2)))


def test_eight_instances_each_under_the_memory_limit_are_refused() -> None:
    """One memory per core instance: the memories limit stops what memory_size alone did not."""
    component = Component(engine(), _instance_bomb(8))
    prepare(component)
    with pytest.raises(WasmtimeError):
        _run(new_store(DEFAULT_LIMITS), component)


@pytest.fixture(autouse=True)
def _shared_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))


@pytest.fixture
async def hostile() -> AsyncIterator[WasmProvider]:
    provider = load_plugin_file(_plugins.hostile(), {"limits": {"memory_mb": 64}})
    await provider.chat(ChatRequest(model="echo", messages=[Message.user("warm")]))
    yield provider
    await provider.aclose()


_chat = _plugins.attack


async def test_a_response_with_300000_tool_calls_hits_the_values_cap(
    hostile: WasmProvider,
) -> None:
    before = rss()
    with pytest.raises(PluginLimitError) as caught:
        await _chat(hostile, "tools")
    assert caught.value.limit == "values"
    assert "over the host's cap" in str(caught.value)
    growth = rss() - before
    print(f"host RSS growth for 300,000 tool calls: {growth / MIB:.0f} MiB")
    assert growth < 160 * MIB  # was 433 MiB: the host builds nothing past the cap
    assert await _chat(hostile, "echo", "after") == "echo: after"


async def test_a_huge_log_line_hits_the_values_cap(hostile: WasmProvider) -> None:
    with pytest.raises(PluginLimitError) as caught:
        await _chat(hostile, "big-log")
    assert caught.value.limit == "values"
    assert await _chat(hostile, "echo", "after") == "echo: after"


async def test_a_stream_flooding_events_runs_ahead_of_a_paused_reader_only_a_little(
    hostile: WasmProvider,
) -> None:
    import asyncio

    stream: Any = hostile.chat_stream(ChatRequest(model="event-flood"))
    await stream.__anext__()
    before = rss()
    await asyncio.sleep(1.0)  # the reader pauses; the guest may only fill the read-ahead
    paused_growth = rss() - before
    count = 1
    async for _ in stream:
        count += 1
    assert paused_growth < 16 * MIB  # was 570 MiB
    assert count >= 1


async def test_guest_logs_are_one_line_each_and_capped_per_call(
    hostile: WasmProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "openkoi.plugins"):
        assert await _chat(hostile, "log-tricks") == "logged"
        assert await _chat(hostile, "log-flood") == "flooded"
    messages = [r.getMessage() for r in caplog.records]
    tricks = [m for m in messages if "one" in m and "evil" in m]
    assert len(tricks) == 1
    line = tricks[0]
    for char in ("\x85", "\u2028", "\u2029", "\x9b", "\u202e", "\u2066", "\r", "\n"):
        assert char not in line, repr(char)
    assert "\\u202e" in line and "\\u0085" in line  # shown, not obeyed
    stderr = [m for m in messages if "stderr line" in m]
    assert stderr == ["plugin hostile: stderr: stderr line\\u2028forged"]
    flood = [m for m in messages if m.startswith("plugin hostile: flood ")]
    assert len(flood) == 200
    dropped = [m for m in messages if "log lines dropped" in m]
    assert dropped == [
        "plugin hostile: 19800 log lines dropped (at most 200 lines and 65536 bytes per call)"
    ]
