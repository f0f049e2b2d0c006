"""Roles and the fallback chain: which model answers, and what happens when it cannot."""

from __future__ import annotations

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

__all__ = [
    "DEFAULT_EMBEDDER",
    "ROLES",
    "Cooldown",
    "CooldownPolicy",
    "CooldownStore",
    "Role",
    "RoleAssignment",
    "Roles",
    "Router",
    "RouterWarning",
    "cooldowns_db_path",
    "resolve_roles",
    "should_fall_back",
]
