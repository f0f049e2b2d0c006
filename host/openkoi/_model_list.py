"""`openkoi models`: each provider's live model list, merged with the catalogue's limits and the
price table, cached for a day under `~/.openkoi/cache/models/`.

The cache holds the live answer only (not prices), so a `[pricing]` change shows at once; it is
keyed by the provider's base URL, so pointing a provider elsewhere fetches again.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openkoi._catalogue import known_limits, undated
from openkoi._errors import ProviderTimeoutError
from openkoi._fileio import atomic_write_text
from openkoi._paths import openkoi_home
from openkoi._types import ModelInfo, ModelPricing

if TYPE_CHECKING:
    from openkoi._registry import ProviderRegistry
    from openkoi.usage import PriceTable

CACHE_SECONDS = 86_400.0
LIST_TIMEOUT = 30.0
_CACHE_VERSION = 1
_MAX_CACHE_BYTES = 32 * 1024 * 1024


@dataclass
class ModelListing:
    provider: str
    models: list[ModelInfo]
    fetched_at: float
    cached: bool


def cache_dir() -> Path:
    return openkoi_home() / "cache" / "models"


def _cache_path(provider: str) -> Path:
    return cache_dir() / f"{provider}.json"


def read_cache(provider: str, base_url: str, now: float, max_age: float) -> ModelListing | None:
    """A fresh cached listing, or None (missing, stale, for another URL, or unreadable)."""
    path = _cache_path(provider)
    try:
        if path.stat().st_size > _MAX_CACHE_BYTES:
            return None
        data = json.loads(path.read_text("utf-8"))
        fetched = float(data["fetched_at"])
        if data.get("version") != _CACHE_VERSION or data.get("base_url") != base_url:
            return None
        if not 0 <= now - fetched < max_age:
            return None
        models = [ModelInfo.model_validate(m) for m in data["models"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a cache is only a shortcut: anything odd means fetch again
    return ModelListing(provider, models, fetched, cached=True)


def write_cache(listing: ModelListing, base_url: str) -> None:
    data = {
        "version": _CACHE_VERSION,
        "provider": listing.provider,
        "base_url": base_url,
        "fetched_at": listing.fetched_at,
        "models": [m.model_dump(mode="json") for m in listing.models],
    }
    path = _cache_path(listing.provider)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, json.dumps(data), mode=0o600)


async def fetch_models(
    registry: ProviderRegistry,
    provider: str,
    *,
    refresh: bool = False,
    max_age: float = CACHE_SECONDS,
    timeout: float = LIST_TIMEOUT,
    now: float | None = None,
) -> ModelListing:
    """The provider's live list (`ModelProvider.models()`), from the cache when fresh."""
    import anyio

    spec = registry.spec(provider)
    base_url = registry.settings(spec.id).base_url
    now = time.time() if now is None else now
    if not refresh:
        cached = read_cache(spec.id, base_url, now, max_age)
        if cached is not None:
            return cached
    instance = registry.get(spec.id)
    try:
        with anyio.fail_after(timeout):
            models = await instance.models()
    except TimeoutError:
        raise ProviderTimeoutError(
            f"listing the models took longer than {timeout:g} s", provider=spec.id
        ) from None
    listing = ModelListing(spec.id, models, now, cached=False)
    # A read-only home still lists models; the next call asks the provider again.
    with contextlib.suppress(OSError):
        write_cache(listing, base_url)
    return listing


def _pricing(prices: PriceTable, provider: str, model: str) -> ModelPricing | None:
    price = prices.lookup(provider, model) or prices.lookup(provider, undated(model))
    if price is None:
        return None
    return ModelPricing(
        input=price.input,
        output=price.output,
        cache_read=price.cache_read,
        cache_write=price.cache_write,
    )


def merged(provider: str, models: list[ModelInfo], prices: PriceTable) -> list[ModelInfo]:
    """What the provider said, with gaps filled: limits from the catalogue, prices from the
    price table (the rates the ledger bills with win over a vendor's listed ones)."""
    out = []
    for model in models:
        update: dict[str, Any] = {}
        limits = known_limits(provider, model.id)
        if limits is not None:
            if model.context_window is None:
                update["context_window"] = limits[0]
            if model.max_output_tokens is None and limits[1] is not None:
                update["max_output_tokens"] = limits[1]
        pricing = _pricing(prices, provider, model.id)
        if pricing is not None:
            update["pricing"] = pricing
        out.append(model.model_copy(update=update) if update else model)
    return out
