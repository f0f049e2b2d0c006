"""What `openkoi connect status` reports: each provider's credential and the Ollama probe.

The probe is the only network call discovery makes: bounded by its timeout, and run
concurrently with reading the credential files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from openkoi.credentials._discovery import Finding, findings, read_store

if TYPE_CHECKING:
    from openkoi._registry import ProviderRegistry

# Always listed, in this order; other providers appear only when something was found for them.
ALWAYS_SHOWN = ("github-copilot", "openai-oauth", "anthropic", "openai", "google")
PROBE_TIMEOUT = 0.5


@dataclass
class ProviderStatus:
    id: str
    name: str
    findings: list[Finding]

    @property
    def active(self) -> Finding | None:
        return next((f for f in self.findings if f.usable), None)

    @property
    def state(self) -> str:
        """connected, expired, revoked, invalid or not-connected."""
        if self.active is not None:
            return "connected"
        for state in ("revoked", "expired", "invalid"):
            if any(f.state == state for f in self.findings):
                return state
        return "not-connected"

    def line(self, now: float | None = None) -> str:
        return describe(self, time.time() if now is None else now)

    def as_json(self) -> dict[str, Any]:
        active = self.active
        return {
            "provider": self.id,
            "name": self.name,
            "state": self.state,
            "source": active.source if active else None,
            "kind": active.kind if active else None,
            "expires_at": active.expires_at if active else None,
            "findings": [
                {
                    "source": f.source,
                    "where": f.where,
                    "kind": f.kind,
                    "state": f.state,
                    "expires_at": f.expires_at,
                    "detail": f.detail,
                }
                for f in self.findings
            ],
        }


@dataclass
class OllamaStatus:
    base_url: str
    reachable: bool
    models: list[str] = field(default_factory=list)
    best: str | None = None

    def line(self) -> str:
        where = _short_url(self.base_url)
        if not self.reachable:
            return f"not running ({where})"
        if not self.models:
            return f"running ({where}, no models; run `ollama pull llama3.3`)"
        count = len(self.models)
        return f"connected ({where}, {count} model{'s' if count != 1 else ''})"


@dataclass
class StatusReport:
    providers: list[ProviderStatus]
    ollama: OllamaStatus | None
    store: str
    store_error: str | None = None

    def connected(self) -> list[ProviderStatus]:
        return [p for p in self.providers if p.state == "connected"]


def _short_url(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "<1m"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def _origin(found: Finding) -> str:
    if found.source in ("env", "store"):
        return ""
    return "; " + found.describe().split(" from ", 1)[-1]


def describe(status: ProviderStatus, now: float) -> str:
    found = status.active
    if found is not None:
        if found.kind == "api-key":
            return f"connected ({found.describe()})"
        if found.expires_at is None:
            return f"connected (OAuth{_origin(found) or ', saved by openkoi connect'})"
        left = found.expires_at - now
        if status.id == "github-copilot":
            if left <= 0:
                return "connected (session token renews on next use)"
            return f"connected (token valid, expires in {duration(left)}, renewed automatically)"
        if found.state == "refreshable" or left <= 0:
            return f"connected (token expired {duration(-left)} ago, refreshes on next use)"
        return f"connected (token valid, expires in {duration(left)}{_origin(found)})"
    for found in status.findings:
        if found.state == "revoked":
            return f"needs reconnecting ({found.detail})"
    for found in status.findings:
        if found.state == "expired":
            ago = duration(now - found.expires_at) if found.expires_at else "some time"
            where = found.describe().split(" from ", 1)[-1]
            return f"expired ({where}: token expired {ago} ago; not used)"
    for found in status.findings:
        if found.state == "invalid":
            return f"not connected (skipped {found.where}: {found.detail})"
    return "not connected"


def _provider_ids(registry: ProviderRegistry) -> list[str]:
    known = set(registry.ids())
    ordered = [p for p in ALWAYS_SHOWN if p in known]
    ordered += [
        spec.id
        for spec in registry.specs()
        if spec.id not in ordered and spec.auth in ("api-key", "oauth")
    ]
    return ordered


def provider_statuses(
    registry: ProviderRegistry, only: Sequence[str] | None = None
) -> tuple[list[ProviderStatus], str | None]:
    entries, store_error = read_store()
    out = []
    for pid in only or _provider_ids(registry):
        spec = registry.spec(pid)
        entry = registry.config.providers.get(spec.id)
        env_vars = tuple(spec.api_key_env)
        if entry and entry.api_key_env:
            env_vars = (entry.api_key_env, *env_vars)
        found = findings(spec.id, env_vars, entries=entries or {})
        if found or spec.id in ALWAYS_SHOWN or only:
            out.append(ProviderStatus(spec.id, spec.name, found))
    return out, store_error


async def probe_ollama(registry: ProviderRegistry, timeout: float = PROBE_TIMEOUT) -> OllamaStatus:
    """Ask the local Ollama server for its models; never waits longer than `timeout`."""
    base_url = registry.settings("ollama").base_url if "ollama" in registry.ids() else ""
    base_url = base_url or "http://localhost:11434"
    try:
        from openkoi_providers.ollama import pick_default_model, probe
    except ImportError:
        return OllamaStatus(base_url, reachable=False)
    try:
        with anyio.fail_after(timeout + 0.5):
            result = await probe(base_url, timeout=timeout)
    except (TimeoutError, OSError):
        return OllamaStatus(base_url, reachable=False)
    models = [_model_name(m) for m in (result.models or [])]
    best = pick_default_model(result.models) if result.reachable else None
    return OllamaStatus(str(result.base_url or base_url), bool(result.reachable), models, best)


def _model_name(model: Any) -> str:
    if isinstance(model, str):
        return model
    return str(getattr(model, "id", None) or getattr(model, "name", None) or model)


async def gather(registry: ProviderRegistry, *, probe: bool = True) -> StatusReport:
    """Every provider's status, with the Ollama probe running alongside."""
    from openkoi._errors import CredentialStoreError
    from openkoi.credentials._store import AuthStore

    ollama: list[OllamaStatus] = []

    async def run_probe() -> None:
        ollama.append(await probe_ollama(registry))

    async with anyio.create_task_group() as group:
        if probe:
            group.start_soon(run_probe)
        await anyio.sleep(0)  # let the probe open its connection first
        providers, store_error = provider_statuses(registry)
    try:
        where = AuthStore().description
    except CredentialStoreError as exc:
        where, store_error = "unavailable", store_error or str(exc)
    return StatusReport(providers, ollama[0] if ollama else None, where, store_error)
