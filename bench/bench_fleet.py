"""Fleet backends benchmark: Redis and PostgreSQL against the local SQLite files, same machine.

Run: uv run python bench/bench_fleet.py [--runs 2000] [--rows 2000]

Starts a real redis-server and a throwaway PostgreSQL cluster (as the tests do), then measures:
1. the state check a routed call makes (cooldown read + budget reserve + settle), SQLite vs
   Redis: median per call and the ratio;
2. the ledger write on the call's path (`record`), SQLite vs PostgreSQL (a local write plus the
   outbox; the send is in the background): median and ratio;
3. a routed chat end to end (loopback server in its own process) with each pair of backends;
4. aggregate ledger rows/s from 8 processes: into one usage.db, and into PostgreSQL (counted
   until the rows are in PostgreSQL, not only queued).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
from _harness import ServerProcess, median, row  # puts tests/ on sys.path

from _fleet import PostgresServer, RedisServer  # isort: skip

CHAT_JSON = (
    b'{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1}}'
)


def _record(i: int) -> Any:
    from openkoi._types import TokenUsage
    from openkoi.usage import CallRecord

    return CallRecord(
        "openai", "gpt-5.2", "executor", "chat", "ok", time.time(), 1.0,
        usage=TokenUsage(input_tokens=10, output_tokens=i % 50), request_id=f"r{i}",
    )  # fmt: skip


async def state_checks(redis_url: str, runs: int, tmp: Path) -> tuple[float, float]:
    from openkoi._errors import RateLimitedError
    from openkoi.routing import CooldownPolicy, CooldownStore, LocalState, RedisState
    from openkoi.routing._budgets import Budget

    budgets = (Budget("openai/gpt-5.2", rpm=10**9, tpm=10**12),)
    local = LocalState(CooldownStore(tmp / "cooldowns.db"))
    shared = RedisState(redis_url, timeout=1.0)
    chain = ["openai/gpt-5.2", "anthropic/claude-sonnet-4-5"]
    policy = CooldownPolicy()
    await shared.fail(
        "anthropic/claude-sonnet-4-5", RateLimitedError("x"), now=time.time(), policy=policy
    )
    times: dict[str, list[float]] = {"sqlite": [], "redis": []}
    for i in range(runs + 50):
        for name, store in (("sqlite", local), ("redis", shared)):
            start = time.perf_counter()
            await store.get(chain, now=time.time())
            admission = await store.reserve(budgets, 100, now=time.time())
            await store.settle(admission, 42)
            if i >= 50:
                times[name].append(time.perf_counter() - start)
    await local.aclose()
    await shared.aclose()
    return median(times["sqlite"]), median(times["redis"])


def ledger_writes(pg_url: str, runs: int, tmp: Path) -> tuple[float, float]:
    from openkoi.usage import Ledger, PgLedger

    plain = Ledger(tmp / "plain.db")
    shared = PgLedger(pg_url, local=Ledger(tmp / "outbox.db"), on_warning=print)
    times: dict[str, list[float]] = {"sqlite": [], "pg": []}
    for i in range(runs + 50):
        for name, ledger in (("sqlite", plain), ("pg", shared)):
            record = _record(i)
            start = time.perf_counter()
            ledger.record(record)
            if i >= 50:
                times[name].append(time.perf_counter() - start)
    plain.close()
    shared.close(timeout=30)
    return median(times["sqlite"]), median(times["pg"])


async def routed_chats(
    base_url: str, redis_url: str, pg_url: str, runs: int, tmp: Path
) -> dict[str, float]:
    import os

    from openkoi._config import validate_config
    from openkoi._registry import ProviderRegistry
    from openkoi._types import ChatRequest, Message
    from openkoi.routing import Router

    request = ChatRequest(messages=[Message.user("hi")], max_tokens=16)
    setups = {
        "sqlite + sqlite": {},
        "redis + postgresql": {"state": {"url": redis_url}, "usage": {"database": pg_url}},
    }
    routers = {}
    for name, extra in setups.items():
        os.environ["OPENKOI_HOME"] = str(tmp / name.replace(" ", ""))
        config = validate_config(
            {
                "providers": {"p": {"base_url": base_url + "/v1"}},
                "models": {"executor": "p/m"},
                "budgets": {"p/m": {"rpm": 10**9, "tpm": 10**12}},
                **extra,
            }
        )
        routers[name] = Router.from_config(config, registry=ProviderRegistry(config))
    times: dict[str, list[float]] = {name: [] for name in routers}
    for i in range(runs + 30):
        for name, router in routers.items():
            start = time.perf_counter()
            await router.chat("executor", request)
            if i >= 30:
                times[name].append(time.perf_counter() - start)
    for router in routers.values():
        await router.aclose()
    return {name: median(values) for name, values in times.items()}


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from openkoi._types import TokenUsage
    from openkoi.usage import CallRecord, Ledger, PgLedger
    kind, target, rows, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    if kind == "sqlite":
        ledger = Ledger(Path(target), timeout=30)
    else:
        ledger = PgLedger(target, local=Ledger(Path(sys.argv[5])), on_warning=print)
    while not go.exists():
        time.sleep(0.001)
    for i in range(rows):
        ledger.record(CallRecord("openai", "gpt-5.2", "executor", "chat", "ok", time.time(), 1.0,
                                 usage=TokenUsage(input_tokens=10, output_tokens=1)))
    if kind == "sqlite":
        ledger.close()
    else:
        ledger.close(timeout=120)
    """
)


def aggregate(kind: str, target: str, rows: int, tmp: Path, processes: int = 8) -> float:
    go = tmp / f"go-{kind}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                kind,
                target,
                str(rows),
                str(go),
                str(tmp / f"o{kind}{i}.db"),
            ]
        )
        for i in range(processes)
    ]
    time.sleep(2.0)  # every process imported and waiting
    start = time.perf_counter()
    go.touch()
    for proc in procs:
        proc.wait(timeout=600)
        assert proc.returncode == 0
    return processes * rows / (time.perf_counter() - start)


def pg_count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT COUNT(*) FROM calls").fetchone()
    return int(found[0]) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    redis_server = RedisServer().start()
    postgres = PostgresServer().init()
    model = ServerProcess(json_body=CHAT_JSON)
    try:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            sqlite_state, redis_state = anyio.run(state_checks, redis_server.url, args.runs, tmp)
            row("state check per call, SQLite (median)", f"{sqlite_state * 1e6:.0f} us")
            row("state check per call, Redis (median)", f"{redis_state * 1e6:.0f} us")
            row("Redis / SQLite", f"{redis_state / sqlite_state:.2f}")
            pg_url = postgres.create_database()
            sqlite_write, pg_write = ledger_writes(pg_url, args.runs, tmp)
            row("ledger record on the call path, SQLite (median)", f"{sqlite_write * 1e6:.0f} us")
            row("ledger record on the call path, PostgreSQL (median)", f"{pg_write * 1e6:.0f} us")
            row("PostgreSQL / SQLite", f"{pg_write / sqlite_write:.2f}")
            chats = anyio.run(
                routed_chats, model.url, redis_server.url, postgres.create_database(), 500, tmp
            )
            for setup, seconds in chats.items():
                row(f"routed chat, state + ledger = {setup} (median)", f"{seconds * 1e3:.3f} ms")
            base = chats["sqlite + sqlite"]
            row("routed chat ratio, fleet / local", f"{chats['redis + postgresql'] / base:.3f}")
            sqlite_rate = aggregate("sqlite", str(tmp / "agg.db"), args.rows, tmp)
            row("ledger rows/s, 8 processes into one usage.db", f"{sqlite_rate:,.0f}")
            agg_url = postgres.create_database()
            pg_rate = aggregate("pg", agg_url, args.rows, tmp)
            assert pg_count(agg_url) == 8 * args.rows
            row("ledger rows/s, 8 processes into PostgreSQL (all sent)", f"{pg_rate:,.0f}")
    finally:
        model.stop()
        redis_server.kill()
        postgres.destroy()


if __name__ == "__main__":
    main()
