"""`summarize` reads the rollups and gives exactly what scanning every row gives, for every
window: whole days, whole hours, a partial hour, boundaries to the second and beyond."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from openkoi._types import TokenUsage
from openkoi.usage import CallRecord, Ledger, summarize
from openkoi.usage._db import open_database
from openkoi.usage._ledger import COLUMNS, MIGRATIONS
from openkoi.usage._summary import _ROLLUP_SQL, _rollup_params, scan_summary

DAY0 = 1_767_225_600.0  # 2026-01-01T00:00Z


def _records(n: int, seed: int = 7) -> list[CallRecord]:
    rng = random.Random(seed)
    models = [("openai", "gpt-5.2"), ("anthropic", "claude-sonnet-4-5"), ("x", "unpriced")]
    out = []
    for i in range(n):
        provider, model = rng.choice(models)
        # on the hour, on the day, a hair either side of one, or anywhere in three days
        at = rng.choice(
            [
                DAY0 + rng.randrange(72) * 3600,
                DAY0 + 86_400 - 1e-6,
                DAY0 + 86_400,
                DAY0 + rng.random() * 3 * 86_400,
            ]
        )
        priced = provider != "x"
        usage = (
            None
            if i % 11 == 0
            else TokenUsage(
                input_tokens=rng.randrange(5000),
                output_tokens=rng.randrange(900),
                cache_read_tokens=rng.randrange(50),
            )
        )
        out.append(
            CallRecord(
                provider=provider,
                model=model,
                role=rng.choice(["executor", "evaluator", "planner"]),
                operation="chat",
                outcome="ok" if rng.random() > 0.2 else "rate-limited",
                started_at=at,
                latency_ms=5.0,
                usage=usage,
                cost_usd=round(rng.random() / 7, 8) if priced else None,
            )
        )
    return out


WINDOWS = [
    None,
    DAY0 - 10,
    DAY0,
    DAY0 + 1,
    DAY0 + 3600,
    DAY0 + 3599.5,
    DAY0 + 86_400 - 1e-6,
    DAY0 + 86_400,
    DAY0 + 86_400 + 1830.25,
    DAY0 + 2 * 86_400 + 7200,
    DAY0 + 5 * 86_400,
]


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    return value


def _agrees(ledger: Ledger) -> None:
    for since in WINDOWS:
        new, old = summarize(ledger, since), scan_summary(ledger, since)
        assert _normal(new) == _normal(old), since
        if old["totals"]["cost_usd"] is not None:  # to the cent, and far finer
            assert abs(new["totals"]["cost_usd"] - old["totals"]["cost_usd"]) < 1e-9


def test_rollups_give_the_totals_of_a_full_scan_for_every_window(tmp_path: Path) -> None:
    with Ledger(tmp_path / "u.db") as ledger:
        for record in _records(1500):
            ledger.record(record)
        _agrees(ledger)
        full = summarize(ledger)
        assert full["totals"]["calls"] == 1500
        assert [d["day"] for d in full["by_day"]] == ["2026-01-01", "2026-01-02", "2026-01-03"]
        assert any(r["cost_usd"] is None for r in full["by_model"])  # the unpriced model
        # rows deleted by hand (pruning old history) leave the rollups in step
        ledger.query("DELETE FROM calls WHERE started_at < ?", (DAY0 + 86_400 + 1000,))
        ledger.query("DELETE FROM calls WHERE id % 3 = 0")
        _agrees(ledger)
        assert summarize(ledger)["totals"]["calls"] == scan_summary(ledger)["totals"]["calls"]


def test_an_empty_ledger_and_an_empty_window(tmp_path: Path) -> None:
    with Ledger(tmp_path / "u.db") as ledger:
        _agrees(ledger)
        assert summarize(ledger)["totals"] == {
            "calls": 0,
            "ok": 0,
            "failed": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": None,
            "unpriced_calls": 0,
        }
        ledger.record(_records(1)[0])
        assert summarize(ledger, DAY0 + 10 * 86_400)["by_model"] == []


def test_the_migration_fills_the_rollups_from_rows_already_there(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    conn = open_database(path, MIGRATIONS[:2], timeout=2.0)  # a file from before the rollups
    rows = _records(600, seed=3)
    with Ledger(tmp_path / "scratch.db") as scratch:
        for record in rows:
            scratch.record(record)
        values = scratch.query(f"SELECT {', '.join(COLUMNS)} FROM calls")
    conn.executemany(
        f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [tuple(v[c] for c in COLUMNS) for v in values],
    )
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.query("SELECT MAX(number) AS n FROM _migrations")[0]["n"] == 3
        _agrees(ledger)
        assert summarize(ledger)["totals"]["calls"] == 600


@pytest.mark.parametrize("since", [None, DAY0 + 1830.25])
def test_a_summary_reads_rows_only_through_the_time_index(tmp_path: Path, since: Any) -> None:
    """The plan never scans `calls`: rollups for whole days and hours, the index for the rest."""
    with Ledger(tmp_path / "u.db") as ledger:
        ledger.record(_records(1)[0])
    conn = sqlite3.connect(tmp_path / "u.db")
    try:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {_ROLLUP_SQL}", _rollup_params(since)).fetchall()
    finally:
        conn.close()
    details = [row[-1] for row in plan]
    assert any("calls_started_at" in d for d in details), details
    assert not any(d.startswith("SCAN calls") and "calls_" not in d for d in details), details
