"""Streaming throughput per wire protocol: events parsed per second through openkoi.

Every module in bench/protocols/ describes one protocol; each gets its own loopback server
process answering with a stream of N text events, and is read R times (median reported).

Run: uv run python bench/bench_streaming.py [--events 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time
from types import ModuleType

import anyio
import protocols
from _harness import ServerProcess, median, row


def discover() -> list[ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(protocols.__path__))
    found = [importlib.import_module(f"protocols.{name}") for name in names]
    return sorted(found, key=lambda m: (m.__name__ != "protocols.openai", m.__name__))


async def measure(module: ModuleType, url: str, events: int, rounds: int) -> float:
    provider = module.make_provider(url)
    request = module.make_request()

    async def once() -> int:
        count = 0
        async for chunk in provider.chat_stream(request):
            if chunk.delta:
                count += 1
        return count

    got = await once()
    if got != events:
        raise SystemExit(f"{module.NAME}: expected {events} text events, parsed {got}")
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        await once()
        rates.append(events / (time.perf_counter() - start))
    await provider.aclose()
    return median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"streaming {args.events} text events per response, median of {args.rounds} rounds")
    baseline = None
    for module in discover():
        with ServerProcess(b"{}", module.stream_body(args.events), module.CONTENT_TYPE) as server:
            rate = anyio.run(measure, module, server.url, args.events, args.rounds)
        baseline = baseline or rate
        row(module.NAME, f"{rate:,.0f} events/s", f"{rate / baseline:.2f}x of openai-compatible")


if __name__ == "__main__":
    main()
