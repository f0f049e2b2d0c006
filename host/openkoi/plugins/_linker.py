"""The process's one Linker: openkoi's WASI, openkoi's `http` and `host` (under every contract
version the host serves), nothing else.

A component's remaining WASI imports (methods of resources it can never obtain) are linked as
traps when it is loaded (`prepare`). The Linker is shared by every plugin; defining into it and
instantiating from it are serialised by one lock, since wasmtime's Linker is not thread-safe
while it changes.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

from openkoi.plugins._engine import engine
from openkoi.plugins._host_imports import add_openkoi
from openkoi.plugins._manifest import supported_wit_versions
from openkoi.plugins._wasi import add_wasi

if TYPE_CHECKING:
    from wasmtime import Store
    from wasmtime.component import Component, Instance, Linker

_linker: Linker | None = None
_lock = threading.RLock()


def linker() -> Linker:
    global _linker
    with _lock:
        if _linker is None:
            from wasmtime.component import Linker

            made = Linker(engine())
            with made.root() as root:
                add_wasi(root)
                for version in supported_wit_versions():  # http and host are the same in each
                    add_openkoi(root, version)
            _linker = made
            atexit.register(_close_linker)
        return _linker


def prepare(component: Component) -> None:
    """Link the component's WASI imports that openkoi does not implement as traps."""
    with _lock:
        linker().define_unknown_imports_as_traps(component)


def instantiate(store: Store, component: Component) -> Instance:
    with _lock:
        return linker().instantiate(store, component)


def _close_linker() -> None:
    """Free the Linker before interpreter shutdown tears down the bindings its finalizer needs."""
    global _linker
    with _lock:
        made, _linker = _linker, None
    if made is not None:
        made.close()
