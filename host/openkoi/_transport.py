"""The HTTP client of a built-in provider: its connection pool, proxy and trusted CAs.

- Pool: sized for real concurrency (`max_connections`, default 1000) with no pool timeout of
  its own: a call waiting for a free slot is bounded by its total deadline, and that wait is
  never blamed on the provider (see `_deadline`).
- Proxy: `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` as httpx reads them (curl's
  rules), unless the provider names its own `proxy` (which then carries all its traffic);
  `proxy = ""` means direct, whatever the environment says.
- CAs: the provider's `ca_bundle`, else `SSL_CERT_FILE` or `REQUESTS_CA_BUNDLE`, plus
  `SSL_CERT_DIR`; with none of them, certifi's bundle. A bundle replaces the default roots, as
  curl's `--cacert` does. A direct client whose base URL is plain `http://` (a local server, a
  loopback gateway) loads them when its first `https://` request comes, not before: reading
  certifi's bundle is a few tens of milliseconds of a command's start-up.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Mapping
from urllib.request import getproxies

import httpx

from openkoi._errors import ConfigError
from openkoi._timeouts import DEFAULT_TIMEOUTS, Deadlines

DEFAULT_MAX_CONNECTIONS = 1000
# Idle connections kept for the next call (a finished stream's included: `_body.finish`), each
# saving a TCP connection and TLS handshake. Few, deliberately: httpcore's pool checks every
# idle connection (two system calls) each time a request starts or ends, so with 200 kept, a
# burst of 500 streams spent most of its time there (0.30 of bare httpx against 0.94 keeping
# none); with 4, 0.90-1.30 (`bench/bench_concurrency.py`). Per provider: `idle_connections`.
DEFAULT_IDLE_CONNECTIONS = 4
KEEPALIVE_EXPIRY = 30.0


@functools.lru_cache(maxsize=32)
def _load_context(cafile: str | None, capath: str | None, source: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        what = cafile or capath
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"cannot load the CA certificates in {what} (from {source}): {reason}"
        ) from None


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The SSL context that verifies servers with the CAs the user chose (see module doc)."""
    if ca_bundle:
        return _load_context(os.path.expanduser(ca_bundle), None, "ca_bundle")
    env = os.environ
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if env.get(var, "").strip():
            cafile: str | None = env[var].strip()
            source = var
            break
    else:
        cafile, source = None, ""
    capath = env.get("SSL_CERT_DIR", "").strip() or None
    if capath:
        source = f"{source} and SSL_CERT_DIR" if source else "SSL_CERT_DIR"
    if cafile is None and capath is None:
        import certifi

        return _load_context(certifi.where(), None, "certifi")
    return _load_context(cafile, capath, source)


@functools.lru_cache(maxsize=64)
def httpx_timeout(deadlines: Deadlines) -> httpx.Timeout:
    """httpx's own timeouts for a request: connect is httpx's; reads and writes are bounded by
    the call's clock, and by the total deadline as a backstop for code that bypasses it."""
    backstop = deadlines.total + 1.0
    return httpx.Timeout(connect=deadlines.connect, read=backstop, write=backstop, pool=None)


class _TLSWhenNeeded(httpx.AsyncBaseTransport):
    """`http://` requests go to a transport without CAs; any other to one with them, built (its
    CAs loaded, with the same errors) when the first such request comes."""

    def __init__(
        self, plain: httpx.AsyncHTTPTransport, build: Callable[[], httpx.AsyncHTTPTransport]
    ) -> None:
        self._plain = plain
        self._build = build
        self._tls: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return await self._plain.handle_async_request(request)
        if self._tls is None:
            self._tls = self._build()
        return await self._tls.handle_async_request(request)

    async def aclose(self) -> None:
        try:
            await self._plain.aclose()
        finally:
            if self._tls is not None:
                await self._tls.aclose()


def _direct_plain_http(base_url: str, proxy: str | None) -> bool:
    """True when the client's base URL is `http://` and no proxy is in the way (a proxy's
    transport is httpx's own, built with the CAs as for any other client)."""
    if not base_url.lower().startswith("http://") or proxy:
        return False
    found = getproxies()  # what httpx reads from the environment
    return proxy == "" or not any(found.get(scheme) for scheme in ("http", "https", "all"))


def new_client(
    base_url: str,
    headers: Mapping[str, str] | None = None,
    *,
    deadlines: Deadlines = DEFAULT_TIMEOUTS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_connections: int = DEFAULT_IDLE_CONNECTIONS,
    proxy: str | None = None,
    ca_bundle: str | None = None,
) -> httpx.AsyncClient:
    """One client per provider: pooled connections, no retries underneath the fallback chain."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(max_connections, idle_connections),
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    from openkoi._idle_check import http_transport, quicken_client

    trust_env = proxy != ""
    transport: httpx.AsyncBaseTransport | None = None
    try:
        if _direct_plain_http(base_url, proxy):
            # Handed only http:// requests, the plain transport's TLS context is never used:
            # it is one that trusts no certificate, so that it could not weaken anything.
            verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            transport = _TLSWhenNeeded(
                http_transport(verify=verify, limits=limits, trust_env=trust_env),
                lambda: http_transport(
                    verify=tls_context(ca_bundle), limits=limits, trust_env=trust_env
                ),
            )
        else:
            verify = tls_context(ca_bundle)
        client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=dict(headers or {}),
            timeout=httpx_timeout(deadlines),
            limits=limits,
            verify=verify,
            transport=transport,
            proxy=proxy or None,
            trust_env=trust_env,
            follow_redirects=False,
        )
    except (ImportError, ValueError) as exc:
        # Never the exception's text: a proxy URL may carry a password.
        where = "the provider's proxy" if proxy else "the proxy in the environment"
        why = (
            "a SOCKS proxy needs the socksio package (pip install 'httpx[socks]')"
            if isinstance(exc, ImportError)
            else "its URL is not an http://, https:// or socks5:// proxy URL"
        )
        raise ConfigError(f"cannot use {where}: {why}") from None
    return quicken_client(client)
