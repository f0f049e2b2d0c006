"""What the user approved each plugin to do, so a changed plugin cannot quietly ask for more.

`$OPENKOI_HOME/plugins/approvals.json` records, per plugin file the user configured (its path
in `[plugins] wasm`), the plugin id it declared, the file's digest and the capabilities
approved: the manifest's network origins; each secret, where it is read from (its `env`
names) and where it may be sent (its `origins`, or anywhere the plugin may reach); and every
limit it asks for above the host's default. The first time a listed plugin is loaded, this is
recorded (listing it is the user's choice). When the file changes, a plugin asking for nothing
new is accepted and its record updated; one asking for more (an origin, a secret, another
variable to read a secret from, a secret sent to more places, a higher limit) or declaring
another id is refused until `openkoi plugin approve FILE`, and the refusal shows the difference.
Origins the user grants in `[plugins.<id>.network] extend` are the user's own choice and need
no approval.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openkoi._errors import PluginApprovalError, PluginLoadError
from openkoi._fileio import atomic_write_text
from openkoi._paths import openkoi_home
from openkoi.plugins._egress import EgressPolicy
from openkoi.plugins._limits import DEFAULT_LIMITS, MIB
from openkoi.plugins._manifest import PluginFile, PluginHeader, file_digest

ANY_ORIGIN = "*"  # a secret with no `origins`: wherever the plugin may reach
FORMAT = 2

# Each requested limit and the host default it is compared with.
_DEFAULTS: dict[str, int] = {
    "memory_mb": DEFAULT_LIMITS.memory_bytes // MIB,
    "timeout_ms": int(DEFAULT_LIMITS.call_seconds * 1000),
    "event_timeout_ms": int(DEFAULT_LIMITS.event_seconds * 1000),
    "max_response_bytes": DEFAULT_LIMITS.response_bytes,
    "max_requests": DEFAULT_LIMITS.max_requests,
}


@dataclass(frozen=True)
class SecretGrant:
    env: tuple[str, ...]  # where the host reads it from, in order
    origins: tuple[str, ...]  # where it may be sent; (ANY_ORIGIN,) for anywhere allowed


@dataclass(frozen=True)
class Capabilities:
    origins: frozenset[str]
    secrets: dict[str, SecretGrant] = field(default_factory=dict, hash=False)
    limits: dict[str, int] = field(default_factory=dict, hash=False)  # only those above default

    @classmethod
    def of(cls, plugin: PluginHeader) -> Capabilities:
        manifest = plugin.manifest
        policy = EgressPolicy.parse(manifest.allow)
        secrets = {
            s.name: SecretGrant(
                env=tuple(s.env) or (s.name,),
                origins=tuple(sorted(o.normalized for o in EgressPolicy.parse(s.origins).origins))
                or (ANY_ORIGIN,),
            )
            for s in manifest.secrets
        }
        limits = {}
        for name, default in _DEFAULTS.items():
            value = getattr(manifest.limits, name)
            if value is not None and value > default:
                limits[name] = int(value)
        return cls(frozenset(o.normalized for o in policy.origins), secrets, limits)

    def exceeds(self, approved: Capabilities) -> list[str]:
        """The lines of the difference: what this asks for beyond `approved`."""
        lines = [f"+ network {o}" for o in sorted(self.origins - approved.origins)]
        for name, grant in sorted(self.secrets.items()):
            before = approved.secrets.get(name)
            if before is None:
                lines.append(f"+ secret {name} (read from {', '.join(grant.env)})")
                continue
            for env in grant.env:
                if env not in before.env:
                    lines.append(f"+ secret {name} read from {env}")
            if ANY_ORIGIN not in before.origins:
                for origin in grant.origins:
                    if origin not in before.origins:
                        shown = "any allowed origin" if origin == ANY_ORIGIN else origin
                        lines.append(f"+ secret {name} sent to {shown}")
        for name, value in sorted(self.limits.items()):
            ceiling = approved.limits.get(name, _DEFAULTS[name])
            if value > ceiling:
                lines.append(f"+ limit {name} {ceiling} -> {value}")
        return lines

    def dropped(self, approved: Capabilities) -> list[str]:
        lines = [f"- network {o}" for o in sorted(approved.origins - self.origins)]
        lines += [f"- secret {s}" for s in sorted(set(approved.secrets) - set(self.secrets))]
        for name, value in sorted(approved.limits.items()):
            now = self.limits.get(name, _DEFAULTS[name])
            if now < value:
                lines.append(f"- limit {name} {value} -> {now}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "origins": sorted(self.origins),
            "secrets": {
                name: {"env": list(g.env), "origins": list(g.origins)}
                for name, g in sorted(self.secrets.items())
            },
            "limits": dict(sorted(self.limits.items())),
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Capabilities:
        raw_secrets = entry.get("secrets", {})
        secrets: dict[str, SecretGrant] = {}
        if isinstance(raw_secrets, list):  # the first format: names only, read as themselves
            secrets = {str(n): SecretGrant((str(n),), (ANY_ORIGIN,)) for n in raw_secrets}
        elif isinstance(raw_secrets, dict):
            for name, grant in raw_secrets.items():
                grant = grant if isinstance(grant, dict) else {}
                secrets[str(name)] = SecretGrant(
                    tuple(str(e) for e in grant.get("env", [])) or (str(name),),
                    tuple(str(o) for o in grant.get("origins", [])) or (ANY_ORIGIN,),
                )
        limits = entry.get("limits", {})
        return cls(
            frozenset(str(o) for o in entry.get("origins", [])),
            secrets,
            {str(k): int(v) for k, v in limits.items()} if isinstance(limits, dict) else {},
        )


@dataclass(frozen=True)
class Approval:
    path: str  # the configured file, as the key
    plugin_id: str
    digest: str
    capabilities: Capabilities
    version: str = ""
    approved_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.plugin_id,
            "digest": self.digest,
            "version": self.version,
            "approved_at": self.approved_at,
            **self.capabilities.to_json(),
        }


def approvals_path() -> Path:
    return openkoi_home() / "plugins" / "approvals.json"


def approval_key(path: Path | str) -> str:
    """Approvals are keyed by the file the user configured, spelled one way."""
    return str(Path(path).expanduser().absolute())


class ApprovalStore:
    """The approvals file; every change is written atomically under a file lock."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or approvals_path()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise PluginLoadError(
                f"the plugin approvals file {self.path} is unreadable ({exc}); fix or delete it "
                "and approve your plugins again",
                path=str(self.path),
            ) from None
        if not isinstance(data, dict):
            return {}
        if data.get("format") == FORMAT and isinstance(data.get("plugins"), dict):
            return dict(data["plugins"])
        # the first format was keyed by plugin id, with the path inside each entry
        migrated: dict[str, Any] = {}
        for plugin_id, entry in data.items():
            if isinstance(entry, dict) and entry.get("path"):
                migrated[approval_key(entry["path"])] = {**entry, "id": plugin_id}
        return migrated

    def get(self, path: Path | str) -> Approval | None:
        key = approval_key(path)
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        return Approval(
            path=key,
            plugin_id=str(entry.get("id", "")),
            digest=str(entry.get("digest", "")),
            capabilities=Capabilities.from_json(entry),
            version=str(entry.get("version", "")),
            approved_at=float(entry.get("approved_at", 0.0) or 0.0),
        )

    def record(self, plugin: PluginFile) -> Approval:
        from filelock import FileLock

        approval = Approval(
            path=approval_key(plugin.path),
            plugin_id=plugin.manifest.id,
            digest=plugin.digest,
            capabilities=Capabilities.of(plugin),
            version=plugin.manifest.version,
            approved_at=time.time(),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=10):
            plugins = self._read()
            plugins[approval.path] = approval.to_json()
            document = {"format": FORMAT, "plugins": dict(sorted(plugins.items()))}
            atomic_write_text(
                self.path, json.dumps(document, indent=2, sort_keys=True) + "\n", mode=0o600
            )
        return approval


def differences(plugin: PluginHeader, approved: Approval) -> list[str]:
    """Every line that needs the user's approval: another id, then what is asked for more."""
    lines = []
    if approved.plugin_id != plugin.manifest.id:
        lines.append(f"- id {approved.plugin_id}")
        lines.append(f"+ id {plugin.manifest.id}")
    return lines + Capabilities.of(plugin).exceeds(approved.capabilities)


def check_approval(plugin: PluginFile, store: ApprovalStore | None = None) -> str:
    """Accept the plugin or raise `PluginApprovalError`. Returns what happened: "approved"
    (same file), "recorded" (first sight of this path), or "updated" (changed, asks for
    nothing new). Run when the plugin is first used, on the bytes that will run."""
    store = store or ApprovalStore()
    approved = store.get(plugin.path)
    if approved is None:
        store.record(plugin)
        return "recorded"
    if approved.digest == plugin.digest and approved.plugin_id == plugin.manifest.id:
        return "approved"
    more = differences(plugin, approved)
    if not more:
        store.record(plugin)
        return "updated"
    raise _refusal(plugin, approved, more, plugin.digest)


def precheck_approval(plugin: PluginHeader, store: ApprovalStore | None = None) -> str:
    """What `check_approval` will decide, from the manifest alone, so listing a plugin shows a
    refusal without reading its code: raises the same `PluginApprovalError`, or returns "new"
    (nothing recorded yet) or "approved". Records nothing; the whole file is hashed only when
    its manifest asks for more than its record (the same file is still approved)."""
    store = store or ApprovalStore()
    approved = store.get(plugin.path)
    if approved is None:
        return "new"
    more = differences(plugin, approved)
    if not more:
        return "approved"
    digest = file_digest(plugin.path)
    if approved.digest == digest and approved.plugin_id == plugin.manifest.id:
        return "approved"
    raise _refusal(plugin, approved, more, digest)


def _refusal(
    plugin: PluginHeader, approved: Approval, more: list[str], digest: str
) -> PluginApprovalError:
    what = (
        f"now declares the plugin id {plugin.manifest.id!r} (approved as {approved.plugin_id!r})"
        if approved.plugin_id != plugin.manifest.id
        else "asks for more than you approved"
    )
    return PluginApprovalError(
        f"plugin {plugin.manifest.id} ({plugin.path}) changed (sha256 {approved.digest[:12]} -> "
        f"{digest[:12]}) and {what}:\n  "
        + "\n  ".join(more)
        + f"\nRun `openkoi plugin approve {plugin.path}` to allow it.",
        path=str(plugin.path),
    )
