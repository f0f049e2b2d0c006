"""Prices per model, from the table shipped in this package and `[pricing]` in config.toml.

    [pricing."mygateway/llama-3.3-70b"]      # USD per million tokens
    input = 0.6
    output = 0.8
    cache_read = 0.06                        # optional; so are cache_write, source, date

A lookup tries, in order: `[pricing]` in config (exact `provider/model`, then `provider/*`), the
genai-prices database (its own model matching, for the providers it knows), then the table
shipped here (exact, then `provider/*`). A model with no entry has no price, and its calls are
recorded with cost unknown rather than a guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from openkoi._errors import ConfigError
from openkoi._types import TokenUsage
from openkoi.usage._genai import genai_price
from openkoi.usage._pricing_types import Price, call_cost

__all__ = ["Price", "PriceTable", "call_cost", "load_price_table", "shipped_prices"]

_RATES = ("input", "output", "cache_read", "cache_write")
_FIELDS = frozenset((*_RATES, "source", "date", "max_input_tokens"))


class PriceTable:
    """`lookup(provider, model)` -> `Price` or None; see the module docstring for the order."""

    def __init__(
        self,
        prices: Mapping[str, Price],
        overrides: Mapping[str, Price] | None = None,
        *,
        genai: bool = True,
    ) -> None:
        self._prices = dict(prices)
        self._overrides = dict(overrides or {})
        self._genai = genai

    def lookup(self, provider: str, model: str) -> Price | None:
        exact, wildcard = f"{provider}/{model}", f"{provider}/*"
        found = self._overrides.get(exact) or self._overrides.get(wildcard)
        if found is None and self._genai:
            found = genai_price(provider, model)
        return found or self._prices.get(exact) or self._prices.get(wildcard)

    def cost(self, provider: str, model: str, usage: TokenUsage | None) -> float | None:
        """The call's cost exactly as the ledger records it."""
        return call_cost(self.lookup(provider, model), usage)

    def __len__(self) -> int:
        return len(self._prices)

    def refs(self) -> list[str]:
        return sorted(self._prices)


def shipped_prices() -> dict[str, Price]:
    """The table that ships with openkoi (`prices.json` next to this module)."""
    from importlib.resources import files

    data = json.loads(files("openkoi.usage").joinpath("prices.json").read_text("utf-8"))
    return {ref: _parse(ref, fields, None) for ref, fields in data["models"].items()}


def load_price_table(
    overrides: Mapping[str, Mapping[str, Any]] | None = None, *, genai: bool = True
) -> PriceTable:
    """Shipped prices, genai-prices behind them, and `[pricing."provider/model"]` entries over
    both, validated now. A partial entry lays over the shipped price of the same model."""
    prices = shipped_prices()
    mine = {
        ref: _parse(ref, fields, prices.get(ref), from_config=True)
        for ref, fields in (overrides or {}).items()
    }
    return PriceTable(prices, mine, genai=genai)


def _key(ref: str, field: str | None = None) -> str:
    return f'pricing."{ref}"' + (f".{field}" if field else "")


def _parse(
    ref: str, fields: Mapping[str, Any], base: Price | None, *, from_config: bool = False
) -> Price:
    provider, sep, model = ref.partition("/")
    if not sep or not provider or not model:
        raise ConfigError(
            f"{_key(ref)}: a price is keyed by provider/model (or provider/*)", key=_key(ref)
        )
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{_key(ref)} must be a table of prices", key=_key(ref))
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{_key(ref, unknown[0])}: unknown price field (known: {', '.join(sorted(_FIELDS))})",
            key=_key(ref, unknown[0]),
        )
    values: dict[str, Any] = {}
    for name in _RATES:
        if name in fields:
            values[name] = _rate(ref, name, fields[name])
    for name in ("source", "date"):
        if name in fields:
            if not isinstance(fields[name], str):
                raise ConfigError(f"{_key(ref, name)} must be a string", key=_key(ref, name))
            values[name] = fields[name]
    if "max_input_tokens" in fields:
        limit = fields["max_input_tokens"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ConfigError(
                f"{_key(ref, 'max_input_tokens')} must be a positive whole number",
                key=_key(ref, "max_input_tokens"),
            )
        values["max_input_tokens"] = limit
    if from_config and "source" not in values:
        values["source"] = "config.toml"
    if base is not None:
        return replace(base, **values)
    for required in ("input", "output"):
        if required not in values:
            raise ConfigError(
                f"{_key(ref, required)} is missing: a model openkoi has no price for needs "
                "both input and output (USD per million tokens)",
                key=_key(ref, required),
            )
    return Price(**values)


def _rate(ref: str, name: str, value: Any) -> float:
    key = _key(ref, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{key} must be a number of USD per million tokens, not {value!r}", key=key
        )
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be zero or more, not {value!r}", key=key)
    return float(value)
