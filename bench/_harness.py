"""Shared bench plumbing: a loopback server in its own process, timing helpers, output."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

STREAM_WRITE_SIZE = 16 * 1024  # the server writes streams in 16 KiB pieces, like a busy real server


def _serve_forever(json_body: bytes, stream_body: bytes, stream_type: str, port_out: Any) -> None:
    from _server import LoopbackServer, Recorded, Reply, split_bytes

    pieces = split_bytes(stream_body, STREAM_WRITE_SIZE)

    def handler(request: Recorded) -> Reply:
        wants_stream = b'"stream": true' in request.body or b"stream" in request.path.encode()
        wants_stream = (
            wants_stream or "alt=sse" in request.target or b'"stream":true' in request.body
        )
        if wants_stream and stream_body:
            return Reply(chunks=list(pieces), headers={"content-type": stream_type})
        return Reply(body=json_body, headers={"content-type": "application/json"})

    server = LoopbackServer(handler).start()
    port_out.send(server.port)
    while True:
        time.sleep(3600)


class ServerProcess:
    """A loopback HTTP server in a child process, so its work doesn't share our GIL."""

    def __init__(
        self,
        json_body: bytes = b"{}",
        stream_body: bytes = b"",
        stream_type: str = "text/event-stream",
    ) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve_forever, args=(json_body, stream_body, stream_type, child), daemon=True
        )
        self._process.start()
        self.pid: int = self._process.pid or 0
        self.port: int = parent.recv()
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system, all its threads)."""
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux `/proc`; 0 elsewhere)."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bare_sse_deltas(
    client: Any,
    content: str,
    headers: dict[str, str] | None = None,
    on_delta: Callable[[], None] | None = None,
) -> int:
    """The floor a Python client can reach: POST an OpenAI-style stream with bare httpx-sse and
    `json.loads`, and count the events that carry text."""
    import json

    from httpx_sse import aconnect_sse

    count = 0
    headers = headers or {"content-type": "application/json"}
    async with aconnect_sse(
        client, "POST", "/chat/completions", content=content, headers=headers
    ) as source:
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            data = json.loads(event.data)
            if data["choices"] and data["choices"][0]["delta"].get("content"):
                if on_delta is not None:
                    on_delta()
                count += 1
    return count


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<46} {value:>16}  {note}")
