"""Many streams at once through one provider: openkoi vs a bare httpx client with the same pool.

For each level of concurrency, N streams start together against a loopback server in its own
process; each stream is E SSE events. Reported per client, median over interleaved rounds:
events/s (all events of the round over its wall time) and time to first chunk (p50, p99 over
every stream of every round). The bare client is httpx with a 1000-connection pool, httpx-sse
and `json.loads` per event: what openkoi does minus its types, mapping and deadlines.

Run: uv run python bench/bench_concurrency.py [--levels 500,1000] [--events 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
import httpx
from _harness import ServerProcess, bare_sse_deltas, row
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, Message
from openkoi_providers.openai_compat import OpenAICompatibleProvider


def sse_body(events: int) -> bytes:
    parts = [
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]})
        + "\n\n"
        for i in range(events)
    ]
    parts.append('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Stream = Callable[[Callable[[], None]], Awaitable[int]]


async def one_round(streams: int, stream: Stream) -> tuple[float, list[float]]:
    """(events/s, time to first chunk of each stream) for `streams` streams started at once."""
    firsts: list[float] = []
    counts: list[int] = []
    start = time.perf_counter()

    async def run() -> None:
        launched = time.perf_counter()
        marked = False

        def first() -> None:
            nonlocal marked
            if not marked:
                marked = True
                firsts.append(time.perf_counter() - launched)

        counts.append(await stream(first))

    async with anyio.create_task_group() as group:
        for _ in range(streams):
            group.start_soon(run)
    wall = time.perf_counter() - start
    if len(counts) != streams:
        raise SystemExit(f"only {len(counts)} of {streams} streams completed")
    return sum(counts) / wall, firsts


async def measure(url: str, levels: list[int], events: int, rounds: int) -> None:
    provider = OpenAICompatibleProvider(
        ProviderSettings(id="openai", name="OpenAI", base_url=url, api_key=Secret("sk-bench"))
    )
    request = ChatRequest(model="m", messages=[Message.user("stream")])
    body = json.dumps(provider._body(request, stream=True))
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    bare = httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60.0, pool=None))

    async def bare_stream(first: Callable[[], None]) -> int:
        return await bare_sse_deltas(bare, body, on_delta=first)

    async def koi_stream(first: Callable[[], None]) -> int:
        count = 0
        async for chunk in provider.chat_stream(request):
            if chunk.delta:
                first()
                count += 1
        return count

    clients: dict[str, Stream] = {"bare httpx": bare_stream, "openkoi": koi_stream}
    try:
        for streams in levels:
            await one_round(min(streams, 50), bare_stream)  # warm both pools
            await one_round(min(streams, 50), koi_stream)
            rates: dict[str, list[float]] = {name: [] for name in clients}
            firsts: dict[str, list[float]] = {name: [] for name in clients}
            for _ in range(rounds):
                for name, stream in clients.items():
                    rate, first = await one_round(streams, stream)
                    rates[name].append(rate)
                    firsts[name].extend(first)
            print(f"{streams} concurrent streams of {events} events, {rounds} interleaved rounds")
            for name in clients:
                row(f"{name}: events/s (median)", f"{statistics.median(rates[name]):,.0f}")
                row(
                    f"{name}: first chunk p50 / p99",
                    f"{percentile(firsts[name], 0.5) * 1000:,.0f} / "
                    f"{percentile(firsts[name], 0.99) * 1000:,.0f} ms",
                )
            ratio = statistics.median(rates["openkoi"]) / statistics.median(rates["bare httpx"])
            row("events/s ratio (openkoi / bare)", f"{ratio:.3f}", "target >= 0.8")
            p99 = percentile(firsts["openkoi"], 0.99) / percentile(firsts["bare httpx"], 0.99)
            row("first chunk p99 ratio (openkoi / bare)", f"{p99:.2f}x", "target <= 1.5x")
    finally:
        await bare.aclose()
        await provider.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="500,1000")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    print(f"openkoi concurrency benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    with ServerProcess(b"{}", sse_body(args.events)) as server:
        anyio.run(measure, server.url, levels, args.events, args.rounds)


if __name__ == "__main__":
    main()
