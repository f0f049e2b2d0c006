"""The usage ledger in PostgreSQL, shared by a fleet: the same rows and numbered migrations as
`usage.db`.

A call never waits for the database: its row is written to the local SQLite ledger and its
outbox in one transaction (what a call costs without PostgreSQL), and a background thread sends
outbox rows in batches. A row leaves the outbox only after PostgreSQL has committed it, and every
row carries a uuid (`uid`, unique in PostgreSQL, `ON CONFLICT DO NOTHING`), so a batch sent twice
(the database restarting between its commit and our delete) is counted once. When the database
is down, rows wait in the outbox, one warning says so, and they are sent when it is back: by this
process, or by the next openkoi run on the machine.

Every wait has a deadline on our side too (`[usage] timeout`): connecting runs on a thread of
its own, and an operation on a connection that outlives it has its socket shut down (`_Deadline`).
`statement_timeout` is the server's, and a server that took the login and then went silent (a
proxy in front of a dead one, a stuck backend) never says anything, while its TCP stack keeps
ACKing, so neither keepalives nor `tcp_user_timeout` would end the wait.

Migrations run inside one transaction holding `pg_advisory_xact_lock`, so many processes starting
at once apply each exactly once. `psycopg` (3) is imported only when a `postgresql://` URL is
configured (`openkoi[postgres]`); its sync API suits a writer thread that must not depend on the
caller's event loop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from openkoi._backends import Health, describe_error, redact_url, url_secrets
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
    """A connection with libpq's and the server's bounds: connecting, each statement, unacked
    writes. None of them ends a wait on a server that went silent: `PgLedger` adds its own."""
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


def _within(seconds: float, opener: Callable[[], Any]) -> Any:
    """`opener()` (a new connection) on a thread of its own, given up after `seconds`: libpq's
    connect_timeout is whole seconds, at least 2, per address, and a name lookup has none. A
    connection that arrives after that is closed."""
    got: list[Any] = []
    late = threading.Event()
    lock = threading.Lock()

    def run() -> None:
        try:
            value: Any = opener()
        except BaseException as exc:  # handed to the caller's thread
            value = exc
        with lock:
            if not late.is_set():
                got.append(value)
                return
        if not isinstance(value, BaseException):
            with contextlib.suppress(Exception):
                value.close()

    worker = threading.Thread(target=run, name="openkoi-ledger-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    with lock:
        if not got:
            late.set()
            raise TimeoutError(f"could not connect in {seconds:g} s")
    if isinstance(got[0], BaseException):
        raise got[0]
    return got[0]


class _Deadline:
    """Bounds one operation on `conn`: past `seconds` its socket is shut down, so psycopg's wait
    (which has no timeout of its own) ends at once, and the operation raises `TimeoutError`."""

    def __init__(self, conn: Any, seconds: float) -> None:
        self.seconds = seconds
        self._fd: int = conn.pgconn.socket
        self._lock = threading.Lock()
        self._done = False
        self._cut = False
        self._timer = threading.Timer(seconds, self._shut)
        self._timer.daemon = True

    def __enter__(self) -> None:
        self._timer.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:  # from here the socket is never touched: the caller may close it
            self._done = True
        self._timer.cancel()
        if self._cut and (kind is None or issubclass(kind, Exception)):
            raise TimeoutError(f"no answer in {self.seconds:g} s") from exc

    def _shut(self) -> None:
        with self._lock:
            if self._done:
                return
            self._cut = True
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self._fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)  # the connection's own fd stays open


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
        self._secrets = url_secrets(url)  # masked in any error text shown
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
        self._warn_lock = threading.Lock()
        self.unavailable: str | None = None  # why the database failed us last, until it does not

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
        """Send the outbox now; True when it is empty. Never raises: a failure is kept for later.
        Each batch, like connecting, has the database timeout as its deadline."""
        if not self._send_lock.acquire(timeout=self.timeout):
            return False  # another thread is sending them
        try:
            return self._send_all()
        finally:
            self._send_lock.release()

    def _send_all(self) -> bool:
        try:
            while True:
                rows = self.local.pending(_BATCH)
                if not rows:
                    break
                conn = self._connection()
                with _Deadline(conn, self.timeout), conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(_INSERT, [row[1:] for row in rows])
                self.local.sent([row[0] for row in rows])
        except Exception as exc:
            self._failed(exc)
            return False
        self._failures = 0
        self.unavailable = None
        return True

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = _within(self.timeout, lambda: connect(self._url, self.timeout))
            try:
                with _Deadline(conn, self.timeout):
                    migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop(self, exc: Exception) -> None:
        """Forget the connection after a failure; until a success, closing does not wait."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken; nothing more to do with it
                self._conn.close()
            self._conn = None
        self._failures += 1
        if not isinstance(exc, LedgerError):  # the local file's failures are not the database's
            self.unavailable = describe_error(exc, self._secrets)

    def _failed(self, exc: Exception) -> None:
        self._drop(exc)
        if not isinstance(exc, LedgerError):  # the local file itself: the router warns per call
            self._warn(self.unavailable or "")

    def _warn(self, reason: str) -> None:
        """Say once that the database is unavailable: from the writer, or from `close`."""
        with self._warn_lock:
            if self._warned or self.on_warning is None:
                return
            self._warned = True
        self.on_warning(
            f"the usage database {self.where} is unavailable ({reason}); "
            f"rows are kept in {self.local.path} and sent when it is back"
        )

    # -- reading (status --costs) ---------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """A read on PostgreSQL; raises `LedgerError`. Waiting for the writer, connecting and
        the query each have the database timeout as their deadline."""
        if not self._send_lock.acquire(timeout=self.timeout):
            raise LedgerError(f"could not read the usage database {self.where}: writer busy")
        try:
            conn = self._connection()
            with _Deadline(conn, self.timeout), conn.transaction(), conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                names = [d.name for d in cursor.description or ()]
                return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        except Exception as exc:
            self._drop(exc)
            why = describe_error(exc, self._secrets)
            raise LedgerError(f"could not read the usage database {self.where}: {why}") from None
        finally:
            self._send_lock.release()

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
        timeout; nothing when the database is known to be down). Unsent rows stay queued; if
        the database is still keeping us waiting, the warning is said now (the process may end
        before the writer's own deadline)."""
        self._stop.set()
        self._wake.set()
        budget = self.timeout if timeout is None else timeout
        end = time.monotonic() + budget
        busy = False
        if self._thread is not None:
            self._thread.join(max(0.0, end - time.monotonic()))
            busy = self._thread.is_alive()
        if not busy and (self._failures == 0 or timeout is not None):
            sender = threading.Thread(target=self.send, name="openkoi-ledger-flush", daemon=True)
            sender.start()
            sender.join(max(0.0, end - time.monotonic()))
            busy = sender.is_alive()
        if busy:
            self._warn(f"timed out: no answer in {budget:g} s")
        if self._send_lock.acquire(timeout=0.1):
            try:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                self._send_lock.release()
        self.local.close()
