"""Errors of the plugin runtime. Provider failures a plugin reports map to the foundation's
`ProviderError` classes; these are the failures of the plugin itself.

    ProviderError
    └── PluginError              the plugin misbehaved (transient: the fallback chain moves on)
        ├── PluginTrapError      the guest trapped; its instance was thrown away
        ├── PluginLimitError     a limit was hit; `limit` names it
        └── PluginDeniedError    the egress policy refused a request the call needed
    ConfigError
    └── PluginLoadError          (in _manifest) the file or its manifest was refused
        ├── ManifestError
        └── PluginApprovalError  (in _approvals) it asks for more than the user approved
"""

from __future__ import annotations

from typing import Literal

from openkoi._errors import ProviderError

LimitName = Literal["memory", "time", "event-time", "response-bytes", "requests"]

# The manifest / config field that sets each limit, quoted in messages.
LIMIT_FIELDS: dict[str, str] = {
    "memory": "limits.memory_mb",
    "time": "limits.timeout_ms",
    "event-time": "limits.event_timeout_ms",
    "response-bytes": "limits.max_response_bytes",
    "requests": "limits.max_requests",
}


class PluginError(ProviderError):
    transient = True
    kind = "plugin"


class PluginTrapError(PluginError):
    kind = "plugin-trap"


class PluginLimitError(PluginError):
    kind = "plugin-limit"

    def __init__(self, message: str, *, limit: LimitName, provider: str = "") -> None:
        super().__init__(message, provider=provider, code=limit)
        self.limit: LimitName = limit


class PluginDeniedError(PluginError):
    """Permanent: the same request would be refused again."""

    transient = False
    kind = "plugin-denied"
