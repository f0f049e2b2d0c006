"""Errors a provider raises. Each maps to one case of the WIT `provider-error` variant; the
host's fallback chain decides on that case, never on the message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar


class ProviderError(Exception):
    """A provider call failed. `kind` is the WIT case name."""

    kind: str = "other"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class RateLimited(ProviderError):
    kind = "rate-limited"


class Overloaded(ProviderError):
    kind = "overloaded"


class ServerError(ProviderError):
    kind = "server"


class Timeout(ProviderError):
    kind = "timeout"


class NetworkError(ProviderError):
    kind = "network"


class MalformedResponse(ProviderError):
    kind = "malformed-response"


class AuthError(ProviderError):
    kind = "auth"


class InvalidRequest(ProviderError):
    kind = "invalid-request"


class ContextOverflow(InvalidRequest):
    kind = "context-overflow"


class ContentPolicy(ProviderError):
    kind = "content-policy"


class Unsupported(ProviderError):
    kind = "unsupported"


class HttpError(ProviderError):
    """The host did not deliver a response. `http_kind` is the WIT `http-error` case
    (denied, timeout, connect, too-large, invalid-request, limit, other)."""

    _KINDS: ClassVar[dict[str, str]] = {"timeout": "timeout", "connect": "network"}

    def __init__(self, http_kind: str, message: str) -> None:
        super().__init__(f"{http_kind}: {message}")
        self.http_kind = http_kind
        self.kind = self._KINDS.get(http_kind, "other")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _message(body: str) -> tuple[str | None, str | None]:
    try:
        data: Any = json.loads(body) if body.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return err, None
        if isinstance(err, dict):
            message = err.get("message") or data.get("message")
            code = err.get("code") or err.get("type")
            return (str(message) if message else None), (str(code) if code else None)
    text = " ".join(body.split())
    return (text[:300] or None), None


def error_for_status(status: int, headers: Mapping[str, str], body: str) -> ProviderError:
    """The error for an HTTP error status, with the service's message and code when it gave one."""
    message, code = _message(body)
    message = message or f"HTTP {status}"
    kwargs: dict[str, Any] = {"status": status, "code": code, "retry_after": _retry_after(headers)}
    if code in ("context_length_exceeded", "context_window_exceeded"):
        return ContextOverflow(message, **kwargs)
    if status == 429:
        return RateLimited(message, **kwargs)
    if status in (503, 529):
        return Overloaded(message, **kwargs)
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    if status >= 400:
        return InvalidRequest(message, **kwargs)
    return ProviderError(message, **kwargs)
