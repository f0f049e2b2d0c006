"""The fast result lifting (`_fastcall`) gives exactly what wasmtime-py's own conversion gives,
on real calls into a real guest."""

from __future__ import annotations

from pathlib import Path

import _plugins
import pytest
from openkoi._types import ChatRequest, Message, ToolCall
from openkoi.plugins._call import CallContext, activate
from openkoi.plugins._convert import request_to_wit
from openkoi.plugins._fastcall import FastCall
from openkoi.plugins._loader import load_plugin_file
from openkoi.plugins._runtime import _Instance


@pytest.fixture(autouse=True)
def _shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKOI_WASM_CACHE", str(_plugins.WASM_CACHE))


@pytest.mark.anyio
async def test_fast_lifting_matches_wasmtime_py(tmp_path: Path) -> None:
    provider = load_plugin_file(_plugins.hostile(), {})
    try:
        inst = _Instance(provider.runtime)
        store, instance = inst.store, inst.instance
        root = instance.get_export_index(store, provider.runtime.export_name)

        def both(name: str) -> tuple[object, FastCall]:
            slow = instance.get_func(store, instance.get_export_index(store, name, root))
            return slow, FastCall(slow, store)

        ctx = CallContext("hostile", None, None, {})
        ctx.state = inst.wasi
        request = request_to_wit(
            ChatRequest(
                model="echo",
                system="s",
                messages=[
                    Message.user("héllo ✓"),
                    Message.assistant("x", [ToolCall(id="1", name="f", arguments="{}")]),
                ],
                max_tokens=5,
                temperature=0.5,
                stop=["a"],
            )
        )
        with activate(ctx):
            slow, fast = both("info")
            assert fast(store) == slow(store)  # type: ignore[operator]
            slow, fast = both("chat")
            fast_answer = fast(store, request)
            assert fast_answer == slow(store, request)  # type: ignore[operator]
            assert fast_answer.content == "echo: x"
            assert getattr(fast_answer, "stop-reason") == "end-turn"

            slow_open, fast_open = both("stream-chat")
            slow_next, fast_next = both("[method]chat-stream.next")
            a = slow_open(store, request)  # type: ignore[operator]
            b = fast_open(store, request)
            batches_slow, batches_fast = [], []
            while (batch := slow_next(store, a)) is not None:  # type: ignore[operator]
                batches_slow.append(batch)
            while (batch := fast_next(store, b)) is not None:
                batches_fast.append(batch)
            assert batches_fast == batches_slow
            tags = [event.tag for batch in batches_fast for event in batch]
            assert tags == ["model", "text", "usage", "stop"]

            slow_err = both("chat")[0](store, request_to_wit(ChatRequest(model="undeclared")))  # type: ignore[operator]
            fast_err = both("chat")[1](store, request_to_wit(ChatRequest(model="undeclared")))
            assert fast_err == slow_err
            assert fast_err.tag == "other"
    finally:
        await provider.aclose()
