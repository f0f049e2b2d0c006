"""The usage ledger and the price table: real SQLite files, real concurrent processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from openkoi._errors import ConfigError, LedgerError
from openkoi._types import TokenUsage
from openkoi.usage import (
    CallRecord,
    Ledger,
    Price,
    load_price_table,
    shipped_prices,
    summarize,
    usage_db_path,
)
from openkoi.usage._ledger import MIGRATIONS

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def record(**changes: object) -> CallRecord:
    base: dict[str, object] = {
        "provider": "openai",
        "model": "gpt-5.2",
        "role": "executor",
        "operation": "chat",
        "outcome": "ok",
        "started_at": T0,
        "latency_ms": 12.5,
        "usage": TokenUsage(input_tokens=1000, output_tokens=500),
    }
    base.update(changes)
    return CallRecord(**base)  # type: ignore[arg-type]


# -- the database ------------------------------------------------------------------------


def test_default_path_is_under_openkoi_home(_isolated_home: Path) -> None:
    assert usage_db_path() == _isolated_home / ".openkoi" / "usage.db"


def test_file_is_wal_with_numbered_migrations(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with Ledger(path) as ledger:
        ledger.record(record())
    with Ledger(path) as ledger:  # opening again applies nothing twice
        ledger.record(record())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT number, name FROM _migrations").fetchall() == [
            (1, "create calls"),
            (2, "add row uid and host"),
            (3, "summary rollups (local file only)"),
        ]
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 2
    finally:
        conn.close()


def test_record_keeps_tokens_price_and_cost(tmp_path: Path) -> None:
    price = Price(input=1.75, output=14.0, cache_read=0.175, source="s", date="2026-11-25")
    usage = TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000)
    with Ledger(tmp_path / "u.db") as ledger:
        ledger.record(record(usage=usage, price=price, cost_usd=price.cost(usage), request_id="r1"))
        ledger.record(record(usage=None, operation="embed", outcome="ok"))
        rows = ledger.calls()
    first, second = rows
    assert (first["input_tokens"], first["output_tokens"], first["cache_read_tokens"]) == (
        1000,
        500,
        2000,
    )
    assert first["cost_usd"] == pytest.approx((1000 * 1.75 + 500 * 14 + 2000 * 0.175) / 1e6)
    assert (first["price_input"], first["price_output"], first["price_cache_read"]) == (
        1.75,
        14.0,
        0.175,
    )
    assert first["price_cache_write"] is None
    assert first["price_source"] == "s"
    assert first["request_id"] == "r1"
    # Unknown token counts stay unknown: NULL, not zero.
    assert second["input_tokens"] is None and second["cost_usd"] is None


def test_corrupted_file_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.write_bytes(b"this is not a database, just junk " * 200)
    ledger = Ledger(path)
    with pytest.raises(LedgerError) as info:
        ledger.record(record())
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    ledger.close()


def test_locked_file_is_a_ledger_error_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    Ledger(path).close()
    with Ledger(path) as warm:
        warm.record(record())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        ledger = Ledger(path, timeout=0.05)
        with pytest.raises(LedgerError, match="locked"):
            ledger.record(record())
        ledger.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Ledger(path) as ledger:  # and once the lock is gone, writing works again
        ledger.record(record())
        assert len(ledger.calls()) == 2


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from openkoi._types import TokenUsage
    from openkoi.usage import CallRecord, Ledger

    path, count, role = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with Ledger(path, timeout=10) as ledger:
        for i in range(count):
            ledger.record(CallRecord(
                provider="openai", model="gpt-5.2", role=role, operation="chat", outcome="ok",
                started_at=1767225600.0 + i, latency_ms=1.0,
                usage=TokenUsage(input_tokens=10, output_tokens=5), cost_usd=0.0001,
            ))
    """
)


def test_processes_write_at_once_on_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "usage.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), "150", role],
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("executor", "evaluator", "planner")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with Ledger(path) as ledger:
        rows = ledger.calls()
        migrations = ledger.query("SELECT COUNT(*) AS n FROM _migrations")[0]["n"]
    assert len(rows) == 450
    assert len({r["id"] for r in rows}) == 450
    assert {r["role"] for r in rows} == {"executor", "evaluator", "planner"}
    assert len({r["pid"] for r in rows}) == 3
    assert migrations == len(MIGRATIONS)


# -- summaries ---------------------------------------------------------------------------


def test_summary_totals_and_breakdowns(tmp_path: Path) -> None:
    with Ledger(tmp_path / "u.db") as ledger:
        ledger.record(record(cost_usd=0.01, started_at=T0))
        ledger.record(record(cost_usd=0.02, started_at=T0 + DAY, role="evaluator"))
        ledger.record(
            record(provider="x", model="y", cost_usd=None, started_at=T0 + DAY)
        )  # unpriced
        ledger.record(
            record(outcome="rate-limited", usage=TokenUsage(), cost_usd=0.0, started_at=T0)
        )
        full = summarize(ledger)
        recent = summarize(ledger, since=T0 + DAY)
    totals = full["totals"]
    assert totals["calls"] == 4 and totals["ok"] == 3 and totals["failed"] == 1
    assert totals["input_tokens"] == 3000 and totals["output_tokens"] == 1500
    assert totals["cost_usd"] == pytest.approx(0.03)
    assert totals["unpriced_calls"] == 1
    by_model = {(r["provider"], r["model"]): r for r in full["by_model"]}
    assert by_model[("openai", "gpt-5.2")]["calls"] == 3
    assert by_model[("x", "y")]["cost_usd"] is None
    assert {r["role"]: r["calls"] for r in full["by_role"]} == {"executor": 3, "evaluator": 1}
    assert [(r["day"], r["calls"]) for r in full["by_day"]] == [
        ("2026-01-01", 2),
        ("2026-01-02", 2),
    ]
    assert recent["totals"]["calls"] == 2
    assert recent["totals"]["cost_usd"] == pytest.approx(0.02)


# -- prices ------------------------------------------------------------------------------


def test_shipped_table_has_source_and_date_for_every_entry() -> None:
    prices = shipped_prices()
    assert len(prices) >= 20
    for ref, price in prices.items():
        assert "/" in ref
        assert price.source and price.date, ref
        assert price.input >= 0 and price.output >= 0
    raw = json.loads(
        (Path(__file__).parents[1] / "host/openkoi/usage/prices.json").read_text("utf-8")
    )
    assert raw["compiled"]


def test_cost_uses_every_rate_and_refuses_to_guess() -> None:
    price = Price(
        input=3.0, output=15.0, cache_read=0.3, cache_write=3.75, max_input_tokens=200_000
    )
    usage = TokenUsage(
        input_tokens=100, output_tokens=200, cache_read_tokens=1000, cache_write_tokens=400
    )
    assert price.cost(usage) == pytest.approx((300 + 3000 + 300 + 1500) / 1e6)
    # A cache rate the vendor does not publish: unknown, not zero and not the input rate.
    assert Price(input=1, output=1).cost(TokenUsage(cache_read_tokens=5)) is None
    assert Price(input=1, output=1).cost(TokenUsage(input_tokens=5)) == pytest.approx(5e-6)
    # Past the end of the tier the table holds: unknown.
    assert price.cost(TokenUsage(input_tokens=150_000, cache_read_tokens=60_000)) is None


def test_lookup_is_exact_then_provider_wildcard() -> None:
    table = load_price_table()
    assert table.lookup("openai", "gpt-5.2") is not None
    assert table.lookup("openai", "gpt-5.2-2099-01-01") is None  # no prefix guessing
    assert table.lookup("nobody", "thing") is None
    ollama = table.lookup("ollama", "llama3.3")
    assert ollama is not None and ollama.input == 0


def test_config_overrides_and_extends_prices() -> None:
    table = load_price_table(
        {
            "openai/gpt-5.2": {"input": 2},
            "mygateway/llama": {"input": 0.6, "output": 0.8, "source": "our contract"},
            "local/*": {"input": 0, "output": 0},
        }
    )
    over = table.lookup("openai", "gpt-5.2")
    assert over is not None
    assert (over.input, over.output, over.source) == (2.0, 14.0, "config.toml")
    mine = table.lookup("mygateway", "llama")
    assert mine is not None and (mine.input, mine.output, mine.source) == (0.6, 0.8, "our contract")
    assert table.lookup("local", "anything") is not None


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"openai/gpt-5.2": {"input": -1}}, 'pricing."openai/gpt-5.2".input'),
        ({"openai/gpt-5.2": {"output": "cheap"}}, 'pricing."openai/gpt-5.2".output'),
        ({"openai/gpt-5.2": {"cache_read": True}}, 'pricing."openai/gpt-5.2".cache_read'),
        ({"openai/gpt-5.2": {"cache_write": float("nan")}}, 'pricing."openai/gpt-5.2".cache_write'),
        ({"openai/gpt-5.2": {"inputs": 1}}, 'pricing."openai/gpt-5.2".inputs'),
        ({"new/model": {"input": 1}}, 'pricing."new/model".output'),
        ({"no-slash": {"input": 1, "output": 1}}, 'pricing."no-slash"'),
        (
            {"a/b": {"input": 1, "output": 1, "max_input_tokens": 0}},
            'pricing."a/b".max_input_tokens',
        ),
    ],
)
def test_bad_price_overrides_name_their_key(
    overrides: dict[str, dict[str, object]], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_price_table(overrides)
    assert info.value.key == key
    assert key in str(info.value)
