"""The device authorization grant (RFC 8628): show a code, then poll until the user approves.

`poll` owns the timing rules: wait `interval` seconds between polls, add 5 s on `slow_down`,
stop on `access_denied`, `expired_token` or the code's deadline, and back off (then give up
with a clear message) when the network fails mid-poll. The provider-specific requests live in
`_github.py` and `_chatgpt_oauth.py`; both use `post` for one request with errors mapped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx

from openkoi._body import read_capped
from openkoi._errors import (
    AuthenticationError,
    MalformedResponseError,
    NetworkError,
    ProviderError,
    ServerError,
)
from openkoi._http import map_transport_errors
from openkoi.credentials._endpoints import time_scale

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5.0  # RFC 8628 section 3.5
MAX_NETWORK_FAILURES = 3
MAX_REPLY_BYTES = 1024 * 1024  # a token endpoint's answer is a few hundred bytes
DEFAULT_INTERVAL = 5.0
DEFAULT_EXPIRES_IN = 900.0

PollState = Literal["pending", "slow_down", "denied", "expired", "done"]


@dataclass(frozen=True)
class DeviceCode:
    """What the user needs to see (`user_code`, `verification_uri`) and what the poll sends."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    interval: float = DEFAULT_INTERVAL
    expires_in: float = DEFAULT_EXPIRES_IN


@dataclass(frozen=True)
class PollResult:
    state: PollState
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)
    detail: str = ""


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any = field(repr=False)
    text: str = field(default="", repr=False)


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    form: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
    method: str = "POST",
) -> Reply:
    """One request; JSON answers parsed (None when the body is not JSON), transport errors mapped."""
    with map_transport_errors(provider, secrets):
        async with client.stream(
            method,
            url,
            data=dict(form) if form is not None else None,
            json=dict(body) if body is not None else None,
            headers={"accept": "application/json", **(headers or {})},
        ) as response:
            raw = await read_capped(response, MAX_REPLY_BYTES, provider=provider)
        text = raw.decode(response.encoding or "utf-8", "replace")
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        data = None
    return Reply(response.status_code, data, text)


def interpret(reply: Reply, *, provider: str, success_key: str = "access_token") -> PollResult:
    """A token-endpoint answer in RFC 8628 terms (GitHub answers errors with status 200)."""
    data = reply.data if isinstance(reply.data, dict) else {}
    if reply.status < 400 and isinstance(data.get(success_key), str) and data[success_key]:
        return PollResult("done", data)
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else error
    detail = str(data.get("error_description") or "")
    if code == "authorization_pending":
        return PollResult("pending")
    if code == "slow_down":
        return PollResult("slow_down")
    if code == "access_denied":
        return PollResult("denied", detail=detail)
    if code == "expired_token":
        return PollResult("expired", detail=detail)
    if reply.status >= 500:
        raise ServerError(f"the sign-in server failed (HTTP {reply.status})", provider=provider)
    if code:
        raise AuthenticationError(
            f"the sign-in server refused the request: {code}" + (f" ({detail})" if detail else ""),
            provider=provider,
            status=reply.status,
            code=str(code),
        )
    raise MalformedResponseError(
        f"unexpected answer from the sign-in server (HTTP {reply.status})",
        provider=provider,
        status=reply.status,
    )


Sleep = Callable[[float], Awaitable[None]]


async def poll(
    check: Callable[[], Awaitable[PollResult]],
    *,
    interval: float,
    expires_in: float,
    provider: str,
    target: str,
    sleep: Sleep = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Mapping[str, Any]:
    """Poll until `check` says done; every other ending raises with a message naming the fix.

    All waits are multiplied by `OPENKOI_OAUTH_TIME_SCALE` (so tests need not sleep for real).
    """
    scale = time_scale()
    again = f"run `openkoi connect {target}` to try again"
    deadline = clock() + max(expires_in, 1.0) * scale
    wait = max(interval, 1.0)
    failures = 0
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            raise AuthenticationError(
                f"the code expired before it was authorized; {again}", provider=provider
            )
        await sleep(min(wait * scale, remaining))
        try:
            result = await check()
        except ProviderError as exc:
            if not exc.transient:
                raise
            failures += 1
            if failures >= MAX_NETWORK_FAILURES:
                raise NetworkError(
                    f"lost contact with the sign-in server while waiting for authorization "
                    f"({exc.message}); {again}",
                    provider=provider,
                ) from None
            wait *= 2  # RFC 8628 section 3.5: back off on connection problems
            continue
        failures = 0
        if result.state == "done":
            return result.data
        if result.state == "slow_down":
            wait += SLOW_DOWN_STEP
        elif result.state == "denied":
            raise AuthenticationError(
                f"authorization was denied in the browser; {again}",
                provider=provider,
                code="access_denied",
            )
        elif result.state == "expired":
            raise AuthenticationError(
                f"the code expired before it was authorized; {again}",
                provider=provider,
                code="expired_token",
            )


def require_str(data: Any, key: str, *, provider: str, what: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise MalformedResponseError(f"{what} has no {key!r}", provider=provider)
    return value


def as_seconds(value: Any, default: float) -> float:
    """`interval`/`expires_in` as a number; some servers send them as strings."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def raise_for_reply(reply: Reply, *, provider: str, what: str) -> None:
    """Map a failed non-poll request (device code request, code exchange) to a typed error."""
    if reply.status < 400:
        return
    from openkoi._http import error_from_response

    error: ProviderError = error_from_response(reply.status, {}, reply.text, provider=provider)
    error.message = f"{what} failed: {error.message}"
    raise error
