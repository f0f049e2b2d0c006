"""The two decisions of the fallback chain, kept pure: whether to move on, and for how long a
failed model sits out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from openkoi._config import FallbackSection
from openkoi._errors import ProviderError


def should_fall_back(error: BaseException) -> bool:
    """Only a transient provider error moves the chain on; everything else stops it."""
    return isinstance(error, ProviderError) and error.transient


@dataclass(frozen=True)
class CooldownPolicy:
    """`cooldown * backoff**(failures-1)`, capped at `max_cooldown`.

    A server's `Retry-After` wins over the backoff, but within `max_cooldown` too: a gateway
    asking for a day does not silence a model for a day unless the user raised the cap. A value
    that is negative or not finite is no answer, and the backoff applies.
    """

    cooldown: float = 10.0
    backoff: float = 2.0
    max_cooldown: float = 300.0

    @classmethod
    def from_config(cls, section: FallbackSection) -> CooldownPolicy:
        return cls(section.cooldown, section.backoff, section.max_cooldown)

    def seconds(self, failures: int, retry_after: float | None = None) -> float:
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_cooldown)
        exponent = max(0, failures - 1)
        try:
            grown = self.cooldown * self.backoff**exponent
        except OverflowError:
            grown = self.max_cooldown
        return min(grown, self.max_cooldown)
