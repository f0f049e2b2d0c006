"""HTTP plumbing shared by the built-in providers: turning failures into errors.

Foreign errors are translated in one place: `map_transport_errors` for httpx exceptions and
`error_from_response` for HTTP error statuses. Both scrub secrets from what they keep.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from openkoi._errors import (
    AuthenticationError,
    CertificateError,
    ContentPolicyError,
    ContextOverflowError,
    InvalidRequestError,
    LocalPoolTimeoutError,
    MalformedResponseError,
    NetworkError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    redact,
)
from openkoi._json import loads

# Provider error codes/types that mean "the prompt does not fit". Matched exactly.
CONTEXT_OVERFLOW_CODES = frozenset(
    {"context_length_exceeded", "string_above_max_length", "context_window_exceeded"}
)
CONTENT_POLICY_CODES = frozenset(
    {"content_policy_violation", "content_filter", "moderation_blocked", "safety"}
)


def _non_negative(value: str | None, scale: float = 1.0) -> float | None:
    """A plain number (times `scale`), if it is a finite, non-negative one."""
    if not value:
        return None
    try:
        seconds = float(value.strip()) * scale
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: str | None) -> float | None:
    """Seconds in a Go-style duration as OpenAI's `x-ratelimit-reset-*` headers send them
    (`45s`, `1m30s`, `6m0s`, `250ms`, `2.5s`), or a bare number of seconds; None otherwise."""
    if not value:
        return None
    text = value.strip().lower()
    plain = _non_negative(text)
    if plain is not None:
        return plain
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    total = sum(float(number) * _UNIT[unit] for number, unit in parts)
    return total if math.isfinite(total) else None


def _rate_limit_reset(lowered: Mapping[str, str]) -> float | None:
    """When the exhausted limit resets: a limit that still has requests or tokens left is not
    the one that refused, so only exhausted (or unreported) limits count."""
    waits = []
    for kind in ("requests", "tokens"):
        wait = parse_duration(lowered.get(f"x-ratelimit-reset-{kind}"))
        left = _non_negative(lowered.get(f"x-ratelimit-remaining-{kind}"))
        if wait is not None and not left:
            waits.append(wait)
    return max(waits) if waits else None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, `Retry-After` (seconds or an
    HTTP-date), else the reset of an exhausted `x-ratelimit-*` limit.

    A value that is negative, not finite or not a number says nothing (None): the caller's
    default cooldown applies rather than none at all. A date already past means "now" (0).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = _non_negative(lowered.get("retry-after-ms"), 0.001)
    if millis is not None:
        return millis
    value = (lowered.get("retry-after") or "").strip()
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None:
            current = time.time() if now is None else now
            return max(0.0, when.timestamp() - current)
    return _rate_limit_reset(lowered)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith("<!doctype html") or head.startswith("<html") or "<body" in head


def error_text(value: Any) -> str | None:
    """A field's text when it is a non-empty string, else None: an error message is never built
    from a dict or a list (that would print a Python repr of whatever the server sent)."""
    return value if isinstance(value, str) and value.strip() else None


def _error_label(value: Any) -> str | None:
    """An error code or type: a string, or an integer code (Gemini and some gateways send one)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return error_text(value)


def extract_error(body: Any) -> tuple[str | None, str | None, str | None]:
    """(message, code, type) from the common JSON error shapes, or Nones; each comes from a
    string (or integer code) field only."""
    if not isinstance(body, dict):
        return None, None, None
    err = body.get("error", body)
    if isinstance(err, str):
        return error_text(err), None, None
    if isinstance(err, list) and err and isinstance(err[0], dict):
        err = err[0].get("error", err[0])
    if not isinstance(err, dict):
        return None, None, None
    message = error_text(err.get("message")) or error_text(body.get("message"))
    etype = _error_label(err.get("type")) or _error_label(err.get("status"))
    return message, _error_label(err.get("code")), etype


def classify(
    status: int | None,
    *,
    provider: str,
    message: str,
    code: str | None = None,
    etype: str | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """Pick the error class from status and the provider's code/type; never from free text."""
    secrets = tuple(secrets)
    message = redact(message, secrets)
    code_or_type = code if code and not code.isdigit() else etype
    if code_or_type:  # a server may echo the key anywhere, its error code included
        code_or_type = redact(code_or_type, secrets)
    markers = {m for m in (code, etype) if m}
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status": status,
        "code": code_or_type,
        "retry_after": retry_after,
    }
    if markers & CONTEXT_OVERFLOW_CODES:
        return ContextOverflowError(message, **kwargs)
    if markers & CONTENT_POLICY_CODES:
        return ContentPolicyError(message, **kwargs)
    if status == 429 or markers & {"rate_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED"}:
        if markers & {"insufficient_quota"}:
            # An exhausted quota will not recover by waiting; treat it as an auth/billing problem.
            return AuthenticationError(message, **kwargs)
        return RateLimitedError(message, **kwargs)
    if status in (529, 503) or markers & {"overloaded_error", "UNAVAILABLE"}:
        return OverloadedError(message, **kwargs)
    if status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status is not None and status >= 500:
        return ServerError(message, **kwargs)
    if status is not None and 400 <= status < 500:
        return InvalidRequestError(message, **kwargs)
    return ProviderError(message, **kwargs)


def in_answer(error: ProviderError) -> ProviderError:
    """An error reported inside a 200 answer (a stream's error event, an error body): the server
    took the request and then failed. One that names nothing `classify` knows is a server fault,
    transient as an unexplained 5xx is, not a permanent error that would stop the fallback chain
    (Ollama's and Bedrock's code-less in-answer errors are the same)."""
    if type(error) is not ProviderError:
        return error
    return ServerError(
        error.message,
        provider=error.provider,
        status=error.status,
        code=error.code,
        retry_after=error.retry_after,
        partial_usage=error.partial_usage,
    )


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body_text: str,
    *,
    provider: str,
    secrets: Iterable[str | None] = (),
    classifier: Callable[..., ProviderError] = classify,
) -> ProviderError:
    """Turn an HTTP error response into the right `ProviderError` with a one-line cause."""
    secrets = tuple(secrets)
    retry_after = parse_retry_after(headers)
    message, code, etype = extract_error(error_json(body_text))
    if message is None:
        if _looks_like_html(body_text):
            message = "the server answered with an HTML page instead of an API response"
            if status < 400:
                return MalformedResponseError(message, provider=provider, status=status)
        elif body_text.strip():
            message = _short(body_text)
        else:
            message = f"HTTP {status} with an empty body"
    return classifier(
        status,
        provider=provider,
        message=_short(message),
        code=code,
        etype=etype,
        retry_after=retry_after,
        secrets=secrets,
    )


def error_json(body_text: str) -> Any:
    """An error body's JSON, or None when it has none the parser can read (not JSON, or nested
    deeper than the parser recurses): such a body must still map by its status."""
    if not body_text.strip():
        return None
    try:
        return loads(body_text)
    except (ValueError, RecursionError):
        return None


def json_body(response_text: str, *, provider: str, status: int | None = None) -> Any:
    """Parse a successful JSON body; anything else is a `MalformedResponseError`."""
    try:
        return loads(response_text)
    except RecursionError:
        raise MalformedResponseError(
            "expected JSON but got a body nested deeper than the parser allows",
            provider=provider,
            status=status,
        ) from None
    except json.JSONDecodeError as exc:
        what = (
            "an HTML page"
            if _looks_like_html(response_text)
            else ("an empty body" if not response_text.strip() else "a body that is not JSON")
        )
        raise MalformedResponseError(
            f"expected JSON but got {what} ({exc.msg} at char {exc.pos})",
            provider=provider,
            status=status,
        ) from None


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind a connect failure, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _disconnected(exc: httpx.HTTPError) -> bool:
    """httpcore's words for a connection the server closed, rather than bytes it got wrong."""
    text = str(exc).lower()
    return "disconnected" in text or "closed connection" in text or "incomplete" in text


@contextmanager
def map_transport_errors(
    provider: str, secrets: Iterable[str | None] = (), *, receiving: bool = False
) -> Iterator[None]:
    """Translate httpx exceptions raised inside the block into `ProviderError`s.

    `receiving` says the response had started: a connection lost then was cut mid-stream, which
    is not the same as a server that could not be reached. The request URL is never included:
    a provider that puts a key in a URL must not leak it.
    """
    secrets = tuple(secrets)
    try:
        yield
    except httpx.PoolTimeout:
        raise LocalPoolTimeoutError(
            "no free connection in this process's pool in time; raise max_connections",
            provider=provider,
        ) from None
    except httpx.ConnectTimeout:
        raise ProviderTimeoutError(
            "could not connect in time (connect deadline)", deadline="connect", provider=provider
        ) from None
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(
            f"timed out ({type(exc).__name__}, total deadline)",
            deadline="total",
            provider=provider,
        ) from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if receiving or isinstance(exc, httpx.RemoteProtocolError):
            detail = f"({type(exc).__name__}: {redact(_short(str(exc), 120), secrets)})"
            if not receiving and not _disconnected(exc):  # a reply that is not HTTP/1.1
                raise MalformedResponseError(
                    f"the server's response broke the HTTP protocol {detail}", provider=provider
                ) from None
            cut = "mid-stream" if receiving else "before the response was complete"
            raise MalformedResponseError(
                f"the connection was cut {cut} {detail}", provider=provider
            ) from None
        raise _network_error(exc, provider, secrets) from None
    except (httpx.NetworkError, httpx.ProxyError, httpx.UnsupportedProtocol) as exc:
        certificate = _certificate_failure(exc)
        if certificate is not None:
            reason = certificate.verify_message or certificate.reason or "verification failed"
            raise CertificateError(
                f"the server's TLS certificate could not be verified ({reason}); if a private "
                "CA signs it, point ca_bundle (or SSL_CERT_FILE) at that CA's certificate",
                provider=provider,
            ) from None
        raise _network_error(exc, provider, secrets) from None
    except httpx.DecodingError as exc:
        raise MalformedResponseError(
            f"could not decode the response: {redact(_short(str(exc), 120), secrets)}",
            provider=provider,
        ) from None
    except (httpx.TooManyRedirects, httpx.HTTPStatusError, httpx.LocalProtocolError) as exc:
        raise ProviderError(f"HTTP failure ({type(exc).__name__})", provider=provider) from None
    except httpx.InvalidURL:
        raise NetworkError(
            "the provider's base URL is not a valid URL", provider=provider
        ) from None
    except httpx.StreamError as exc:
        raise ProviderError(
            f"HTTP stream misuse ({type(exc).__name__})", provider=provider
        ) from None
    except httpx.HTTPError as exc:  # anything httpx adds later
        raise NetworkError(f"HTTP failure ({type(exc).__name__})", provider=provider) from None


def _network_error(exc: Exception, provider: str, secrets: tuple[str | None, ...]) -> NetworkError:
    return NetworkError(
        f"could not reach the server ({type(exc).__name__}: "
        f"{redact(_short(str(exc), 120), secrets)})",
        provider=provider,
    )
