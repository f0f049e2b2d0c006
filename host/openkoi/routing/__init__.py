"""Roles and the fallback chain: which model answers, and what happens when it cannot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openkoi.routing._budgets import Admission, Budget, budgets_for
from openkoi.routing._cooldown import Cooldown, CooldownStore, cooldowns_db_path
from openkoi.routing._policy import CooldownPolicy, should_fall_back
from openkoi.routing._roles import (
    DEFAULT_EMBEDDER,
    ROLES,
    Role,
    RoleAssignment,
    Roles,
    resolve_roles,
)
from openkoi.routing._router import Router, RouterWarning
from openkoi.routing._state import FailoverState, LocalState, open_state, state_url
from openkoi.routing._store import StateStore

if TYPE_CHECKING:
    from openkoi.routing._state_redis import RedisState

__all__ = [
    "DEFAULT_EMBEDDER",
    "ROLES",
    "Admission",
    "Budget",
    "Cooldown",
    "CooldownPolicy",
    "CooldownStore",
    "FailoverState",
    "LocalState",
    "RedisState",
    "Role",
    "RoleAssignment",
    "Roles",
    "Router",
    "RouterWarning",
    "StateStore",
    "budgets_for",
    "cooldowns_db_path",
    "open_state",
    "resolve_roles",
    "should_fall_back",
    "state_url",
]


def __getattr__(name: str) -> Any:
    """`RedisState` is imported on first use: a router on local state never needs it."""
    if name == "RedisState":
        from openkoi.routing._state_redis import RedisState

        return RedisState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
