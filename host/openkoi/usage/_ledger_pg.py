"""The usage ledger in PostgreSQL, shared by a fleet: the same rows and numbered migrations as
`usage.db`.

A call never waits for the database: its row is written to the local SQLite ledger and its
outbox in one transaction (what a call costs without PostgreSQL), and a background thread sends
outbox rows in batches. A row leaves the outbox only after PostgreSQL has committed it, and every
row carries a uuid (`uid`, unique in PostgreSQL, `ON CONFLICT DO NOTHING`), so a batch sent twice
(the database restarting between its commit and our delete) is counted once. When the database
is down, rows wait in the outbox, one warning says so, and they are sent when it is back: by this
process, or by the next openkoi run on the machine.

Migrations run inside one transaction holding `pg_advisory_xact_lock`, so many processes starting
at once apply each exactly once. `psycopg` (3) is imported only when a `postgresql://` URL is
configured (`openkoi[postgres]`); its sync API suits a writer thread that must not depend on the
caller's event loop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from openkoi._backends import Health, describe_error, redact_url
from openkoi._errors import ConfigError, LedgerError
from openkoi.usage._db import Migration
from openkoi.usage._ledger import COLUMNS, MIGRATIONS, CallRecord, Ledger, _since

INSTALL_HINT = "pip install 'openkoi[postgres]'"
_LOCK_KEY = 0x6F6B6F69  # "okoi": the advisory lock that serializes migrations
_BATCH = 500
_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between attempts while the database is down

# The same numbers and names as `MIGRATIONS`, in PostgreSQL's types. The outbox is local only.
PG_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create calls",
        (
            """
            CREATE TABLE calls (
                id BIGSERIAL PRIMARY KEY,
                started_at DOUBLE PRECISION NOT NULL,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                role TEXT NOT NULL,
                operation TEXT NOT NULL,
                outcome TEXT NOT NULL,
                error TEXT,
                input_tokens BIGINT,
                output_tokens BIGINT,
                cache_read_tokens BIGINT,
                cache_write_tokens BIGINT,
                latency_ms DOUBLE PRECISION NOT NULL,
                first_chunk_ms DOUBLE PRECISION,
                cost_usd DOUBLE PRECISION,
                price_input DOUBLE PRECISION,
                price_output DOUBLE PRECISION,
                price_cache_read DOUBLE PRECISION,
                price_cache_write DOUBLE PRECISION,
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
            "ALTER TABLE calls ADD COLUMN uid TEXT",
            "ALTER TABLE calls ADD COLUMN host TEXT",
            "CREATE UNIQUE INDEX calls_uid ON calls (uid)",
        ),
    ),
    # Nothing here: PostgreSQL sums a window in one pass (GROUPING SETS). Rollup rows kept by
    # a trigger would be the same few hot rows for every machine of a fleet writing at once.
    Migration(3, "summary rollups (local file only)", ()),
)
assert [(m.number, m.name) for m in PG_MIGRATIONS] == [(m.number, m.name) for m in MIGRATIONS]

_INSERT = (
    f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (uid) DO NOTHING"
)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            f"[usage] database is a PostgreSQL URL, but psycopg is missing: {INSTALL_HINT}",
            key="usage.database",
        ) from None
    return psycopg


def connect(url: str, timeout: float) -> Any:
    """A connection whose every wait is bounded: connecting, each statement, unacked writes."""
    psycopg = _psycopg()
    return psycopg.connect(
        url,
        connect_timeout=max(2, round(timeout)),  # libpq's minimum is 2 s
        options=f"-c statement_timeout={round(timeout * 1000)}",
        tcp_user_timeout=round(timeout * 1000),
        keepalives=1,
        keepalives_idle=max(1, round(timeout)),
        keepalives_interval=1,
        keepalives_count=2,
    )


def migrate(conn: Any) -> None:
    """Apply the pending `PG_MIGRATIONS` once, whoever else is starting at the same moment."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT number FROM _migrations")}
        for migration in PG_MIGRATIONS:
            if migration.number in done:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO _migrations (number, name, applied_at) VALUES (%s, %s, %s)",
                (migration.number, migration.name, time.time()),
            )


class PgLedger:
    """A `LedgerBackend` in PostgreSQL, with `local` (a `Ledger`) as its outbox."""

    backend = "postgresql"
    day_sql = "to_char(to_timestamp(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def __init__(
        self,
        url: str,
        *,
        local: Ledger,
        timeout: float = 2.0,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        _psycopg()  # a missing package is a config error now, not a warning per call
        self._url = url
        self.local = local
        self.timeout = timeout
        self.on_warning = on_warning
        self._conn: Any = None
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._warned = False

    @property
    def where(self) -> str:
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"PgLedger({self.where!r})"

    # -- the hot path: a local write and a wake-up ----------------------------------------

    def record(self, record: CallRecord) -> int:
        rowid = self.local.record(record, queue=True)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="openkoi-ledger", daemon=True)
            self._thread.start()
        self._wake.set()
        return rowid

    # -- the writer ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = _RETRY[min(self._failures, len(_RETRY) - 1)] if self._failures else None
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.send()

    def send(self) -> bool:
        """Send the outbox now; True when it is empty. Never raises: a failure is kept for later."""
        with self._send_lock:
            try:
                while True:
                    rows = self.local.pending(_BATCH)
                    if not rows:
                        break
                    conn = self._connection()
                    with conn.transaction(), conn.cursor() as cursor:
                        cursor.executemany(_INSERT, [row[1:] for row in rows])
                    self.local.sent([row[0] for row in rows])
            except Exception as exc:
                self._failed(exc)
                return False
            self._failures = 0
            return True

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = connect(self._url, self.timeout)
            try:
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _failed(self, exc: Exception) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken; nothing more to do with it
                self._conn.close()
            self._conn = None
        self._failures += 1
        if isinstance(exc, LedgerError):  # the local file itself: the router warns per call
            return
        if not self._warned and self.on_warning is not None:
            self._warned = True
            self.on_warning(
                f"the usage database {self.where} is unavailable ({describe_error(exc)}); "
                f"rows are kept in {self.local.path} and sent when it is back"
            )

    # -- reading (status --costs) ---------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """A read on PostgreSQL, bounded by a watchdog thread; raises `LedgerError`."""
        result: list[list[dict[str, Any]]] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._send_lock:
                    conn = self._connection()
                    with conn.transaction(), conn.cursor() as cursor:
                        cursor.execute(sql.replace("?", "%s"), params)
                        names = [d.name for d in cursor.description or ()]
                        result.append([dict(zip(names, r, strict=True)) for r in cursor.fetchall()])
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=run, name="openkoi-ledger-query", daemon=True)
        worker.start()
        worker.join(self.timeout * 3)
        if result:
            return result[0]
        reason = describe_error(failure[0]) if failure else "timed out"
        self._failures += 1  # known down: closing does not wait for it
        raise LedgerError(f"could not read the usage database {self.where}: {reason}")

    def calls(self, since: float | None = None) -> list[dict[str, Any]]:
        where, params = _since(since)
        return self.query(f"SELECT * FROM calls {where} ORDER BY id", params)

    def health(self) -> Health:
        try:
            start = time.perf_counter()
            self.query("SELECT 1 AS ok")
            took = (time.perf_counter() - start) * 1000
        except LedgerError as exc:
            return Health(self.backend, self.where, False, str(exc))
        queued = self.local.queued()
        detail = f"SELECT 1 in {took:.1f} ms" + (
            f"; {queued} rows queued locally" if queued else ""
        )
        return Health(self.backend, self.where, True, detail)

    def close(self, timeout: float | None = None) -> None:
        """Stop the writer after one last send, all within `timeout` (default: the database
        timeout; nothing when the database is known to be down). Unsent rows stay queued."""
        self._stop.set()
        self._wake.set()
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        if self._thread is not None:
            self._thread.join(max(0.0, end - time.monotonic()))
        if self._failures == 0 or timeout is not None:
            sender = threading.Thread(target=self.send, name="openkoi-ledger-flush", daemon=True)
            sender.start()
            sender.join(max(0.0, end - time.monotonic()))
        if self._send_lock.acquire(timeout=0.1):
            try:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                self._send_lock.release()
        self.local.close()
