"""Totals and breakdowns of the ledger for `openkoi status --costs`.

`cost_usd` sums the calls whose cost is known; `unpriced_calls` counts those whose cost is not
(a model with no price), so a total is never presented as complete when it is not. Days are UTC.
"""

from __future__ import annotations

from typing import Any

from openkoi.usage._ledger import Ledger, _since

_AGGREGATES = """
    COUNT(*) AS calls,
    COALESCE(SUM(outcome = 'ok'), 0) AS ok,
    COALESCE(SUM(outcome != 'ok'), 0) AS failed,
    COALESCE(SUM(input_tokens), 0) AS input_tokens,
    COALESCE(SUM(output_tokens), 0) AS output_tokens,
    COALESCE(SUM(cache_read_tokens), 0) AS cache_read_tokens,
    COALESCE(SUM(cache_write_tokens), 0) AS cache_write_tokens,
    SUM(cost_usd) AS cost_usd,
    COALESCE(SUM(cost_usd IS NULL), 0) AS unpriced_calls
"""

_GROUPS = {
    "by_model": ("provider, model", "provider, model"),
    "by_role": ("role", "role"),
    "by_day": ("strftime('%Y-%m-%d', started_at, 'unixepoch') AS day", "day"),
}


def summarize(ledger: Ledger, since: float | None = None) -> dict[str, Any]:
    """`{"since", "totals", "by_model", "by_role", "by_day"}`; every group ordered by cost."""
    where, params = _since(since)
    totals = ledger.query(f"SELECT {_AGGREGATES} FROM calls {where}", params)[0]
    summary: dict[str, Any] = {"since": since, "totals": totals}
    for name, (select, group) in _GROUPS.items():
        order = "day" if name == "by_day" else "COALESCE(SUM(cost_usd), 0) DESC, calls DESC"
        summary[name] = ledger.query(
            f"SELECT {select}, {_AGGREGATES} FROM calls {where} GROUP BY {group} ORDER BY {order}",
            params,
        )
    return summary
