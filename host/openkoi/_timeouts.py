"""The four deadlines of a provider call, as the user sets them.

Layers, the first that sets a value winning: the call (`ChatRequest.timeouts`), the provider
(`[providers.<id>.timeouts]`, `ProviderSettings.timeouts`), every provider (`[timeouts]`), then
`DEFAULT_TIMEOUTS`. Every deadline is finite: a call always ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DeadlineName = Literal["connect", "first_token", "idle", "total"]


class Timeouts(BaseModel):
    """Seconds. A field left at None is decided by the next layer down.

    - `connect`: open the connection (TCP, proxy tunnel and TLS handshake).
    - `first_token`: from sending the request to the first event of the answer (for a call that
      does not stream: to the response's headers, since its first event is the whole answer).
    - `idle`: the longest silence between two events of a stream (an SSE event, an NDJSON line,
      an AWS event-stream frame; bytes that complete no event do not count), and for a call that
      does not stream, from the headers to the end of the body.
    - `total`: the whole request, stream included.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    first_token: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    idle: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    total: float | None = Field(default=None, gt=0, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Timeouts with every layer applied: all four set."""

    connect: float
    first_token: float
    idle: float
    total: float


# Why these: a connection that takes 10 s to open is not going to serve a call well; reasoning
# models may think for a minute or two before their first token (and a call that does not stream
# waits for its whole answer), so first_token is generous; a stream that has started sends
# events every few seconds (thinking deltas, pings), so a minute of silence means it is stuck;
# 30 minutes is enough for the longest answers (64k tokens at 40 tokens/s).
DEFAULT_TIMEOUTS = Deadlines(connect=10.0, first_token=120.0, idle=60.0, total=1800.0)


def resolve_timeouts(*layers: Timeouts | None, base: Deadlines = DEFAULT_TIMEOUTS) -> Deadlines:
    """Apply `layers` (most specific first) over `base`."""
    values = {}
    for name in ("connect", "first_token", "idle", "total"):
        value = getattr(base, name)
        for layer in layers:
            if layer is not None and getattr(layer, name) is not None:
                value = getattr(layer, name)
                break
        values[name] = float(value)
    return Deadlines(**values)
