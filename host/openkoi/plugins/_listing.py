"""Listed plugins at start-up from a cache of their ids: a prompt to another provider then
imports no plugin code at all.

Registering a listed plugin needs its id and name, which are in its manifest, inside the file.
Reading them costs the plugin machinery's imports (the manifest's and the settings' model
classes, the egress policy: about 23 ms) and a walk of the file's section headers (about
0.5 ms a file). So each file's id and name are kept in `$OPENKOI_HOME/cache/plugin-ids.json`
under its path, size, modification time and inode; when every listed file still matches, the
registry registers them from there. Nothing else is taken from the cache: first use reads the
file, checks that its id is still the cached one, then its settings and its approval
(`_loader.load_listed`, `_loader.read_for_use`). Any miss (a new, changed or unreadable file,
two files with one id) and start-up reads every header as before, then refreshes the cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openkoi._fileio import atomic_write_text, read_small_json
from openkoi._paths import openkoi_home
from openkoi._spec import ProviderSpec

if TYPE_CHECKING:
    from openkoi._provider import ModelProvider, ProviderSettings
    from openkoi._registry import ProviderRegistry

log = logging.getLogger("openkoi.plugins")

MAX_CACHE_BYTES = 1024 * 1024  # a larger file is not read (it is rewritten on the next miss)
MAX_ENTRIES = 1_000
_VERSION = 1


@dataclass(frozen=True)
class Listed:
    """A listed plugin file as start-up knows it from the cache."""

    path: Path
    id: str
    name: str


# The files each registry registered from the cache, by id (weakly: they go with it).
_LISTED: weakref.WeakKeyDictionary[ProviderRegistry, dict[str, Listed]] = (
    weakref.WeakKeyDictionary()
)


def cache_path() -> Path:
    return openkoi_home() / "cache" / "plugin-ids.json"


def _identity(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev]


def _read_cache() -> dict[str, Any]:
    data = read_small_json(cache_path(), MAX_CACHE_BYTES)
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def cached_listing(entries: Iterable[str]) -> list[Listed] | None:
    """Every listed file as the cache knows it, or None unless all of them match it."""
    cache = _read_cache()
    if not cache:
        return None
    listed: list[Listed] = []
    for entry in entries:
        path = Path(entry).expanduser()
        found = cache.get(str(path))
        identity = _identity(path)
        if not isinstance(found, dict) or identity is None or found.get("stat") != identity:
            return None
        pid, name = found.get("id"), found.get("name")
        if not isinstance(pid, str) or not pid or not isinstance(name, str):
            return None
        listed.append(Listed(path, pid, name))
    if len({item.id for item in listed}) != len(listed):
        return None  # two files with one id: the full read says which, and refuses one
    return listed


def remember(headers: Iterable[tuple[Path, str, str]]) -> None:
    """Record the id and name read from each file's header (start-up after a miss)."""
    cache = _read_cache()
    changed = False
    for path, pid, name in headers:
        identity = _identity(path)
        if identity is None:
            continue
        entry = {"stat": identity, "id": pid, "name": name}
        if cache.get(str(path)) != entry:
            cache[str(path)] = entry
            changed = True
    if not changed:
        return
    if len(cache) > MAX_ENTRIES:
        cache = dict(list(cache.items())[-MAX_ENTRIES:])
    text = json.dumps({"version": _VERSION, "entries": cache}, separators=(",", ":"))
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path(), text)


def add_plugin(
    registry: ProviderRegistry,
    listed: Listed,
    factory: Callable[[ProviderSettings], ModelProvider],
) -> bool:
    """Register the plugin `listed` describes, unless a built-in provider has its id (said in
    the log); whether it was registered. Both ways of listing plugins register through here."""
    existing = registry._specs.get(listed.id)
    if existing is not None and existing.auth != "plugin":
        log.warning(
            "plugin %s skipped: its id %r is taken by the provider %s",
            listed.path,
            listed.id,
            existing.name,
        )
        return False
    registry.add(
        ProviderSpec(
            id=listed.id,
            name=listed.name,
            factory=factory,
            auth="plugin",
            connect_hint=f"see `openkoi plugin inspect {listed.path}`",
        )
    )
    return True


def keep_listed(registry: ProviderRegistry, listed: Listed) -> None:
    _LISTED.setdefault(registry, {})[listed.id] = listed


def listed_for(registry: ProviderRegistry) -> dict[str, Listed]:
    """The plugins `registry` registered from the cache, by id."""
    return _LISTED.get(registry, {})
