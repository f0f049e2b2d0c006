"""Prices per model, from the table shipped in this package and `[pricing]` in config.toml.

    [pricing."mygateway/llama-3.3-70b"]      # USD per million tokens
    input = 0.6
    output = 0.8
    cache_read = 0.06                        # optional; so are cache_write, source, date

A lookup is exact (`provider/model`), then `provider/*`; nothing else. A model with no entry has
no price, and its calls are recorded with cost unknown rather than a guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from openkoi._errors import ConfigError
from openkoi._types import TokenUsage

_RATES = ("input", "output", "cache_read", "cache_write")
_FIELDS = frozenset((*_RATES, "source", "date", "max_input_tokens"))


@dataclass(frozen=True)
class Price:
    """USD per million tokens. A `None` cache rate means the vendor publishes none."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    source: str = ""
    date: str = ""
    max_input_tokens: int | None = None

    def cost(self, usage: TokenUsage) -> float | None:
        """The call's cost in USD, or None when a rate it needs is not known."""
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        if self.max_input_tokens is not None and prompt > self.max_input_tokens:
            return None
        total = usage.input_tokens * self.input + usage.output_tokens * self.output
        for tokens, rate in (
            (usage.cache_read_tokens, self.cache_read),
            (usage.cache_write_tokens, self.cache_write),
        ):
            if tokens:
                if rate is None:
                    return None
                total += tokens * rate
        return total / 1_000_000


class PriceTable:
    """`lookup(provider, model)` -> `Price` or None."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    def lookup(self, provider: str, model: str) -> Price | None:
        return self._prices.get(f"{provider}/{model}") or self._prices.get(f"{provider}/*")

    def __len__(self) -> int:
        return len(self._prices)

    def refs(self) -> list[str]:
        return sorted(self._prices)


def shipped_prices() -> dict[str, Price]:
    """The table that ships with openkoi (`prices.json` next to this module)."""
    from importlib.resources import files

    data = json.loads(files("openkoi.usage").joinpath("prices.json").read_text("utf-8"))
    return {ref: _parse(ref, fields, None) for ref, fields in data["models"].items()}


def load_price_table(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> PriceTable:
    """Shipped prices with `[pricing."provider/model"]` entries laid over them, validated."""
    prices = shipped_prices()
    for ref, fields in (overrides or {}).items():
        prices[ref] = _parse(ref, fields, prices.get(ref), from_config=True)
    return PriceTable(prices)


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
