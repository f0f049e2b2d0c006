"""Compiling plugins before they are needed, with word of it on stderr.

A plugin's first load compiles it (10-30 s for a componentize-py build); after that the compiled
form comes from the cache in milliseconds. The CLI compiles ahead, under a spinner in a terminal
(one line otherwise), so the first prompt does not sit silent, and `plugin build` fills the cache.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from openkoi._errors import OpenKoiError
from openkoi.cli import _out as out

if TYPE_CHECKING:
    from openkoi._registry import ProviderRegistry
    from openkoi.plugins._manifest import PluginFile


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr in a terminal; one line when stderr is a pipe or a file."""
    import sys

    console = out.console(stderr=True)
    if sys.stderr.isatty():
        with console.status(out.literal(message)):
            yield
    else:
        console.print(out.literal(message + " ..."))
        yield


def compile_into_cache(plugin: PluginFile) -> tuple[float, bool]:
    """Compile `plugin` (or find it compiled); returns (seconds, already cached)."""
    from openkoi.plugins._engine import cache_path, load_component

    started = time.perf_counter()
    if cache_path(plugin.digest).exists():
        return 0.0, True
    with progress(f"compiling plugin {plugin.manifest.id} (first use, 10-30 s)"):
        _, cached = load_component(plugin.data, plugin.digest)
    return time.perf_counter() - started, cached


def _warm_one(registry: ProviderRegistry, provider: str) -> bool:
    """Compile `provider` if it is a registered plugin that passes its first-use checks; False
    when it is not a plugin. A refused plugin is left alone: using it raises the refusal.
    With no `[plugins] wasm` listed nothing is a plugin, and the plugin code is not imported."""
    if not registry.config.plugins.wasm or not registry.is_plugin(provider):
        return False
    from openkoi.plugins._loader import plugin_item, read_for_use

    item = plugin_item(registry, registry.canonical(provider))
    if item is None:
        return False
    try:
        plugin = read_for_use(item)
    except OpenKoiError:
        return True
    compile_into_cache(plugin)
    return True


def warm(registry: ProviderRegistry, providers: Iterable[str]) -> None:
    """Compile the configured plugins among `providers` that are not compiled yet (no other
    plugin is read)."""
    for provider in dict.fromkeys(providers):
        _warm_one(registry, provider)


def warm_chain(registry: ProviderRegistry, refs: Iterable[str]) -> None:
    """Compile the plugins a chain tries before its first provider that is not a plugin."""
    for ref in refs:
        if not _warm_one(registry, ref.split("/", 1)[0]):
            break
