"""The only way a plugin reaches the network: HTTP the host performs for it, under its policy.

Every request, and every redirect hop (the host follows redirects itself), is checked against the
plugin's `EgressPolicy`. The name is resolved once; every address it resolves to must pass
`address_allowed`; the connection then goes to that checked address itself (the URL is rewritten
to the IP, the original `Host` header kept, the TLS server name passed as httpx's `sni_hostname`
extension), so DNS rebinding between check and connect is impossible.

Secrets: the guest writes `{{secret:NAME}}` in a header value. The host substitutes the value only
for names it was given, only on requests the policy allows; a placeholder anywhere else (URL, body)
is refused as an exfiltration attempt. Headers that carried a secret are dropped when a redirect
leaves the origin. Every secret value is scrubbed from response headers, body chunks (even when
split across chunks) and error messages before the guest sees them. The guest gets the body
decoded, so the headers that frame it on the wire (`content-length`, `content-encoding`,
`transfer-encoding`) are not passed on: a length would also give away a scrubbed secret's.

Failures are `HttpError`s with a `kind` the WIT `http-error` variant mirrors. Nothing here raises
anything else to the runtime, and no message carries a secret.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import functools
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote, urljoin

import anyio
import httpx

from openkoi._errors import OpenKoiError
from openkoi._idle_check import http_transport
from openkoi._log_scrub import keep_out_of_logs
from openkoi.plugins._egress import (
    AllowedOrigin,
    Decision,
    EgressPolicy,
    IPAddress,
    RequestTarget,
    address_allowed,
)
from openkoi.plugins._limits import REQUEST_HEADER_BYTES, REQUEST_HEADERS, REQUEST_URL_CHARS

if TYPE_CHECKING:
    from openkoi._secrets import Secret

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "SECRET_PLACEHOLDER",
    "GuardedClient",
    "GuardedResponse",
    "HttpError",
    "HttpErrorKind",
    "Resolver",
    "SecretScrubber",
    "TransportPool",
]

SECRET_PLACEHOLDER = re.compile(r"\{\{secret:([A-Za-z_][A-Za-z0-9_]*)\}\}")
REDACTED = "[REDACTED]"
# A shorter value cannot be scrubbed from responses without mangling ordinary text.
MIN_SECRET_LENGTH = 6
# A stream holds back the scrubber's window until more text comes or the upstream has been
# quiet this long.
QUIET_RELEASE_SECONDS = 0.05

HttpErrorKind = Literal[
    "denied", "timeout", "connect", "too-large", "invalid-request", "limit", "other"
]
Resolver = Callable[[str, int], Awaitable[list[str]]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers the host owns: framing and connection management. `host` is a denial of its own.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "expect",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
# Dropped on a redirect to another origin even when they hold no placeholder (as browsers do).
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})
# Response headers the guest is not shown: they frame the bytes on the wire, and the guest gets
# the body decoded and scrubbed instead (a length would also tell it how long a scrubbed secret
# was).
_WIRE_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding"})
_BODY_HEADERS = frozenset({"content-type", "content-encoding", "content-language"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpError(OpenKoiError):
    """A plugin's HTTP request failed or was refused. `message` never contains a secret."""

    def __init__(self, kind: HttpErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: HttpErrorKind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"HttpError({self.kind!r}, {self.message!r})"


# ---------------------------------------------------------------------------------------------
# scrubbing


class SecretScrubber:
    """Replaces secret values with `[REDACTED]` in every form a benign server writes them back.

    The forms: the raw value; JSON with any character written as `\\uXXXX` (either case, and
    with the backslash doubled when JSON is nested) and `\\/`, `\\"`, `\\\\`;
    percent-encoding (either case, `+` for a space); HTML character references; and base64 of
    the whole value (standard and URL-safe, padded or not), itself in any of those forms. Each
    character of a form may be written in any of its spellings, mixed within one value."""

    def __init__(self, values: Iterable[str]) -> None:
        patterns: list[str] = []
        longest = 0
        plain: set[str] = set()
        self._always_full = False
        for value in values:
            if len(value) < MIN_SECRET_LENGTH:
                continue
            self._always_full |= " " in value  # `+` for a space: no cheap pre-check
            for form in _whole_value_forms(value):
                pattern, length = _spellings(form)
                patterns.append(pattern)
                longest = max(longest, length)
                plain.add(form.lower())
        # A form that contains another needs no check of its own (a padded base64 form holds
        # its unpadded one): the pre-check searches the text once per remaining form.
        self._plain = tuple(sorted(f for f in plain if not any(o != f and o in f for o in plain)))
        patterns.sort(key=len, reverse=True)
        self._pattern = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None
        # The longest text a match can span: a stream holds back this many characters less one,
        # whatever they are, so what the guest sees never depends on the secret's content.
        self.window = max(longest - 1, 0)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        if self._pattern is None or not self._may_contain(text):
            return text
        return self._pattern.sub(REDACTED, text)

    def _may_contain(self, text: str) -> bool:
        """A cheap pre-check: with every escape written as its character, does any form of a
        secret appear? (The full pattern, which spells every character every way, is slow.)"""
        if self._always_full:
            return True
        # Three substring searches (memchr) rather than one character-class search: the class
        # is matched character by character, several times slower over a long body.
        escaped = "\\" in text or "%" in text or "&" in text
        plain = _UNESCAPE.sub(_unescape, text).lower() if escaped else text.lower()
        return any(form in plain for form in self._plain)

    def stream(self) -> _StreamScrubber:
        return _StreamScrubber(self)


_UNESCAPE = re.compile(
    r"\\+u([0-9a-fA-F]{4})|\\+([/\"\\])|((?:%[0-9a-fA-F]{2})+)|&#[xX]0*([0-9a-fA-F]+);|&#0*([0-9]+);"
    r"|&(amp|lt|gt|quot|apos);"
)
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _unescape(match: re.Match[str]) -> str:
    unicode, escaped, percent, hex_ref, dec_ref, named = match.groups()
    try:
        if unicode:
            return chr(int(unicode, 16))
        if escaped:
            return escaped
        if percent:
            return unquote(percent)
        if hex_ref:
            return chr(int(hex_ref, 16))
        if dec_ref:
            return chr(int(dec_ref))
    except (ValueError, OverflowError):
        return match.group()
    return _NAMED[named]


@functools.lru_cache(maxsize=64)
def scrubber_for(values: tuple[str, ...]) -> SecretScrubber:
    """One compiled scrubber per set of secret values (a plugin's calls share it)."""
    return SecretScrubber(values)


def _whole_value_forms(value: str) -> list[str]:
    raw = value.encode("utf-8")
    standard = base64.b64encode(raw).decode("ascii")
    urlsafe = base64.urlsafe_b64encode(raw).decode("ascii")
    return list(
        dict.fromkeys([value, standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")])
    )


_JSON_BACKSLASH = r"\\{1,3}"  # one backslash, or two or three when JSON is nested
_HTML_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _spellings(form: str) -> tuple[str, int]:
    """A regex matching `form` with each character in any of its spellings, and the longest
    text it can match."""
    parts: list[str] = []
    longest = 0
    for char in form:
        code = ord(char)
        options = [re.escape(char)]
        if code <= 0xFFFF:
            options.append(f"{_JSON_BACKSLASH}u{code:04x}")
        if char in '/"\\':
            options.append(_JSON_BACKSLASH + re.escape(char))
        options.append("".join(f"%{byte:02x}" for byte in char.encode("utf-8")))
        if char == " ":
            options.append(r"\+")
        options.append(f"&#0{{0,2}}{code};")
        options.append(f"&#x0{{0,2}}{code:x};")
        if char in _HTML_NAMED:
            options.append(f"&{_HTML_NAMED[char]};")
        parts.append("(?:" + "|".join(options) + ")")
        longest += max(
            3 + 5,  # \\\\\\uXXXX
            3 * len(char.encode("utf-8")),
            len(f"&#{code};") + 2,  # up to two leading zeros
            len(f"&#x{code:x};") + 2,
        )
    return "".join(parts), longest


class _StreamScrubber:
    """Scrubs a text stream. It always holds back the last `window` characters (whatever they
    are) until more text comes, the stream ends, or `release()`: so where the guest's chunks
    split never depends on whether the text looks like a secret."""

    def __init__(self, scrubber: SecretScrubber) -> None:
        self._scrubber = scrubber
        self._tail = ""

    @property
    def holding(self) -> bool:
        return bool(self._tail)

    def feed(self, text: str) -> str:
        if not self._scrubber:
            return text
        out = self._scrubber.scrub(self._tail + text)
        keep = min(self._scrubber.window, len(out))
        self._tail = out[len(out) - keep :]
        return out[: len(out) - keep]

    def release(self) -> str:
        """What is held back, as it is (the upstream went quiet)."""
        tail, self._tail = self._tail, ""
        return tail

    def finish(self) -> str:
        tail, self._tail = self._tail, ""
        return self._scrubber.scrub(tail)


# ---------------------------------------------------------------------------------------------
# transports


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context per process: building one costs milliseconds, not microseconds."""
    return httpx.create_ssl_context()


class TransportPool:
    """httpx transports, one per name origin (scheme, host, port), shareable between clients.

    Sharing lets connections be reused from one plugin call to the next. Keeping one transport
    per name means a pooled connection (keyed by IP) only ever carries requests, and a TLS session
    verified, for the one name it was opened for.
    """

    def __init__(
        self, *, keepalive_per_origin: int = 32, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._ssl_context = ssl_context  # None: the system's trust store, verifying
        self._limits = httpx.Limits(
            max_connections=None,
            max_keepalive_connections=keepalive_per_origin,
            keepalive_expiry=30.0,
        )
        self._transports: dict[tuple[str, str, int], httpx.AsyncHTTPTransport] = {}
        self._closed = False

    def get(self, target: RequestTarget) -> httpx.AsyncHTTPTransport:
        if self._closed:
            raise RuntimeError("the transport pool is closed")
        key = (target.scheme, target.host, target.port)
        transport = self._transports.get(key)
        if transport is None:
            transport = http_transport(
                verify=self._ssl_context or _ssl_context(),
                limits=self._limits,
                trust_env=False,
                retries=0,
            )
            self._transports[key] = transport
        return transport

    async def aclose(self) -> None:
        self._closed = True
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# ---------------------------------------------------------------------------------------------
# the response


@dataclass
class GuardedResponse:
    """Status and (scrubbed) headers at once; the body is read lazily, scrubbed, bounded."""

    status: int
    headers: list[tuple[str, str]]
    _body: _Body | None = field(default=None, repr=False, compare=False)

    async def next_chunk(self) -> str | None:
        """The next piece of decoded, scrubbed text; None at the end (the response is closed)."""
        if self._body is None:
            return None
        return await self._body.next_text()

    async def text(self) -> str:
        """The rest of the body as one string (bounded by the client's response byte limit)."""
        parts: list[str] = []
        body = self._body
        # The whole body goes out at once: nothing to release early, so no wait per read.
        while body is not None and (chunk := await body.next_text(release=False)) is not None:
            parts.append(chunk)
        return "".join(parts)

    async def aclose(self) -> None:
        """Close the upstream response; idempotent."""
        if self._body is not None:
            await self._body.aclose()


class _Inflater:
    """Content-Encoding decoding that never produces more than the byte budget allows, so a
    compression bomb costs at most the limit in memory, not the limit times the ratio."""

    def __init__(self, encoding: str) -> None:
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self._z: zlib._Decompress | None = None
        if not codings:
            return
        if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
            raise ValueError(encoding)
        self._z = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected

    def feed(self, data: bytes, budget: int) -> bytes:
        if self._z is None:
            return data
        return self._z.decompress(data, max(budget, 0) + 1)

    def finish(self) -> bytes:
        return b"" if self._z is None else self._z.flush()


class _Body:
    def __init__(
        self,
        client: GuardedClient,
        response: httpx.Response,
        scrubber: SecretScrubber,
        inflater: _Inflater,
    ) -> None:
        self._client = client
        self._response = response
        self._chunks = response.aiter_raw()
        self._inflater = inflater
        self._decoder = codecs.getincrementaldecoder(_charset(response))(errors="replace")
        self._scrub = scrubber.stream()
        self._done = False
        self._pending: asyncio.Future[bytes | None] | None = None
        self._failed: HttpError | None = None

    async def _read(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    async def next_text(self, *, release: bool = True) -> str | None:
        """The next piece of text; with `release`, what the scrubber holds back is handed over
        once the upstream has been quiet for `QUIET_RELEASE_SECONDS`."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        while not self._done:
            error: HttpError | None = None
            raw: bytes | None = None
            if release and self._scrub.holding:
                # Text is held back: hand it over if the upstream stays quiet, so a slow stream
                # is not delayed by the scrubber's window (the release does not look at it).
                if self._pending is None:
                    self._pending = asyncio.ensure_future(self._read())
                done, _ = await asyncio.wait({self._pending}, timeout=QUIET_RELEASE_SECONDS)
                if not done:
                    return self._scrub.release()
            pending, self._pending = self._pending, None
            try:
                raw = await (pending if pending is not None else self._read())
            except httpx.HTTPError as exc:
                error = self._client._mapped(exc, "while reading the response")
            if error is None:
                try:
                    if raw is None:
                        data = self._inflater.finish()
                    else:
                        data = self._inflater.feed(raw, self._client._budget())
                    self._client._account(len(data))
                except zlib.error:
                    error = self._client._error(
                        "other", "the response's compressed body could not be decoded"
                    )
                except HttpError as exc:
                    error = exc
            if error is not None:
                await self.aclose()
                if self._scrub.holding:  # what came before the failure first, then the failure
                    self._failed = error
                    return self._scrub.finish()
                raise error
            if raw is None:
                text = self._scrub.feed(self._decoder.decode(data, final=True))
                text += self._scrub.finish()
                await self.aclose()
                return text or None
            text = self._scrub.feed(self._decoder.decode(data))
            if text:
                return text
        return None

    async def aclose(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        if not self._done:
            self._done = True
            self._client._open.discard(self)
            await self._response.aclose()


def _charset(response: httpx.Response) -> str:
    if "charset" not in response.headers.get("content-type", "").lower():
        return "utf-8"  # what httpx's (slower, email-module) parse would say
    name = response.charset_encoding or "utf-8"
    try:
        codecs.getincrementaldecoder(name)
    except LookupError:
        return "utf-8"
    return name


# ---------------------------------------------------------------------------------------------
# the client


@dataclass
class _Header:
    name: str
    value: str  # as the guest wrote it, placeholders unsubstituted
    carries_secret: bool


class GuardedClient:
    """Performs a plugin's HTTP requests under its egress policy, limits and secrets.

    Limits are per client (make one per plugin call): `max_requests` counts every attempt,
    redirect hops included; `max_response_bytes` caps the decoded body bytes of all responses
    together. Pass `transports` to share connection pools across clients; otherwise the client
    owns its own and closes it in `aclose`.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        secrets: Mapping[str, Secret],
        *,
        max_response_bytes: int = 16 * 1024 * 1024,
        max_requests: int | None = None,
        max_redirects: int = 5,
        timeout: float = 60.0,
        resolver: Resolver | None = None,
        transports: TransportPool | None = None,
        secret_origins: Mapping[str, EgressPolicy] | None = None,
    ) -> None:
        self._policy = policy
        self._secrets = dict(secrets)
        keep_out_of_logs(secret.reveal() for secret in self._secrets.values())
        self._secret_origins = dict(secret_origins or {})
        self._scrubber = scrubber_for(tuple(s.reveal() for s in self._secrets.values()))
        self.max_response_bytes = max_response_bytes
        self.max_requests = max_requests
        self.max_redirects = max_redirects
        self.timeout = timeout
        self._resolver: Resolver = resolver or _system_resolve
        self._owns_transports = transports is None
        self._transports = transports or TransportPool()
        self._open: set[_Body] = set()
        self._closed = False
        self.requests_made = 0
        self.bytes_received = 0

    @property
    def policy(self) -> EgressPolicy:
        return self._policy

    def __repr__(self) -> str:
        return (
            f"GuardedClient({self._policy!r}, secrets={sorted(self._secrets)!r}, "
            f"requests_made={self.requests_made})"
        )

    async def aclose(self) -> None:
        """Close every response still open, then the transports if this client owns them."""
        self._closed = True
        for body in list(self._open):
            await body.aclose()
        if self._owns_transports:
            await self._transports.aclose()

    async def __aenter__(self) -> GuardedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the one entry point -------------------------------------------------------------------

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: str | None
    ) -> GuardedResponse:
        """Perform one request (following redirects) and return its response, body unread."""
        if self._closed:
            raise self._error("other", "the plugin's HTTP client is closed")
        method = self._check_method(method)
        self._refuse_placeholders(url, body)
        template = self._check_headers(headers)
        content = body.encode("utf-8") if body is not None else None

        current_url = url
        first_origin: tuple[str, str, int] | None = None
        redirects = 0
        while True:
            if isinstance(current_url, str) and len(current_url) > REQUEST_URL_CHARS:
                raise self._error(
                    "invalid-request", f"the URL is longer than {REQUEST_URL_CHARS:,} characters"
                )
            self._count_request()
            decision = self._policy.check(current_url)
            if not decision.allowed or decision.target is None or decision.origin is None:
                raise self._denied(decision, redirected_from=first_origin)
            target, origin = decision.target, decision.origin
            here = (target.scheme, target.host, target.port)
            if first_origin is None:
                first_origin = here
            elif here != first_origin:
                template = [
                    h
                    for h in template
                    if not h.carries_secret and h.name.lower() not in _CREDENTIAL_HEADERS
                ]
            self._check_secret_origins(template, target)
            addresses = await self._resolve(target, origin)
            response = await self._send_once(method, target, addresses, template, content)

            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                return await self._wrap(response)
            await response.aclose()
            if redirects >= self.max_redirects:
                raise self._error(
                    "limit", f"stopped after {self.max_redirects} redirects (the host's limit)"
                )
            redirects += 1
            current_url = urljoin(target.url, location)
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method, content = "GET", None
                template = [h for h in template if h.name.lower() not in _BODY_HEADERS]

    # -- checks before anything goes out ---------------------------------------------------------

    def _check_method(self, method: str) -> str:
        upper = method.upper() if isinstance(method, str) else ""
        if upper not in _METHODS:
            raise self._error(
                "invalid-request",
                f"HTTP method {method!r} is not allowed (use one of {', '.join(sorted(_METHODS))})",
            )
        return upper

    def _refuse_placeholders(self, url: str, body: str | None) -> None:
        if isinstance(url, str) and (
            SECRET_PLACEHOLDER.search(url) or SECRET_PLACEHOLDER.search(unquote(url))
        ):
            raise self._error(
                "denied",
                "a secret placeholder may only appear in a header value, never in the URL",
            )
        if body is not None and SECRET_PLACEHOLDER.search(body):
            raise self._error(
                "denied",
                "a secret placeholder may only appear in a header value, never in the body",
            )

    def _check_headers(self, headers: list[tuple[str, str]]) -> list[_Header]:
        if len(headers) > REQUEST_HEADERS:
            raise self._error(
                "invalid-request",
                f"a request may carry at most {REQUEST_HEADERS} headers ({len(headers)} given)",
            )
        checked: list[_Header] = []
        size = 0
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise self._error("invalid-request", "header names and values must be strings")
            size += len(name) + len(value)
            if size > REQUEST_HEADER_BYTES:
                raise self._error(
                    "invalid-request",
                    f"a request's headers may be at most {REQUEST_HEADER_BYTES:,} characters",
                )
            if not _TOKEN.fullmatch(name):
                if SECRET_PLACEHOLDER.search(name):
                    raise self._error(
                        "denied", "a secret placeholder may only appear in a header value"
                    )
                raise self._error("invalid-request", f"{name!r} is not a valid header name")
            lower = name.lower()
            if lower == "host":
                raise self._error(
                    "denied",
                    "a plugin may not set the Host header; the host sets it from the URL",
                )
            if lower in _HOP_BY_HOP:
                raise self._error(
                    "invalid-request",
                    f"a plugin may not set the {name} header; the host manages it",
                )
            if _BAD_VALUE_CHARS.search(value):
                raise self._error(
                    "invalid-request", f"the value of header {name} contains control characters"
                )
            names = SECRET_PLACEHOLDER.findall(value)
            for secret_name in names:
                self._check_secret(secret_name)
            checked.append(_Header(name, value, bool(names)))
        return checked

    def _check_secret(self, name: str) -> None:
        secret = self._secrets.get(name)
        if secret is None:
            raise self._error(
                "denied",
                f"the request uses secret {name!r}, which is not declared in the manifest "
                "or has no value configured",
            )
        value = secret.reveal()
        if len(value) < MIN_SECRET_LENGTH:
            raise self._error(
                "invalid-request",
                f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters, too short to "
                "keep out of responses; it was not sent",
            )
        if _BAD_VALUE_CHARS.search(value):
            raise self._error(
                "invalid-request", f"secret {name!r} contains characters not allowed in a header"
            )

    def _check_secret_origins(self, headers: list[_Header], target: RequestTarget) -> None:
        """A secret bound to origins in the manifest goes to those origins only."""
        for header in headers:
            if not header.carries_secret:
                continue
            for name in SECRET_PLACEHOLDER.findall(header.value):
                bound = self._secret_origins.get(name)
                if bound is not None and not bound.check_target(target).allowed:
                    shown = ", ".join(str(o) for o in bound.origins)
                    raise self._error(
                        "denied",
                        f"secret {name!r} may only be sent to {shown} (secrets.{name}.origins in "
                        f"the manifest), not to {target.origin}",
                    )

    def _count_request(self) -> None:
        if self.max_requests is not None and self.requests_made >= self.max_requests:
            raise self._error(
                "limit",
                f"the plugin may make at most {self.max_requests} HTTP requests per call",
            )
        self.requests_made += 1

    def _budget(self) -> int:
        return self.max_response_bytes - self.bytes_received

    def _account(self, size: int) -> None:
        self.bytes_received += size
        if self.bytes_received > self.max_response_bytes:
            raise self._error(
                "too-large",
                f"the responses exceeded the limit of {self.max_response_bytes} bytes",
            )

    # -- DNS and the address check -------------------------------------------------------------

    async def _resolve(self, target: RequestTarget, origin: AllowedOrigin) -> list[IPAddress]:
        if target.ip is not None:
            addresses: list[IPAddress] = [target.ip]
        else:
            failure: HttpError | None = None
            raw: list[str] = []
            try:
                with anyio.fail_after(self.timeout):
                    raw = list(await self._resolver(target.host, target.port))
            except TimeoutError:
                failure = self._error("timeout", f"resolving {target.host} timed out")
            except OSError:
                failure = self._error("connect", f"could not resolve {target.host}")
            if failure is not None:
                raise failure
            addresses = []
            for text in raw:
                try:
                    address = ipaddress.ip_address(text)
                except ValueError:
                    raise self._error(
                        "connect", f"resolving {target.host} gave something that is not an address"
                    ) from None
                if address not in addresses:
                    addresses.append(address)
            if not addresses:
                raise self._error("connect", f"{target.host} has no addresses")
        for address in addresses:
            if not address_allowed(origin, address):
                raise self._error("denied", _address_denial(target, origin, address))
        return addresses

    # -- the wire --------------------------------------------------------------------------------

    async def _send_once(
        self,
        method: str,
        target: RequestTarget,
        addresses: list[IPAddress],
        template: list[_Header],
        content: bytes | None,
    ) -> httpx.Response:
        wire: list[tuple[bytes, bytes]] = [
            (b"Host", target.host_header.encode("ascii")),
            (b"Accept-Encoding", b"gzip, deflate"),  # only what `_Inflater` decodes, bounded
        ]
        for header in template:
            if header.name.lower() == "accept-encoding":
                continue
            value = header.value
            if header.carries_secret:
                value = SECRET_PLACEHOLDER.sub(lambda m: self._secrets[m.group(1)].reveal(), value)
            wire.append((header.name.encode("ascii"), value.encode("utf-8")))
        extensions: dict[str, object] = {
            "timeout": {
                "connect": self.timeout,
                "read": self.timeout,
                "write": self.timeout,
                "pool": self.timeout,
            }
        }
        if target.scheme == "https" and target.ip is None:
            extensions["sni_hostname"] = target.host
        transport = self._transports.get(target)
        raw_path = quote(target.target, safe="!$%&'()*+,/:;=?@[]~").encode("ascii")
        for i, address in enumerate(addresses):
            request = httpx.Request(
                method,
                httpx.URL(
                    scheme=target.scheme, host=str(address), port=target.port, raw_path=raw_path
                ),
                headers=wire,
                content=content,
                extensions=extensions,
            )
            error: HttpError | None = None
            try:
                response = await transport.handle_async_request(request)
            except httpx.ConnectError as exc:
                if i + 1 < len(addresses):
                    continue  # every address was checked; try the next one
                error = self._mapped(exc, f"connecting to {target.origin}")
            except httpx.HTTPError as exc:
                error = self._mapped(exc, f"requesting {target.origin}")
            if error is not None:
                raise error
            response.request = request
            return response
        raise self._error("connect", f"could not connect to {target.origin}")  # pragma: no cover

    async def _wrap(self, response: httpx.Response) -> GuardedResponse:
        try:
            inflater = _Inflater(response.headers.get("content-encoding", ""))
        except ValueError:
            await response.aclose()
            raise self._error(
                "other", "the response uses a content-encoding the host does not decode"
            ) from None
        headers = [
            (self._scrubber.scrub(name), self._scrubber.scrub(value))
            for name, value in response.headers.multi_items()
            if name.lower() not in _WIRE_FRAMING
        ]
        body = _Body(self, response, self._scrubber, inflater)
        self._open.add(body)
        return GuardedResponse(status=response.status_code, headers=headers, _body=body)

    # -- errors ---------------------------------------------------------------------------------

    def _error(self, kind: HttpErrorKind, message: str) -> HttpError:
        return HttpError(kind, self._scrubber.scrub(message))

    def _denied(
        self, decision: Decision, *, redirected_from: tuple[str, str, int] | None
    ) -> HttpError:
        message = decision.reason
        if redirected_from is not None:
            message = f"a redirect was refused: {message}"
        if decision.suggestion:
            message += f". To allow it, the manifest needs: {decision.suggestion}"
        return self._error("denied", message)

    def _mapped(self, exc: httpx.HTTPError, doing: str) -> HttpError:
        """An httpx failure as an `HttpError`; only the exception's class name is kept."""
        name = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return self._error("timeout", f"timed out {doing} ({name})")
        if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
            return self._error("connect", f"the connection failed {doing} ({name})")
        if isinstance(exc, httpx.LocalProtocolError):
            return self._error("invalid-request", f"the request could not be sent ({name})")
        if isinstance(exc, httpx.DecodingError):
            return self._error("other", f"the response could not be decoded ({name})")
        return self._error("other", f"HTTP failure {doing} ({name})")


def _address_kind(address: IPAddress) -> str:
    for attr in ("is_loopback", "is_link_local", "is_private", "is_multicast", "is_unspecified"):
        if getattr(address, attr):
            return attr[3:].replace("_", "-")
    return "special-purpose"


def _address_denial(target: RequestTarget, origin: AllowedOrigin, address: IPAddress) -> str:
    shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    port = "" if target.port == {"http": 80, "https": 443}[target.scheme] else f":{target.port}"
    if origin.host == "localhost" and not origin.wildcard:
        return f"localhost resolved to {shown}, which is not a loopback address"
    return (
        f"{target.host} resolved to {shown}, a {_address_kind(address)} address; such an "
        f"address may only be reached through a URL that names it and an origin that "
        f'allows it: network.allow = ["{target.scheme}://{shown}{port}"]'
    )
