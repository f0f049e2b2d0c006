"""WASM plugin benchmark: load, instantiate, per-call overhead and streaming vs a native provider.

The plugin is the OpenAI-style template `openkoi plugin new` writes, built with the guest SDK;
the native baseline is the built-in OpenAI-compatible provider. Both talk to the same loopback
server (in its own process) and send the same request.

Run: uv run python bench/bench_plugins.py [--runs 300] [--events 5000] [--streams 100]
    [--pools 1,2,4,8] [--sections abcdef]
Targets: cached load <= 0.15 s; plugin chat <= 1.6x native (median); plugin streaming >= 0.6 of
native events/s; concurrent throughput that grows with the pool up to the number of cores, with
zero errors at 100 concurrent streams.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import ServerProcess, median, row
from bench_core import CHAT_RESPONSE, sse_body
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, Message

KEY = "sk-bench-0123456789"
CACHE = Path(tempfile.gettempdir()) / f"openkoi-bench-plugins-{os.getuid()}"


def build_template_plugin() -> Path:
    """The `openkoi plugin new` template, built once per change of its inputs."""
    from openkoi.cli._plugin import _TEMPLATE_MANIFEST, _TEMPLATE_PROVIDER
    from openkoi.plugins._build import build_plugin, inputs_digest
    from openkoi.plugins._manifest import host_wit_version

    values = {
        "id": "bench",
        "name": "Bench",
        "cls": "BenchProvider",
        "secret": "BENCH_API_KEY",
        "wit": host_wit_version(),
    }
    src = CACHE / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "provider.py").write_text(_TEMPLATE_PROVIDER.format(**values), encoding="utf-8")
    (src / "plugin.toml").write_text(_TEMPLATE_MANIFEST.format(**values), encoding="utf-8")
    digest = inputs_digest(src / "provider.py", src / "plugin.toml")
    out = CACHE / f"bench-{digest[:20]}.wasm"
    if not out.exists():
        print("building the template plugin (componentize-py, once)...", flush=True)
        build_plugin(src / "provider.py", src / "plugin.toml", out)
    return out


def settings(url: str, pool: int = 4) -> dict[str, Any]:
    return {
        "config": {"base_url": url},
        "network": {"extend": [url.rsplit("/", 1)[0] if url.endswith("/v1") else url]},
        "pool_size": pool,
        "limits": {"max_response_bytes": 64 * 1024 * 1024},
    }


_LOAD_SCRIPT = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from openkoi.plugins._loader import load_plugin_file
p = load_plugin_file(Path(sys.argv[1]), {})
t1 = time.perf_counter()
from openkoi.plugins._runtime import _Instance
t2 = time.perf_counter()
_Instance(p.runtime)
t3 = time.perf_counter()
print(json.dumps({"cached": p.runtime.from_cache, "load": p.runtime.load_seconds,
                  "open": t1 - t0, "instance": t3 - t2}))
"""


def measure_loads(wasm: Path) -> None:
    print("(a) loading, each in a fresh process")
    cache = Path(tempfile.mkdtemp(prefix="openkoi-bench-cwasm-"))
    env = {**os.environ, "OPENKOI_WASM_CACHE": str(cache)}

    def run() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_SCRIPT, str(wasm)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    cold = run()
    warm = [run() for _ in range(5)]
    row("cold load (compile + write cache)", f"{cold['load']:.2f} s", f"cached={cold['cached']}")
    loads = [w["load"] for w in warm]
    opens = [w["open"] for w in warm]
    row(
        "cached load (deserialize), median of 5",
        f"{median(loads):.3f} s",
        f"target <= 0.15 s; min {min(loads):.3f}",
    )
    row("cached open incl. imports and manifest read", f"{median(opens):.3f} s")
    row("first instantiation in that process", f"{median([w['instance'] for w in warm]):.3f} s")


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def measure_instances(wasm: Path) -> None:
    from openkoi.plugins._loader import load_plugin_file
    from openkoi.plugins._runtime import _Instance

    print("(b) instances")
    provider = load_plugin_file(wasm, {})
    runtime = provider.runtime
    _Instance(runtime)  # warm
    times = []
    held = []
    before = _rss_mib()
    for _ in range(10):
        start = time.perf_counter()
        held.append(_Instance(runtime))
        times.append(time.perf_counter() - start)
    after = _rss_mib()
    row("instantiation, median of 10", f"{median(times) * 1000:.1f} ms")
    row(
        "RSS per additional pooled instance",
        f"{(after - before) / len(held):.1f} MiB",
        f"({len(held)} instances)",
    )
    # Instances touch more memory once they have run a call: measure that too.
    from openkoi.plugins._call import CallContext
    from openkoi.plugins._fastcall import Budget

    for inst in held:
        ctx = CallContext("bench", None, None, {})
        inst.invoke(ctx, "info", seconds=10, kind="time", budget=Budget(1 << 30))
    row("RSS per instance after one call", f"{(_rss_mib() - before) / len(held):.1f} MiB")
    del held
    await provider.aclose()


async def measure_chat(wasm: Path, runs: int) -> None:
    from openkoi.plugins._loader import load_plugin_file
    from openkoi_providers.openai_compat import OpenAICompatibleProvider

    print(f"(c) non-streaming chat, median of {runs} interleaved calls")
    with ServerProcess(json_body=json.dumps(CHAT_RESPONSE).encode()) as server:
        url = server.url + "/v1"
        native = OpenAICompatibleProvider(
            ProviderSettings(id="openai", name="OpenAI", base_url=url, api_key=Secret(KEY))
        )
        plugin = load_plugin_file(wasm, settings(url))
        request = ChatRequest(model="gpt-bench", messages=[Message.user("Say hello")])
        for _ in range(30):
            await native.chat(request)
            await plugin.chat(request)
        n_times, p_times = [], []
        for _ in range(runs):
            start = time.perf_counter()
            a = await native.chat(request)
            n_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            b = await plugin.chat(request)
            p_times.append(time.perf_counter() - start)
        assert a.content == b.content, (a, b)
        n, p = median(n_times), median(p_times)
        row("native chat", f"{n * 1000:.3f} ms")
        row("plugin chat", f"{p * 1000:.3f} ms")
        row("plugin adds (median)", f"{(p - n) * 1000:+.3f} ms", "target <= 3 ms")
        row("ratio plugin / native", f"{p / n:.2f}x", "target <= 1.6x")
        await native.aclose()
        await plugin.aclose()


async def _drain(provider: Any, request: ChatRequest) -> int:
    count = 0
    async for chunk in provider.chat_stream(request):
        if chunk.delta:
            count += 1
    return count


async def measure_stream(wasm: Path, events: int, rounds: int = 5) -> None:
    from openkoi.plugins._loader import load_plugin_file
    from openkoi_providers.openai_compat import OpenAICompatibleProvider

    print(f"(d) streaming {events:,} SSE events, median of {rounds} rounds")
    with ServerProcess(stream_body=sse_body(events)) as server:
        url = server.url + "/v1"
        native = OpenAICompatibleProvider(
            ProviderSettings(id="openai", name="OpenAI", base_url=url, api_key=Secret(KEY))
        )
        plugin = load_plugin_file(wasm, settings(url))
        request = ChatRequest(model="gpt-bench", messages=[Message.user("Stream")])
        await _drain(native, request)
        await _drain(plugin, request)
        n_rates, p_rates = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            got = await _drain(native, request)
            n_rates.append(got / (time.perf_counter() - start))
            start = time.perf_counter()
            got_plugin = await _drain(plugin, request)
            p_rates.append(got_plugin / (time.perf_counter() - start))
            assert got == got_plugin == events, (got, got_plugin)
        n, p = median(n_rates), median(p_rates)
        row("native events/s", f"{n:,.0f}")
        row("plugin events/s", f"{p:,.0f}")
        row("ratio plugin / native", f"{p / n:.2f}", "target >= 0.6")
        await native.aclose()
        await plugin.aclose()


async def _concurrent_round(
    plugin: Any, request: ChatRequest, streams: int
) -> tuple[float, list[int], list[BaseException]]:
    errors: list[BaseException] = []

    async def one() -> int:
        try:
            return await _drain(plugin, request)
        except Exception as exc:
            errors.append(exc)
            return 0

    start = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(streams)))
    return time.perf_counter() - start, list(counts), errors


async def measure_concurrency(
    wasm: Path, streams: int, pools: list[int], events: int = 200, rounds: int = 5
) -> None:
    """Throughput of `streams` concurrent streams for each pool size, in interleaved rounds (each
    pool warmed first, so every instance has run a call before the clock starts)."""
    from openkoi.plugins._loader import load_plugin_file

    print(
        f"(e) {streams} concurrent streaming chats ({events} events each) through one plugin, "
        f"pool of {'/'.join(map(str, pools))}, median of {rounds} interleaved rounds "
        f"({os.cpu_count()} cores)"
    )
    with ServerProcess(stream_body=sse_body(events)) as server:
        url = server.url + "/v1"
        request = ChatRequest(model="gpt-bench", messages=[Message.user("Stream")])
        plugins = {pool: load_plugin_file(wasm, settings(url, pool=pool)) for pool in pools}
        for pool, plugin in plugins.items():
            await _concurrent_round(plugin, request, pool)
        rates: dict[int, list[float]] = {pool: [] for pool in pools}
        complete: dict[int, int] = dict.fromkeys(pools, 0)
        failures: dict[int, list[BaseException]] = {pool: [] for pool in pools}
        # Cores used during each round: this process (the loop and the workers) and the server.
        cores: dict[int, list[tuple[float, float]]] = {pool: [] for pool in pools}
        for _ in range(rounds):
            for pool, plugin in plugins.items():
                ours, theirs = time.process_time(), server.cpu_seconds()
                elapsed, counts, errors = await _concurrent_round(plugin, request, streams)
                cores[pool].append(
                    (
                        (time.process_time() - ours) / elapsed,
                        (server.cpu_seconds() - theirs) / elapsed,
                    )
                )
                rates[pool].append(sum(counts) / elapsed)
                complete[pool] += sum(1 for c in counts if c == events)
                failures[pool] += errors
        base = median(rates[pools[0]])
        for pool, plugin in plugins.items():
            rate = median(rates[pool])
            errors = failures[pool]
            row(
                f"pool of {pool}: throughput",
                f"{rate:,.0f} events/s",
                f"{rate / base:.2f}x pool of {pools[0]}; {complete[pool]}/{streams * rounds} "
                f"complete, {len(errors)} errors"
                + (f": {errors[0]!r}" if errors else "")
                + f", {plugin.runtime.size} instances",
            )
            row(
                f"pool of {pool}: cores busy",
                f"{median([c[0] for c in cores[pool]]):.2f} bench",
                f"+ {median([c[1] for c in cores[pool]]):.2f} server, of {os.cpu_count()}",
            )
            await plugin.aclose()


def hostile_plugin() -> Path:
    """The test suite's hostile guest (tests/plugins/hostile), built through its cache."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import _plugins

    return Path(_plugins.hostile())


async def measure_sandbox(rounds: int = 5) -> None:
    """Containment figures: host memory for a plugin at its limit, time past a deadline."""
    from openkoi._errors import PluginLimitError, ProviderError
    from openkoi.plugins._loader import load_plugin_file

    print("(f) the sandbox against a hostile guest")
    wasm = hostile_plugin()
    memory_mb = 64

    async def attack(provider: Any, name: str, text: str = "") -> str:
        try:
            answer = await provider.chat(ChatRequest(model=name, messages=[Message.user(text)]))
            return str(answer.content)
        except PluginLimitError as exc:
            return f"limit:{exc.limit}"
        except ProviderError as exc:
            return f"error:{type(exc).__name__}"

    from openkoi.plugins._runtime import release_freed_memory

    provider = load_plugin_file(wasm, {"limits": {"memory_mb": memory_mb, "timeout_ms": 1000}})
    await attack(provider, "echo", "warm")
    release_freed_memory()
    before = _rss_mib()
    outcome = await attack(provider, "memory")
    grown = _rss_mib() - before
    row(
        f"host RSS growth, guest at its {memory_mb} MiB limit",
        f"{grown:.1f} MiB",
        f"overhead {grown - memory_mb:+.1f} MiB over memory_mb ({outcome})",
    )
    roomy = load_plugin_file(wasm, {"limits": {"memory_mb": memory_mb, "timeout_ms": 60_000}})
    await attack(roomy, "echo", "warm")
    release_freed_memory()
    before = _rss_mib()
    outcome = await attack(roomy, "tools")
    row(
        "host RSS growth, 300,000 tool calls returned",
        f"{_rss_mib() - before:.1f} MiB",
        f"guest memory_mb {memory_mb} ({outcome})",
    )
    await roomy.aclose()
    for name, text in (("loop", ""), ("sleep", "30")):
        late = []
        for _ in range(rounds):
            start = time.perf_counter()
            outcome = await attack(provider, name, text)
            late.append(time.perf_counter() - start - 1.0)
        row(
            f"deadline (1 s) to error, guest in {'a busy loop' if name == 'loop' else 'a sleep'}",
            f"{median(late) * 1000:+.0f} ms",
            f"max {max(late) * 1000:+.0f} ms, target < 100 ms ({outcome})",
        )
    await provider.aclose()


async def main_async(args: argparse.Namespace, wasm: Path) -> None:
    if "b" in args.sections:
        await measure_instances(wasm)
    if "c" in args.sections:
        await measure_chat(wasm, args.runs)
    if "d" in args.sections:
        await measure_stream(wasm, args.events)
    if "e" in args.sections:
        await measure_concurrency(wasm, args.streams, args.pools)
    if "f" in args.sections:
        await measure_sandbox()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument(
        "--pools", type=lambda v: [int(p) for p in v.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--sections", default="abcdef", help="which sections to run, e.g. cde")
    args = parser.parse_args()
    os.environ.setdefault("OPENKOI_WASM_CACHE", str(CACHE / "compiled"))
    os.environ["BENCH_API_KEY"] = KEY
    wasm = build_template_plugin()
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest()[:12]
    print(f"plugin {wasm.name} ({wasm.stat().st_size / 1e6:.1f} MB, sha256 {digest})")
    if "a" in args.sections:
        measure_loads(wasm)
    asyncio.run(main_async(args, wasm))


if __name__ == "__main__":
    main()
