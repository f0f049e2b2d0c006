"""SQLite files that several processes share: WAL, a busy timeout, numbered migrations.

`sqlite3` is imported here, lazily, so `import openkoi` never pays for it. Each migration runs
once per file, inside `BEGIN IMMEDIATE`, and is recorded in a migrations table, so two processes
opening a fresh file at the same moment cannot both apply it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    statements: tuple[str, ...]


def connect(path: Path, *, timeout: float) -> sqlite3.Connection:
    """Open `path` in WAL mode with autocommit; raises `sqlite3.Error` or `OSError`."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def open_database(
    path: Path, migrations: Sequence[Migration], *, timeout: float
) -> sqlite3.Connection:
    """`connect` and `migrate` in one step; the connection is closed if migrating fails."""
    conn = connect(path, timeout=timeout)
    try:
        migrate(conn, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


def _retry_busy(action: object, timeout: float) -> None:
    """Switching to WAL can report SQLITE_BUSY without waiting on the busy handler: retry."""
    import sqlite3

    assert callable(action)
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any exception: the write lock is taken
    up front, so a read-then-write cannot be overtaken by another process."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Migration], table: str = "_migrations"
) -> None:
    """Apply the migrations this file has not seen, in number order, atomically."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} "
        "(number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    if not _pending(conn, migrations, table):
        return
    with write_transaction(conn):
        for migration in _pending(conn, migrations, table):
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {table} (number, name, applied_at) VALUES (?, ?, ?)",
                (migration.number, migration.name, time.time()),
            )


def _pending(
    conn: sqlite3.Connection, migrations: Sequence[Migration], table: str
) -> list[Migration]:
    done = {row[0] for row in conn.execute(f"SELECT number FROM {table}")}
    return sorted((m for m in migrations if m.number not in done), key=lambda m: m.number)
