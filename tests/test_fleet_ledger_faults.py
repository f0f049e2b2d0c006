"""The PostgreSQL ledger when the server misbehaves or holds rows openkoi never wrote.

A proxy in front of a real PostgreSQL lets the login pass and then swallows everything (a
pgbouncer in front of a dead server, a stuck backend: the TCP peer still ACKs, so neither
keepalives nor tcp_user_timeout fire), or accepts and never says a word. Every operation must
still end within its deadline, with one warning; bad rows must not break `status --costs`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _fleet import PostgresServer, free_port
from _loop_server import LoopServer
from openkoi._errors import LedgerError
from openkoi._types import TokenUsage
from openkoi.usage import CallRecord, Ledger, PgLedger
from openkoi.usage._ledger import COLUMNS

_PLAIN = "?sslmode=disable&gssencmode=disable"  # no SSLRequest: every reply is a typed message


class SilentProxy(LoopServer):
    """127.0.0.1:`port` in front of PostgreSQL. "silent": the login passes (up to the first
    ReadyForQuery), then nothing goes either way; "blackhole": accepts, never answers."""

    def __init__(self, target: int, mode: str) -> None:
        super().__init__()
        self.target = target
        self.mode = mode

    def url(self, database: str) -> str:
        return f"postgresql://openkoi@127.0.0.1:{self.port}/{database}{_PLAIN}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        try:
            if self.mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            ready = asyncio.Event()
            await asyncio.gather(_up(reader, up_writer, ready), _down(up_reader, writer, ready))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            for each in (writer, up_writer):
                if each is not None:
                    each.transport.abort()


async def _up(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, ready: asyncio.Event
) -> None:
    while data := await source.read(65536):
        if not ready.is_set():
            sink.write(data)
            await sink.drain()


async def _down(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, ready: asyncio.Event
) -> None:
    while not ready.is_set():
        kind = await source.readexactly(1)
        size = await source.readexactly(4)
        body = await source.readexactly(int.from_bytes(size, "big") - 4)
        if kind == b"Z":  # ReadyForQuery: logged in; from now on the server "says nothing"
            ready.set()
        sink.write(kind + size + body)
        await sink.drain()
    while await source.read(65536):
        pass


def _record(at: float | None = None, cost: float | None = 0.25) -> CallRecord:
    return CallRecord(
        provider="p",
        model="m",
        role="executor",
        operation="chat",
        outcome="ok",
        started_at=time.time() if at is None else at,
        latency_ms=1.0,
        usage=TokenUsage(input_tokens=10, output_tokens=5),
        cost_usd=cost,
    )


def _home(root: Path, usage: str, timeout: float) -> Path:
    home = root / "machine" / ".openkoi"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f'[models]\nexecutor = "p/m"\n[providers.p]\nbase_url = "http://127.0.0.1:9/v1"\n'
        f'[usage]\ndatabase = "{usage}"\ntimeout = {timeout}\n'
    )
    return home


def _openkoi(
    home: Path, *args: str, timeout: float = 30
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`openkoi ARGS` on `home`, and how long it took (killed past `timeout`)."""
    env = {**os.environ, "OPENKOI_HOME": str(home), "HOME": str(home.parent), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", "status", *args],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _bounded(call: Callable[[], Any], seconds: float) -> tuple[Any, float]:
    """`call()` on a thread, failing the test (not hanging it) if it is not done in `seconds`."""
    box: list[Any] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting after {seconds} s"
    return box[0] if box else None, time.monotonic() - started


# -- a server that logs us in and then says nothing ---------------------------------------


def test_status_costs_ends_with_one_line_when_the_database_goes_silent_after_login(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with SilentProxy(postgres.port, "silent") as proxy:
        home = _home(tmp_path, proxy.url("postgres"), timeout=1.0)
        with Ledger(home / "usage.db") as local:  # rows the last prompt could not send
            for _ in range(3):
                local.record(_record(), queue=True)
        try:
            done, took = _openkoi(home, "--costs", "--json")
        except subprocess.TimeoutExpired:
            pytest.fail("`status --costs` still waiting on the silent database after 30 s")
    assert done.returncode == 0, done.stderr
    assert took < 12, took
    report = _strict_json(done.stdout)
    assert report["backend"] == "sqlite" and report["totals"]["calls"] == 3
    assert len(report["warnings"]) == 1, report["warnings"]
    assert "unavailable (timed out" in report["warnings"][0]
    assert "showing this machine's rows only" in report["warnings"][0]
    with Ledger(home / "usage.db") as local:
        assert local.queued() == 3  # kept for when it is back


def _ledger_behind(proxy: SilentProxy, tmp_path: Path, warnings: list[str]) -> PgLedger:
    """A ledger writing to PostgreSQL through `proxy`, with a 0.5 s deadline per operation."""
    return PgLedger(
        proxy.url("postgres"),
        local=Ledger(tmp_path / "usage.db"),
        timeout=0.5,
        on_warning=warnings.append,
    )


def test_a_writer_stuck_on_a_silent_database_warns_once_and_close_keeps_its_deadline(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    warnings: list[str] = []
    with SilentProxy(postgres.port, "silent") as proxy:
        pg = _ledger_behind(proxy, tmp_path, warnings)
        for _ in range(3):
            pg.record(_record())
        deadline = time.monotonic() + 5
        while not warnings and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(warnings) == 1, "the writer waited on the database without a word"
        assert "unavailable (timed out: no answer in 0.5 s)" in warnings[0]
        _, took = _bounded(pg.close, 5)
    assert took < 1.0, took
    assert len(warnings) == 1
    with Ledger(tmp_path / "usage.db") as local:
        assert local.queued() == 3


def test_close_says_so_when_the_last_send_outlives_its_deadline(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """A prompt's row, sent as the prompt ends: the process must not exit without a word."""
    warnings: list[str] = []
    with SilentProxy(postgres.port, "silent") as proxy:
        pg = _ledger_behind(proxy, tmp_path, warnings)
        pg.record(_record())
        _, took = _bounded(pg.close, 5)  # at once: the writer is still waiting
        assert took < 1.0, took
        assert len(warnings) == 1 and "unavailable (timed out" in warnings[0]
        time.sleep(0.6)  # the writer's own deadline passes too: still one warning
    assert len(warnings) == 1


def test_send_query_and_health_keep_their_deadlines_on_a_silent_database(
    postgres: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with SilentProxy(postgres.port, "silent") as proxy:
        pg = PgLedger(
            proxy.url(database), local=Ledger(tmp_path / "usage.db"), timeout=0.5, on_warning=None
        )
        pg.local.record(_record(), queue=True)
        sent, took = _bounded(pg.send, 5)
        assert sent is False and took < 1.5, took
        assert pg.unavailable is not None and "timed out" in pg.unavailable

        def read() -> str:
            with pytest.raises(LedgerError) as caught:
                pg.query("SELECT 1 AS ok")
            return str(caught.value)

        error, took = _bounded(read, 5)
        assert "could not read the usage database" in error and took < 1.5, took
        health, took = _bounded(pg.health, 5)
        assert not health.healthy and took < 1.5, took
        _bounded(pg.close, 5)
    with psycopg.connect(pg_url, connect_timeout=10) as conn:  # nothing got through
        assert conn.execute("SELECT to_regclass('calls')").fetchone() == (None,)


def test_connecting_to_a_server_that_never_answers_keeps_the_deadline(tmp_path: Path) -> None:
    """libpq's connect_timeout is whole seconds and at least 2: a deadline of 0.5 s is ours."""
    with SilentProxy(free_port(), "blackhole") as proxy:
        pg = PgLedger(
            proxy.url("x"), local=Ledger(tmp_path / "usage.db"), timeout=0.5, on_warning=None
        )
        pg.local.record(_record(), queue=True)
        sent, took = _bounded(pg.send, 5)
        assert sent is False
        assert took < 1.5, took
        assert pg.unavailable == "timed out: could not connect in 0.5 s"
        _bounded(pg.close, 5)


# -- one cause, one line ---------------------------------------------------------------------


def test_a_database_that_is_down_is_one_warning_in_status_costs(tmp_path: Path) -> None:
    home = _home(tmp_path, f"postgresql://openkoi:pw@127.0.0.1:{free_port()}/x", timeout=1.0)
    with Ledger(home / "usage.db") as local:
        local.record(_record(), queue=True)
    done, _ = _openkoi(home, "--costs", "--json")
    assert done.returncode == 0, done.stderr
    report = _strict_json(done.stdout)
    assert report["backend"] == "sqlite" and report["totals"]["calls"] == 1
    assert len(report["warnings"]) == 1, report["warnings"]
    line = report["warnings"][0]
    assert "postgresql://openkoi:***@127.0.0.1" in line and "is unavailable (" in line
    assert f"showing this machine's rows only ({home / 'usage.db'})" in line
    table, _ = _openkoi(home, "--costs")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("warning:") == 1, table.stdout


# -- rows openkoi never wrote ------------------------------------------------------------------

_BAD = "started_at, provider, model, role, operation, outcome, latency_ms, request_id, attempt, pid"


def _bad_row(uid: str, started: str = "extract(epoch from now())", cost: str = "0.5") -> str:
    return (
        f"INSERT INTO calls ({_BAD}, uid, input_tokens, output_tokens, cost_usd) VALUES "
        f"({started}, 'p', 'm', 'executor', 'chat', 'ok', 1, 'r', 1, 1, '{uid}', 10, 5, {cost})"
    )


def test_bad_rows_in_postgres_are_left_out_or_unpriced_and_the_json_stays_json(
    pg_url: str, tmp_path: Path
) -> None:
    home = _home(tmp_path, pg_url, timeout=5.0)
    pg = PgLedger(pg_url, local=Ledger(home / "usage.db"), on_warning=None)
    pg.record(_record())
    pg.record(_record())
    assert pg.send()
    pg.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for i, cost in enumerate(("'NaN'", "'Infinity'", "'-Infinity'", "1e308")):
            conn.execute(_bad_row(f"cost{i}", cost=cost))
        for i, started in enumerate(("'Infinity'", "'NaN'", "1e300")):
            conn.execute(_bad_row(f"time{i}", started=started))
        for i in range(2):  # their sum is past a BIGINT
            conn.execute(_bad_row(f"big{i}", cost="0"))
            conn.execute(f"UPDATE calls SET input_tokens = {2**62} WHERE uid = 'big{i}'")

    done, _ = _openkoi(home, "--costs", "--json")
    assert done.returncode == 0, done.stderr
    report = _strict_json(done.stdout)
    assert report["backend"] == "postgresql", report["warnings"]
    totals = report["totals"]
    assert totals["calls"] == 2 + 4 + 2  # the undated rows are left out
    assert totals["unpriced_calls"] == 4 and totals["cost_usd"] == pytest.approx(0.5)
    assert totals["input_tokens"] == 2 * 2**62 + 6 * 10
    assert [d["calls"] for d in report["by_day"]] == [8]
    assert sorted(report["warnings"]) == [
        f"{pg.where}: counted 4 rows whose cost is NaN, infinite or past 1e300 as unpriced",
        f"{pg.where}: left out 3 rows whose start time is no date (NaN, infinite or out of range)",
    ]
    for args in (("--costs",), ("--costs", "--since", "1d")):
        shown, _ = _openkoi(home, *args)
        assert shown.returncode == 0, shown.stderr
        assert "8 calls" in shown.stdout and shown.stdout.count("warning:") == 2


def test_infinite_figures_in_the_local_file_stay_out_of_the_json(tmp_path: Path) -> None:
    home = tmp_path / "machine" / ".openkoi"
    home.mkdir(parents=True)
    with Ledger(home / "usage.db") as local:
        local.record(_record())
    conn = sqlite3.connect(home / "usage.db")
    with conn:
        values = dict.fromkeys(COLUMNS, None) | {
            "started_at": float("inf"),
            "provider": "p",
            "model": "m",
            "role": "executor",
            "operation": "chat",
            "outcome": "ok",
            "latency_ms": 1.0,
            "cost_usd": float("inf"),
            "request_id": "r",
            "attempt": 1,
            "pid": 1,
        }
        conn.execute(
            f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            tuple(values.values()),
        )
    conn.close()
    done, _ = _openkoi(home, "--costs", "--json")
    assert done.returncode == 0, done.stderr
    report = _strict_json(done.stdout)
    assert report["totals"]["calls"] == 2 and report["totals"]["cost_usd"] is None
    assert [d["calls"] for d in report["by_day"]] == [1]
    assert report["warnings"], report
    shown, _ = _openkoi(home, "--costs")
    assert shown.returncode == 0, shown.stderr
