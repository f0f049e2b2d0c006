"""Prices from pydantic's `genai-prices` database, as the ledger's `Price`.

The package is imported on the first lookup (it takes a few tenths of a second), and each
model's price is resolved once per process: later calls are a dict lookup. Only the bundled
snapshot is read; nothing is fetched over the network.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from datetime import UTC, datetime
from typing import Any

from openkoi.usage._pricing_types import Price

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
    not wait for it (the import takes the module lock; a lookup meanwhile just waits)."""
    threading.Thread(target=_import, name="openkoi-prices", daemon=True).start()


@functools.lru_cache(maxsize=4096)
def genai_price(provider: str, model: str) -> Price | None:
    """The model's current price in genai-prices, or None (unknown provider or model)."""
    vendor = PROVIDER_IDS.get(provider)
    if vendor is None or not model:
        return None
    try:
        from genai_prices import data_snapshot
    except ImportError:  # an install without the price database: prices stay unknown
        return None
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, vendor, None)
    except LookupError:
        return None
    prices = info.get_prices(datetime.now(tz=UTC))
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
