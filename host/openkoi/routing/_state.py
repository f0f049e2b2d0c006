"""Choosing the state store, and never letting a shared one fail a call.

`[state] url` (or `OPENKOI_STATE_URL`) names a Redis for the fleet; without one, the machine's
SQLite file is the store. When Redis cannot be reached, is slow past its deadline or restarts,
`FailoverState` says so once and uses the local store, trying Redis again every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from openkoi._backends import Health, describe_error
from openkoi._config import Config, StateSection, backend_url
from openkoi._errors import ProviderError
from openkoi.routing._budgets import Admission, Budget
from openkoi.routing._cooldown import Cooldown, CooldownStore
from openkoi.routing._policy import CooldownPolicy
from openkoi.routing._store import StateStore

if TYPE_CHECKING:
    from openkoi.routing._state_redis import RedisState

STATE_URL_ENV = "OPENKOI_STATE_URL"
RETRY_SHARED = 5.0  # seconds between attempts to get back to a shared store that failed


class LocalState:
    """The machine's `CooldownStore` (SQLite, or memory once the file fails) as a `StateStore`."""

    backend = "sqlite"

    def __init__(self, store: CooldownStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"LocalState({self.store!r})"

    async def get(self, refs: Iterable[str], *, now: float) -> dict[str, Cooldown]:
        return self.store.get(refs, now=now)

    async def all(self) -> list[Cooldown]:
        return self.store.all()

    async def fail(
        self, ref: str, error: ProviderError, *, now: float, policy: CooldownPolicy
    ) -> Cooldown:
        return self.store.fail(ref, error, now=now, policy=policy)

    async def clear(self, ref: str, *, now: float) -> None:
        self.store.clear(ref, now=now)

    async def reserve(self, budgets: tuple[Budget, ...], tokens: int, *, now: float) -> Admission:
        return self.store.reserve(budgets, tokens, now=now)

    async def settle(self, admission: Admission, tokens: int) -> None:
        self.store.settle(admission, tokens)

    async def health(self) -> Health:
        if self.store.in_memory:
            return Health("memory", str(self.store.path), False, "the state file failed")
        return Health("sqlite", str(self.store.path), True)

    async def aclose(self) -> None:
        self.store.close()


class FailoverState:
    """A shared store with the local one behind it: every call answers, from one or the other."""

    def __init__(
        self,
        shared: RedisState,
        local: LocalState,
        *,
        on_warning: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = local
        self.backend = shared.backend
        self._warn = on_warning
        self._clock = clock
        self._down_until: float | None = None
        self._warned = False

    def __repr__(self) -> str:
        return f"FailoverState({self.shared!r}, {self.local!r})"

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    async def _either(self, shared: Callable[[], Any], local: Callable[[], Any]) -> Any:
        if self._down_until is None or self._clock() >= self._down_until:
            try:
                result = await shared()
            except Exception as exc:
                self._failed(exc)
            else:
                self._down_until = None
                return result
        return await local()

    def _failed(self, exc: Exception) -> None:
        self._down_until = self._clock() + RETRY_SHARED
        if not self._warned:
            self._warned = True
            why = describe_error(exc, self.shared.secrets)
            self._warn(
                f"the shared state store {self.shared.where} is unavailable ({why}); "
                f"cooldowns and rate budgets are kept on this machine until it is back"
            )

    async def get(self, refs: Iterable[str], *, now: float) -> dict[str, Cooldown]:
        refs = list(refs)
        found: dict[str, Cooldown] = await self._either(
            lambda: self.shared.get(refs, now=now), lambda: self.local.get(refs, now=now)
        )
        return found

    async def all(self) -> list[Cooldown]:
        found: list[Cooldown] = await self._either(self.shared.all, self.local.all)
        return found

    async def fail(
        self, ref: str, error: ProviderError, *, now: float, policy: CooldownPolicy
    ) -> Cooldown:
        cooldown: Cooldown = await self._either(
            lambda: self.shared.fail(ref, error, now=now, policy=policy),
            lambda: self.local.fail(ref, error, now=now, policy=policy),
        )
        return cooldown

    async def clear(self, ref: str, *, now: float) -> None:
        await self._either(
            lambda: self.shared.clear(ref, now=now), lambda: self.local.clear(ref, now=now)
        )

    async def reserve(self, budgets: tuple[Budget, ...], tokens: int, *, now: float) -> Admission:
        admission: Admission = await self._either(
            lambda: self.shared.reserve(budgets, tokens, now=now),
            lambda: self.local.reserve(budgets, tokens, now=now),
        )
        return admission

    async def settle(self, admission: Admission, tokens: int) -> None:
        if admission.backend != self.shared.backend:
            await self.local.settle(admission, tokens)
            return
        try:
            await self.shared.settle(admission, tokens)
        except Exception as exc:  # the reservation stands; it expires with its window
            self._failed(exc)

    async def health(self) -> Health:
        return await self.shared.health()

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.local.aclose()


def state_url(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """`OPENKOI_STATE_URL`, else `[state] url`."""
    return backend_url(STATE_URL_ENV, StateSection, "url", config.state.url, environ)


def open_state(config: Config, *, on_warning: Callable[[str], None]) -> StateStore:
    """The state store `config` asks for; Redis always with the local store behind it."""
    local = LocalState(CooldownStore(on_warning=on_warning))
    url = state_url(config)
    if url is None:
        return local
    from openkoi.routing._state_redis import RedisState  # only with a shared store configured

    return FailoverState(
        RedisState(url, timeout=config.state.timeout, on_warning=on_warning),
        local,
        on_warning=on_warning,
    )
