"""One guest call as the host sees it: its deadline, its cancel flag, its HTTP client.

The runtime makes a `CallContext` for each guest call (or each stream, for its whole life) and
makes it current on the worker thread while the guest runs (`activate`). Every host function
(openkoi's `http` and `host`, the WASI the host implements, the epoch interrupt) finds the call
it serves through `current()`: a store is used by one thread at a time, so the thread identifies
the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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

        async def wrapped() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(wrapped(), loop)
        waiter = _cancel_waiter(self)
        try:
            pending: list[concurrent.futures.Future[Any]] = [future, waiter]
            done, _ = concurrent.futures.wait(
                pending, timeout=remaining, return_when=concurrent.futures.FIRST_COMPLETED
            )
        finally:
            _forget_waiter(self, waiter)
        if future in done:
            return future.result()
        future.cancel()
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
            if not waiter.done():
                waiter.set_result(None)
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


_WAITERS: dict[int, set[concurrent.futures.Future[None]]] = {}
_WAITERS_LOCK = threading.Lock()


def _cancel_waiter(ctx: CallContext) -> concurrent.futures.Future[None]:
    waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
    with _WAITERS_LOCK:
        _WAITERS.setdefault(id(ctx), set()).add(waiter)
    if ctx.cancelled.is_set():
        waiter.set_result(None)
    return waiter


def _forget_waiter(ctx: CallContext, waiter: concurrent.futures.Future[None]) -> None:
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
