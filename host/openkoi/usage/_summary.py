"""Totals and breakdowns of the ledger for `openkoi status --costs`.

`cost_usd` sums the calls whose cost is known; `unpriced_calls` counts those whose cost is not
(a model with no price), so a total is never presented as complete when it is not. Days are UTC.
"""

from __future__ import annotations

from typing import Any

from openkoi.usage._backend import LedgerBackend
from openkoi.usage._ledger import _since


def _count(condition: str) -> str:
    return f"CAST(COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0) AS BIGINT)"


def _sum(column: str) -> str:
    return f"CAST(COALESCE(SUM({column}), 0) AS BIGINT) AS {column}"


# Plain SQL that SQLite and PostgreSQL read alike (and both give integers for the counts).
_AGGREGATES = f"""
    COUNT(*) AS calls,
    {_count("outcome = 'ok'")} AS ok,
    {_count("outcome != 'ok'")} AS failed,
    {_sum("input_tokens")},
    {_sum("output_tokens")},
    {_sum("cache_read_tokens")},
    {_sum("cache_write_tokens")},
    SUM(cost_usd) AS cost_usd,
    {_count("cost_usd IS NULL")} AS unpriced_calls
"""


def summarize(ledger: LedgerBackend, since: float | None = None) -> dict[str, Any]:
    """`{"since", "totals", "by_model", "by_role", "by_day"}`; every group ordered by cost."""
    where, params = _since(since)
    totals = ledger.query(f"SELECT {_AGGREGATES} FROM calls {where}", params)[0]
    summary: dict[str, Any] = {"since": since, "totals": totals}
    groups = {
        "by_model": ("provider, model", "provider, model"),
        "by_role": ("role", "role"),
        "by_day": (f"{ledger.day_sql} AS day", "day"),
    }
    for name, (select, group) in groups.items():
        order = (
            "day" if name == "by_day" else f"COALESCE(SUM(cost_usd), 0) DESC, calls DESC, {group}"
        )
        summary[name] = ledger.query(
            f"SELECT {select}, {_AGGREGATES} FROM calls {where} GROUP BY {group} ORDER BY {order}",
            params,
        )
    return summary
