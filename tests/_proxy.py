"""A real HTTP proxy on 127.0.0.1 for tests: CONNECT tunnels and absolute-form forwarding.

`seen` lists the request line of every request that went through it (`CONNECT host:port` for a
tunnel, `POST http://host:port/path` for a forwarded request), so a test can prove that traffic
did, or did not, take the proxy.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from _loop_server import LoopServer


class LoopbackProxy(LoopServer):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                where = urlsplit(target)
                up_reader, up_writer = await asyncio.open_connection(where.hostname, where.port)
                up_writer.write(head)  # the server reads the path out of the absolute form
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.close()
