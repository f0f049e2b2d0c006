"""Totals and breakdowns of the ledger for `openkoi status --costs`.

`cost_usd` sums the calls whose cost is known; `unpriced_calls` counts those whose cost is not
(a model with no price), so a total is never presented as complete when it is not. Days are UTC.

One query answers a summary. On the local file it reads the rollups (whole days, then whole
hours) and only the raw rows of the window's first partial hour, so a million rows cost what a
thousand do; on PostgreSQL it is one pass over the window with GROUPING SETS. `scan_summary`
is the plain four-scan reading both must agree with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openkoi.usage._backend import LedgerBackend
from openkoi.usage._ledger import _since
from openkoi.usage._rollup import DAY, HOUR, MEASURES, first_bucket

_GROUPS = {
    "m": ("by_model", ("provider", "model")),
    "r": ("by_role", ("role",)),
    "d": ("by_day", ("day",)),
}
_INTEGERS = tuple(m for m in MEASURES if m != "cost_usd")
_EARLIEST = -(2**62)


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

# The same figures over rollup-shaped rows: the known cost is NULL when no call was priced.
_ROLLED = ", ".join(
    [f"COALESCE(SUM({m}), 0) AS {m}" for m in _INTEGERS[:-1]]
    + [
        "CASE WHEN COALESCE(SUM(calls), 0) > COALESCE(SUM(unpriced_calls), 0) "
        "THEN TOTAL(cost_usd) END AS cost_usd",
        "COALESCE(SUM(unpriced_calls), 0) AS unpriced_calls",
    ]
)
_RAW = ", ".join(
    [
        "1",
        "outcome = 'ok'",
        "outcome != 'ok'",
        "COALESCE(input_tokens, 0)",
        "COALESCE(output_tokens, 0)",
        "COALESCE(cache_read_tokens, 0)",
        "COALESCE(cache_write_tokens, 0)",
        "cost_usd",
        "cost_usd IS NULL",
    ]
)
_PARTS = f"""
    WITH parts (at, provider, model, role, {", ".join(MEASURES)}) AS MATERIALIZED (
        SELECT bucket * {DAY}, provider, model, role, {", ".join(MEASURES)}
            FROM calls_daily WHERE bucket >= ?
        UNION ALL
        SELECT bucket * {HOUR}, provider, model, role, {", ".join(MEASURES)}
            FROM calls_hourly WHERE bucket >= ? AND bucket < ?
        UNION ALL
        SELECT CAST(started_at AS INTEGER), provider, model, role, {_RAW}
            FROM calls WHERE started_at >= ? AND started_at < ?
    )
"""
_ROLLUP_SQL = f"""{_PARTS}
    SELECT 't' AS grp, NULL AS provider, NULL AS model, NULL AS role, NULL AS day, {_ROLLED}
        FROM parts
    UNION ALL
    SELECT 'm', provider, model, NULL, NULL, {_ROLLED} FROM parts GROUP BY provider, model
    UNION ALL
    SELECT 'r', NULL, NULL, role, NULL, {_ROLLED} FROM parts GROUP BY role
    UNION ALL
    SELECT 'd', NULL, NULL, NULL, strftime('%Y-%m-%d', at, 'unixepoch') AS d, {_ROLLED}
        FROM parts GROUP BY d
"""


def _rollup_params(since: float | None) -> tuple[Any, ...]:
    """Whole days from the first at or after `since`, the whole hours before that day, and the
    raw rows of the partial hour before those: each row of the window in exactly one part."""
    if since is None:
        return (_EARLIEST, 0, 0, 0, 0)
    day = first_bucket(since, DAY)
    hour = first_bucket(since, HOUR)
    return (day, hour, day * (DAY // HOUR), since, hour * HOUR)


def _grouping_sets_sql(day_sql: str, where: str) -> str:
    return f"""
        SELECT CASE WHEN GROUPING(provider) = 0 THEN 'm' WHEN GROUPING(role) = 0 THEN 'r'
                    WHEN GROUPING(day) = 0 THEN 'd' ELSE 't' END AS grp,
               provider, model, role, day, {_AGGREGATES}
        FROM (SELECT *, {day_sql} AS day FROM calls {where}) AS c
        GROUP BY GROUPING SETS ((), (provider, model), (role), (day))
    """


def summarize(ledger: LedgerBackend, since: float | None = None) -> dict[str, Any]:
    """`{"since", "totals", "by_model", "by_role", "by_day"}`; every group ordered by cost."""
    if ledger.backend == "sqlite":
        rows = ledger.query(_ROLLUP_SQL, _rollup_params(since))
    else:
        where, params = _since(since)
        rows = ledger.query(_grouping_sets_sql(ledger.day_sql, where), params)
    return _assemble(since, rows)


def _assemble(since: float | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"since": since, "totals": _empty_totals()}
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in _GROUPS.values()}
    for row in rows:
        figures = {m: row[m] if m == "cost_usd" else int(row[m]) for m in MEASURES}
        if row["grp"] == "t":
            summary["totals"] = figures
            continue
        name, keys = _GROUPS[row["grp"]]
        groups[name].append({**{k: row[k] for k in keys}, **figures})
    for name, keys in _GROUPS.values():
        summary[name] = sorted(groups[name], key=_order(name, keys))
    return summary


def _order(name: str, keys: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Days in order; other groups by cost, then calls, then name (as `scan_summary` orders).
    Costs equal to a billionth of a dollar are equal: sums in another order differ in the last
    bits, which must not reorder a table."""
    if name == "by_day":
        return lambda r: (r["day"],)
    return lambda r: (-round(r["cost_usd"] or 0, 9), -r["calls"], *(r[k] for k in keys))


def _empty_totals() -> dict[str, Any]:
    return {m: None if m == "cost_usd" else 0 for m in MEASURES}


def scan_summary(ledger: LedgerBackend, since: float | None = None) -> dict[str, Any]:
    """The same summary by scanning `calls` once per group (the reference `summarize` keeps)."""
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
