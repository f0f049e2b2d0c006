"""The price of one model, and the cost of one call at it (what the ledger stores per row)."""

from __future__ import annotations

from dataclasses import dataclass

from openkoi._types import TokenUsage


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


def call_cost(price: Price | None, usage: TokenUsage | None) -> float | None:
    """What the ledger records: zero for a call that used no tokens, None when unpriced."""
    if usage is None:
        return None
    if not (usage.total_tokens or usage.cache_read_tokens or usage.cache_write_tokens):
        return 0.0
    return price.cost(usage) if price is not None else None
