"""Rollups of the local ledger, so a summary reads thousands of rows, not millions.

`calls_daily` and `calls_hourly` hold, per UTC day or hour and per provider, model and role,
what `openkoi status --costs` adds up: calls, outcomes, tokens, known cost and unpriced calls.
Triggers keep them in the same transaction as each row's INSERT (or DELETE), so they can never
disagree with `calls`. A bucket is `CAST(started_at AS INTEGER) / seconds`: integer arithmetic,
so "bucket >= b" is exactly "started_at >= b * seconds", and a `--since` window splits without
overlap into whole days, whole hours, and the raw rows of its first partial hour.
"""

from __future__ import annotations

DAY = 86_400
HOUR = 3_600
TABLES = (("calls_daily", DAY), ("calls_hourly", HOUR))

# What a rollup keeps per bucket, and its value for one `calls` row (NEW or OLD).
_MEASURES = (
    ("calls", "1"),
    ("ok", "{r}.outcome = 'ok'"),
    ("failed", "{r}.outcome != 'ok'"),
    ("input_tokens", "COALESCE({r}.input_tokens, 0)"),
    ("output_tokens", "COALESCE({r}.output_tokens, 0)"),
    ("cache_read_tokens", "COALESCE({r}.cache_read_tokens, 0)"),
    ("cache_write_tokens", "COALESCE({r}.cache_write_tokens, 0)"),
    ("cost_usd", "COALESCE({r}.cost_usd, 0)"),  # the known cost; see unpriced_calls
    ("unpriced_calls", "{r}.cost_usd IS NULL"),
)
MEASURES = tuple(name for name, _ in _MEASURES)
_KEY = "bucket, provider, model, role"


def _values(row: str, seconds: int) -> str:
    values = [f"CAST({row}.started_at AS INTEGER) / {seconds}"]
    values += [f"{row}.{c}" for c in ("provider", "model", "role")]
    return ", ".join(values + [expr.format(r=row) for _, expr in _MEASURES])


def statements(table: str, seconds: int) -> tuple[str, ...]:
    """Create `table`, fill it from the rows already there, and keep it up to date."""
    columns = ", ".join(
        f"{name} {'REAL' if name == 'cost_usd' else 'INTEGER'} NOT NULL" for name in MEASURES
    )
    create = (
        f"CREATE TABLE {table} (bucket INTEGER NOT NULL, provider TEXT NOT NULL, "
        f"model TEXT NOT NULL, role TEXT NOT NULL, {columns}, PRIMARY KEY ({_KEY})) WITHOUT ROWID"
    )
    sums = ", ".join(f"SUM({expr.format(r='c')})" for _, expr in _MEASURES)
    fill = (
        f"INSERT INTO {table} ({_KEY}, {', '.join(MEASURES)}) "
        f"SELECT CAST(c.started_at AS INTEGER) / {seconds}, c.provider, c.model, c.role, {sums} "
        f"FROM calls c GROUP BY 1, 2, 3, 4"
    )
    added = ", ".join(f"{m} = {m} + excluded.{m}" for m in MEASURES)
    on_insert = (
        f"CREATE TRIGGER {table}_insert AFTER INSERT ON calls BEGIN "
        f"INSERT INTO {table} ({_KEY}, {', '.join(MEASURES)}) VALUES ({_values('NEW', seconds)}) "
        f"ON CONFLICT ({_KEY}) DO UPDATE SET {added}; END"
    )
    removed = ", ".join(f"{m} = {m} - ({expr.format(r='OLD')})" for m, expr in _MEASURES)
    where = (
        f"WHERE bucket = CAST(OLD.started_at AS INTEGER) / {seconds} "
        "AND provider = OLD.provider AND model = OLD.model AND role = OLD.role"
    )
    on_delete = (
        f"CREATE TRIGGER {table}_delete AFTER DELETE ON calls BEGIN "
        f"UPDATE {table} SET {removed} {where}; "
        f"DELETE FROM {table} {where} AND calls <= 0; END"
    )
    return create, fill, on_insert, on_delete


def first_bucket(since: float, seconds: int) -> int:
    """The first whole bucket at or after `since`: the least b with b * seconds >= since."""
    bucket = int(since // seconds)
    while bucket * seconds < since:
        bucket += 1
    while (bucket - 1) * seconds >= since:
        bucket -= 1
    return bucket
