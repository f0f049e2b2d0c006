"""`openkoi status` and the done-when check, through the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _routing_support import config_toml, error_reply, stream_answer, write_config
from _server import LoopbackServer, Recorded, Reply
from openkoi._types import TokenUsage
from openkoi.cli._status import by_month, parse_since
from openkoi.usage._ledger import CallRecord, Ledger, usage_db_path

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
OPENKOI = Path(sys.executable).parent / "openkoi"


def openkoi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `openkoi` script, as a user runs it."""
    command = (
        [str(OPENKOI)]
        if OPENKOI.exists()
        else [sys.executable, "-c", "from openkoi.cli import main; main()"]
    )
    return subprocess.run(
        [*command, *args],
        input="",
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=60,
    )


def test_done_when_primary_429_fallback_answers_second_run_skips_costs_show_both(
    serve: Serve, _isolated_home: Path
) -> None:
    primary = serve(lambda r: error_reply(429, {"retry-after": "120"}))
    backup = serve(lambda r: stream_answer(["Through ", "the ", "fallback"], 40, 7))
    write_config(
        _isolated_home,
        config_toml(
            {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
            "primary/m1",
            ["backup/m2"],
            {"backup/m2": {"input": 2.5, "output": 10.0}},
        ),
    )

    first = openkoi("What is SSE?")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Through the fallback\n"
    assert "answered by backup/m2" in first.stderr and "HTTP 429" in first.stderr
    assert (len(primary.requests), len(backup.requests)) == (1, 1)

    second = openkoi("And again?")
    assert second.returncode == 0, second.stderr
    assert second.stdout == "Through the fallback\n"
    assert len(primary.requests) == 1  # the cooling model was skipped: no second request
    assert len(backup.requests) == 2
    assert "cooling until" in second.stderr

    costs = openkoi("status", "--costs", "--json")
    assert costs.returncode == 0, costs.stderr
    report = json.loads(costs.stdout)
    per_call = (40 * 2.5 + 7 * 10.0) / 1e6
    totals = report["totals"]
    assert (totals["calls"], totals["ok"], totals["failed"]) == (3, 2, 1)
    assert (totals["input_tokens"], totals["output_tokens"]) == (80, 14)
    assert totals["cost_usd"] == pytest.approx(2 * per_call)
    assert totals["unpriced_calls"] == 0  # the refused call consumed nothing: cost 0
    by_model = {(r["provider"], r["model"]): r for r in report["by_model"]}
    assert by_model[("backup", "m2")]["ok"] == 2
    assert by_model[("backup", "m2")]["cost_usd"] == pytest.approx(2 * per_call)
    assert (by_model[("primary", "m1")]["failed"], by_model[("primary", "m1")]["cost_usd"]) == (
        1,
        0.0,
    )
    assert [(r["role"], r["calls"]) for r in report["by_role"]] == [("executor", 3)]
    assert sum(r["calls"] for r in report["by_day"]) == 3

    table = openkoi("status", "--costs")
    assert table.returncode == 0, table.stderr
    assert "3 calls" in table.stdout and "backup/m2" in table.stdout
    assert "By role" in table.stdout and "By day (UTC)" in table.stdout
    assert f"${2 * per_call:.6f}" in table.stdout


def test_status_shows_roles_chains_cooling_and_providers(
    serve: Serve, _isolated_home: Path
) -> None:
    primary = serve(lambda r: error_reply(503))
    backup = serve(lambda r: stream_answer(["ok"]))
    write_config(
        _isolated_home,
        config_toml(
            {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
            "primary/m1",
            ["backup/m2"],
        ),
    )
    assert openkoi("hi").returncode == 0
    result = openkoi("status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["roles"]["executor"] == {
        "model": "primary/m1",
        "source": "config",
        "chain": ["primary/m1", "backup/m2"],
    }
    assert report["roles"]["embedder"]["model"] == "openai/text-embedding-3-small"
    assert report["fallback"]["cooldown"] == 10
    assert [(c["model"], c["error"], c["status"]) for c in report["cooling"]] == [
        ("primary/m1", "overloaded", 503)
    ]
    providers = {p["id"]: p for p in report["providers"]}
    assert providers["primary"]["ready"] is True
    assert providers["openai"]["ready"] is False

    table = openkoi("status")
    assert table.returncode == 0, table.stderr
    for fragment in ("Roles", "primary/m1", "backup/m2", "Cooling down now", "Providers"):
        assert fragment in table.stdout

    flagged = openkoi("status", "--json", env={"OPENKOI_MODEL": "backup/other"})
    assert json.loads(flagged.stdout)["roles"]["planner"] == {
        "model": "backup/other",
        "source": "OPENKOI_MODEL",
        "chain": ["backup/other"],
    }


def test_costs_with_no_ledger_and_since_filter(_isolated_home: Path) -> None:
    result = openkoi("status", "--costs", "--json", "--since", "7d")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["totals"]["calls"] == 0 and report["since"].endswith("Z")
    assert not (_isolated_home / ".openkoi" / "usage.db").exists()


def test_months_of_use_are_shown_by_month_and_the_json_keeps_every_day(
    _isolated_home: Path,
) -> None:
    """100 days of calls: the terminal table folds them into months (a line per day would be
    hundreds of lines after a year), with the same sums; `--since` and `--json` keep days."""
    start = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    with Ledger(usage_db_path()) as ledger:
        for day in range(100):
            priced = day % 2 == 0  # every other day's calls have no known price
            ledger.record(
                CallRecord(
                    provider="openai", model="gpt-5.2", role="executor", operation="chat",
                    outcome="ok", started_at=start + day * 86_400, latency_ms=5.0,
                    usage=TokenUsage(input_tokens=1000, output_tokens=10),
                    cost_usd=0.25 if priced else None,
                )
            )  # fmt: skip
    report = json.loads(openkoi("status", "--costs", "--json").stdout)
    table = openkoi("status", "--costs")
    recent = openkoi("status", "--costs", "--since", "2026-04-01")
    assert len(report["by_day"]) == 100
    assert table.returncode == 0, table.stderr
    assert "By month (UTC" in table.stdout and "By day" not in table.stdout
    months = {
        line.split()[1]: line.split("│")[2:-1]
        for line in table.stdout.splitlines()
        if line.startswith("│ 2026-")
    }
    assert list(months) == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert [int(cells[0]) for cells in months.values()] == [31, 28, 31, 10]
    assert months["2026-01"][3].strip() == "31,000"  # input tokens
    assert months["2026-01"][-1].strip() == "$4.0000 (+15 unpriced)"  # 16 priced days
    assert months["2026-04"][-1].strip() == "$1.2500 (+5 unpriced)"
    assert "By day (UTC)" in recent.stdout and "2026-04-10" in recent.stdout


def test_by_month_sums_days_and_keeps_unknown_costs_unknown() -> None:
    def day(date: str, cost: float | None) -> dict[str, object]:
        counts = dict.fromkeys(
            ("calls", "ok", "failed", "input_tokens", "output_tokens", "cache_read_tokens",
             "cache_write_tokens"),
            1,
        )  # fmt: skip
        return {"day": date, **counts, "cost_usd": cost, "unpriced_calls": int(cost is None)}

    months = by_month([day("2026-01-30", None), day("2026-02-01", None), day("2026-01-31", 0.5)])
    assert [(m["day"], m["calls"], m["cost_usd"], m["unpriced_calls"]) for m in months] == [
        ("2026-01", 2, 0.5, 1),
        ("2026-02", 1, None, 1),
    ]


def test_bad_inputs_are_one_line_errors(_isolated_home: Path) -> None:
    bad_since = openkoi("status", "--costs", "--since", "last tuesday")
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr
    assert "Traceback" not in bad_since.stderr

    db = _isolated_home / ".openkoi" / "usage.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"not a database " * 100)
    broken = openkoi("status", "--costs")
    assert broken.returncode == 1
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(db) in lines[0], broken.stderr

    write_config(_isolated_home, '[models.fallback]\nexecutor = ["openai/gpt-5.2", "nosuch/x"]\n')
    bad_chain = openkoi("status")
    assert bad_chain.returncode == 1
    assert "models.fallback.executor[1]" in bad_chain.stderr and "Traceback" not in bad_chain.stderr

    write_config(_isolated_home, '[pricing."openai/gpt-5.2"]\ninput = -3\n')
    bad_price = openkoi("--model", "openai/gpt-5.2", "hi", env={"OPENAI_API_KEY": "sk-000000000"})
    assert bad_price.returncode == 1
    assert 'pricing."openai/gpt-5.2".input' in bad_price.stderr


def test_prompt_flags_pick_the_executor(serve: Serve, _isolated_home: Path) -> None:
    alpha = serve(lambda r: stream_answer(["from alpha"]))
    beta = serve(lambda r: stream_answer(["from beta"]))
    write_config(
        _isolated_home,
        config_toml({"alpha": alpha.url + "/v1", "beta": beta.url + "/v1"}, "alpha/a1", []),
    )
    assert openkoi("hi").stdout == "from alpha\n"
    result = openkoi("--executor", "beta/b1", "--evaluator", "alpha/judge", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from beta\n"
    assert beta.requests[0].json()["model"] == "b1"
    assert openkoi("-m", "beta/b2", "hi").stdout == "from beta\n"
    assert beta.requests[1].json()["model"] == "b2"


def test_every_candidate_cooling_is_one_line(serve: Serve, _isolated_home: Path) -> None:
    primary = serve(lambda r: error_reply(429, {"retry-after": "300"}))
    write_config(_isolated_home, config_toml({"primary": primary.url + "/v1"}, "primary/m1", []))
    for _ in range(2):
        result = openkoi("hi")
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "every model for the executor role failed" in lines[0]
        assert "primary/m1" in lines[0] and "cooling until" in lines[0]
    assert len(primary.requests) == 1


def test_parse_since() -> None:
    now = 1_767_225_600.0
    assert parse_since("7d", now) == now - 7 * 86_400
    assert parse_since("12h", now) == now - 12 * 3600
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2w", now) == now - 14 * 86_400
    assert parse_since("2026-01-01") == 1_767_225_600.0
    assert parse_since("2026-01-01T01:00:00+01:00") == 1_767_225_600.0
