"""The HTTP client of a built-in provider: its connection pool, proxy and trusted CAs.

- Pool: sized for real concurrency (`max_connections`, default 1000) with no pool timeout of
  its own: a call waiting for a free slot is bounded by its total deadline, and that wait is
  never blamed on the provider (see `_deadline`).
- Proxy: `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` as httpx reads them (curl's
  rules), unless the provider names its own `proxy` (which then carries all its traffic);
  `proxy = ""` means direct, whatever the environment says.
- CAs: the provider's `ca_bundle`, else `SSL_CERT_FILE` or `REQUESTS_CA_BUNDLE`, plus
  `SSL_CERT_DIR`; with none of them, certifi's bundle. A bundle replaces the default roots, as
  curl's `--cacert` does.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping

import httpx

from openkoi._errors import ConfigError
from openkoi._timeouts import DEFAULT_TIMEOUTS, Deadlines

DEFAULT_MAX_CONNECTIONS = 1000
# Connections kept open between calls (each costs a socket, and a TLS handshake to replace).
MAX_KEEPALIVE = 200
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


def new_client(
    base_url: str,
    headers: Mapping[str, str] | None = None,
    *,
    deadlines: Deadlines = DEFAULT_TIMEOUTS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    proxy: str | None = None,
    ca_bundle: str | None = None,
) -> httpx.AsyncClient:
    """One client per provider: pooled connections, no retries underneath the fallback chain."""
    try:
        return httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=dict(headers or {}),
            timeout=httpx_timeout(deadlines),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=min(max_connections, MAX_KEEPALIVE),
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            verify=tls_context(ca_bundle),
            proxy=proxy or None,
            trust_env=proxy != "",
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
