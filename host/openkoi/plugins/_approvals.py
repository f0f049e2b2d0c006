"""What the user approved each plugin to do, so a changed plugin cannot quietly ask for more.

`$OPENKOI_HOME/plugins/approvals.json` records, per plugin id, the digest of the file and the
capabilities approved: the manifest's network origins and declared secrets. The first time a
plugin listed in config is loaded, its capabilities are recorded (listing it is the user's
choice). When the file changes, a plugin asking for nothing new is accepted and its digest
updated; one asking for more is refused until `openkoi plugin approve FILE`, and the refusal
shows the difference. Origins the user grants in `[plugins.<id>.network] extend` are the user's
own choice and need no approval.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openkoi._errors import PluginApprovalError, PluginLoadError
from openkoi._fileio import atomic_write_text
from openkoi._paths import openkoi_home
from openkoi.plugins._manifest import PluginFile


@dataclass(frozen=True)
class Capabilities:
    origins: frozenset[str]
    secrets: frozenset[str]

    @classmethod
    def of(cls, plugin: PluginFile) -> Capabilities:
        from openkoi.plugins._egress import EgressPolicy

        policy = EgressPolicy.parse(plugin.manifest.allow)
        return cls(
            origins=frozenset(o.normalized for o in policy.origins),
            secrets=frozenset(s.name for s in plugin.manifest.secrets),
        )

    def exceeds(self, approved: Capabilities) -> list[str]:
        """The lines of the difference: what this asks for beyond `approved`."""
        lines = [f"+ network {o}" for o in sorted(self.origins - approved.origins)]
        lines += [f"+ secret {s}" for s in sorted(self.secrets - approved.secrets)]
        return lines

    def dropped(self, approved: Capabilities) -> list[str]:
        lines = [f"- network {o}" for o in sorted(approved.origins - self.origins)]
        lines += [f"- secret {s}" for s in sorted(approved.secrets - self.secrets)]
        return lines


@dataclass(frozen=True)
class Approval:
    plugin_id: str
    digest: str
    capabilities: Capabilities
    version: str = ""
    path: str = ""
    approved_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "origins": sorted(self.capabilities.origins),
            "secrets": sorted(self.capabilities.secrets),
            "version": self.version,
            "path": self.path,
            "approved_at": self.approved_at,
        }


def approvals_path() -> Path:
    return openkoi_home() / "plugins" / "approvals.json"


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
        return data if isinstance(data, dict) else {}

    def get(self, plugin_id: str) -> Approval | None:
        entry = self._read().get(plugin_id)
        if not isinstance(entry, dict):
            return None
        return Approval(
            plugin_id=plugin_id,
            digest=str(entry.get("digest", "")),
            capabilities=Capabilities(
                frozenset(str(o) for o in entry.get("origins", [])),
                frozenset(str(s) for s in entry.get("secrets", [])),
            ),
            version=str(entry.get("version", "")),
            path=str(entry.get("path", "")),
            approved_at=float(entry.get("approved_at", 0.0) or 0.0),
        )

    def record(self, plugin: PluginFile) -> Approval:
        from filelock import FileLock

        approval = Approval(
            plugin_id=plugin.manifest.id,
            digest=plugin.digest,
            capabilities=Capabilities.of(plugin),
            version=plugin.manifest.version,
            path=str(plugin.path),
            approved_at=time.time(),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=10):
            data = self._read()
            data[approval.plugin_id] = approval.to_json()
            atomic_write_text(
                self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600
            )
        return approval


def check_approval(plugin: PluginFile, store: ApprovalStore | None = None) -> str:
    """Accept the plugin or raise `PluginApprovalError`. Returns what happened: "approved"
    (same file), "recorded" (first sight), or "updated" (changed, asks for nothing new)."""
    store = store or ApprovalStore()
    approved = store.get(plugin.manifest.id)
    if approved is None:
        store.record(plugin)
        return "recorded"
    if approved.digest == plugin.digest:
        return "approved"
    wanted = Capabilities.of(plugin)
    more = wanted.exceeds(approved.capabilities)
    if not more:
        store.record(plugin)
        return "updated"
    raise PluginApprovalError(
        f"plugin {plugin.manifest.id} ({plugin.path}) changed (sha256 {approved.digest[:12]} -> "
        f"{plugin.digest[:12]}) and asks for more than you approved:\n  "
        + "\n  ".join(more)
        + f"\nRun `openkoi plugin approve {plugin.path}` to allow it.",
        path=str(plugin.path),
    )
