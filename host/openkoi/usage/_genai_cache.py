"""Prices resolved from genai-prices, kept on disk so a fresh process need not import it.

Importing the price database costs a one-shot `openkoi "prompt"` about a fifth of a second (its
1.2 MB data module, pydantic dataclasses, an HTTP client for its updater). A model's price,
once resolved, is written to `$OPENKOI_HOME/cache/genai-prices.json` with the identity of the
installed database (path, size and mtime of its data module): another installed version makes
every entry stale. An entry holds until the UTC date its model's next announced price starts,
if it has one; a price that changes by time of day is never kept. A file that cannot be read or
parsed is ignored, and one that cannot be written is left alone: the price is resolved as before.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from datetime import date
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from openkoi._fileio import atomic_write_text, read_small_json
from openkoi._paths import openkoi_home
from openkoi.usage._pricing_types import Price

# Bump when what `genai_price` resolves for a model changes (the entries were resolved by it).
FORMAT = 1
# Entries kept at most, and the largest file read: past either the cache starts afresh.
MAX_ENTRIES = 2_000
MAX_BYTES = 1024 * 1024

Source = list[Any]  # [data module path, size, mtime_ns]


def cache_path() -> Path:
    return openkoi_home() / "cache" / "genai-prices.json"


def database_source() -> Source | None:
    """The installed database's identity, without importing it; None if it is not installed."""
    try:
        spec = find_spec("genai_prices")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data.py"
    try:
        info = data.stat()
    except OSError:
        return None
    return [str(data), info.st_size, info.st_mtime_ns]


def read_entries(source: Source) -> dict[str, Any]:
    """`{"vendor/model": {"price": {...} | None, "until": "YYYY-MM-DD" | None}}` resolved from
    this `source`; empty when the file is missing, stale, too big or not ours."""
    data = read_small_json(cache_path(), MAX_BYTES)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    entries = data.get("entries")
    if data.get("source") != source or not isinstance(entries, dict):
        return {}
    return entries


def cached_price(entries: dict[str, Any], key: str, today: date) -> tuple[bool, Price | None]:
    """(found, price) for `key`: found is False when there is no entry still valid `today`."""
    entry = entries.get(key)
    if not isinstance(entry, dict):
        return False, None
    until, fields = entry.get("until"), entry.get("price")
    try:
        if until is not None and today >= date.fromisoformat(until):
            return False, None
        return True, None if fields is None else Price(**fields)
    except (TypeError, ValueError):
        return False, None


def store_price(
    source: Source, entries: dict[str, Any], key: str, price: Price | None, until: date | None
) -> None:
    """Add one entry to the file (atomically; a failed write only costs the next process)."""
    kept = entries if len(entries) < MAX_ENTRIES else {}
    kept = {
        **kept,
        key: {
            "price": None if price is None else asdict(price),
            "until": None if until is None else until.isoformat(),
        },
    }
    text = json.dumps({"format": FORMAT, "source": source, "entries": kept}, sort_keys=True)
    with contextlib.suppress(OSError):
        atomic_write_text(cache_path(), text)
