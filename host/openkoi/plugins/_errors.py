"""The plugin runtime's errors live in `openkoi._errors` with every other error; this module
re-exports them for the runtime and names the config field behind each limit."""

from __future__ import annotations

from openkoi._errors import (
    LimitName,
    PluginDeniedError,
    PluginError,
    PluginLimitError,
    PluginTrapError,
)

__all__ = [
    "LIMIT_FIELDS",
    "LimitName",
    "PluginDeniedError",
    "PluginError",
    "PluginLimitError",
    "PluginTrapError",
]

# The manifest / config field that sets each limit, quoted in messages.
LIMIT_FIELDS: dict[str, str] = {
    "memory": "limits.memory_mb",
    "time": "limits.timeout_ms",
    "event-time": "limits.event_timeout_ms",
    "response-bytes": "limits.max_response_bytes",
    "requests": "limits.max_requests",
    "values": "the host's cap on values a plugin passes or returns (not configurable)",
}
