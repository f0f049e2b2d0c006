"""The quick idle-connection check (`openkoi._idle_check`): a connection the server closed while
it sat in the pool is never reused, one it kept open is, and every transport openkoi builds
has the check. Real sockets and a real keep-alive server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import pytest
from openkoi._idle_check import _Backend, http_transport, socket_readable
from openkoi._transport import _TLSWhenNeeded, new_client
from openkoi.plugins._egress import RequestTarget
from openkoi.plugins._guarded_http import TransportPool

pytestmark = pytest.mark.anyio


class KeepAliveServer:
    """HTTP/1.1 on 127.0.0.1 answering `ok` to every request, without `connection: close`.
    With `close_idle`, it closes each connection (a FIN) right after its response, as a server
    whose keep-alive ran out does; `closed` is set each time it has."""

    def __init__(self, close_idle: bool) -> None:
        self.close_idle = close_idle
        self.connections = 0
        self.requests = 0
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                if self.close_idle:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # a cancel at shutdown included
        await writer.wait_closed()
        self.closed.set()

    def __enter__(self) -> KeepAliveServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _provider_client(url: str) -> httpx.AsyncClient:
    return new_client(url, idle_connections=4, proxy="")


def _plugin_client(url: str) -> httpx.AsyncClient:
    port = int(url.rsplit(":", 1)[1])
    target = RequestTarget(scheme="http", host="127.0.0.1", port=port, target="/", ip=None)
    return httpx.AsyncClient(transport=TransportPool().get(target))


CLIENTS = {"provider client": _provider_client, "plugin transport": _plugin_client}


@pytest.fixture(params=sorted(CLIENTS))
def make_client(request: pytest.FixtureRequest) -> object:
    return CLIENTS[request.param]


async def _wait_closed(server: KeepAliveServer) -> None:
    for _ in range(500):
        if server.closed.is_set():
            await asyncio.sleep(0.02)  # the FIN reaches the client's socket
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never closed the connection")


async def test_a_connection_the_server_closed_while_idle_is_not_reused(make_client) -> None:  # type: ignore[no-untyped-def]
    with KeepAliveServer(close_idle=True) as server:
        async with make_client(server.url) as client:
            for _ in range(3):
                server.closed.clear()
                response = await client.get(server.url + "/")
                assert response.text == "ok"
                await _wait_closed(server)
            assert server.requests == 3
            assert server.connections == 3  # each request found its idle connection closed


async def test_an_idle_connection_the_server_kept_open_is_reused(make_client) -> None:  # type: ignore[no-untyped-def]
    with KeepAliveServer(close_idle=False) as server:
        async with make_client(server.url) as client:
            for _ in range(5):
                response = await client.post(server.url + "/", content=b"x" * 100)
                assert response.text == "ok"
                await asyncio.sleep(0.01)
            assert server.requests == 5
            assert server.connections == 1


def _backends(client: httpx.AsyncClient) -> list[object]:
    """The network backend of each connection pool under `client`'s direct transport."""
    transport = client._transport
    if isinstance(transport, _TLSWhenNeeded):  # an http:// base URL: https is built on demand
        return [transport._plain._pool._network_backend, transport._build()._pool._network_backend]
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    return [transport._pool._network_backend]


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9", "https://example.invalid"])
async def test_every_direct_transport_of_a_provider_has_the_quick_check(base_url: str) -> None:
    client = new_client(base_url, proxy="")
    try:
        backends = _backends(client)
        assert backends
        assert all(isinstance(b, _Backend) for b in backends)
    finally:
        await client.aclose()


async def test_the_plugin_transports_have_the_quick_check() -> None:
    target = RequestTarget(scheme="https", host="example.invalid", port=443, target="/", ip=None)
    pool = TransportPool()
    try:
        assert isinstance(pool.get(target)._pool._network_backend, _Backend)
    finally:
        await pool.aclose()


def test_socket_readable_answers_as_a_poll_of_the_socket() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert not socket_readable(ours)  # nothing to read yet
        theirs.sendall(b"x")
        assert socket_readable(ours)
        assert ours.recv(1) == b"x"
        assert not socket_readable(ours)
        theirs.close()
        assert socket_readable(ours)  # the peer's end: a read returns b""
        assert ours.recv(1) == b""
    finally:
        ours.close()
    assert socket_readable(ours)  # closed here: no descriptor, counted as readable


async def test_the_transport_passes_options_through() -> None:
    limits = httpx.Limits(max_connections=3, max_keepalive_connections=1)
    transport = http_transport(limits=limits, retries=0)
    try:
        assert transport._pool._max_connections == 3
        assert transport._pool._max_keepalive_connections == 1
    finally:
        await transport.aclose()
