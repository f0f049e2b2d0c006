"""One wasmtime Engine per process, its epoch ticker, and the on-disk cache of compiled plugins.

Compiling a Python guest takes seconds; deserializing the compiled form takes tens of
milliseconds. So a plugin is compiled once, ever: the compiled component is written to
`$OPENKOI_HOME/cache/wasm/<sha256>-<key>.cwasm`, where the key covers the wasmtime version and the
engine configuration, and every later load (in this process or another) deserializes it.

Wall-time limits use epoch interruption: a daemon thread bumps the engine's epoch every
`TICK_SECONDS`, and each call sets its store's deadline in ticks.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from openkoi._fileio import atomic_write_bytes
from openkoi._paths import openkoi_home

if TYPE_CHECKING:
    import wasmtime
    from wasmtime.component import Component

TICK_SECONDS = 0.01
# Everything about the engine's configuration that changes the compiled code.
_ENGINE_CONFIG = "epoch_interruption=1;opt=speed"

_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_ticker: threading.Thread | None = None


def engine() -> wasmtime.Engine:
    """The process's Engine (created, with its ticker thread, on first use)."""
    global _engine, _ticker
    if _engine is not None:
        return _engine
    with _lock:
        if _engine is None:
            import wasmtime

            config = wasmtime.Config()
            config.epoch_interruption = True
            config.cranelift_opt_level = "speed"
            created = wasmtime.Engine(config)
            _ticker = threading.Thread(
                target=_tick, args=(created,), name="openkoi-wasm-epoch", daemon=True
            )
            _ticker.start()
            _engine = created
    return _engine


def _tick(eng: wasmtime.Engine) -> None:
    while True:
        time.sleep(TICK_SECONDS)
        eng.increment_epoch()


def ticks_for(seconds: float) -> int:
    """Epoch ticks covering `seconds` of wall time (at least one more than needed)."""
    return max(1, math.ceil(seconds / TICK_SECONDS) + 1)


def cache_key() -> str:
    """Changes whenever compiled code from this engine would not be loadable by another."""
    from importlib.metadata import version

    try:
        wasmtime_version = version("wasmtime")
    except Exception:  # an unusual install; still distinct per configuration
        wasmtime_version = "unknown"
    digest = hashlib.sha256(f"{wasmtime_version};{_ENGINE_CONFIG}".encode()).hexdigest()[:16]
    return f"wasmtime{wasmtime_version}-{digest}"


def cache_dir() -> Path:
    """`$OPENKOI_HOME/cache/wasm`, or `$OPENKOI_WASM_CACHE` (shared caches, test suites)."""
    override = os.environ.get("OPENKOI_WASM_CACHE")
    return Path(override) if override else openkoi_home() / "cache" / "wasm"


def cache_path(digest: str) -> Path:
    return cache_dir() / f"{digest}-{cache_key()}.cwasm"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """The compiled cache is private to the user: files 0600 in a 0700 folder."""
    atomic_write_bytes(path, data, mode=mode, dir_mode=0o700)


def load_component(wasm: bytes, digest: str | None = None) -> tuple[Component, bool]:
    """The compiled component for `wasm`, from the cache when possible.

    Returns (component, from_cache). A cache file that fails to deserialize (corrupt, or written by
    another build) is replaced by a fresh compile.
    """
    from wasmtime import WasmtimeError
    from wasmtime.component import Component

    eng = engine()
    digest = digest or hashlib.sha256(wasm).hexdigest()
    path = cache_path(digest)
    if path.exists():
        try:
            return Component.deserialize_file(eng, str(path)), True
        except WasmtimeError:
            with contextlib.suppress(OSError):
                path.unlink()
    component = Component(eng, wasm)
    with contextlib.suppress(OSError):  # a read-only home still runs, it just compiles again
        write_atomic(path, bytes(component.serialize()))
    return component, False
