"""Totals and breakdowns of the ledger for `openkoi status --costs`.

`cost_usd` sums the calls whose cost is known; `unpriced_calls` counts those whose cost is not
(a model with no price), so a total is never presented as complete when it is not. Days are UTC.

One query answers a summary. On the local file it reads the rollups (whole days, then whole
hours) and only the raw rows of the window's first partial hour, so a million rows cost what a
thousand do; on PostgreSQL it is one pass over the window with GROUPING SETS. `scan_summary`
is the plain four-scan reading both must agree with.

PostgreSQL may hold rows no openkoi wrote (another client's, a hand-edited table): a start time
that is no date of the years 1 to 9999 (NaN, Infinity, 1e300) is left out, a cost that is NaN,
infinite or past 1e300 counts as unknown, and a token sum past a BIGINT is still a number. Each
is said in one warning instead of breaking the summary, whose figures are always finite numbers
(`--json` must stay JSON).
"""

from __future__ import annotations

import math
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


# PostgreSQL: a row counts when its start time is a date of the years 1 to 9999, and its cost is
# known when it is within +-1e300 (finite, and no sum of them overflows, which would be an error).
_DATED = "started_at >= -62135596800 AND started_at < 253402300800"
_PRICED = "COALESCE(cost_usd BETWEEN -1e300 AND 1e300, FALSE)"


def _pg_sum(column: str) -> str:
    return f"COALESCE(SUM({column}) FILTER (WHERE dated), 0) AS {column}"  # NUMERIC: no overflow


_PG_AGGREGATES = f"""
    COUNT(*) FILTER (WHERE dated) AS calls,
    COUNT(*) FILTER (WHERE dated AND outcome = 'ok') AS ok,
    COUNT(*) FILTER (WHERE dated AND outcome != 'ok') AS failed,
    {_pg_sum("input_tokens")},
    {_pg_sum("output_tokens")},
    {_pg_sum("cache_read_tokens")},
    {_pg_sum("cache_write_tokens")},
    SUM(cost_usd) FILTER (WHERE dated AND priced) AS cost_usd,
    COUNT(*) FILTER (WHERE dated AND NOT priced) AS unpriced_calls,
    COUNT(*) FILTER (WHERE NOT dated) AS undated_rows,
    COUNT(*) FILTER (WHERE dated AND NOT priced AND cost_usd IS NOT NULL) AS bad_cost_rows
"""


def _grouping_sets_sql(day_sql: str, where: str) -> str:
    """One pass; a row with no date falls in no day and adds to no figure (groups of no calls
    are dropped by `_assemble`), only to `undated_rows`."""
    return f"""
        SELECT CASE WHEN GROUPING(provider) = 0 THEN 'm' WHEN GROUPING(role) = 0 THEN 'r'
                    WHEN GROUPING(day) = 0 THEN 'd' ELSE 't' END AS grp,
               provider, model, role, day, {_PG_AGGREGATES}
        FROM (
            SELECT *, CASE WHEN dated THEN {day_sql} END AS day
            FROM (SELECT *, {_DATED} AS dated, {_PRICED} AS priced FROM calls {where}) AS r
        ) AS c
        GROUP BY GROUPING SETS ((), (provider, model), (role), (day))
    """


def summarize(
    ledger: LedgerBackend,
    since: float | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`{"since", "totals", "by_model", "by_role", "by_day"}`; every group ordered by cost.
    `on_warning` hears of the rows that were left out or counted as of unknown cost."""
    if ledger.backend == "sqlite":
        rows = ledger.query(_ROLLUP_SQL, _rollup_params(since))
    else:
        where, params = _since(since)
        rows = ledger.query(_grouping_sets_sql(ledger.day_sql, where), params)
    notes: list[str] = []
    summary = _assemble(since, rows, notes)
    for note in dict.fromkeys(notes):
        if on_warning is not None:
            on_warning(f"{ledger.where}: {note}")
    return summary


def _assemble(since: float | None, rows: list[dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {"since": since, "totals": _empty_totals()}
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in _GROUPS.values()}
    for row in rows:
        figures = {m: _figure(m, row[m], notes) for m in MEASURES}
        if row["grp"] == "t":
            summary["totals"] = figures
            _say_left_out(row, notes)
            continue
        name, keys = _GROUPS[row["grp"]]
        if not figures["calls"]:  # only rows left out (PostgreSQL's groups of undated rows)
            continue
        if name == "by_day" and row["day"] is None:
            notes.append("calls whose start time is no date are left out of the days")
            continue
        groups[name].append({**{k: row[k] for k in keys}, **figures})
    for name, keys in _GROUPS.values():
        summary[name] = sorted(groups[name], key=_order(name, keys))
    return summary


def _figure(measure: str, value: Any, notes: list[str]) -> Any:
    """A finite figure: the cost as a float or None (unknown), every count as an int."""
    if isinstance(value, float) and not math.isfinite(value):  # SQLite keeps an infinite REAL
        notes.append("left out a sum that is not a finite number (a bad row?)")
        value = None
    if measure == "cost_usd":
        return None if value is None else float(value)
    return int(value or 0)


def _say_left_out(totals: dict[str, Any], notes: list[str]) -> None:
    undated, bad_cost = totals.get("undated_rows") or 0, totals.get("bad_cost_rows") or 0
    if undated:
        notes.append(
            f"left out {_rows(undated)} whose start time is no date (NaN, infinite or out of range)"
        )
    if bad_cost:
        notes.append(
            f"counted {_rows(bad_cost)} whose cost is NaN, infinite or past 1e300 as unpriced"
        )


def _rows(n: int) -> str:
    return f"{n:,} row{'s' * (n != 1)}"


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
