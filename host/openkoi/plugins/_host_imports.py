"""The imports a plugin sees: `openkoi:provider/http` and `openkoi:provider/host`.

The guest runs in a worker thread; its HTTP runs on the caller's asyncio loop through the
plugin's `GuardedClient` (`asyncio.run_coroutine_threadsafe`). Which call a host function serves
is found through a thread-local `CallContext`, set by the runtime around each guest call (a
store is used by one thread at a time, so the thread identifies the call).

Host functions never raise: wasmtime-py parks a Python exception raised in a host function in a
process-wide global and re-raises it from whichever call checks next, possibly in another
thread. Every failure becomes an `http-error` value instead.

Streaming bodies are pumped by a task on the loop into a bounded buffer; `next-chunk` hands the
guest everything buffered so far in one string, so a fast stream crosses the boundary in a few
large pieces rather than many small ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openkoi.plugins import _guest_log
from openkoi.plugins._call import CallContext, Cancelled, current
from openkoi.plugins._convert import record
from openkoi.plugins._hostfunc import REQUEST_ARG_BYTES, add_func

if TYPE_CHECKING:
    from wasmtime.component import LinkerInstance

    from openkoi.plugins._guarded_http import GuardedResponse, HttpError

log = logging.getLogger("openkoi.plugins")

BODY_RESOURCE_TYPE = 0x6F6B_0001  # identifies openkoi's body-stream among host resources
_HIGH_WATER = 1 << 20  # stop reading upstream once this much text waits for the guest


# -- streaming bodies --------------------------------------------------------------------------

_reps = itertools.count(1)
_BODIES: dict[int, BodyPump] = {}
_BODIES_LOCK = threading.Lock()


class BodyPump:
    """Reads an upstream body on the loop into a bounded buffer the guest drains."""

    def __init__(self, ctx: CallContext, response: GuardedResponse) -> None:
        self.ctx = ctx
        self.response = response
        self.rep = next(_reps) & 0xFFFF_FFFF
        self.closed = False
        self._cond = threading.Condition()
        self._chunks: list[str] = []
        self._size = 0
        self._done = False
        self._error: HttpError | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Called on the loop."""
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        from openkoi.plugins._guarded_http import HttpError

        error: HttpError | None = None
        try:
            while True:
                await self._room.wait()
                chunk = await self.response.next_chunk()
                if chunk is None:
                    break
                with self._cond:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    if self._size >= _HIGH_WATER:
                        self._room.clear()
                    self._cond.notify_all()
        except HttpError as exc:
            error = exc
        except asyncio.CancelledError:
            error = HttpError("other", "the response was closed")
            raise
        except Exception as exc:  # never leak an unexpected failure's details to the guest
            error = HttpError("other", f"reading the response failed ({type(exc).__name__})")
        finally:
            with self._cond:
                self._done = True
                self._error = error
                self._cond.notify_all()
            await self.response.aclose()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def ended(self) -> bool:
        """The pump has finished and closed the upstream response (asked from any thread)."""
        task = self._task
        return task is not None and task.done()

    def take(self) -> str | HttpError:
        """Everything buffered, "" at the end, or an error (thread side)."""
        from openkoi.plugins._guarded_http import HttpError

        ctx = self.ctx
        with self._cond:
            while not (self._chunks or self._done or ctx.cancelled.is_set()):
                remaining = ctx.remaining()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 1.0))
            if self._chunks:
                data = "".join(self._chunks)
                self._chunks.clear()
                self._size = 0
                loop = ctx.loop
                if loop is not None and not self._room.is_set():
                    loop.call_soon_threadsafe(self._room.set)
                return data
            if self._done:
                return self._error if self._error is not None else ""
        if ctx.cancelled.is_set():
            return HttpError("other", "the call was cancelled by the host")
        return HttpError("timeout", "the call's time limit ran out while waiting for the body")

    async def aclose(self) -> None:
        """Close the upstream response (on the loop); idempotent."""
        if self.closed:
            return
        self.closed = True
        with _BODIES_LOCK:
            _BODIES.pop(self.rep, None)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.response.aclose()
        self.wake()


# -- the host functions ------------------------------------------------------------------------


def _http_error(kind: str, message: str) -> Any:
    from wasmtime.component import Variant

    return Variant(kind, message[:1000])


def _request_parts(request: Any) -> tuple[str, str, list[tuple[str, str]], str | None]:
    headers = [(str(k), str(v)) for k, v in request.headers]
    return str(request.method), str(request.url), headers, request.body


def _guarded(
    fn: Callable[[CallContext, Any], Any],
) -> Callable[[Any, Any], Any]:
    """Wrap an http host function: find the call, turn every failure into an `http-error`."""

    def host_function(store: Any, arg: Any) -> Any:
        from openkoi.plugins._guarded_http import HttpError

        ctx = current()
        if ctx is None:
            return _http_error("other", "HTTP is only available during a provider call")
        try:
            return fn(ctx, arg)
        except HttpError as exc:
            ctx.note(exc)
            return _http_error(exc.kind, exc.message)
        except TimeoutError:
            return _http_error("timeout", "the call's time limit ran out")
        except Cancelled:
            return _http_error("other", "the call was cancelled by the host")
        except Exception as exc:  # a host bug must not become a parked exception
            log.warning("plugin %s: host HTTP failure: %s", ctx.plugin_id, type(exc).__name__)
            return _http_error(
                "other", f"the host failed to perform the request ({type(exc).__name__})"
            )

    return host_function


def _send(ctx: CallContext, request: Any) -> Any:
    method, url, headers, body = _request_parts(request)
    client = ctx.client
    assert client is not None

    async def go() -> tuple[int, list[tuple[str, str]], str]:
        response = await client.send(method, url, headers, body)
        try:
            return response.status, response.headers, await response.text()
        finally:
            await response.aclose()

    status, head, text = ctx.run(go)
    return record(status=status, headers=head, body=text)


def _send_streaming(ctx: CallContext, request: Any) -> Any:
    from wasmtime.component import ResourceHost

    method, url, headers, body = _request_parts(request)
    client = ctx.client
    assert client is not None

    async def go() -> BodyPump:
        response = await client.send(method, url, headers, body)
        pump = BodyPump(ctx, response)
        with _BODIES_LOCK:
            _BODIES[pump.rep] = pump
        ctx.bodies[pump.rep] = pump
        pump.start()
        return pump

    pump = ctx.run(go)
    return record(
        status=pump.response.status,
        headers=pump.response.headers,
        body=ResourceHost.own(pump.rep, BODY_RESOURCE_TYPE),
    )


def _next_chunk(ctx: CallContext, this: Any) -> Any:
    from openkoi.plugins._guarded_http import HttpError

    rep = _rep_of(this)
    pump = ctx.bodies.get(rep) if rep is not None else None
    if not isinstance(pump, BodyPump) or pump.closed:
        return _http_error("other", "this body belongs to a call that has ended")
    result = pump.take()
    if isinstance(result, HttpError):
        ctx.note(result)
        return _http_error(result.kind, result.message)
    return result


_current_store: threading.local = threading.local()


def _rep_of(this: Any) -> int | None:
    store = getattr(_current_store, "store", None)
    try:
        return int(this.to_host(store).rep) if store is not None else None
    except Exception:
        return None


def _drop_body(store: Any, rep: int) -> None:
    """The guest dropped a body-stream: close the upstream response on its loop."""
    try:
        with _BODIES_LOCK:
            pump = _BODIES.pop(rep, None)
        if pump is None or pump.closed:
            return
        pump.ctx.bodies.pop(rep, None)
        if pump.ended():  # read to its end: the response is closed already, no hop needed
            pump.closed = True
            pump.wake()
            return
        loop = pump.ctx.loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(pump.aclose(), loop)
    except Exception:  # never raise into wasmtime
        return


def _get_config(store: Any, key: Any) -> str | None:
    ctx = current()
    try:
        return None if ctx is None else ctx.config.get(str(key))
    except Exception:
        return None


def _log(store: Any, level: Any, message: Any) -> None:
    try:
        ctx = current()
        _guest_log.write(ctx.plugin_id if ctx is not None else "?", str(level), str(message))
    except Exception:
        return


def _with_store(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Keep the calling store reachable for resource conversions in the wrapped function."""

    def wrapper(store: Any, *args: Any) -> Any:
        _current_store.store = store
        try:
            return fn(store, *args)
        finally:
            _current_store.store = None

    return wrapper


def add_openkoi(root: LinkerInstance, version: str) -> None:
    """Define openkoi's `http` and `host` interfaces (WIT `version`) in a Linker's root."""
    from wasmtime.component import ResourceType

    with root.add_instance(f"openkoi:provider/http@{version}") as http:
        http.add_resource("body-stream", ResourceType.host(BODY_RESOURCE_TYPE), _drop_body)
        add_func(http, "send", _guarded(_send), cap=REQUEST_ARG_BYTES)
        add_func(http, "send-streaming", _guarded(_send_streaming), cap=REQUEST_ARG_BYTES)
        add_func(http, "[method]body-stream.next-chunk", _with_store(_guarded(_next_chunk)))
    with root.add_instance(f"openkoi:provider/host@{version}") as host:
        add_func(host, "get-config", _get_config)
        add_func(host, "log", _log)
