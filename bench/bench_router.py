"""The router's cost: `Router.chat` and `Router.chat_stream` against the provider alone and the
bare httpx floor, all against one loopback server in its own process, interleaved.

Run: uv run python bench/bench_router.py [--runs 300] [--chunks 5000] [--rounds 7]
Targets: router chat <= 1.12x the floor; router streaming >= 0.82 of the floor; every call is
one ledger row (counted after the router closes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import httpx
from _harness import ServerProcess, bare_sse_deltas, median, row
from bench_core import CHAT_RESPONSE, sse_body
from openkoi import ChatChunk, ChatRequest, Message
from openkoi._config import validate_config
from openkoi._registry import ProviderRegistry
from openkoi.routing import Router
from openkoi.usage import Ledger


def make_router(url: str) -> Router:
    config = validate_config(
        {
            "providers": {"p": {"base_url": url + "/v1", "api_key_env": "BENCH_KEY"}},
            "models": {"executor": "p/gpt-bench"},
        }
    )
    return Router.from_config(config, registry=ProviderRegistry(config))


async def interleaved(
    calls: dict[str, Callable[[], Awaitable[int]]], runs: int, warm: int
) -> dict[str, list[float]]:
    """Seconds per call of each, interleaved so drift hits all equally."""
    for _ in range(warm):
        for call in calls.values():
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    return times


async def measure(url: str, runs: int, chunks: int, rounds: int) -> int:
    router = make_router(url)
    provider, _ = router.registry.resolve("p/gpt-bench")
    request = ChatRequest(model="gpt-bench", messages=[Message.user("Say hello")], max_tokens=64)
    bare = httpx.AsyncClient(base_url=url + "/v1")
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
    body = json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]})
    stream_body = json.dumps({"model": "gpt-bench", "stream": True, "messages": []})

    async def bare_chat() -> int:
        response = await bare.post("/chat/completions", content=body, headers=headers)
        return len(json.loads(response.text)["choices"][0]["message"]["content"])

    async def provider_chat() -> int:
        return len((await provider.chat(request)).content)

    async def router_chat() -> int:
        return len((await router.chat("executor", request)).content)

    async def bare_stream() -> int:
        return await bare_sse_deltas(bare, stream_body, headers)

    async def count_text(chunks: AsyncIterator[ChatChunk]) -> int:
        """Count the chunks that carry text, as the floor counts its events (keeping every chunk
        in a list would time the garbage collector, not the stream)."""
        count = 0
        async for chunk in chunks:
            if chunk.delta:
                count += 1
        return count

    async def provider_stream() -> int:
        return await count_text(provider.chat_stream(request))

    async def router_stream() -> int:
        return await count_text(router.chat_stream("executor", request))

    chat = interleaved(
        {"bare": bare_chat, "provider": provider_chat, "router": router_chat}, runs, 30
    )
    chat_times = {k: median(v) for k, v in (await chat).items()}
    stream_times = await interleaved(
        {"bare": bare_stream, "provider": provider_stream, "router": router_stream}, rounds, 1
    )
    rates = {k: chunks / median(v) for k, v in stream_times.items()}
    await bare.aclose()
    await router.aclose()
    print(f"(a) non-streaming chat, {runs} interleaved calls each (median)")
    row("bare httpx POST + json (the floor)", f"{chat_times['bare'] * 1e6:.0f} us")
    for name in ("provider", "router"):
        ratio = chat_times[name] / chat_times["bare"]
        note = "target <= 1.12" if name == "router" else ""
        row(f"{name}.chat()", f"{chat_times[name] * 1e6:.0f} us", f"{ratio:.3f}x  {note}")
    print(f"(b) streaming {chunks} SSE chunks, {rounds} interleaved rounds each (median)")
    row("bare httpx-sse + json.loads (the floor)", f"{rates['bare']:,.0f} chunks/s")
    for name in ("provider", "router"):
        ratio = rates[name] / rates["bare"]
        note = "target >= 0.82" if name == "router" else ""
        row(f"{name}.chat_stream()", f"{rates[name]:,.0f} chunks/s", f"{ratio:.3f}  {note}")
    return 30 + runs + 1 + rounds  # the router's calls: warm-up and timed, chat and stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"openkoi router benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    with tempfile.TemporaryDirectory() as home:
        os.environ["OPENKOI_HOME"] = home
        os.environ["BENCH_KEY"] = "sk-bench"
        body = json.dumps(CHAT_RESPONSE).encode()
        with ServerProcess(body, sse_body(args.chunks)) as server:
            calls = anyio.run(measure, server.url, args.runs, args.chunks, args.rounds)
        with Ledger(Path(home) / "usage.db") as ledger:
            rows = ledger.query("SELECT COUNT(*) AS n FROM calls")[0]["n"]
        row("ledger rows after close / router calls", f"{rows} / {calls}", "must be equal")
        assert rows == calls, (rows, calls)


if __name__ == "__main__":
    main()
