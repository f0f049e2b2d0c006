"""Fallback benchmark: the cost of switching models after a 429, and ledger write throughput.

Run: uv run python bench/bench_fallback.py [--runs 300] [--rows 2000]

1. Time from the primary's 429 reaching the router to the first chunk from the fallback, against
   a direct call to the fallback through the same router (medians; both servers are loopback
   servers in their own processes, connections pooled). The difference is what a switch costs:
   one ledger row for the failed attempt, the cooldown write, and the loop.
   Target: the switch adds <= 5 ms.
2. Ledger rows written per second by 4 processes at once into one usage.db, vs 1 process.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
from _harness import median, row

ANSWER = [
    'data: {"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n',
    'data: {"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}]}\n\n',
    'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}\n\n',
    "data: [DONE]\n\n",
]


def _serve(mode: str, port_out: Any) -> None:
    from _server import LoopbackServer, Recorded, Reply

    def handler(request: Recorded) -> Reply:
        if mode == "429":
            return Reply.json(
                {"error": {"message": "slow down", "type": "rate_limit_error"}},
                429,
                {"retry-after": "0"},  # cools for 0 s, so every round tries the primary again
            )
        return Reply.sse(ANSWER)

    server = LoopbackServer(handler).start()
    port_out.send(server.port)
    while True:
        time.sleep(3600)


class Server:
    def __init__(self, mode: str) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(mode, child), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{parent.recv()}/v1"

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)


def _router(primary: str, backup: str, chain: list[str]) -> Any:
    from openkoi._config import validate_config
    from openkoi._registry import ProviderRegistry
    from openkoi.routing import Router

    config = validate_config(
        {
            "providers": {"primary": {"base_url": primary}, "backup": {"base_url": backup}},
            "models": {"executor": chain[0], "fallback": {"executor": chain[1:]}},
        }
    )
    return Router.from_config(config, registry=ProviderRegistry(config))


async def _switch(runs: int, primary: str, backup: str) -> dict[str, list[float]]:
    from openkoi._types import ChatRequest, Message

    request = ChatRequest(messages=[Message.user("hi")])
    direct = _router(primary, backup, ["backup/m2"])
    chained = _router(primary, backup, ["primary/m1", "backup/m2"])

    # Mark the moment the primary's error leaves the provider, i.e. reaches the router.
    failed_at: list[float] = []
    provider = chained.registry.get("primary")
    original = provider.chat_stream

    async def marked(req: Any) -> Any:
        try:
            async for chunk in original(req):
                yield chunk
        except Exception:
            failed_at.append(time.perf_counter())
            raise

    provider.chat_stream = marked  # type: ignore[method-assign]

    async def first_chunk(router: Any) -> float:
        stream = router.chat_stream("executor", request)
        start = time.perf_counter()
        await anext(stream)
        first = time.perf_counter()
        async for _ in stream:
            pass
        return first - start if router is direct else first - failed_at[-1]

    times: dict[str, list[float]] = {"direct": [], "switch": []}
    for _ in range(20):  # warm both pools and both SQLite files
        await first_chunk(direct)
        await first_chunk(chained)
    for _ in range(runs):  # interleaved, so drift hits both alike
        times["direct"].append(await first_chunk(direct))
        times["switch"].append(await first_chunk(chained))
    await direct.aclose()
    await chained.aclose()
    if len(failed_at) != runs + 20:
        raise SystemExit("the primary was not tried on every chained call")
    return times


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from openkoi._types import TokenUsage
    from openkoi.usage import CallRecord, Ledger

    path, rows, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    usage = TokenUsage(input_tokens=1200, output_tokens=300)
    with Ledger(path, timeout=30) as ledger:
        ledger.calls(since=time.time() + 1)  # open and migrate before the clock starts
        while not go.exists():
            time.sleep(0.001)
        start = time.perf_counter()
        for i in range(rows):
            ledger.record(CallRecord(
                provider="openai", model="gpt-5.2", role="executor", operation="stream",
                outcome="ok", started_at=time.time(), latency_ms=12.0, usage=usage,
                cost_usd=0.0063, request_id=f"r{i}",
            ))
        print(start, time.perf_counter())
    """
)


def _ledger_rate(processes: int, rows: int, folder: Path) -> float:
    path = folder / f"usage-{processes}.db"
    go = folder / f"go-{processes}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(rows), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    time.sleep(1.5)  # let every process start and open the file
    go.touch()
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"writer failed with {proc.returncode}")
        start, end = map(float, out.split())
        spans.append((start, end))
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return processes * rows / wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OPENKOI_HOME"] = str(Path(tmp) / "home")
        primary, backup = Server("429"), Server("stream")
        try:
            times = anyio.run(_switch, args.runs, primary.url, backup.url)
        finally:
            primary.stop()
            backup.stop()
        direct_ms = median(times["direct"]) * 1000
        switch_ms = median(times["switch"]) * 1000
        print(f"fallback switch, median of {args.runs} interleaved calls each")
        row("direct call to the fallback: to first chunk", f"{direct_ms:.3f} ms")
        row("429 on the primary -> first chunk of fallback", f"{switch_ms:.3f} ms")
        row("switch adds", f"{switch_ms - direct_ms:+.3f} ms", "(target <= 5 ms)")

        print(f"ledger writes, {args.rows} rows per process")
        single = _ledger_rate(1, args.rows, Path(tmp))
        four = _ledger_rate(4, args.rows, Path(tmp))
        row("1 process", f"{single:,.0f} rows/s")
        row("4 processes at once, aggregate", f"{four:,.0f} rows/s")
        row("4 processes vs 1", f"{four / single:.2f}x")


if __name__ == "__main__":
    main()
