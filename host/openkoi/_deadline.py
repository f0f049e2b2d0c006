"""Keeping one HTTP request to its deadlines: first token, idle between events, and total.

(The connect deadline is httpx's own connect timeout.) A `CallClock` belongs to one request.
Every wait on the server (sending and getting headers, reading the body, reading the next
stream event) goes through `wait()` or `paced_batches()`, which time only the wait itself: a
cancel scope never spans a `yield`, so a slow consumer is never cancelled for the server's
silence.

On asyncio, one timer per request does it: a wait only stamps its deadline, and the timer, when
it fires, re-arms itself until the deadline of the wait in progress has really passed, then
cancels the task the way `asyncio.timeout` does (and takes the cancellation back). That costs a
few attribute writes per event; an anyio cancel scope per event costs about 8 us, more than
parsing the event. Other event loops get an anyio cancel scope per wait.

The first-token clock starts when the request's headers go on the wire (httpcore's trace
hook), so time spent waiting for a free local connection is not charged to the server; if the
total deadline passes before any connection was free, the error says so and is not transient.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx

from openkoi._errors import LocalPoolTimeoutError, ProviderError, ProviderTimeoutError
from openkoi._timeouts import DeadlineName, Deadlines

T = TypeVar("T")
B = TypeVar("B")

# Where a request carries its clock: httpcore ignores extension keys it does not know.
CLOCK_KEY = "openkoi.clock"

# On asyncio, one loop timer per request; False: an anyio cancel scope per wait everywhere.
USE_LOOP_TIMER = True

_SENT_EVENTS = ("http11.send_request_headers.started", "http2.send_request_headers.started")


def total_error(seconds: float, provider: str) -> ProviderTimeoutError:
    """The error of a call whose total deadline passed."""
    return ProviderTimeoutError(
        f"the call took longer than {seconds:g} s (total deadline)",
        deadline="total",
        provider=provider,
    )


@dataclass(frozen=True, slots=True)
class CallTotal:
    """The total deadline of a call that makes no request of its own (a plugin's: the guest
    makes them): its length, and the loop time it ends at."""

    seconds: float
    at: float

    @classmethod
    def from_now(cls, seconds: float, loop: asyncio.AbstractEventLoop) -> CallTotal:
        return cls(seconds, loop.time() + seconds)

    def left(self, loop: asyncio.AbstractEventLoop) -> float:
        return self.at - loop.time()

    def error(self, provider: str) -> ProviderTimeoutError:
        return total_error(self.seconds, provider)


def _loop_clock(task: asyncio.Task[Any]) -> Callable[[], float]:
    """The task's loop time: `time.monotonic` itself when the loop does not define its own
    (asyncio's `loop.time()` is a Python call around it, and a stream reads it per event)."""
    loop = task.get_loop()
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time


class CallClock:
    """The deadlines of one HTTP request to `provider`; `total_at` caps everything (a loop time)."""

    __slots__ = (
        "_cancelling",
        "_fired",
        "_first_token_at",
        "_now",
        "_reading",
        "_scope",
        "_task",
        "_timer",
        "_wait_until",
        "connected",
        "deadlines",
        "events",
        "provider",
        "total_at",
    )

    def __init__(
        self,
        deadlines: Deadlines,
        provider: str,
        *,
        total_at: float | None = None,
    ) -> None:
        self.deadlines = deadlines
        self.provider = provider
        task: asyncio.Task[Any] | None = None
        if USE_LOOP_TIMER:
            try:
                task = asyncio.current_task()
            except RuntimeError:  # not on asyncio
                task = None
        self._task = task
        self._now = _loop_clock(task) if task is not None else anyio.current_time
        now = self._now()
        own_total = now + deadlines.total
        self.total_at = own_total if total_at is None else min(own_total, total_at)
        self._first_token_at: float | None = None
        self._wait_until = self.total_at
        self._reading = False
        self._timer: asyncio.TimerHandle | None = None
        self._fired: DeadlineName | None = None
        self._cancelling = 0
        self._scope: anyio.CancelScope | None = None
        self.events = 0  # events of the answer seen so far
        self.connected = False  # a connection was given to this request

    # -- what the request tells the clock --------------------------------------------------

    def extensions(self) -> dict[str, Any]:
        """The request extensions that wire this clock in."""
        return {"trace": self._trace, CLOCK_KEY: self}

    async def _trace(self, name: str, info: Mapping[str, Any]) -> None:
        self.connected = True
        if self._first_token_at is None and name in _SENT_EVENTS:
            self._first_token_at = self._now() + self.deadlines.first_token
            if self.events == 0 and self._reading:  # the wait for the first event goes on
                self._move(self._deadline())

    def event(self) -> None:
        """Something counting as an event arrived (the headers of a call that does not stream)."""
        self.events += 1

    # -- waiting ------------------------------------------------------------------------------

    def _deadline(self, now: float | None = None) -> float:
        if self.events:
            until = (self._now() if now is None else now) + self.deadlines.idle
        elif self._first_token_at is not None:
            until = self._first_token_at
        else:  # not sent yet: waiting for a connection slot, or connecting (httpx's connect)
            until = self.total_at
        return until if until < self.total_at else self.total_at

    def _move(self, until: float) -> None:
        self._wait_until = until
        if self._scope is not None:
            self._scope.deadline = until
        elif self._timer is not None and self._timer.when() > until:
            self._timer.cancel()
            self._timer = self._task.get_loop().call_at(until, self._on_timer)  # type: ignore[union-attr]

    def _begin(self, fresh: bool = True) -> None:
        """Start a wait: `fresh` for a new event, else the same event's wait going on (a read
        that brought only part of it), which keeps its deadline."""
        now = self._now()
        until = self._wait_until = self._deadline(now) if fresh else self._wait_until
        if until <= now:  # total has passed while the consumer held the last event
            raise self.error(self._which())
        self._reading = True
        if self._timer is None:
            self._timer = self._task.get_loop().call_at(until, self._on_timer)  # type: ignore[union-attr]
        elif self._timer.when() > until:
            self._move(until)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._reading or self._fired is not None:
            return  # re-armed by the next wait
        now = self._now()
        if now < self._wait_until:
            self._timer = self._task.get_loop().call_at(self._wait_until, self._on_timer)  # type: ignore[union-attr]
            return
        task = self._task
        assert task is not None
        self._fired = self._which()
        self._cancelling = task.cancelling()
        task.cancel()

    def _which(self) -> DeadlineName:
        if self._wait_until >= self.total_at:
            return "total"
        return "idle" if self.events else "first_token"

    def _expired(self) -> ProviderError | None:
        """The timeout error if our own timer cancelled the wait, else None (someone else did)."""
        fired, self._fired = self._fired, None
        if fired is None:
            return None
        assert self._task is not None
        if self._task.uncancel() > self._cancelling:
            return None
        return self.error(fired)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def wait(self, awaitable: Awaitable[T], *, fresh: bool = True) -> T:
        """`await awaitable` within the deadline of the current wait (`fresh`: a new one)."""
        if self._task is None:
            now = self._now()
            until = self._wait_until = self._deadline(now) if fresh else self._wait_until
            if until <= now:
                raise self.error(self._which())
            with anyio.CancelScope(deadline=until) as scope:
                self._scope, self._reading = scope, True
                try:
                    return await awaitable
                finally:
                    self._scope, self._reading = None, False
            raise self.error(self._which_scope(scope))
        self._begin(fresh)
        try:
            return await awaitable
        except asyncio.CancelledError:
            error = self._expired()
            if error is not None:
                raise error from None
            raise
        finally:
            self._reading = False

    def _which_scope(self, scope: anyio.CancelScope) -> DeadlineName:
        self._wait_until = scope.deadline
        return self._which()

    # -- errors ---------------------------------------------------------------------------

    def error(self, deadline: DeadlineName) -> ProviderError:
        d = self.deadlines
        if deadline == "total" and not self.connected:
            return LocalPoolTimeoutError(
                f"waited the whole total deadline ({d.total:g} s) for a free connection of "
                "this process's pool and never sent the request; raise max_connections for "
                "this provider or run fewer calls at once",
                provider=self.provider,
            )
        message = {
            "connect": f"could not connect within {d.connect:g} s (connect deadline)",
            "first_token": f"no answer within {d.first_token:g} s of sending the request "
            "(first_token deadline)",
            "idle": f"the stream went silent for {d.idle:g} s (idle deadline)",
        }.get(deadline)
        if message is None:
            return total_error(d.total, self.provider)
        return ProviderTimeoutError(message, deadline=deadline, provider=self.provider)


def clock_of(response: httpx.Response) -> CallClock | None:
    """The clock of the request `response` answers, if it was sent with one."""
    clock = response.request.extensions.get(CLOCK_KEY)
    return clock if isinstance(clock, CallClock) else None


async def paced_batches(
    reads: AsyncIterator[B],
    split: Callable[[B], list[T]],
    clock: CallClock | None,
    end: Callable[[], list[T]] | None = None,
) -> AsyncIterator[T]:
    """Yield the events `split` finds in each network read of `reads` (and `end()` finds when
    they stop), each event within the clock's current deadline.

    The clock times network reads, not events: a wait starts afresh when the consumer asks for
    an event none of the reads so far completed, and a read bringing only part of one goes on
    with the same deadline. Events a read already brought are handed over without waiting, but
    never after the total deadline. One wait per read rather than per event is what keeps a
    fast stream cheap.
    """
    try:
        ready: list[T] = []
        while True:
            fresh = True
            while not ready:
                try:
                    if clock is None:
                        data = await anext(reads)
                    else:
                        data = await clock.wait(anext(reads), fresh=fresh)
                except StopAsyncIteration:
                    ready = end() if end is not None else []
                    if not ready:
                        return
                    break
                fresh = False
                ready = split(data)
            if clock is None:
                for item in ready:
                    yield item
            else:
                # Counted as the read brings them: the count is only looked at while waiting,
                # when every event read so far has been handed over.
                clock.events += len(ready)
                now, total_at = clock._now, clock.total_at
                for item in ready:
                    if now() >= total_at:
                        raise clock.error("total")
                    yield item
            ready = []
    finally:
        aclose = getattr(reads, "aclose", None)
        if aclose is not None:
            await aclose()
