"""The imports a plugin sees: `openkoi:provider/http` and `openkoi:provider/host`.

The guest runs in a worker thread; its HTTP runs on that thread's own event loop through the
call's `GuardedClient` (`CallContext.run`, `_worker`). Which call a host function serves
is found through a thread-local `CallContext`, set by the runtime around each guest call (a
store is used by one thread at a time, so the thread identifies the call).

Host functions never raise: wasmtime-py parks a Python exception raised in a host function in a
process-wide global and re-raises it from whichever call checks next, possibly in another
thread. Every failure becomes an `http-error` value instead.

Streaming bodies are read on demand: each `next-chunk` is one network read on the worker's loop
(everything the socket holds, up to 64 KiB), so a fast stream crosses the boundary in a few
large pieces rather than many small ones, and nothing is read ahead of the guest.
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
from openkoi.plugins._call import CallContext, Cancelled, current, drive
from openkoi.plugins._convert import record
from openkoi.plugins._hostfunc import REQUEST_ARG_BYTES, add_func

if TYPE_CHECKING:
    from wasmtime.component import LinkerInstance

    from openkoi.plugins._guarded_http import GuardedResponse, HttpError

log = logging.getLogger("openkoi.plugins")

BODY_RESOURCE_TYPE = 0x6F6B_0001  # identifies openkoi's body-stream among host resources


# -- streaming bodies --------------------------------------------------------------------------

_reps = itertools.count(1)
_BODIES: dict[int, BodyReader] = {}
_BODIES_LOCK = threading.Lock()


class BodyReader:
    """An upstream body read on demand, on the call's worker loop, one network read (at most
    64 KiB, decoded and scrubbed by the `GuardedResponse`) per `next-chunk`: nothing is read
    ahead of the guest, so a guest that stops reading holds the upstream back."""

    def __init__(self, ctx: CallContext, response: GuardedResponse) -> None:
        self.ctx = ctx
        self.response = response
        self.rep = next(_reps) & 0xFFFF_FFFF
        self.thread = threading.get_ident()
        self.closed = False
        self._ended = False
        self._failed: HttpError | None = None  # what ended the body, told again on each ask
        self._read: asyncio.Task[str | None] | None = None  # kept across a timed-out wait
        self._closing: asyncio.Future[None] | None = None

    def take(self) -> str | HttpError:
        """The next text, "" at the end, or an error (on the worker thread)."""
        from openkoi.plugins._guarded_http import HttpError

        if self._ended:
            return self._failed if self._failed is not None else ""
        ctx, loop = self.ctx, self.ctx.loop
        assert loop is not None
        read = self._read
        if read is None:
            read = self._read = loop.create_task(self.response.next_chunk())
        try:
            ctx.wait(read)
        except Cancelled:
            return HttpError("other", "the call was cancelled by the host")
        except TimeoutError:  # the read goes on: the guest may ask again with a fresh deadline
            return HttpError("timeout", "the call's time limit ran out while waiting for the body")
        self._read = None
        try:
            chunk = read.result()
        except HttpError as exc:
            self._ended, self._failed = True, exc
            return exc
        except (Exception, asyncio.CancelledError) as exc:  # never leak its details to the guest
            self._ended = True
            self._failed = HttpError("other", f"reading the response failed ({type(exc).__name__})")
            self.close()
            return self._failed
        if chunk is None:
            self._ended = True  # the response closed itself at its end
            return ""
        return chunk

    def close(self) -> None:
        """Close the upstream response on the worker loop; idempotent (on the worker thread)."""
        if self.closed:
            return
        self.closed = True
        with _BODIES_LOCK:
            _BODIES.pop(self.rep, None)
        loop = self.ctx.loop
        if loop is None or loop.is_closed():
            return
        read, self._read = self._read, None
        if read is not None:
            read.cancel()
            drive(loop, read)
        drive(loop, self.response.aclose())

    def close_soon(self) -> None:
        """From another thread: close on the worker loop when it next runs (at the latest when
        the call ends, `CallContext.close`)."""
        loop = self.ctx.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed: its thread closed everything
                loop.call_soon_threadsafe(self._close_on_loop)

    def _close_on_loop(self) -> None:
        if not self.closed:
            self.closed = True
            with _BODIES_LOCK:
                _BODIES.pop(self.rep, None)
            read, self._read = self._read, None
            if read is not None:
                read.cancel()
            self._closing = asyncio.ensure_future(self.response.aclose())


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

    async def go() -> GuardedResponse:
        return await client.send(method, url, headers, body)

    reader = BodyReader(ctx, ctx.run(go))
    with _BODIES_LOCK:
        _BODIES[reader.rep] = reader
    ctx.bodies[reader.rep] = reader
    return record(
        status=reader.response.status,
        headers=reader.response.headers,
        body=ResourceHost.own(reader.rep, BODY_RESOURCE_TYPE),
    )


def _next_chunk(ctx: CallContext, this: Any) -> Any:
    from openkoi.plugins._guarded_http import HttpError

    rep = _rep_of(this)
    reader = ctx.bodies.get(rep) if rep is not None else None
    if not isinstance(reader, BodyReader) or reader.closed:
        return _http_error("other", "this body belongs to a call that has ended")
    result = reader.take()
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
    """The guest dropped a body-stream: close the upstream response (on its worker loop)."""
    try:
        with _BODIES_LOCK:
            reader = _BODIES.pop(rep, None)
        if reader is None or reader.closed:
            return
        reader.ctx.bodies.pop(rep, None)
        if reader.thread == threading.get_ident():  # the guest runs: its loop is free
            reader.close()
        else:
            reader.close_soon()
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
