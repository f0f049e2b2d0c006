"""The fast result lifting (`_fastcall`) gives exactly what wasmtime-py's own conversion gives,
on real calls into a real guest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _plugins
import pytest
from openkoi._types import ChatChunk, ChatRequest, Message, ToolCall
from openkoi.plugins._call import CallContext, activate
from openkoi.plugins._convert import request_to_wit
from openkoi.plugins._fastcall import Budget, FastCall
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


def _by_pointer(convert_to_c: Any) -> Any:
    """wasmtime-py's `convert_to_c(store, value, pointer)` in the plans' form, which fill the C
    value itself (`_lower.Lower`)."""
    import ctypes

    return lambda store, value, out: convert_to_c(store, value, ctypes.pointer(out))


def _lowered(store: object, lower: object, value: object) -> object:
    """`value` lowered by `lower` into a C value, lifted back (and the C value freed)."""
    import ctypes

    from openkoi.plugins._fastcall import lift
    from wasmtime import _ffi as ffi

    raw = ffi.wasmtime_component_val_t()
    lower(store, value, raw)  # type: ignore[operator]
    try:
        return lift(raw)
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(raw))


@pytest.mark.anyio
async def test_planned_lowering_matches_wasmtime_py() -> None:
    """The lowering plans (`_lower`) build the C values wasmtime-py's `convert_to_c` builds, and
    refuse what it refuses."""
    from openkoi.plugins._lower import plan
    from wasmtime.component import Variant

    provider = load_plugin_file(_plugins.hostile(), {})
    try:
        inst = _Instance(provider.runtime)
        store, instance = inst.store, inst.instance
        root = instance.get_export_index(store, provider.runtime.export_name)
        chat = instance.get_func(store, instance.get_export_index(store, "chat", root))
        (_, request_type), *_ = chat.type(store).params
        result_type = chat.type(store).result
        assert result_type is not None
        for request in (
            ChatRequest(model="m"),
            ChatRequest(
                model="echo",
                system="s",
                messages=[
                    Message.user("héllo ✓"),
                    Message.assistant("x", [ToolCall(id="1", name="f", arguments="{}")]),
                ],
                max_tokens=5,
                temperature=0.5,
                stop=["a", "b"],
                extra={"k": [1, {"x": None}]},
            ),
        ):
            value = request_to_wit(request)
            slow = _lowered(store, _by_pointer(request_type.convert_to_c), value)
            assert _lowered(store, plan(request_type), value) == slow
            assert slow.model == request.model  # type: ignore[attr-defined]

        # result<chat-response, provider-error> and the values a call gives: either case, and
        # values of neither, refused the same way.
        ctx = CallContext("hostile", None, None, {})
        ctx.state = inst.wasi
        with activate(ctx):
            fast = FastCall(chat, store)
            answers = [fast(store, request_to_wit(ChatRequest(model=m))) for m in ("echo", "x")]
        for value in [*answers, Variant("other", None), 42, None]:
            assert _outcome(store, plan(result_type), value) == _outcome(
                store, _by_pointer(result_type.convert_to_c), value
            )
        bad = request_to_wit(ChatRequest(model="m"))
        bad.messages = "not a list"
        for value in (object(), bad):
            assert _outcome(store, plan(request_type), value) == _outcome(
                store, _by_pointer(request_type.convert_to_c), value
            )
            assert _outcome(store, plan(request_type), value)[0] == "raise"
    finally:
        await provider.aclose()


def _outcome(store: object, lower: object, value: object) -> tuple[str, object]:
    try:
        return "ok", _lowered(store, lower, value)
    except Exception as exc:
        return "raise", type(exc)


@pytest.mark.anyio
async def test_stream_batches_lift_straight_to_chunks_at_the_same_cost() -> None:
    """`lift_batch` gives the chunks the generic lifting and `chunk_from_wit` give, and charges
    the budget exactly as much (so the cap on a stream batch is unchanged)."""
    from openkoi.plugins._convert import chunk_from_wit
    from openkoi.plugins._fastcall import Budget, ValueTooLarge, lift
    from openkoi.plugins._stream_lift import lift_batch

    provider = load_plugin_file(_plugins.hostile(), {})
    try:
        inst = _Instance(provider.runtime)
        store, instance = inst.store, inst.instance
        root = instance.get_export_index(store, provider.runtime.export_name)

        def fast(name: str) -> FastCall:
            func = instance.get_func(store, instance.get_export_index(store, name, root))
            return FastCall(func, store)

        ctx = CallContext("hostile", None, None, {})
        ctx.state = inst.wasi
        request = request_to_wit(ChatRequest(model="echo", messages=[Message.user("héllo ✓")]))
        with activate(ctx):
            opened = [fast("stream-chat")(store, request) for _ in range(2)]
            generic, direct = [], []
            spent = {"generic": 0, "direct": 0}
            for handle, out, how in (
                (opened[0], generic, "generic"),
                (opened[1], direct, "direct"),
            ):
                while True:
                    budget = Budget(1 << 20)
                    lifter = lift_batch if how == "direct" else lift
                    batch = fast("[method]chat-stream.next")(
                        store, handle, budget=budget, lifter=lifter
                    )
                    spent[how] += (1 << 20) - budget.bytes
                    if batch is None:
                        break
                    out.extend(batch)
        assert [chunk_from_wit(e) for e in generic] == _chunks(direct)
        assert any(getattr(e, "tag", None) == "text" for e in generic)
        assert any(type(e) is str for e in direct)  # text stays a str on the worker's side
        assert spent["direct"] == spent["generic"] > 0
        # The cap holds on the direct path too: a budget smaller than one batch is refused.
        with activate(ctx):
            handle = fast("stream-chat")(store, request)
            with pytest.raises(ValueTooLarge):
                while fast("[method]chat-stream.next")(
                    store, handle, budget=Budget(8), lifter=lift_batch
                ):
                    pass
    finally:
        await provider.aclose()


def _chunks(events: list[Any]) -> list[ChatChunk]:
    """A lifted batch's events as the stream's reader gets them: its text (a `str` until then)
    as a text chunk, every other event converted as the worker converts it."""
    from openkoi._types import text_chunk
    from openkoi.plugins._convert import chunk_from_wit

    return [text_chunk(e) if isinstance(e, str) else chunk_from_wit(e) for e in events]


def _stream_through(provider: Any, request: object, lifter: Any, budget: int) -> tuple[list, int]:
    """Every event of one stream of `provider`'s fresh instance, and what lifting them cost."""
    inst = _Instance(provider.runtime)
    store, instance = inst.store, inst.instance
    root = instance.get_export_index(store, provider.runtime.export_name)

    def fast(name: str) -> FastCall:
        return FastCall(
            instance.get_func(store, instance.get_export_index(store, name, root)), store
        )

    ctx = CallContext("echo", None, None, {})
    ctx.state = inst.wasi
    events: list[Any] = []
    spent = 0
    with activate(ctx):
        handle = fast("stream-chat")(store, request)
        while True:
            left = Budget(budget)
            batch = fast("[method]chat-stream.next")(store, handle, budget=left, lifter=lifter)
            spent += budget - left.bytes
            if batch is None:
                return events, spent
            events.extend(batch)


@pytest.mark.anyio
async def test_a_text_run_lifts_as_its_pieces_would_and_costs_what_they_would() -> None:
    """A 0.2.1 guest sends a batch's text deltas as one `text-run`; a 0.2.0 guest sends each as
    `text`. The host makes the same chunks of both, and charges the run what the separate events
    cost plus its separators; a run of more pieces than the budget covers is refused."""
    from openkoi.plugins._fastcall import ValueTooLarge, lift
    from openkoi.plugins._stream_lift import lift_batch

    pieces = ["a", "bb", "", "ç✓", "z"]
    request = request_to_wit(
        ChatRequest(model="pieces", messages=[Message.user(json.dumps(pieces))])
    )
    run_plugin = load_plugin_file(_plugins.echo(), {})
    plain_plugin = load_plugin_file(_plugins.echo(wit="0.2.0"), {})
    try:
        generic, _ = _stream_through(run_plugin, request, lift, 1 << 20)
        assert [e.tag for e in generic] == ["text-run", "stop"]
        plain_generic, _ = _stream_through(plain_plugin, request, lift, 1 << 20)
        assert [e.tag for e in plain_generic] == ["text"] * len(pieces) + ["stop"]
        run, run_spent = _stream_through(run_plugin, request, lift_batch, 1 << 20)
        plain, plain_spent = _stream_through(plain_plugin, request, lift_batch, 1 << 20)
        as_chunks = _chunks(run)
        assert as_chunks == _chunks(plain)
        assert [c.delta for c in as_chunks[:-1]] == pieces
        assert run_spent == plain_spent + len(pieces) - 1 > 0
        many = request_to_wit(
            ChatRequest(model="pieces", messages=[Message.user(json.dumps(["a"] * 1000))])
        )
        with pytest.raises(ValueTooLarge, match="a run of 512 texts"):
            _stream_through(run_plugin, many, lift_batch, 5000)
    finally:
        await run_plugin.aclose()
        await plain_plugin.aclose()


@pytest.mark.anyio
async def test_planned_lowering_of_a_host_response_matches_wasmtime_py() -> None:
    """The `http` import's `send` result (a record with a list of header tuples), lowered by
    the plan as wasmtime-py lowers it, and refused where it refuses."""
    from openkoi.plugins._convert import record
    from openkoi.plugins._engine import engine
    from openkoi.plugins._lower import plan
    from wasmtime.component import Variant

    provider = load_plugin_file(_plugins.hostile(), {})
    try:
        imports = provider.runtime.component.type.imports(engine())
        http = next(v for k, v in imports.items() if k.startswith("openkoi:provider/http@"))
        send = http.ty.exports(engine())["send"].ty  # type: ignore[union-attr]
        result_type = send.result  # type: ignore[union-attr]
        assert result_type is not None
        store = _Instance(provider.runtime).store
        headers = [("content-type", "application/json"), ("x-ünï", "✓"), ("empty", "")]
        for value in (
            record(status=200, headers=headers, body='{"a": 1}'),
            record(status=404, headers=[], body=""),
            Variant("denied", "no"),
            record(status=200, headers=[("only-one",)], body=""),
            record(status=200, headers=[["a", "b"]], body=""),
            record(status=200, headers=[("a", 1)], body=""),
        ):
            fast = _outcome(store, plan(result_type), value)
            assert fast == _outcome(store, _by_pointer(result_type.convert_to_c), value)
        _, planned = _outcome(store, plan(result_type), record(status=1, headers=headers, body=""))
        assert planned.headers == headers  # type: ignore[union-attr]
    finally:
        await provider.aclose()
