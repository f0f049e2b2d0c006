"""httpx transports whose connection pool checks idle connections cheaply.

Each time a request is assigned to a connection or a response ends, httpcore's pool asks every
idle connection whether its socket has become readable (the server closed it, so it must not be
reused). Its anyio stream answers through anyio's typed attributes, which build a mapping of
every socket attribute and call `getpeername` for each question: about 20 us, of which the
`poll` that answers it is 2 us. With a few idle connections that is tens of microseconds on
every call, on the event loop's thread; with a plugin pool of 8 under 100 streams it was a fifth
of that thread's time (`bench/README.md`).

`http_transport` builds httpx's transport as usual and wraps its pool's network backend so that
each stream finds its socket once and polls it directly. The answer is the same question asked
of the same socket; everything else (reads, writes, TLS, timeouts, errors) is the wrapped
stream's own. A stream whose socket is not a plain `socket.socket` (another async backend's)
is asked as before.
"""

from __future__ import annotations

import asyncio.trsock
import select
import socket
import ssl
from typing import Any, Protocol

import httpcore
import httpx

_UNKNOWN: Any = object()


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def socket_readable(sock: _HasFileno) -> bool:
    """True when reading `sock` would not block: data, or the end a closed peer leaves. A socket
    already closed counts as readable, as httpcore counts it (its next read ends it)."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


# What an asyncio stream's "socket" is (asyncio's wrapper of it), or a plain socket.
_SOCKETS = (socket.socket, asyncio.trsock.TransportSocket)


class _Stream(httpcore.AsyncNetworkStream):
    """A network stream that answers `is_readable` from its own socket, found once."""

    __slots__ = ("_inner", "_socket")

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: Any = _UNKNOWN

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            sock = self._socket
            if sock is _UNKNOWN:
                sock = self._socket = self._inner.get_extra_info("socket")
            if isinstance(sock, _SOCKETS):
                return socket_readable(sock)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """The pool's own backend, its streams wrapped in `_Stream`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def quicken(transport: httpx.AsyncBaseTransport | None) -> None:
    """Give `transport`'s pool the quick idle check, when it is httpx's own transport."""
    if isinstance(transport, httpx.AsyncHTTPTransport):
        pool = transport._pool
        if not isinstance(pool._network_backend, _Backend):
            pool._network_backend = _Backend(pool._network_backend)


def quicken_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """`client` with the quick idle check in the transports httpx made for it: the direct one
    and each proxy's (from the client's `proxy` or the environment)."""
    quicken(client._transport)
    for transport in client._mounts.values():
        quicken(transport)
    return client


def http_transport(**options: Any) -> httpx.AsyncHTTPTransport:
    """`httpx.AsyncHTTPTransport(**options)` with the quick idle check (see module doc)."""
    transport = httpx.AsyncHTTPTransport(**options)
    quicken(transport)
    return transport
