"""A real HTTP/1.1 server on 127.0.0.1 for tests: real sockets, real chunk boundaries.

A test gives a handler that receives each `Recorded` request and returns a `Reply`. A reply with
`chunks` is sent with chunked transfer encoding, one socket write (and drain) per chunk, so SSE
and NDJSON parsers see the boundaries the test chose. `cut_after` drops the connection part-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Recorded:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes | str] | None = None  # any iterable: a generator streams forever
    chunk_delay: float = 0.0
    delay: float = 0.0
    cut_after: int | None = None  # with chunks: reset the connection after this many chunks
    cut_cleanly: bool = False  # ...or close it cleanly (FIN) instead of a reset
    close: bool = False  # close the connection without any response
    drip: float = 0.0  # send the whole response (head included) one byte per this many seconds

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(
            status=status,
            body=json.dumps(data),
            headers={"content-type": "application/json", **(headers or {})},
        )

    @classmethod
    def sse(cls, events: Iterable[str], status: int = 200, **kwargs: Any) -> Reply:
        """`events` are already-framed SSE texts (e.g. 'data: {...}\\n\\n'), one chunk each."""
        return cls(
            status=status,
            chunks=events if isinstance(events, Iterator) else list(events),
            headers={"content-type": "text/event-stream", **kwargs.pop("headers", {})},
            **kwargs,
        )


Handler = Callable[[Recorded], "Reply | Awaitable[Reply]"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",
}


def split_bytes(data: bytes, size: int) -> list[bytes]:
    """Cut `data` into pieces of `size` bytes: boundaries land mid-line and mid-UTF-8."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


class LoopbackServer:
    """`tls`: an SSL context to serve HTTPS with (its URL is then https://)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.requests: list[Recorded] = []
        self.connections = 0
        self.errors: list[Exception] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.sleep(0)
            if self._server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 1)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                try:
                    reply = self.handler(request)
                    if asyncio.iscoroutine(reply) or isinstance(reply, Awaitable):
                        reply = await reply
                except Exception as exc:  # a failing handler assertion shows up as a 599 reply
                    self.errors.append(exc)
                    reply = Reply(status=599, body=f"handler failed: {exc!r}")
                assert isinstance(reply, Reply)
                keep_open = await self._write_reply(writer, reply)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the client went away, or `stop()` ended a reply still in progress
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _read_request(self, reader: asyncio.StreamReader) -> Recorded | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readline()).strip(), 16)
                if size == 0:
                    await reader.readline()
                    break
                parts.append(await reader.readexactly(size))
                await reader.readline()
            body = b"".join(parts)
        return Recorded(method=method, target=target, headers=headers, body=body)

    async def _write_reply(self, writer: asyncio.StreamWriter, reply: Reply) -> bool:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.close:
            writer.transport.abort()
            return False
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        headers = {k.lower(): v for k, v in reply.headers.items()}
        if reply.chunks is None:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            headers["content-length"] = str(len(body))
        else:
            headers["transfer-encoding"] = "chunked"
        head += [f"{k}: {v}" for k, v in headers.items()]
        head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if reply.drip:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            for i in range(len(head_bytes + body)):
                writer.write((head_bytes + body)[i : i + 1])
                await writer.drain()
                await asyncio.sleep(reply.drip)
            return True
        writer.write(head_bytes)
        if reply.chunks is None:
            writer.write(body)
            await writer.drain()
            return True
        for i, chunk in enumerate(reply.chunks):
            if reply.cut_after is not None and i >= reply.cut_after:
                await writer.drain()
                if reply.cut_cleanly:
                    writer.close()
                else:
                    writer.transport.abort()
                return False
            data = chunk.encode() if isinstance(chunk, str) else chunk
            if data:
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
