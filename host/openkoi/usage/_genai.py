"""Prices from pydantic's `genai-prices` database, as the ledger's `Price`.

A model's price is resolved once per process (later calls are a dict lookup), and kept on disk
(`_genai_cache`): a later process finds it there without importing the package, which takes a
few tenths of a second. Only the bundled snapshot is read; nothing is fetched over the network.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from openkoi.usage import _genai_cache as disk
from openkoi.usage._pricing_types import Price

if TYPE_CHECKING:
    from genai_prices.types import ConditionalPrice, ModelPrice, StartDateConstraint

# openkoi provider id -> genai-prices provider id. A provider not listed (local Ollama, the
# subscription-billed Copilot and ChatGPT sign-ins, custom gateways) is never guessed at.
PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "bedrock": "aws",
    "groq": "groq",
    "openrouter": "openrouter",
    "together": "together",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "mistral": "mistral",
    "moonshot": "moonshotai",
    "minimax": "minimax",
    "cerebras": "cerebras",
    "fireworks": "fireworks",
    "perplexity": "perplexity",
    "cohere": "cohere",
}


def _import() -> None:
    with contextlib.suppress(ImportError):
        import genai_prices.data_snapshot  # noqa: F401


def warm() -> None:
    """Start importing the database in a background thread, so the first priced call does
    not wait for it (the import takes the module lock; a lookup meanwhile just waits). Not when
    prices resolved from this database are on disk: the call's model is most likely there, and
    the import would only take the CPU from the call."""
    source = disk.database_source()
    if source is not None and disk.read_entries(source):
        return
    threading.Thread(target=_import, name="openkoi-prices", daemon=True).start()


@functools.lru_cache(maxsize=4096)
def genai_price(provider: str, model: str) -> Price | None:
    """The model's current price in genai-prices, or None (unknown provider or model)."""
    vendor = PROVIDER_IDS.get(provider)
    if vendor is None or not model:
        return None
    source = disk.database_source()
    if source is None:  # an install without the price database: prices stay unknown
        return None
    now = datetime.now(tz=UTC)
    key = f"{vendor}/{model}"
    entries = disk.read_entries(source)
    found, price = disk.cached_price(entries, key, now.date())
    if found:
        return price
    try:
        price, keep, until = _resolve(vendor, model, now)
    except ImportError:
        return None
    if keep:
        disk.store_price(source, entries, key, price, until)
    return price


def _resolve(vendor: str, model: str, now: datetime) -> tuple[Price | None, bool, date | None]:
    """(price, whether it may be kept on disk, the UTC date it holds until) from the database."""
    from genai_prices import data_snapshot, types

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, vendor, None)
    except LookupError:
        return None, True, None
    keep, until = _holds(info.prices, now.date(), types.StartDateConstraint)
    return _price(info, vendor, now), keep, until


def _holds(
    prices: ModelPrice | list[ConditionalPrice], today: date, by_date: type[StartDateConstraint]
) -> tuple[bool, date | None]:
    """Whether a price read today may be kept, and until when: a list of conditional prices
    changes on each start date to come, and any time of day when one depends on it."""
    if not isinstance(prices, list):
        return True, None
    starts = []
    for conditional in prices:
        constraint = conditional.constraint
        if constraint is None:
            continue
        if not isinstance(constraint, by_date):
            return False, None
        if constraint.start_date > today:
            starts.append(constraint.start_date)
    return True, min(starts, default=None)


def _price(info: Any, vendor: str, now: datetime) -> Price | None:
    prices = info.get_prices(now)
    rates: dict[str, float | None] = {}
    limit: int | None = None
    for name in ("input", "output", "cache_read", "cache_write"):
        rate, tier_start = _rate(getattr(prices, f"{name}_mtok", None))
        rates[name] = rate
        if tier_start is not None:
            limit = tier_start if limit is None else min(limit, tier_start)
    if rates["input"] is None or rates["output"] is None:
        return None
    return Price(
        input=rates["input"],
        output=rates["output"],
        cache_read=rates["cache_read"],
        cache_write=rates["cache_write"],
        source=f"genai-prices:{vendor}/{info.id}",
        max_input_tokens=limit,
    )


def _rate(value: Any) -> tuple[float | None, int | None]:
    """A flat rate, or a tiered one's base rate and where its first tier starts (beyond it
    the ledger's `Price` reports the cost as unknown rather than guess)."""
    if value is None:
        return None, None
    base = getattr(value, "base", None)
    if base is not None:
        tiers = getattr(value, "tiers", None) or []
        return float(base), (int(tiers[0].start) if tiers else None)
    return float(value), None
