"""The two decisions of the fallback chain, kept pure: whether to move on, and for how long a
failed model sits out."""

from __future__ import annotations

from dataclasses import dataclass

from openkoi._config import FallbackSection
from openkoi._errors import ProviderError

# A server asking for more than a day is treated as asking for a day.
MAX_RETRY_AFTER = 86_400.0


def should_fall_back(error: BaseException) -> bool:
    """Only a transient provider error moves the chain on; everything else stops it."""
    return isinstance(error, ProviderError) and error.transient


@dataclass(frozen=True)
class CooldownPolicy:
    """`cooldown * backoff**(failures-1)`, capped at `max_cooldown`; `Retry-After` wins."""

    cooldown: float = 10.0
    backoff: float = 2.0
    max_cooldown: float = 300.0

    @classmethod
    def from_config(cls, section: FallbackSection) -> CooldownPolicy:
        return cls(section.cooldown, section.backoff, section.max_cooldown)

    def seconds(self, failures: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), MAX_RETRY_AFTER)
        exponent = max(0, failures - 1)
        try:
            grown = self.cooldown * self.backoff**exponent
        except OverflowError:
            grown = self.max_cooldown
        return min(grown, self.max_cooldown)
