"""Which model plays which role, and the fallback chain behind each one.

Precedence, highest first:
  1. CLI flags: `--executor`, `--evaluator`, `--planner`, `--embedder` (one role each), then
     `--model` (executor, evaluator and planner);
  2. `OPENKOI_MODEL` (executor, evaluator and planner);
  3. `[models]` in config.toml;
  4. the default model from discovery; the embedder defaults to openai/text-embedding-3-small.

Every ref is checked when roles are resolved, so a typo in a fallback list is a `ConfigError`
naming its key before any request is sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from openkoi._config import Config
from openkoi._errors import ConfigError, ModelRefError, UnknownProviderError
from openkoi._registry import ProviderRegistry

Role = Literal["executor", "evaluator", "planner", "embedder"]
ROLES: tuple[Role, ...] = get_args(Role)
CHAT_ROLES: tuple[Role, ...] = ("executor", "evaluator", "planner")
DEFAULT_EMBEDDER = "openai/text-embedding-3-small"


@dataclass(frozen=True)
class RoleAssignment:
    """`ref` is canonical `provider/model` (None when nothing assigns one); `source` says why."""

    role: Role
    ref: str | None
    source: str
    fallbacks: tuple[str, ...] = ()

    @property
    def chain(self) -> tuple[str, ...]:
        """The primary, then each fallback, each model once."""
        seen: list[str] = []
        for ref in (self.ref, *self.fallbacks):
            if ref and ref not in seen:
                seen.append(ref)
        return tuple(seen)


@dataclass(frozen=True)
class Roles:
    assignments: Mapping[Role, RoleAssignment]

    def __getitem__(self, role: str) -> RoleAssignment:
        if role not in self.assignments:
            raise ConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return self.assignments[role]  # type: ignore[index]

    def __iter__(self) -> Iterator[RoleAssignment]:
        return iter(self.assignments.values())


def _check(registry: ProviderRegistry, text: str, where: str) -> str:
    try:
        return str(registry.parse_ref(text))
    except (ModelRefError, UnknownProviderError) as exc:
        raise type(exc)(f"{where}: {exc}", key=where) from None


def resolve_roles(
    registry: ProviderRegistry,
    config: Config | None = None,
    *,
    model: str | None = None,
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Roles:
    """Assign a model and a chain to every role (see the module docstring for the order)."""
    from openkoi._defaults import default_model_ref

    config = config or registry.config
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    for role in overrides:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    for role in config.models.fallback:
        if role not in ROLES:
            raise ConfigError(
                f"models.fallback.{role}: unknown role; roles are {', '.join(ROLES)}",
                key=f"models.fallback.{role}",
            )
    env_model = (environ.get("OPENKOI_MODEL") or "").strip() or None
    default: list[str | None] = []  # discovered at most once, and only when needed

    assignments: dict[Role, RoleAssignment] = {}
    for role in ROLES:
        configured: str | None = getattr(config.models, role)
        ref: str | None
        if overrides.get(role):
            ref, source = _check(registry, overrides[role] or "", f"--{role}"), f"--{role}"
        elif role in CHAT_ROLES and model:
            ref, source = _check(registry, model, "--model"), "--model"
        elif role in CHAT_ROLES and env_model:
            ref, source = _check(registry, env_model, "OPENKOI_MODEL"), "OPENKOI_MODEL"
        elif configured:
            ref, source = _check(registry, configured, f"models.{role}"), "config"
        elif role == "embedder":
            ref, source = DEFAULT_EMBEDDER, "default"
        else:
            if not default:
                default.append(default_model_ref(registry))
            ref, source = default[0], "default" if default[0] else "unset"
            if ref:
                ref = _check(registry, ref, "the default model")
        fallbacks = tuple(
            _check(registry, text, f"models.fallback.{role}[{i}]")
            for i, text in enumerate(config.models.fallback.get(role, []))
        )
        assignments[role] = RoleAssignment(role, ref, source, fallbacks)
    return Roles(assignments)
