"""One guest call as the host sees it: its deadline, its cancel flag, its HTTP client.

The runtime makes a `CallContext` for each guest call (or each stream, for its whole life) and
makes it current on the worker thread while the guest runs (`activate`). Every host function
(openkoi's `http` and `host`, the WASI the host implements, the epoch interrupt) finds the call
it serves through `current()`: a store is used by one thread at a time, so the thread identifies
the call.

A call's HTTP runs on its worker thread's own event loop (`_worker`), which runs only while a
host function waits for it (`wait`): until the awaited task is done, the call's deadline passes
or the call is cancelled, whichever comes first. `cancel` from any other thread stops that loop
at once (`call_soon_threadsafe`), so no wait outlives a cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from openkoi.plugins._guarded_http import GuardedClient, HttpError

T = TypeVar("T")
CANCEL_GRACE_SECONDS = 0.2  # a cancelled guest may still return cleanly and keep its instance
CLEANUP_SECONDS = 1.0  # the most closing a response (or a call's client) may take


class Body(Protocol):
    """An upstream response body a call holds open (the http import's body-stream)."""

    closed: bool

    def close(self) -> None: ...


class Cancelled(Exception):
    """The call was cancelled by the host while the guest waited."""


class CallContext:
    """Everything one guest call (or one stream, for its whole life) needs from the host.

    `loop` and `client` are the worker thread's loop and the call's `GuardedClient` on it, given
    by the job when it starts on its worker (`attach`)."""

    def __init__(
        self,
        plugin_id: str,
        loop: asyncio.AbstractEventLoop | None,
        client: GuardedClient | None,
        config: Mapping[str, str],
    ) -> None:
        self.plugin_id = plugin_id
        self.loop = loop
        self.client = client
        self.config = config
        self.deadline = float("inf")
        self.deadline_kind = "time"
        self.cancelled = threading.Event()
        self.cancelled_at = float("inf")
        self.bodies: dict[int, Body] = {}
        self.state: Any = None  # the instance's WASI state while the guest runs
        self.breach: str | None = None  # "response-bytes" | "requests" | "values"
        self.log_lines = 0
        self.log_bytes = 0
        self.log_dropped = 0
        self.denial: str | None = None
        self._lock = threading.Lock()
        self._waiting: asyncio.AbstractEventLoop | None = None  # the loop `wait` runs

    def attach(self, loop: asyncio.AbstractEventLoop, client: GuardedClient) -> None:
        self.loop = loop
        self.client = client

    def start(self, seconds: float, kind: str) -> None:
        self.deadline = time.monotonic() + seconds
        self.deadline_kind = kind

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def must_stop(self) -> bool:
        """Past the deadline, or cancelled and past the grace: the guest is stopped."""
        now = time.monotonic()
        return now >= self.deadline or now >= self.cancelled_at + CANCEL_GRACE_SECONDS

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` for the guest, but never past the call's deadline or a cancel: raises
        `Cancelled` or `TimeoutError` when either comes first."""
        remaining = self.remaining()
        if self.cancelled.wait(max(0.0, min(seconds, remaining))):
            raise Cancelled
        if remaining <= seconds:
            raise TimeoutError

    def note(self, error: HttpError) -> None:
        if error.kind == "too-large":
            self.breach = "response-bytes"
        elif error.kind == "limit" and "requests" in error.message:
            self.breach = "requests"
        elif error.kind == "denied" and self.denial is None:
            self.denial = error.message

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the call's loop and wait for it, at most until the deadline or a
        cancel, which cancel it (its connection is closed). Raises `TimeoutError` or
        `Cancelled`."""
        from openkoi.plugins._guarded_http import HttpError

        loop = self.loop
        if loop is None or self.client is None:
            raise HttpError("other", "HTTP is not available outside a provider call")
        if self.cancelled.is_set():
            raise Cancelled
        if self.remaining() <= 0:
            raise TimeoutError
        task = loop.create_task(make())
        try:
            self.wait(task)
        except BaseException:
            task.cancel()
            settle(loop, task)
            raise
        if task.cancelled():
            raise Cancelled
        return task.result()

    def wait(self, task: asyncio.Future[Any]) -> None:
        """Run the call's loop until `task` is done. Raises `Cancelled` or `TimeoutError` when
        the call is cancelled or its deadline passes first, leaving `task` as it is."""
        loop = self.loop
        assert loop is not None
        with self._lock:
            if self.cancelled.is_set():
                raise Cancelled
            self._waiting = loop
        try:
            _run_until(loop, task, self.deadline, self._check_cancel)
        finally:
            with self._lock:
                self._waiting = None
        if not task.done():
            self._check_cancel()
            raise TimeoutError

    def _check_cancel(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled

    def cancel(self) -> None:
        """From any thread: end the wait in progress at once; the guest's next host call fails
        at once, and a guest still running `CANCEL_GRACE_SECONDS` later is stopped
        (`_interrupt`)."""
        with self._lock:
            if not self.cancelled.is_set():
                self.cancelled_at = time.monotonic()
            self.cancelled.set()
            loop = self._waiting
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed: nothing waits on it any more
                loop.call_soon_threadsafe(loop.stop)

    def close(self) -> None:
        """On the worker thread, at the call's end: close every upstream response the call
        opened, then its client, on the worker's loop."""
        bodies, self.bodies = list(self.bodies.values()), {}
        for body in bodies:
            body.close()
        client, loop = self.client, self.loop
        if client is not None and loop is not None and not client.close_if_idle():
            drive(loop, client.aclose())

    def open_bodies(self) -> int:
        return sum(1 for body in self.bodies.values() if not body.closed)


def _stop_loop(future: asyncio.Future[Any]) -> None:
    future.get_loop().stop()


def _run_until(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Future[Any],
    deadline: float,
    check: Callable[[], None] | None = None,
) -> None:
    """Run `loop` until `task` is done or the `time.monotonic()` deadline passes; `check`, before
    each turn, may end it by raising. A stop that arrives late (a cancel racing the task's end)
    only ends one turn early: every turn looks at the task, `check` and the deadline again."""
    task.add_done_callback(_stop_loop)
    try:
        while not task.done():
            if check is not None:
                check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            timer = loop.call_later(remaining, loop.stop)
            try:
                loop.run_forever()
            finally:
                timer.cancel()
    finally:
        task.remove_done_callback(_stop_loop)


def settle(loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any]) -> None:
    """Run `loop` until `task` is done, at most `CLEANUP_SECONDS` (then it is cancelled and
    given a tenth of that more); its outcome is retrieved and dropped."""
    _run_until(loop, task, time.monotonic() + CLEANUP_SECONDS)
    if not task.done():
        task.cancel()
        _run_until(loop, task, time.monotonic() + CLEANUP_SECONDS / 10)
    if task.done() and not task.cancelled():
        task.exception()


def drive(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[Any]) -> None:
    """`settle` a coroutine or future on `loop` (a cleanup that must not raise)."""
    with contextlib.suppress(Exception):
        settle(loop, asyncio.ensure_future(awaitable, loop=loop))


_local = threading.local()


class activate:
    """Make `ctx` the current call of this thread while the guest runs."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> CallContext:
        self._previous = getattr(_local, "ctx", None)
        _local.ctx = self.ctx
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        _local.ctx = self._previous


def current() -> CallContext | None:
    return getattr(_local, "ctx", None)
