"""The usage ledger: one row per provider call in `$OPENKOI_HOME/usage.db`.

Each row keeps the prices it was costed with, so a later change to the price table never rewrites
history. Token columns are NULL when the provider reported no counts (an embedding call, a stream
cut before its usage event): unknown, not zero. `cost_usd` is NULL when the model has no price.
Several processes write at once: WAL, a busy timeout, one INSERT per call.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openkoi._backends import Health
from openkoi._errors import LedgerError
from openkoi._paths import openkoi_home
from openkoi._types import TokenUsage
from openkoi.usage._db import Migration, open_database, write_transaction
from openkoi.usage._pricing import Price
from openkoi.usage._rollup import TABLES as ROLLUPS
from openkoi.usage._rollup import statements as rollup_statements

if TYPE_CHECKING:
    import sqlite3

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create calls",
        (
            """
            CREATE TABLE calls (
                id INTEGER PRIMARY KEY,
                started_at REAL NOT NULL,          -- unix seconds
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                role TEXT NOT NULL,
                operation TEXT NOT NULL,           -- chat | stream | embed
                outcome TEXT NOT NULL,             -- ok | cancelled | error | an error kind
                error TEXT,
                input_tokens INTEGER,
                output_tokens INTEGER,
                cache_read_tokens INTEGER,
                cache_write_tokens INTEGER,
                latency_ms REAL NOT NULL,
                first_chunk_ms REAL,
                cost_usd REAL,
                price_input REAL,
                price_output REAL,
                price_cache_read REAL,
                price_cache_write REAL,
                price_source TEXT,
                request_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                pid INTEGER NOT NULL
            )
            """,
            "CREATE INDEX calls_started_at ON calls (started_at)",
        ),
    ),
    Migration(
        2,
        "add row uid and host",
        (
            "ALTER TABLE calls ADD COLUMN uid TEXT",  # the idempotency key of a shared ledger
            "ALTER TABLE calls ADD COLUMN host TEXT",
            "CREATE UNIQUE INDEX calls_uid ON calls (uid)",
            # rows not yet sent to a shared ledger ([usage] database); local only
            "CREATE TABLE outbox (call_id INTEGER PRIMARY KEY)",
        ),
    ),
    Migration(
        3,
        "summary rollups (local file only)",
        tuple(s for table, seconds in ROLLUPS for s in rollup_statements(table, seconds)),
    ),
)

COLUMNS = (
    "started_at",
    "provider",
    "model",
    "role",
    "operation",
    "outcome",
    "error",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "latency_ms",
    "first_chunk_ms",
    "cost_usd",
    "price_input",
    "price_output",
    "price_cache_read",
    "price_cache_write",
    "price_source",
    "request_id",
    "attempt",
    "pid",
    "uid",
    "host",
)
_INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_HOST = socket.gethostname()


@dataclass(frozen=True)
class CallRecord:
    """One provider call as the ledger keeps it."""

    provider: str
    model: str
    role: str
    operation: str
    outcome: str
    started_at: float
    latency_ms: float
    usage: TokenUsage | None = None
    error: str | None = None
    first_chunk_ms: float | None = None
    price: Price | None = None
    cost_usd: float | None = None
    request_id: str = ""
    attempt: int = 1
    uid: str = field(default_factory=lambda: new_uid())


def new_uid() -> str:
    """A random (version 4) uuid as 32 hex digits, without building a `uuid.UUID` (a third of
    the cost of a ledger row's bookkeeping)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def usage_db_path() -> Path:
    return openkoi_home() / "usage.db"


class Ledger:
    """Appends `CallRecord`s and answers questions about them. Failures raise `LedgerError`.

    The local ledger, and the outbox of a shared one: `record(..., queue=True)` also marks the
    row as not yet sent, in the same transaction, until `sent()` is told it arrived."""

    backend = "sqlite"
    # the whole second first: SQLite's date functions round to the millisecond, which would put
    # a call in the last half millisecond of a day in the next one
    day_sql = "strftime('%Y-%m-%d', CAST(started_at AS INTEGER), 'unixepoch')"

    def __init__(self, path: Path | None = None, *, timeout: float = 2.0) -> None:
        self.path = path or usage_db_path()
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ledger(path={str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.path, MIGRATIONS, timeout=self.timeout)
        return self._conn

    def _fail(self, doing: str, exc: BaseException) -> LedgerError:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return LedgerError(
            f"could not {doing} the usage database {self.path}: {exc}", path=str(self.path)
        )

    @property
    def where(self) -> str:
        return str(self.path)

    def record(self, record: CallRecord, *, queue: bool = False) -> int:
        """Append one call (and, with `queue`, put it in the outbox); returns its row id."""
        import sqlite3

        row = _row(record)
        with self._lock:
            try:
                conn = self._connection()
                if not queue:
                    return int(conn.execute(_INSERT, row).lastrowid or 0)
                with write_transaction(conn):
                    rowid = int(conn.execute(_INSERT, row).lastrowid or 0)
                    conn.execute("INSERT INTO outbox (call_id) VALUES (?)", (rowid,))
                return rowid
            except (sqlite3.Error, OSError) as exc:
                raise self._fail("write to", exc) from None

    def record_many(self, records: list[CallRecord]) -> None:
        """Append several calls in one transaction (what the background writer commits)."""
        import sqlite3

        rows = [_row(r) for r in records]
        with self._lock:
            try:
                conn = self._connection()
                with write_transaction(conn):
                    conn.executemany(_INSERT, rows)
            except (sqlite3.Error, OSError) as exc:
                raise self._fail("write to", exc) from None

    def pending(self, limit: int = 500) -> list[tuple[Any, ...]]:
        """Up to `limit` outbox rows, oldest first: the local id, then the `COLUMNS` values."""
        import sqlite3

        with self._lock:
            try:
                return (
                    self._connection()
                    .execute(
                        f"SELECT c.id, {', '.join('c.' + c for c in COLUMNS)} FROM outbox o "
                        "JOIN calls c ON c.id = o.call_id ORDER BY o.call_id LIMIT ?",
                        (limit,),
                    )
                    .fetchall()
                )
            except (sqlite3.Error, OSError) as exc:
                raise self._fail("read", exc) from None

    def sent(self, ids: list[int]) -> None:
        """These outbox rows have reached the shared ledger."""
        import sqlite3

        with self._lock:
            try:
                self._connection().executemany(
                    "DELETE FROM outbox WHERE call_id = ?", [(i,) for i in ids]
                )
            except (sqlite3.Error, OSError) as exc:
                raise self._fail("write to", exc) from None

    def health(self) -> Health:
        try:
            self.query("SELECT 1 AS ok")
        except LedgerError as exc:
            return Health(self.backend, self.where, False, str(exc))
        return Health(self.backend, self.where, True)

    def queued(self) -> int:
        """How many rows wait in the outbox."""
        return int(self.query("SELECT COUNT(*) AS n FROM outbox")[0]["n"])

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts (used by the summaries and by tests)."""
        import sqlite3

        with self._lock:
            try:
                cursor = self._connection().execute(sql, params)
                names = [d[0] for d in cursor.description or ()]
                return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
            except (sqlite3.Error, OSError) as exc:
                raise self._fail("read", exc) from None

    def calls(self, since: float | None = None) -> list[dict[str, Any]]:
        where, params = _since(since)
        return self.query(f"SELECT * FROM calls {where} ORDER BY id", params)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _since(since: float | None) -> tuple[str, tuple[Any, ...]]:
    return ("WHERE started_at >= ?", (since,)) if since is not None else ("", ())


def _row(record: CallRecord) -> tuple[Any, ...]:
    """The `COLUMNS` values of one call."""
    usage = record.usage
    price = record.price
    return (
        record.started_at,
        record.provider,
        record.model,
        record.role,
        record.operation,
        record.outcome,
        record.error,
        usage.input_tokens if usage else None,
        usage.output_tokens if usage else None,
        usage.cache_read_tokens if usage else None,
        usage.cache_write_tokens if usage else None,
        record.latency_ms,
        record.first_chunk_ms,
        record.cost_usd,
        price.input if price else None,
        price.output if price else None,
        price.cache_read if price else None,
        price.cache_write if price else None,
        price.source if price else None,
        record.request_id,
        record.attempt,
        os.getpid(),
        record.uid,
        _HOST,
    )
