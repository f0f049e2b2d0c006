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


# The host's own limits on every plugin Store, whatever the manifest asks. A componentize-py
# guest needs 15 core instances, 2 tables, 1 memory and fewer than 10,000 table elements
# (measured by instantiating under lower limits); these leave room for other guest languages.
TABLE_ELEMENTS = 100_000  # elements of all its tables (8 bytes each in the host)
INSTANCES = 64  # core instances
TABLES = 16
MEMORIES = 4

# What one HTTP request of a guest may carry: more than any API asks for (servers commonly
# refuse request heads over 8-64 KiB), and little enough that checking and writing it never
# holds up the event loop the host's HTTP runs on (300,000 headers once held it for 4 s).
REQUEST_HEADERS = 128
REQUEST_HEADER_BYTES = 64 * 1024  # names and values together
REQUEST_URL_CHARS = 65_536  # httpx's own maximum, refused here as the guest's error

# What values crossing from the guest may cost the host (`_fastcall.Budget`, estimated bytes of
# Python objects), checked before the host builds them.
STREAM_BATCH_BYTES = 4 * MIB  # one `next` of a stream
STREAM_READ_AHEAD = 8  # batches a stream may run ahead of its reader...
STREAM_READ_AHEAD_BYTES = 4 * MIB  # ...and their lifted cost in all
MIN_RESULT_BYTES = 16 * MIB


def result_bytes(limits: Limits) -> int:
    """The cap on one returned value (a chat response, embeddings, models): room for a response
    as large as the plugin may read, with the host's object overhead."""
    return max(MIN_RESULT_BYTES, 2 * limits.response_bytes)


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
