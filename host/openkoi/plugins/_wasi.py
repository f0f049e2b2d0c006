"""The WASI a plugin sees: openkoi's own implementation of the WASI 0.2 imports, in Python.

Why not wasmtime's (`Linker.add_wasip2()`): a guest blocked in wasmtime's WASI (a `time.sleep`
is `monotonic-clock.subscribe-duration` then `pollable.block`) waits inside wasmtime's host code,
where epoch interruption cannot reach it, so neither a deadline nor a cancel could end the call,
and the worker thread kept the process from exiting. Here every wait is `CallContext.sleep`,
which ends at the call's deadline or at a cancel, and the host decides what each import gives.

What a guest gets (the same list is in wit/provider.wit and the README):
- monotonic clock: millisecond resolution, counted from an arbitrary origin per instance;
- wall clock: whole seconds (enough for dates and expiry checks, useless for timing the host);
- random: the operating system's CSPRNG; the insecure seed is random per instance;
- sleeping and polling: timers only, ended by the call's deadline or a cancel;
- environment and arguments: empty; no initial directory; no preopened directories;
- stdin: closed; stdout: accepted and discarded; stderr: forwarded to the plugin log (sanitised
  and capped like `host.log`);
- sockets and name lookup: refused with `access-denied`; `exit`: ends the call as a trap.
Everything else a guest imports from WASI (methods of resources it can never obtain, such as
sockets and file descriptors) is linked as a trap (`define_unknown_imports_as_traps`).

A host function ends the guest by raising `WasmtimeError`, which wasmtime-py turns into a trap
without parking a Python exception in its process-wide global.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openkoi.plugins._call import Cancelled, current
from openkoi.plugins._convert import record
from openkoi.plugins._hostfunc import add_func

if TYPE_CHECKING:
    from wasmtime.component import LinkerInstance

# Every WASI 0.2 release, each defined by name: a guest imports the one its toolchain targets.
WASI_VERSIONS = tuple(f"0.2.{patch}" for patch in range(13))
MONOTONIC_RESOLUTION_NS = 1_000_000
WALL_RESOLUTION_S = 1
MAX_TIMERS = 1024  # live pollables per instance
MAX_RANDOM_BYTES = 64 * 1024  # per get-random-bytes call
STDERR_LINE_BYTES = 2000
TRAP_PREFIX = "openkoi:"

# Host resource type ids (distinct from openkoi:provider's body-stream, 0x6F6B_0001).
POLLABLE = 0x6F6B_0101
INPUT_STREAM = 0x6F6B_0102
OUTPUT_STREAM = 0x6F6B_0103
IO_ERROR = 0x6F6B_0104
TERMINAL_INPUT = 0x6F6B_0105
TERMINAL_OUTPUT = 0x6F6B_0106
NETWORK = 0x6F6B_0107
TCP_SOCKET = 0x6F6B_0108
UDP_SOCKET = 0x6F6B_0109
INCOMING_DATAGRAMS = 0x6F6B_010A
OUTGOING_DATAGRAMS = 0x6F6B_010B
RESOLVE_STREAM = 0x6F6B_010C
DESCRIPTOR = 0x6F6B_010D
DIRECTORY_ENTRIES = 0x6F6B_010E

_READY = 0  # the rep of a pollable that is always ready (streams)
_STDOUT = 1
_STDERR = 2
_reps = itertools.count(16)
_reps_lock = threading.Lock()


class WasiState:
    """One instance's WASI state: its clock origin, its live timers, its stderr line buffer."""

    def __init__(self, log_line: Callable[[str], None]) -> None:
        self.origin_ns = time.monotonic_ns() - 1_000_000_000  # the guest's clock starts at 1 s
        self.timers: dict[int, int] = {}  # rep -> deadline, host monotonic ns
        self.stderr = bytearray()
        self.log_line = log_line

    def now_ns(self) -> int:
        elapsed = time.monotonic_ns() - self.origin_ns
        return elapsed - elapsed % MONOTONIC_RESOLUTION_NS

    def new_timer(self, deadline_ns: int) -> int:
        if len(self.timers) >= MAX_TIMERS:
            raise _trap(f"more than {MAX_TIMERS} live pollables")
        with _reps_lock:
            rep = next(_reps) & 0xFFFF_FFFF
        self.timers[rep] = deadline_ns
        return rep

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data
        while True:
            cut = self.stderr.find(b"\n")
            if cut < 0:
                break
            line, self.stderr = bytes(self.stderr[:cut]), self.stderr[cut + 1 :]
            self.log_line(line.decode("utf-8", "replace"))
        if len(self.stderr) > STDERR_LINE_BYTES:
            self.log_line(bytes(self.stderr[:STDERR_LINE_BYTES]).decode("utf-8", "replace"))
            self.stderr.clear()


def _trap(why: str) -> Exception:
    from wasmtime import WasmtimeError

    return WasmtimeError(f"{TRAP_PREFIX} {why}")


def _state() -> WasiState:
    ctx = current()
    state = ctx.state if ctx is not None else None
    if not isinstance(state, WasiState):
        raise _trap("WASI is only available while the host runs the plugin")
    return state


def _rep(store: Any, handle: Any) -> int:
    try:
        return int(handle.to_host(store).rep)
    except Exception:
        raise _trap("not a resource this host handed out") from None


def _own(rep: int, kind: int) -> Any:
    from wasmtime.component import ResourceHost

    return ResourceHost.own(rep, kind)


def _ok() -> Any:
    from wasmtime.component import Variant

    return Variant("ok")


# -- waiting ------------------------------------------------------------------------------------


def _wait_until(deadline_ns: int) -> None:
    """Sleep until the host monotonic instant, ended early by the call's deadline or a cancel."""
    ctx = current()
    if ctx is None:
        raise _trap("no call to wait in")
    while True:
        left = (deadline_ns - time.monotonic_ns()) / 1e9
        if left <= 0:
            return
        try:
            ctx.sleep(left)
        except Cancelled:
            raise _trap("the call was cancelled while the plugin slept") from None
        except TimeoutError:
            raise _trap("the call's deadline passed while the plugin slept") from None


def _is_ready(state: WasiState, rep: int) -> bool:
    deadline = state.timers.get(rep)
    return deadline is None or deadline <= time.monotonic_ns()


def _pollable_ready(store: Any, this: Any) -> bool:
    return _is_ready(_state(), _rep(store, this))


def _pollable_block(store: Any, this: Any) -> None:
    deadline = _state().timers.get(_rep(store, this))
    if deadline is not None:
        _wait_until(deadline)


def _poll(store: Any, pollables: Any) -> list[int]:
    state = _state()
    reps = [_rep(store, p) for p in pollables]
    if not reps:
        raise _trap("poll needs at least one pollable")
    ready = [i for i, rep in enumerate(reps) if _is_ready(state, rep)]
    if ready:
        return ready
    _wait_until(min(state.timers[rep] for rep in reps))
    return [i for i, rep in enumerate(reps) if _is_ready(state, rep)]


def _drop_pollable(store: Any, rep: int) -> None:
    ctx = current()
    state = ctx.state if ctx is not None else None
    if isinstance(state, WasiState):
        state.timers.pop(rep, None)


def _subscribe_duration(store: Any, nanoseconds: int) -> Any:
    state = _state()
    return _own(state.new_timer(time.monotonic_ns() + int(nanoseconds)), POLLABLE)


def _subscribe_instant(store: Any, when: int) -> Any:
    state = _state()
    return _own(state.new_timer(state.origin_ns + int(when)), POLLABLE)


def _monotonic_now(store: Any) -> int:
    return _state().now_ns()


def _wall_now(store: Any) -> Any:
    now = int(time.time())
    return record(seconds=now - now % WALL_RESOLUTION_S, nanoseconds=0)


def _wall_resolution(store: Any) -> Any:
    return record(seconds=WALL_RESOLUTION_S, nanoseconds=0)


# -- randomness ---------------------------------------------------------------------------------


def _random_bytes(store: Any, length: int) -> bytes:
    if length > MAX_RANDOM_BYTES:
        raise _trap(f"asked for {length} random bytes in one call (at most {MAX_RANDOM_BYTES})")
    return os.urandom(int(length))


def _random_u64(store: Any) -> int:
    return int.from_bytes(os.urandom(8), "little")


def _insecure_seed(store: Any) -> tuple[int, int]:
    return _random_u64(store), _random_u64(store)


# -- streams --------------------------------------------------------------------------------------


def _closed(*_: Any) -> None:
    """`err(closed)` for a `result<T, stream-error>` whose ok case is not empty."""
    return None


def _accept_write(store: Any, this: Any, contents: Any) -> Any:
    if _rep(store, this) == _STDERR:
        _state().write_stderr(bytes(contents))
    return _ok()


def _accept(*_: Any) -> Any:
    return _ok()


def _check_write(store: Any, this: Any) -> int:
    return 4096


def _ready_pollable(*_: Any) -> Any:
    return _own(_READY, POLLABLE)


def _nothing(*_: Any) -> None:
    return None


def _empty(*_: Any) -> list[Any]:
    return []


def _debug_string(store: Any, this: Any) -> str:
    return ""


def _exit(store: Any, *_: Any) -> None:
    raise _trap("the plugin called exit")


def _access_denied(*_: Any) -> str:
    """`err(access-denied)` for a `result<own<...>, error-code>`."""
    return "access-denied"


def _no_drop(store: Any, rep: int) -> None:
    return None


# -- the linker -----------------------------------------------------------------------------------

_RESOURCES: dict[str, list[tuple[str, int, Callable[[Any, int], None]]]] = {
    "wasi:io/poll": [("pollable", POLLABLE, _drop_pollable)],
    "wasi:io/error": [("error", IO_ERROR, _no_drop)],
    "wasi:io/streams": [
        ("input-stream", INPUT_STREAM, _no_drop),
        ("output-stream", OUTPUT_STREAM, _no_drop),
    ],
    "wasi:cli/terminal-input": [("terminal-input", TERMINAL_INPUT, _no_drop)],
    "wasi:cli/terminal-output": [("terminal-output", TERMINAL_OUTPUT, _no_drop)],
    "wasi:sockets/network": [("network", NETWORK, _no_drop)],
    "wasi:sockets/tcp": [("tcp-socket", TCP_SOCKET, _no_drop)],
    "wasi:sockets/udp": [
        ("udp-socket", UDP_SOCKET, _no_drop),
        ("incoming-datagram-stream", INCOMING_DATAGRAMS, _no_drop),
        ("outgoing-datagram-stream", OUTGOING_DATAGRAMS, _no_drop),
    ],
    "wasi:sockets/ip-name-lookup": [("resolve-address-stream", RESOLVE_STREAM, _no_drop)],
    "wasi:filesystem/types": [
        ("descriptor", DESCRIPTOR, _no_drop),
        ("directory-entry-stream", DIRECTORY_ENTRIES, _no_drop),
    ],
}

_FUNCS: dict[str, dict[str, Callable[..., Any]]] = {
    "wasi:io/poll": {
        "[method]pollable.ready": _pollable_ready,
        "[method]pollable.block": _pollable_block,
        "poll": _poll,
    },
    "wasi:io/error": {"[method]error.to-debug-string": _debug_string},
    "wasi:io/streams": {
        "[method]input-stream.read": _closed,
        "[method]input-stream.blocking-read": _closed,
        "[method]input-stream.skip": _closed,
        "[method]input-stream.blocking-skip": _closed,
        "[method]input-stream.subscribe": _ready_pollable,
        "[method]output-stream.check-write": _check_write,
        "[method]output-stream.write": _accept_write,
        "[method]output-stream.blocking-write-and-flush": _accept_write,
        "[method]output-stream.flush": _accept,
        "[method]output-stream.blocking-flush": _accept,
        "[method]output-stream.subscribe": _ready_pollable,
        "[method]output-stream.write-zeroes": _accept,
        "[method]output-stream.blocking-write-zeroes-and-flush": _accept,
        "[method]output-stream.splice": _closed,
        "[method]output-stream.blocking-splice": _closed,
    },
    "wasi:clocks/monotonic-clock": {
        "now": _monotonic_now,
        "resolution": lambda store: MONOTONIC_RESOLUTION_NS,
        "subscribe-instant": _subscribe_instant,
        "subscribe-duration": _subscribe_duration,
    },
    "wasi:clocks/wall-clock": {"now": _wall_now, "resolution": _wall_resolution},
    "wasi:random/random": {"get-random-bytes": _random_bytes, "get-random-u64": _random_u64},
    "wasi:random/insecure": {
        "get-insecure-random-bytes": _random_bytes,
        "get-insecure-random-u64": _random_u64,
    },
    "wasi:random/insecure-seed": {"insecure-seed": _insecure_seed},
    "wasi:cli/environment": {
        "get-environment": _empty,
        "get-arguments": _empty,
        "initial-cwd": _nothing,
    },
    "wasi:cli/exit": {"exit": _exit, "exit-with-code": _exit},
    "wasi:cli/stdin": {"get-stdin": lambda store: _own(0, INPUT_STREAM)},
    "wasi:cli/stdout": {"get-stdout": lambda store: _own(_STDOUT, OUTPUT_STREAM)},
    "wasi:cli/stderr": {"get-stderr": lambda store: _own(_STDERR, OUTPUT_STREAM)},
    "wasi:cli/terminal-stdin": {"get-terminal-stdin": _nothing},
    "wasi:cli/terminal-stdout": {"get-terminal-stdout": _nothing},
    "wasi:cli/terminal-stderr": {"get-terminal-stderr": _nothing},
    "wasi:filesystem/preopens": {"get-directories": _empty},
    "wasi:filesystem/types": {"filesystem-error-code": _nothing},
    "wasi:sockets/network": {"network-error-code": _nothing},
    "wasi:sockets/instance-network": {"instance-network": lambda store: _own(0, NETWORK)},
    "wasi:sockets/tcp-create-socket": {"create-tcp-socket": _access_denied},
    "wasi:sockets/udp-create-socket": {"create-udp-socket": _access_denied},
    "wasi:sockets/ip-name-lookup": {"resolve-addresses": _access_denied},
}


def add_wasi(root: LinkerInstance) -> None:
    """Define openkoi's WASI 0.2 in a Linker's root instance."""
    from wasmtime.component import ResourceType

    for version in WASI_VERSIONS:
        for interface in sorted(set(_RESOURCES) | set(_FUNCS)):
            with root.add_instance(f"{interface}@{version}") as instance:
                for name, kind, dtor in _RESOURCES.get(interface, []):
                    instance.add_resource(name, ResourceType.host(kind), dtor)
                for name, fn in _FUNCS.get(interface, {}).items():
                    add_func(instance, name, fn)
