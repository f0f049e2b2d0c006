"""`CallContext.run`: the guest's worker thread waits for a coroutine on the call's loop, and
that wait ends with the coroutine, at the call's deadline, or at a cancel, whichever is first.
A real event loop in this thread; the waits are made from a real worker thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from openkoi.plugins._call import CallContext, Cancelled

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _context(seconds: float) -> CallContext:
    ctx = CallContext("p", asyncio.get_running_loop(), object(), {})  # type: ignore[arg-type]
    ctx.start(seconds, "time")
    return ctx


async def _in_worker(ctx: CallContext, make: Callable[[], Any]) -> tuple[str, Any, float]:
    """Run `ctx.run(make)` in a worker thread: ("ok", value) or ("raise", exception), and the
    seconds the wait took."""

    def wait() -> tuple[str, Any, float]:
        started = time.monotonic()
        try:
            return "ok", ctx.run(make), time.monotonic() - started
        except BaseException as exc:
            return "raise", exc, time.monotonic() - started

    return await asyncio.to_thread(wait)


def _hanging() -> tuple[Callable[[], Any], asyncio.Event]:
    """A coroutine function that never ends by itself, and the event its cancel sets."""
    ended = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            ended.set()

    return hangs, ended


async def test_the_coroutine_s_value_and_its_error_reach_the_worker() -> None:
    ctx = _context(5)

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    async def fails() -> int:
        await asyncio.sleep(0)
        raise ValueError("upstream")

    assert (await _in_worker(ctx, answer))[:2] == ("ok", 42)
    outcome, error, _ = await _in_worker(ctx, fails)
    assert outcome == "raise" and isinstance(error, ValueError) and str(error) == "upstream"


async def test_a_hung_coroutine_ends_at_the_deadline_and_is_cancelled_on_the_loop() -> None:
    ctx = _context(0.2)
    hangs, ended = _hanging()
    outcome, error, took = await _in_worker(ctx, hangs)
    assert outcome == "raise" and isinstance(error, TimeoutError)
    assert 0.15 <= took < 1.0
    await asyncio.wait_for(ended.wait(), 1.0)  # the coroutine itself was cancelled


async def test_a_cancel_wakes_the_wait_at_once() -> None:
    ctx = _context(30)
    hangs, ended = _hanging()
    waiting = asyncio.ensure_future(_in_worker(ctx, hangs))
    await asyncio.sleep(0.1)
    ctx.cancel()
    outcome, error, took = await asyncio.wait_for(waiting, 1.0)
    assert outcome == "raise" and isinstance(error, Cancelled) and took < 1.0
    await asyncio.wait_for(ended.wait(), 1.0)


async def test_no_wait_starts_after_a_cancel_or_past_the_deadline() -> None:
    started: list[str] = []

    async def note() -> None:
        started.append("ran")

    cancelled = _context(30)
    cancelled.cancel()
    assert isinstance((await _in_worker(cancelled, note))[1], Cancelled)
    late = _context(0)
    assert isinstance((await _in_worker(late, note))[1], TimeoutError)
    await asyncio.sleep(0.05)
    assert started == []


async def test_many_waits_in_turn_leave_no_waiter_behind() -> None:
    from openkoi.plugins import _call

    ctx = _context(5)

    async def quick() -> int:
        return 1

    for _ in range(50):
        assert (await _in_worker(ctx, quick))[:2] == ("ok", 1)
    assert id(ctx) not in _call._WAITERS
