"""A plugin's worker threads, each with its own event loop and its own HTTP connections.

A guest call runs on a worker thread, and the HTTP it asks for runs on that thread's loop
(`CallContext.wait`): no hop to the caller's loop and back for each request or body read, and
no stream's HTTP on the caller's loop thread. httpx/httpcore connections belong to the loop that
opened them, so each thread keeps its own `TransportPool`, reused from one call to the next and
closed on its own loop when the thread ends.

The threads are owned here (not a `ThreadPoolExecutor`) so each can close its pool on its way
out. `shutdown` (the runtime's `aclose`, a collected runtime, interpreter exit) lets each thread
finish the job it runs, which the runtime has cancelled by then, close its pool and end; so the
threads never hold the process open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from openkoi.plugins._call import drive
from openkoi.plugins._guarded_http import TransportPool

T = TypeVar("T")


class Worker:
    """One worker thread's loop and connections (reached through `current()`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.transports = TransportPool()

    def close(self) -> None:
        """Close the connections on their own loop (bounded), then the loop."""
        loop = self.loop
        drive(loop, self.transports.aclose())
        for task in asyncio.all_tasks(loop):  # a body read a cancelled call left behind
            task.cancel()
            drive(loop, task)
        drive(loop, loop.shutdown_asyncgens())
        loop.close()


_local = threading.local()


def current() -> Worker | None:
    """The worker of the calling thread; None outside a worker thread."""
    return getattr(_local, "worker", None)


class _Outcome(Protocol):
    def set_running_or_notify_cancel(self) -> bool: ...

    def set_result(self, result: Any) -> None: ...

    def set_exception(self, exception: BaseException | None) -> None: ...


class _Reply:
    """A job's outcome handed straight to a future on the caller's loop: one wake of that loop
    and no chain of callbacks (`asyncio.wrap_future` takes two more loop turns). The job always
    runs, even when the future was cancelled meanwhile: it frees what it holds."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, result: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(_deliver, self.future, result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_deliver, self.future, None, exception)


def _deliver(future: asyncio.Future[Any], result: Any, exception: BaseException | None) -> None:
    if future.done():  # cancelled, or past the caller's own bound
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


_Job = tuple[_Outcome, Callable[..., Any], tuple[Any, ...]]


class WorkerPool:
    """Up to `size` worker threads taking jobs from one queue, started as jobs need them."""

    def __init__(self, size: int, name: str) -> None:
        self.size = max(1, size)
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._stopped = False
        self.ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        _POOLS.add(self)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._enqueue(future, fn, args)
        return future

    def reply(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run `fn(*args)` on a worker; its outcome arrives in a future on `loop`."""
        reply = _Reply(loop)
        self._enqueue(reply, fn, args)
        return reply.future

    def _enqueue(self, outcome: _Outcome, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the plugin's worker threads have been shut down")
            start, index = False, self._threads
            if self._idle > 0:
                self._idle -= 1  # a waiting thread takes this job
            elif self._threads < self.size:
                self._threads += 1
                start = True
            self._jobs.put((outcome, fn, args))
        if start:
            thread = threading.Thread(target=_run, args=(self,), name=f"{self.name}_{index}")
            try:
                thread.start()
            except BaseException:
                with self._lock:
                    self._threads -= 1
                raise

    def shutdown(self) -> None:
        """Let every thread end after its current job; queued jobs still run (cancelled by the
        runtime, they end at once). Idempotent, from any thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)
        if threads == 0:
            _settle(self.ended)
        _POOLS.discard(self)

    async def wait_ended(self, timeout: float) -> bool:
        """Until every thread has closed its connections and ended, at most `timeout`."""
        done, _ = await asyncio.wait((asyncio.wrap_future(self.ended),), timeout=timeout)
        return bool(done)

    def _taken(self) -> _Job | None:
        """The next job: one already queued, else wait (counted idle, so a submit that sees
        an idle thread starts no new one)."""
        with self._lock:
            try:
                return self._jobs.get_nowait()
            except queue.Empty:
                self._idle += 1
        return self._jobs.get()

    def _left(self) -> None:
        with self._lock:
            self._threads -= 1
            last = self._threads == 0 and self._stopped
        if last:
            _settle(self.ended)


def _run(pool: WorkerPool) -> None:
    worker = _local.worker = Worker()
    try:
        while (job := pool._taken()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del job, future, fn, args
    finally:
        _local.worker = None
        worker.close()
        pool._left()


def _settle(future: concurrent.futures.Future[None]) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(None)


_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _shutdown_all() -> None:
    """At interpreter exit, before non-daemon threads are joined: every pool's threads end."""
    for pool in list(_POOLS):
        pool.shutdown()


threading._register_atexit(_shutdown_all)  # type: ignore[attr-defined]
