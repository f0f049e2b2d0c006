"""One guest call as the host sees it: its deadline, its cancel flag, its HTTP client.

The runtime makes a `CallContext` for each guest call (or each stream, for its whole life) and
makes it current on the worker thread while the guest runs (`activate`). Every host function
(openkoi's `http` and `host`, the WASI the host implements, the epoch interrupt) finds the call
it serves through `current()`: a store is used by one thread at a time, so the thread identifies
the call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from openkoi.plugins._guarded_http import GuardedClient, HttpError

T = TypeVar("T")
CANCEL_GRACE_SECONDS = 0.2  # a cancelled guest may still return cleanly and keep its instance


class Body(Protocol):
    """An upstream response body a call holds open (the http import's body-stream)."""

    closed: bool

    def wake(self) -> None: ...

    async def aclose(self) -> None: ...


class Cancelled(Exception):
    """The call was cancelled by the host while the guest waited."""


class CallContext:
    """Everything one guest call (or one stream, for its whole life) needs from the host."""

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

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the call's loop and wait for it, at most until the deadline or a
        cancel. Raises `TimeoutError` or `Cancelled`."""
        from openkoi.plugins._guarded_http import HttpError

        loop = self.loop
        if loop is None or self.client is None:
            raise HttpError("other", "HTTP is not available outside a provider call")
        if self.cancelled.is_set():
            raise Cancelled
        remaining = self.remaining()
        if remaining <= 0:
            raise TimeoutError

        crossing: _Crossing[T] = _Crossing()

        async def wrapped() -> None:
            try:
                crossing.result = await make()
            except BaseException as exc:  # the coroutine's own error, raised in the worker
                crossing.error = exc
            finally:
                crossing.done = True
                crossing.wake()

        task: list[asyncio.Task[None]] = []
        loop.call_soon_threadsafe(lambda: task.append(loop.create_task(wrapped())))
        _add_waiter(self, crossing)
        try:
            crossing.wait(remaining)
        finally:
            _forget_waiter(self, crossing)
        if crossing.done:
            if crossing.error is not None:
                raise crossing.error
            return crossing.result  # type: ignore[return-value]
        # Cancelled or out of time: the coroutine is cancelled on the loop (after it started,
        # as the loop runs callbacks in order) and its end is not waited for.
        loop.call_soon_threadsafe(lambda: task and task[0].cancel())
        if self.cancelled.is_set():
            raise Cancelled
        raise TimeoutError

    def cancel(self) -> None:
        """Wake every wait of this call; the guest's next host call fails at once, and a guest
        still running `CANCEL_GRACE_SECONDS` later is stopped (`_interrupt`)."""
        if not self.cancelled.is_set():
            self.cancelled_at = time.monotonic()
        self.cancelled.set()
        with _WAITERS_LOCK:
            waiters = list(_WAITERS.get(id(self), ()))
        bodies = list(self.bodies.values())
        for waiter in waiters:
            waiter.wake()
        for body in bodies:
            body.wake()

    async def aclose(self) -> None:
        """Close every upstream response this call opened, then its client (on the loop)."""
        bodies, self.bodies = list(self.bodies.values()), {}
        for body in bodies:
            await body.aclose()
        if self.client is not None:
            await self.client.aclose()

    def open_bodies(self) -> int:
        return sum(1 for body in self.bodies.values() if not body.closed)


class _Crossing(Generic[T]):
    """The worker's wait for one coroutine on the loop: a lock that the coroutine's end, or a
    cancel of the call, releases. (A lock is one wake-up each way; `run_coroutine_threadsafe`
    with `concurrent.futures.wait` on it and a cancel future takes several.)"""

    __slots__ = ("_lock", "_woken", "done", "error", "result")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._woken = False
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def wake(self) -> None:
        with _WAITERS_LOCK:
            if self._woken:
                return
            self._woken = True
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=min(max(0.0, timeout), threading.TIMEOUT_MAX))


_WAITERS: dict[int, set[_Crossing[Any]]] = {}
_WAITERS_LOCK = threading.Lock()


def _add_waiter(ctx: CallContext, waiter: _Crossing[Any]) -> None:
    """Let `ctx.cancel()` wake `waiter`; one added after the cancel is woken at once."""
    with _WAITERS_LOCK:
        _WAITERS.setdefault(id(ctx), set()).add(waiter)
    if ctx.cancelled.is_set():
        waiter.wake()


def _forget_waiter(ctx: CallContext, waiter: _Crossing[Any]) -> None:
    with _WAITERS_LOCK:
        waiters = _WAITERS.get(id(ctx))
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del _WAITERS[id(ctx)]


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
