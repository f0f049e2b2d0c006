"""The usage ledger in a real PostgreSQL, written by processes that share nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _fleet import (
    PostgresServer,
    finish_machines,
    fleet_config,
    free_port,
    machine_home,
    start_machine,
)
from _routing_support import completion, stream_answer
from _server import LoopbackServer, Recorded, Reply
from openkoi._types import TokenUsage
from openkoi.usage import CallRecord, Ledger, PgLedger, Price, summarize
from openkoi.usage._ledger import MIGRATIONS
from openkoi.usage._summary import scan_summary

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]


def pg_rows(url: str, sql: str = "SELECT COUNT(*), COUNT(DISTINCT uid) FROM calls") -> tuple:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


_MIGRATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from openkoi.usage._ledger_pg import connect, migrate

    url, go = sys.argv[1], Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.001)
    conn = connect(url, 10.0)
    migrate(conn)
    conn.close()
    """
)


def test_migrations_are_applied_once_when_many_processes_start_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATOR, pg_url, str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    time.sleep(1.0)  # let every process reach the starting line
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with psycopg.connect(pg_url) as conn:
        applied = conn.execute("SELECT number, name FROM _migrations ORDER BY number").fetchall()
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls'"
            )
        }
    assert applied == [(m.number, m.name) for m in MIGRATIONS]
    with Ledger(tmp_path / "u.db") as local:
        local.record(CallRecord("p", "m", "r", "chat", "ok", 0.0, 1.0))
        assert columns == set(local.calls()[0])  # the same rows in both


def _records(n: int, *, start: float) -> list[CallRecord]:
    price = Price(input=3.0, output=15.0, cache_read=0.3, source="test", date="2026-12-01")
    return [
        CallRecord(
            provider="anthropic" if i % 3 else "openai",
            model="claude-sonnet-4-5" if i % 3 else "gpt-5.2",
            role=("executor", "evaluator", "planner")[i % 3],
            operation="chat",
            outcome="ok" if i % 5 else "rate-limited",
            started_at=start + i * 3600,
            latency_ms=10.0 + i,
            usage=TokenUsage(input_tokens=100 + i, output_tokens=50, cache_read_tokens=i % 7),
            price=price if i % 4 else None,
            cost_usd=(100 + i) * 3e-6 if i % 4 else None,
            request_id=f"r{i}",
        )
        for i in range(n)
    ]


def test_status_costs_reads_postgres_with_the_same_totals_and_windows(
    pg_url: str, tmp_path: Path
) -> None:
    start = 1_767_225_600.0  # 2026-01-01T00:00Z: rows over three days
    records = _records(60, start=start)
    pg = PgLedger(pg_url, local=Ledger(tmp_path / "outbox.db"), on_warning=_no_warning)
    for record in records:
        pg.record(record)
    assert pg.send()
    with Ledger(tmp_path / "plain.db") as plain:
        for record in records:
            plain.record(record)
        for since in (None, start + 30 * 3600, start + 59 * 3600, start + 1e6):
            expected = _normal(scan_summary(plain, since))
            assert _normal(summarize(pg, since)) == _normal(summarize(plain, since)) == expected
            assert _normal(scan_summary(pg, since)) == expected
    totals = summarize(pg)["totals"]
    assert totals["calls"] == 60 and totals["unpriced_calls"] == 15
    assert [d["day"] for d in summarize(pg)["by_day"]] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    pg.close()


def _normal(summary: Any) -> Any:
    """Money to a billionth of a dollar: sums in another order differ in the last bits."""
    if isinstance(summary, dict):
        return {k: _normal(v) for k, v in summary.items()}
    if isinstance(summary, list):
        return [_normal(v) for v in summary]
    if isinstance(summary, float | Decimal):
        return round(float(summary), 9)
    return summary


def _no_warning(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")


def test_a_database_that_is_down_keeps_rows_locally_and_sends_them_later(
    postgres: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    dead = f"postgresql://openkoi:secret-pw@127.0.0.1:{free_port()}/x"
    warnings: list[str] = []
    pg = PgLedger(dead, local=Ledger(tmp_path / "usage.db"), on_warning=warnings.append)
    started = time.perf_counter()
    for record in _records(20, start=time.time()):
        pg.record(record)
    hot_path = time.perf_counter() - started
    time.sleep(0.5)  # the writer tries, fails and says so, once
    pg.close()
    assert hot_path < 1.0
    assert len(warnings) == 1 and "unavailable" in warnings[0]
    assert "secret-pw" not in warnings[0] and "openkoi:***@127.0.0.1" in warnings[0]
    with Ledger(tmp_path / "usage.db") as local:
        assert local.queued() == 20
    # The next run on this machine, with the database reachable, sends them.
    back = PgLedger(pg_url, local=Ledger(tmp_path / "usage.db"), on_warning=_no_warning)
    assert back.send()
    back.close()
    assert pg_rows(pg_url) == (20, 20)
    with Ledger(tmp_path / "usage.db") as local:
        assert local.queued() == 0
        assert len(local.calls()) == 20  # the local copy stays


def test_eight_processes_write_1600_rows_also_across_a_database_restart(
    serve: Serve, postgres: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    answer = completion("ok", 20, 10)
    answer.delay = 0.005  # keeps the run going while the database restarts
    model = serve(lambda r: answer)
    config = fleet_config({"p": model.url + "/v1"}, "p/m", usage=pg_url)
    go = tmp_path / "go"
    homes = [machine_home(tmp_path, f"m{i}", config) for i in range(8)]
    procs = [start_machine(home, "200", str(go)) for home in homes]
    go.touch()
    restarted = threading.Event()

    def restart_when_half_done() -> None:
        deadline = time.monotonic() + 60
        while len(model.requests) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        postgres.stop("immediate")  # a crash, as the database sees it
        time.sleep(1.0)
        postgres.start()
        restarted.set()

    restarter = threading.Thread(target=restart_when_half_done, daemon=True)
    restarter.start()
    outputs = finish_machines(procs, timeout=180)
    restarter.join(60)
    assert restarted.is_set()
    for out, err in outputs:
        assert out.count("answer: ok") == 200  # every prompt answered, database or not
        assert err.count("warning:") <= 1, err  # said once, if at all
        assert all("unavailable" in line for line in err.splitlines() if "warning" in line)
    assert any("unavailable" in err for _, err in outputs)  # the restart was noticed
    # Rows a process could not send before it exited wait in its outbox: the next openkoi
    # command on that machine sends them (status --costs does so before it reads).
    from test_status_cli import openkoi

    for home in homes[1:]:
        PgLedger(pg_url, local=Ledger(home / "usage.db"), on_warning=_no_warning).close()
    env = {"OPENKOI_HOME": str(homes[0]), "HOME": str(homes[0].parent)}
    shown = openkoi("status", "--costs", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["backend"] == "postgresql" and report["totals"]["calls"] == 1600
    assert report["totals"]["input_tokens"] == 1600 * 20
    assert pg_rows(pg_url) == (1600, 1600)
    assert pg_rows(pg_url, "SELECT COUNT(DISTINCT pid), COUNT(DISTINCT host) FROM calls")[0] == 8
    for home in homes:
        with Ledger(home / "usage.db") as local:
            assert local.queued() == 0 and len(local.calls()) == 200


def test_a_prompt_answers_with_both_backends_down_and_says_so_once_each(
    serve: Serve, _isolated_home: Path
) -> None:
    from test_status_cli import openkoi

    model = serve(lambda r: stream_answer(["still", " here"], 7, 3))
    home = _isolated_home / ".openkoi"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        fleet_config(
            {"p": model.url + "/v1"},
            "p/m",
            state=f"redis://127.0.0.1:{free_port()}/0",
            usage=f"postgresql://openkoi:pw@127.0.0.1:{free_port()}/openkoi",
            budgets={"p/m": {"rpm": 100}},
        )
    )
    started = time.monotonic()
    result = openkoi("hello")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still here\n"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2, result.stderr
    assert any("shared state store redis://127.0.0.1" in w for w in warnings)
    assert any("usage database postgresql://openkoi:***@127.0.0.1" in w for w in warnings)
    assert "Traceback" not in result.stderr and ":pw@" not in result.stderr
    assert took < 15
    with Ledger(home / "usage.db") as local:  # the row waits to be sent
        assert local.queued() == 1
        assert local.calls()[0]["input_tokens"] == 7
    status = openkoi("status", "--json")
    assert status.returncode == 0, status.stderr
    backends = json.loads(status.stdout)["backends"]
    assert (backends["state"]["healthy"], backends["usage"]["healthy"]) == (False, False)
    costs = openkoi("status", "--costs", "--json")
    assert costs.returncode == 0, costs.stderr
    report = json.loads(costs.stdout)
    assert report["backend"] == "sqlite" and report["totals"]["calls"] == 1  # this machine's
    assert any("unavailable" in w for w in report["warnings"])
