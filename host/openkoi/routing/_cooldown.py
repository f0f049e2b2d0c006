"""Cooldowns shared by every openkoi process on the machine, in `$OPENKOI_HOME/cooldowns.db`.

A model that failed transiently is skipped until its cooldown ends, by this process and by the
next CLI run alike. If the file cannot be used (locked for too long, corrupted, read-only), the
store says so once and keeps cooldowns in memory for the rest of the process: a broken state file
never stops a call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from openkoi._errors import ERROR_KINDS, ProviderError
from openkoi._paths import openkoi_home
from openkoi.routing._policy import CooldownPolicy
from openkoi.usage._db import Migration, open_database

if TYPE_CHECKING:
    import sqlite3

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create cooldowns",
        (
            """
            CREATE TABLE cooldowns (
                ref TEXT PRIMARY KEY,        -- provider/model
                until REAL NOT NULL,         -- unix seconds
                failures INTEGER NOT NULL,   -- transient failures in a row
                kind TEXT NOT NULL,          -- the last error's kind
                message TEXT NOT NULL,       -- the last error's message (secrets scrubbed)
                status INTEGER,
                updated_at REAL NOT NULL
            )
            """,
        ),
    ),
)


@dataclass(frozen=True)
class Cooldown:
    ref: str
    until: float
    failures: int
    kind: str
    message: str
    status: int | None = None
    updated_at: float = 0.0

    def active(self, now: float) -> bool:
        return self.until > now

    def error(self) -> ProviderError:
        """The last error, rebuilt as its typed class."""
        cls = ERROR_KINDS.get(self.kind, ProviderError)
        return cls(self.message, provider=self.ref.partition("/")[0], status=self.status)


def cooldowns_db_path() -> Path:
    return openkoi_home() / "cooldowns.db"


class CooldownStore:
    def __init__(
        self,
        path: Path | None = None,
        *,
        timeout: float = 1.0,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path or cooldowns_db_path()
        self.timeout = timeout
        self.on_warning = on_warning
        self._conn: sqlite3.Connection | None = None
        self._memory: dict[str, Cooldown] | None = None  # set once the file has failed us
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CooldownStore(path={str(self.path)!r})"

    # -- the file, or memory when the file fails ---------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.path, MIGRATIONS, timeout=self.timeout)
        return self._conn

    def _degrade(self, exc: BaseException) -> dict[str, Cooldown]:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._memory = {}
        if self.on_warning is not None:
            self.on_warning(
                f"cooldowns are kept in memory only: the state file {self.path} "
                f"could not be used ({exc})"
            )
        return self._memory

    # -- queries ------------------------------------------------------------------------

    def get(self, refs: Iterable[str]) -> dict[str, Cooldown]:
        """Every stored cooldown of `refs`, expired or not."""
        import sqlite3

        refs = list(refs)
        with self._lock:
            if self._memory is None:
                try:
                    rows = self._connection().execute(
                        f"SELECT ref, until, failures, kind, message, status, updated_at "
                        f"FROM cooldowns WHERE ref IN ({', '.join('?' * len(refs))})",
                        refs,
                    )
                    return {row[0]: Cooldown(*row) for row in rows}
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            assert self._memory is not None
            return {ref: self._memory[ref] for ref in refs if ref in self._memory}

    def all(self) -> list[Cooldown]:
        import sqlite3

        with self._lock:
            if self._memory is None:
                try:
                    rows = self._connection().execute(
                        "SELECT ref, until, failures, kind, message, status, updated_at "
                        "FROM cooldowns ORDER BY ref"
                    )
                    return [Cooldown(*row) for row in rows]
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            assert self._memory is not None
            return sorted(self._memory.values(), key=lambda c: c.ref)

    # -- updates ------------------------------------------------------------------------

    def fail(
        self, ref: str, error: ProviderError, *, now: float, policy: CooldownPolicy
    ) -> Cooldown:
        """Put `ref` in cooldown after `error`; returns the cooldown now in force."""
        import sqlite3

        with self._lock:
            if self._memory is None:
                try:
                    conn = self._connection()
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        row = conn.execute(
                            "SELECT ref, until, failures, kind, message, status, updated_at "
                            "FROM cooldowns WHERE ref = ?",
                            (ref,),
                        ).fetchone()
                        cooldown = _next(Cooldown(*row) if row else None, ref, error, now, policy)
                        conn.execute(
                            "INSERT OR REPLACE INTO cooldowns "
                            "(ref, until, failures, kind, message, status, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (
                                cooldown.ref,
                                cooldown.until,
                                cooldown.failures,
                                cooldown.kind,
                                cooldown.message,
                                cooldown.status,
                                cooldown.updated_at,
                            ),
                        )
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    return cooldown
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            assert self._memory is not None
            cooldown = _next(self._memory.get(ref), ref, error, now, policy)
            self._memory[ref] = cooldown
            return cooldown

    def clear(self, ref: str | None = None) -> None:
        """Forget the cooldown of `ref` (after it answered), or every cooldown."""
        import sqlite3

        with self._lock:
            if self._memory is None:
                try:
                    if ref is None:
                        self._connection().execute("DELETE FROM cooldowns")
                    else:
                        self._connection().execute("DELETE FROM cooldowns WHERE ref = ?", (ref,))
                    return
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            assert self._memory is not None
            if ref is None:
                self._memory.clear()
            else:
                self._memory.pop(ref, None)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _next(
    previous: Cooldown | None,
    ref: str,
    error: ProviderError,
    now: float,
    policy: CooldownPolicy,
) -> Cooldown:
    """The cooldown after one more failure.

    A failure while the model is still cooling (another process just marked it) does not count
    twice. A failure long after the last cooldown ended starts a new streak.
    """
    failures = 1
    if previous is not None:
        if previous.active(now):
            failures = previous.failures
        elif now - previous.until <= policy.max_cooldown:
            failures = previous.failures + 1
    until = now + policy.seconds(failures, error.retry_after)
    if previous is not None and previous.active(now):
        until = max(until, previous.until)
    return Cooldown(
        ref=ref,
        until=until,
        failures=failures,
        kind=error.kind,
        message=error.message,
        status=error.status,
        updated_at=now,
    )
