"""Streaming throughput per wire protocol: events parsed per second through openkoi.

Every module in bench/protocols/ describes one protocol; each gets its own loopback server
process answering with a stream of N text events. All servers run at once and every round reads
one stream of each protocol in turn, so a slow moment of a noisy machine falls on all of them
alike; each protocol's figure is the median of its rounds and its ratio the median of the
per-round ratios to the OpenAI-compatible reader.

Run: uv run python bench/bench_streaming.py [--events 5000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import time
from types import ModuleType
from typing import Any

import anyio
import protocols
from _harness import ServerProcess, median, row


def discover() -> list[ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(protocols.__path__))
    found = [importlib.import_module(f"protocols.{name}") for name in names]
    return sorted(found, key=lambda m: (m.__name__ != "protocols.openai", m.__name__))


async def read_once(provider: Any, request: Any) -> int:
    count = 0
    async for chunk in provider.chat_stream(request):
        if chunk.delta:
            count += 1
    return count


async def measure(
    modules: list[ModuleType], urls: list[str], events: int, rounds: int
) -> list[list[float]]:
    """events/s of each protocol in each round, rounds interleaved."""
    providers = [module.make_provider(url) for module, url in zip(modules, urls, strict=True)]
    requests = [module.make_request() for module in modules]
    for module, provider, request in zip(modules, providers, requests, strict=True):
        got = await read_once(provider, request)  # also warms the connection
        if got != events:
            raise SystemExit(f"{module.NAME}: expected {events} text events, parsed {got}")
    rates: list[list[float]] = [[] for _ in modules]
    for _ in range(rounds):
        for i, (provider, request) in enumerate(zip(providers, requests, strict=True)):
            start = time.perf_counter()
            await read_once(provider, request)
            rates[i].append(events / (time.perf_counter() - start))
    for provider in providers:
        await provider.aclose()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(
        f"streaming {args.events} text events per response, median of {args.rounds} "
        "interleaved rounds"
    )
    modules = discover()
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                ServerProcess(b"{}", module.stream_body(args.events), module.CONTENT_TYPE)
            )
            for module in modules
        ]
        rates = anyio.run(measure, modules, [s.url for s in servers], args.events, args.rounds)
    baseline = rates[0]
    for module, rate in zip(modules, rates, strict=True):
        ratio = median([r / b for r, b in zip(rate, baseline, strict=True)])
        per_event = 1e6 / median(rate)
        target = getattr(module, "TARGET", "")
        row(
            module.NAME,
            f"{median(rate):,.0f} events/s ({per_event:.1f} us/event)",
            f"{ratio:.2f}x of openai-compatible" + (f", target {target}" if target else ""),
        )


if __name__ == "__main__":
    main()
