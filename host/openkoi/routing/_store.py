"""What the router needs from a state store (cooldowns and rate budgets), whatever holds it:
SQLite on this machine (the default), Redis for a fleet, memory when neither can be used."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from openkoi._backends import Health
from openkoi._errors import ProviderError
from openkoi.routing._budgets import Admission, Budget
from openkoi.routing._cooldown import Cooldown
from openkoi.routing._policy import CooldownPolicy


class StateStore(Protocol):
    """Cooldowns and budgets; every method is bounded and none raises for an unreachable store."""

    async def get(self, refs: Iterable[str], *, now: float) -> dict[str, Cooldown]:
        """Every stored cooldown of `refs`, in the caller's clock."""
        ...

    async def all(self) -> list[Cooldown]: ...

    async def fail(
        self, ref: str, error: ProviderError, *, now: float, policy: CooldownPolicy
    ) -> Cooldown:
        """Put `ref` in cooldown after `error`; never shortens one in force."""
        ...

    async def clear(self, ref: str, *, now: float) -> None:
        """Forget `ref`'s cooldown once it has ended (it answered again)."""
        ...

    async def reserve(
        self, budgets: tuple[Budget, ...], tokens: int, *, now: float
    ) -> Admission: ...

    async def settle(self, admission: Admission, tokens: int) -> None: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...
