"""The limits a plugin runs under: what it asks for, what the user sets, what the host allows.

Precedence: the user's `[plugins.<id>.limits]`, then the manifest's `[limits]`, then the host
default; whatever wins is clamped to the host maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

from openkoi.plugins._manifest import RequestedLimits

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    call_seconds: float
    event_seconds: float
    response_bytes: int
    max_requests: int

    def describe(self) -> dict[str, str]:
        return {
            "memory": f"{self.memory_bytes // MIB} MiB",
            "time per call": f"{self.call_seconds:g} s",
            "time per stream event": f"{self.event_seconds:g} s",
            "response bytes per call": f"{self.response_bytes:,}",
            "HTTP requests per call": str(self.max_requests),
        }


DEFAULT_LIMITS = Limits(
    memory_bytes=128 * MIB,
    call_seconds=120.0,
    event_seconds=60.0,
    response_bytes=16 * MIB,
    max_requests=32,
)
HOST_MAXIMUM = Limits(
    memory_bytes=1024 * MIB,
    call_seconds=600.0,
    event_seconds=300.0,
    response_bytes=256 * MIB,
    max_requests=1000,
)


def effective_limits(requested: RequestedLimits, user: RequestedLimits | None = None) -> Limits:
    user = user or RequestedLimits()

    def pick(name: str) -> int | None:
        value: int | None = getattr(user, name)
        return value if value is not None else getattr(requested, name)

    memory_mb = pick("memory_mb")
    timeout_ms = pick("timeout_ms")
    event_ms = pick("event_timeout_ms")
    response = pick("max_response_bytes")
    requests = pick("max_requests")
    d, m = DEFAULT_LIMITS, HOST_MAXIMUM
    return Limits(
        memory_bytes=min(memory_mb * MIB if memory_mb else d.memory_bytes, m.memory_bytes),
        call_seconds=min(timeout_ms / 1000 if timeout_ms else d.call_seconds, m.call_seconds),
        event_seconds=min(event_ms / 1000 if event_ms else d.event_seconds, m.event_seconds),
        response_bytes=min(response or d.response_bytes, m.response_bytes),
        max_requests=min(requests or d.max_requests, m.max_requests),
    )
