"""Running a plugin: a pool of sandboxed instances, guest calls on worker threads, limits.

Each instance has its own Store (used by one thread at a time) with the plugin's memory limit
and the host's limits on tables, instances and memories, and its own WASI state (openkoi's WASI,
`_wasi`). Each call has a deadline: the per-call wall time, or the per-event wall time for each
`next` of a stream. The Store's epoch callback (`_interrupt`) stops a computing guest at it, and
every wait the guest can make (a sleep, a poll, an HTTP request or body read) ends at it too, so
no call outlives its deadline. A call takes an instance from the pool, runs on one of the
plugin's worker threads while its HTTP runs on the caller's event loop, and gives the instance
back. An instance that trapped (or hit a limit mid-call) is thrown away, never reused; the pool
makes a fresh one when it is next needed. A stream holds its instance until it ends or is
closed; closing it early (or cancelling a call) wakes the guest, closes the upstream response
and stops the guest within a short grace, which frees the instance. `aclose` and interpreter
exit cancel every call still running, so worker threads never hold the process open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from openkoi._deadline import CallTotal
from openkoi._errors import CredentialsMissingError, ProviderError
from openkoi._types import ChatChunk
from openkoi.plugins import _guest_log
from openkoi.plugins import _interrupt as interrupt
from openkoi.plugins._call import CallContext, activate
from openkoi.plugins._convert import (
    MEMORY_CODE,
    BadValue,
    chunk_from_wit,
    error_from_wit,
    error_info,
    is_error,
)
from openkoi.plugins._egress import EgressPolicy
from openkoi.plugins._engine import TICK_SECONDS, engine, load_component, ticks_for
from openkoi.plugins._errors import (
    LIMIT_FIELDS,
    LimitName,
    PluginDeniedError,
    PluginError,
    PluginLimitError,
    PluginTrapError,
)
from openkoi.plugins._fastcall import Budget, ValueTooLarge
from openkoi.plugins._hostfunc import VALUES_BREACH
from openkoi.plugins._limits import (
    INSTANCES,
    MEMORIES,
    MIB,
    STREAM_BATCH_BYTES,
    STREAM_READ_AHEAD,
    STREAM_READ_AHEAD_BYTES,
    TABLE_ELEMENTS,
    TABLES,
    Limits,
    result_bytes,
)
from openkoi.plugins._linker import instantiate, prepare
from openkoi.plugins._manifest import PROVIDER_EXPORT, PluginFile
from openkoi.plugins._stream_lift import lift_batch
from openkoi.plugins._wasi import WasiState

if TYPE_CHECKING:
    from wasmtime import Store

    from openkoi._secrets import Secret
    from openkoi.plugins._guarded_http import Resolver, TransportPool

T = TypeVar("T")
_DROP_SECONDS = 5.0
_EVENT_OVERHEAD = 64  # read-ahead bytes counted per event on top of its lifted cost
_HOST_GRACE_SECONDS = 1.0


def _cancel_live_calls() -> None:
    """At interpreter exit, before worker threads are joined: end every guest still running, so
    a sleeping or spinning guest cannot hold the process open."""
    for runtime in list(_LIVE):
        runtime.cancel_all()


_LIVE: weakref.WeakSet[PluginRuntime] = weakref.WeakSet()
# Registered after concurrent.futures' own exit hook (which joins workers), so it runs first.
threading._register_atexit(_cancel_live_calls)  # type: ignore[attr-defined]


@dataclass
class RuntimeStats:
    instances_created: int = 0
    instances_discarded: int = 0
    traps: int = 0
    calls: int = 0


def new_store(limits: Limits) -> Store:
    """The Store every plugin instance runs in: the plugin's memory limit and the host's limits
    on tables, instances and memories, and the deadline callback that ends a guest at its
    call's deadline or cancel. Its WASI is openkoi's own (`_wasi`), linked by `_linker`."""
    from wasmtime import Store

    store = Store(engine())
    store.set_limits(
        memory_size=limits.memory_bytes,
        table_elements=TABLE_ELEMENTS,
        instances=INSTANCES,
        tables=TABLES,
        memories=MEMORIES,
    )
    interrupt.install(store)
    store.set_epoch_deadline(1)
    return store


class _Instance:
    """One instantiated guest in its own Store, with its own WASI state."""

    def __init__(self, runtime: PluginRuntime) -> None:
        from openkoi.plugins._fastcall import FastCall

        self.runtime = runtime
        self.store = new_store(runtime.limits)
        self.wasi = WasiState(runtime.guest_stderr)
        self.broken = False
        ctx = CallContext(runtime.id, None, None, runtime.config)
        seconds = runtime.limits.call_seconds
        ctx.start(seconds, "time")
        ctx.state = self.wasi
        with runtime.tracking(ctx), activate(ctx):
            try:
                instance = instantiate(self.store, runtime.component)
            except Exception as exc:
                raise runtime.trap_error(ctx, exc, seconds) from None
        root = instance.get_export_index(self.store, runtime.export_name)
        if root is None:
            raise PluginTrapError(f"plugin {runtime.id} does not export {runtime.export_name}")
        self.funcs: dict[str, Any] = {}
        for name in ("info", "models", "chat", "stream-chat", "embed", "[method]chat-stream.next"):
            index = instance.get_export_index(self.store, name, root)
            func = instance.get_func(self.store, index) if index is not None else None
            if func is None:
                raise PluginTrapError(f"plugin {runtime.id} lacks the export {name!r}")
            self.funcs[name] = FastCall(func, self.store)
        self.instance = instance

    def invoke(
        self,
        ctx: CallContext,
        name: str,
        *args: Any,
        seconds: float,
        kind: str,
        budget: Budget,
        lifter: Callable[[Any, Budget], Any] | None = None,
    ) -> Any:
        """Call an export under a fresh deadline; a trap breaks the instance and is raised as a
        `PluginError` naming the limit when the deadline caused it."""
        ctx.start(seconds, kind)
        ctx.state = self.wasi
        self.store.set_epoch_deadline(min(interrupt.SLICE_TICKS, ticks_for(seconds)))
        with activate(ctx):
            try:
                return self.funcs[name](self.store, *args, budget=budget, lifter=lifter)
            except ValueTooLarge as exc:
                self.broken = True
                raise self.runtime.values_error(exc.what) from None
            except Exception as exc:
                self.broken = True
                raise self.runtime.trap_error(ctx, exc, seconds) from None

    def drop(self, ctx: CallContext, handle: Any) -> None:
        ctx.start(_DROP_SECONDS, "time")
        ctx.state = self.wasi
        self.store.set_epoch_deadline(interrupt.SLICE_TICKS)
        with activate(ctx):
            try:
                handle.drop(self.store)
            except Exception:
                self.broken = True


class _Waiter:
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[_Instance | None] = loop.create_future()


class _Channel:
    """Stream batches from the worker thread to the reader on the loop, with back-pressure: the
    guest runs ahead of its reader by at most `STREAM_READ_AHEAD` batches and
    `STREAM_READ_AHEAD_BYTES` of lifted values.

    The worker wakes the loop only when the reader waits for an item: every wake is a hop that
    costs the worker a fresh turn at the GIL, so a reader that is behind takes what has piled up
    without one."""

    _END = object()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._room = threading.Condition()
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._batches = 0
        self._bytes = 0

    def put(self, item: Any, size: int = 0) -> None:
        with self._room:
            if size:
                self._batches += 1
                self._bytes += size
            self._items.append((item, size))
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is reading
                self.loop.call_soon_threadsafe(_wake_reader, waiter)

    def end(self) -> None:
        self.put(self._END)

    async def get(self, timeout: float) -> tuple[Any, int]:
        """The next item (on the loop); `TimeoutError` when none comes within `timeout`."""
        deadline = self.loop.time() + timeout
        while True:
            with self._room:
                if self._items:
                    return self._items.popleft()
                waiter = self._waiter = self.loop.create_future()
            left = deadline - self.loop.time()
            if left <= 0:
                raise TimeoutError
            try:
                await asyncio.wait_for(waiter, left)
            finally:
                with self._room:
                    if self._waiter is waiter:
                        self._waiter = None

    def consumed(self, size: int) -> None:
        if size:
            with self._room:
                self._batches -= 1
                self._bytes -= size
                self._room.notify_all()

    def wake(self) -> None:
        with self._room:
            self._room.notify_all()

    def wait_room(self, ctx: CallContext) -> bool:
        """Until the reader has room for another batch; False when the call was cancelled."""
        with self._room:
            while not ctx.cancelled.is_set():
                if self._batches < STREAM_READ_AHEAD and self._bytes < STREAM_READ_AHEAD_BYTES:
                    return True
                self._room.wait(0.25)
        return False


def _wake_reader(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PluginRuntime:
    """A loaded plugin: its compiled component, its instance pool and its worker threads."""

    def __init__(
        self,
        plugin: PluginFile,
        *,
        policy: EgressPolicy,
        secrets: Mapping[str, Secret],
        config: Mapping[str, str],
        limits: Limits,
        pool_size: int,
        missing_secrets: Mapping[str, str] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        from openkoi.plugins._guarded_http import TransportPool

        self.plugin = plugin
        self.id = plugin.manifest.id
        self.policy = policy
        self.limits = limits
        self.pool_size = max(1, pool_size)
        self._secrets = dict(secrets)
        self.config = dict(config)
        self._missing_secrets = dict(missing_secrets or {})
        self._secret_origins = {
            s.name: EgressPolicy.parse(s.origins) for s in plugin.manifest.secrets if s.origins
        }
        self._resolver = resolver
        started = time.perf_counter()
        self.component, self.from_cache = load_component(plugin.data, plugin.digest)
        prepare(self.component)
        self.load_seconds = time.perf_counter() - started
        self.export_name = next(e for e in plugin.exports if e.split("@")[0] == PROVIDER_EXPORT)
        self.stats = RuntimeStats()
        self._transports: TransportPool = TransportPool()
        self._executor = ThreadPoolExecutor(
            max_workers=self.pool_size, thread_name_prefix=f"openkoi-plugin-{self.id}"
        )
        self._lock = threading.Lock()
        self._idle: list[_Instance] = []
        self._count = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._closed = False
        self._info: Any = None
        self._active: set[CallContext] = set()
        _LIVE.add(self)

    # -- the pool --------------------------------------------------------------------------------

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def size(self) -> int:
        return self._count

    @contextlib.contextmanager
    def tracking(self, ctx: CallContext) -> Iterator[CallContext]:
        """Keep `ctx` among the calls `aclose` (and process exit) cancel while it runs."""
        with self._lock:
            self._active.add(ctx)
            closed = self._closed
        if closed:
            ctx.cancel()
        try:
            yield ctx
        finally:
            with self._lock:
                self._active.discard(ctx)
            _guest_log.end_of_call(self.id, ctx)

    def guest_stderr(self, line: str) -> None:
        _guest_log.write(self.id, "debug", line, source="stderr")

    def cancel_all(self) -> None:
        with self._lock:
            active = list(self._active)
        for ctx in active:
            ctx.cancel()

    def _new_instance(self) -> _Instance:
        inst = _Instance(self)
        self.stats.instances_created += 1
        if self._info is None:
            ctx = CallContext(self.id, None, None, self.config)
            with self.tracking(ctx):
                info = inst.invoke(
                    ctx,
                    "info",
                    seconds=self.limits.call_seconds,
                    kind="time",
                    budget=self.result_budget(),
                )
            self._info = info
        return inst

    def result_budget(self) -> Budget:
        """What one value returned by the guest may cost the host."""
        return Budget(result_bytes(self.limits))

    def values_error(self, what: str) -> PluginLimitError:
        release_freed_memory()
        return PluginLimitError(
            f"plugin {self.id} returned a value over the host's cap ({what}); "
            "its instance was discarded",
            limit="values",
            provider=self.id,
        )

    def closed_error(self) -> PluginError:
        return PluginError(f"plugin {self.id} is closed", provider=self.id)

    async def _acquire(self) -> _Instance:
        if self._closed:
            raise self.closed_error()
        loop = asyncio.get_running_loop()
        waiter: _Waiter | None = None
        with self._lock:
            if self._closed:  # closed by another thread since
                raise self.closed_error()
            if self._idle:
                return self._idle.pop()
            if self._count < self.pool_size:
                self._count += 1
            else:
                waiter = _Waiter(loop)
                self._waiters.append(waiter)
        if waiter is not None:
            try:
                got = await waiter.future
            except asyncio.CancelledError:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                        raise
                # an instance (or a slot) was handed over as we were cancelled: pass it on
                if waiter.future.done() and not waiter.future.cancelled():
                    self._hand_back(waiter.future.result())
                raise
            if got is not None:
                return got
        try:
            return await asyncio.wrap_future(self._executor.submit(self._new_instance))
        except BaseException as exc:
            self._hand_back(None)
            if isinstance(exc, ProviderError | asyncio.CancelledError):
                raise
            if self._closed:  # closed while this call waited: its executor takes no more work
                raise self.closed_error() from None
            raise PluginTrapError(
                f"plugin {self.id} could not be instantiated: {_first_line(exc)}", provider=self.id
            ) from None

    def _hand_back(self, inst: _Instance | None) -> None:
        """Return an instance (or, with None, a free slot) to the pool; thread-safe."""
        with self._lock:
            if inst is not None and (inst.broken or self._closed):
                self.stats.instances_discarded += 1
                inst = None
            if inst is None:
                self._count -= 1
            while self._waiters:
                waiter = self._waiters.popleft()
                if inst is None:
                    self._count += 1  # the waiter creates a new instance in this slot
                try:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter, inst, self)
                except RuntimeError:  # that loop is closed
                    if inst is None:
                        self._count -= 1
                    continue
                return
            if inst is not None:
                self._idle.append(inst)

    # -- calls -------------------------------------------------------------------------------------

    def _context(self, loop: asyncio.AbstractEventLoop) -> CallContext:
        from openkoi.plugins._guarded_http import GuardedClient

        client = GuardedClient(
            self.policy,
            self._secrets,
            max_response_bytes=self.limits.response_bytes,
            max_requests=self.limits.max_requests,
            timeout=min(self.limits.call_seconds, 600.0),
            transports=self._transports,
            resolver=self._resolver,
            secret_origins=self._secret_origins,
        )
        return CallContext(self.id, loop, client, self.config)

    async def info(self) -> Any:
        if self._info is None:
            self._hand_back(await self._acquire())
        return self._info

    async def call(
        self,
        export: str,
        *args: Any,
        convert: Callable[[Any], T],
        total: CallTotal | None = None,
    ) -> T:
        """Run one export to completion; `convert` maps its ok value (in the worker thread).
        With `total`, the call also ends when the provider call's total deadline passes."""
        loop = asyncio.get_running_loop()
        inst = await self._acquire()
        ctx = self._context(loop)
        future = self._executor.submit(self._job, inst, ctx, export, args, convert)
        wrapped = asyncio.wrap_future(future)
        try:
            # The guest is ended at its deadline by the host (`_interrupt`, `_wasi`); this bound
            # is the host's own, should anything in between ever fail to end. (`wait` neither
            # cancels `wrapped` nor takes the extra loop turns `wait_for(shield(...))` takes.)
            bound = self.limits.call_seconds + _HOST_GRACE_SECONDS
            ends_total = total is not None and total.left(loop) < bound
            timeout = total.left(loop) if total is not None and ends_total else bound
            done, _ = await asyncio.wait((wrapped,), timeout=max(0.0, timeout))
            if not done:
                ctx.cancel()
                wrapped.add_done_callback(_consume)
                if total is not None and ends_total:
                    raise total.error(self.id)
                raise self.limit_error("time")
            return wrapped.result()
        except asyncio.CancelledError:
            ctx.cancel()  # the guest is ended at once; the job frees the instance
            wrapped.add_done_callback(_consume)
            raise
        finally:
            await _quietly(ctx.aclose())

    def _job(
        self,
        inst: _Instance,
        ctx: CallContext,
        export: str,
        args: tuple[Any, ...],
        convert: Callable[[Any], T],
    ) -> T:
        try:
            with self.tracking(ctx):
                if ctx.cancelled.is_set():
                    raise PluginError("the call was cancelled", provider=self.id)
                self.stats.calls += 1
                result = inst.invoke(
                    ctx,
                    export,
                    *args,
                    seconds=self.limits.call_seconds,
                    kind="time",
                    budget=self.result_budget(),
                )
                if is_error(result):
                    raise self.result_error(inst, ctx, result)
                try:
                    return convert(result)
                except (BadValue, TypeError, ValueError, AttributeError) as exc:
                    raise PluginError(
                        f"plugin {self.id} returned a value that does not fit the contract: {exc}",
                        provider=self.id,
                    ) from None
        finally:
            self._hand_back(inst)

    async def stream(
        self, request: Any, total: CallTotal | None = None
    ) -> AsyncIterator[list[ChatChunk | str]]:
        """Batches of events from `stream-chat` and `next`, each a chunk or, for a text delta,
        its text (`_stream_lift`); close the generator to cancel. With `total`, the stream also
        ends when the provider call's total deadline passes, however often the guest yields."""
        loop = asyncio.get_running_loop()
        inst = await self._acquire()
        ctx = self._context(loop)
        channel = _Channel(loop)
        self._executor.submit(self._stream_job, inst, ctx, request, channel)
        finished = False
        # The host's own bound on each wait, should the guest's deadline ever fail to end it.
        bound = max(self.limits.call_seconds, self.limits.event_seconds) + _HOST_GRACE_SECONDS
        try:
            while True:
                left = bound if total is None else min(bound, total.left(loop))
                try:
                    if left <= 0:
                        raise TimeoutError
                    item, size = await channel.get(left)
                except TimeoutError:
                    if total is not None and left < bound:
                        raise total.error(self.id) from None
                    raise self.limit_error("event-time") from None
                if item is _Channel._END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                channel.consumed(size)
                yield item
        finally:
            if not finished:  # closed early: end the guest, which then frees the instance
                ctx.cancel()
                channel.wake()
            await _quietly(ctx.aclose())

    def _stream_job(
        self, inst: _Instance, ctx: CallContext, request: Any, channel: _Channel
    ) -> None:
        handle: Any = None
        try:
            with self.tracking(ctx):
                if ctx.cancelled.is_set():
                    return
                self.stats.calls += 1
                opened = inst.invoke(
                    ctx,
                    "stream-chat",
                    request,
                    seconds=self.limits.call_seconds,
                    kind="time",
                    budget=self.result_budget(),
                )
                if is_error(opened):
                    channel.put(self.result_error(inst, ctx, opened))
                    return
                handle = opened
                while channel.wait_room(ctx):
                    budget = Budget(STREAM_BATCH_BYTES)
                    batch = inst.invoke(
                        ctx,
                        "[method]chat-stream.next",
                        handle,
                        seconds=self.limits.event_seconds,
                        kind="event-time",
                        budget=budget,
                        lifter=lift_batch,
                    )
                    if batch is None:
                        return
                    if is_error(batch):
                        channel.put(self.result_error(inst, ctx, batch))
                        return
                    try:
                        events = batch
                        if batch.others:  # text stays a `str` until the reader makes its chunk
                            events = [e if type(e) is str else chunk_from_wit(e) for e in batch]
                    except (BadValue, TypeError, ValueError, AttributeError) as exc:
                        inst.broken = True
                        channel.put(
                            PluginError(
                                f"plugin {self.id} sent a stream event that does not fit the "
                                f"contract: {exc}",
                                provider=self.id,
                            )
                        )
                        return
                    if events:
                        lifted = STREAM_BATCH_BYTES - budget.bytes
                        channel.put(events, size=lifted + _EVENT_OVERHEAD * len(events))
        except (ProviderError, CredentialsMissingError) as exc:
            channel.put(exc)
        except Exception as exc:  # keep the reader informed whatever happened
            inst.broken = True
            channel.put(
                PluginError(f"plugin {self.id} failed: {_first_line(exc)}", provider=self.id)
            )
        finally:
            if handle is not None and not inst.broken:
                inst.drop(ctx, handle)
            channel.end()
            self._hand_back(inst)

    # -- errors ------------------------------------------------------------------------------------

    def trap_error(self, ctx: CallContext, exc: BaseException, seconds: float) -> PluginError:
        self.stats.traps += 1
        if ctx.breach == VALUES_BREACH:
            return self.limit_error("values")
        if ctx.cancelled.is_set():
            return PluginError(f"plugin {self.id}: the call was cancelled", provider=self.id)
        if ctx.remaining() <= 2 * TICK_SECONDS or _trap_reason(exc) == "wasm trap: interrupt":
            limit: LimitName = "event-time" if ctx.deadline_kind == "event-time" else "time"
            what = "per stream event" if limit == "event-time" else "per call"
            return PluginLimitError(
                f"plugin {self.id} exceeded its wall-time limit of {seconds:g} s {what} "
                f"({LIMIT_FIELDS[limit]}); its instance was discarded",
                limit=limit,
                provider=self.id,
            )
        return PluginTrapError(
            f"plugin {self.id} crashed ({_trap_reason(exc)}); its instance was discarded",
            provider=self.id,
        )

    def result_error(
        self, inst: _Instance, ctx: CallContext, value: Any
    ) -> ProviderError | CredentialsMissingError:
        """The error for a `provider-error` the guest returned, unless the host knows better: a
        limit the call hit, or a request the egress policy refused."""
        _, _, _, code, _ = error_info(value)
        if code == MEMORY_CODE:
            inst.broken = True
            return self.limit_error("memory")
        if ctx.breach is not None:
            return self.limit_error(ctx.breach)  # type: ignore[arg-type]
        if ctx.remaining() <= 0:
            inst.broken = True
            return self.limit_error("event-time" if ctx.deadline_kind == "event-time" else "time")
        if ctx.denial is not None:
            for name, hint in self._missing_secrets.items():
                if f"secret {name!r}" in ctx.denial:
                    return CredentialsMissingError(
                        f"plugin {self.id} needs the secret {name}: {hint}", provider=self.id
                    )
            return PluginDeniedError(
                f"plugin {self.id}: {ctx.denial}", provider=self.id, code="denied"
            )
        return error_from_wit(value, self.id)

    def limit_error(self, limit: LimitName) -> PluginLimitError:
        values = {
            "memory": f"{self.limits.memory_bytes // MIB} MiB",
            "time": f"{self.limits.call_seconds:g} s per call",
            "event-time": f"{self.limits.event_seconds:g} s per stream event",
            "response-bytes": f"{self.limits.response_bytes:,} response bytes per call",
            "requests": f"{self.limits.max_requests} HTTP requests per call",
            "values": "values passed to the host",
        }
        return PluginLimitError(
            f"plugin {self.id} hit its {limit} limit ({values[limit]}; {LIMIT_FIELDS[limit]})",
            limit=limit,
            provider=self.id,
        )

    # -- shutdown ----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            waiters, self._waiters = self._waiters, collections.deque()
        del idle
        for waiter in waiters:  # calls still waiting for an instance: none will come
            with contextlib.suppress(RuntimeError):  # that loop is closed
                waiter.loop.call_soon_threadsafe(_refuse, waiter, self.closed_error())
        self.cancel_all()
        _LIVE.discard(self)
        self._executor.shutdown(wait=False, cancel_futures=False)
        await self._transports.aclose()


def release_freed_memory() -> None:
    """Hand the heap wasmtime freed (its copy of an oversized value) back to the system."""
    with contextlib.suppress(Exception):  # glibc only; elsewhere the heap keeps it
        ctypes.CDLL(None).malloc_trim(0)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a call nobody awaits any more (it was cancelled)."""
    if not future.cancelled():
        future.exception()


def _resolve(waiter: _Waiter, inst: _Instance | None, runtime: PluginRuntime) -> None:
    if waiter.future.done():  # cancelled meanwhile: pass the instance or slot on
        runtime._hand_back(inst)
    else:
        waiter.future.set_result(inst)


def _refuse(waiter: _Waiter, error: BaseException) -> None:
    if not waiter.future.done():
        waiter.future.set_exception(error)


def _trap_reason(exc: BaseException) -> str:
    """wasmtime's cause ("wasm trap: ...", "Exited with ...") without the backtrace."""
    text = str(exc)
    _, found, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if found else text).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:200]


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable
