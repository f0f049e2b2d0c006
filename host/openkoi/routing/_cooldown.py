"""Cooldowns and rate budgets shared by every openkoi process on the machine, in
`$OPENKOI_HOME/cooldowns.db` (the default state store; `[state] url` puts them in Redis).

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
from openkoi.routing._budgets import Admission, Budget, MemoryBudgets, SqliteBudgets
from openkoi.routing._policy import CooldownPolicy
from openkoi.usage._db import Migration, open_database, write_transaction

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
    Migration(
        2,
        "create budget events",
        (
            """
            CREATE TABLE budget_events (
                budget TEXT NOT NULL,        -- a [budgets] name: provider/model or provider
                id TEXT NOT NULL,            -- the reservation
                at REAL NOT NULL,            -- unix seconds it started
                tokens INTEGER NOT NULL,     -- reserved, then what the call reported
                PRIMARY KEY (budget, id)
            )
            """,
            "CREATE INDEX budget_events_at ON budget_events (budget, at)",
            "CREATE INDEX budget_events_id ON budget_events (id)",
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
        self._memory_budgets = MemoryBudgets()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CooldownStore(path={str(self.path)!r})"

    @property
    def in_memory(self) -> bool:
        """True once the state file has failed and this process keeps state in memory."""
        return self._memory is not None

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
                    with write_transaction(self._connection()) as conn:
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
                    return cooldown
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            assert self._memory is not None
            cooldown = _next(self._memory.get(ref), ref, error, now, policy)
            self._memory[ref] = cooldown
            return cooldown

    def clear(self, ref: str | None = None, *, now: float | None = None) -> None:
        """Forget the cooldown of `ref` (after it answered), or every cooldown. With `now`, only
        one that has ended: another process may have just put the model back in cooldown."""
        import sqlite3

        ended = float("inf") if now is None else now
        with self._lock:
            if self._memory is None:
                try:
                    if ref is None:
                        self._connection().execute("DELETE FROM cooldowns")
                    else:
                        self._connection().execute(
                            "DELETE FROM cooldowns WHERE ref = ? AND until <= ?", (ref, ended)
                        )
                    return
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            assert self._memory is not None
            if ref is None:
                self._memory.clear()
            elif ref in self._memory and self._memory[ref].until <= ended:
                del self._memory[ref]

    # -- rate budgets ---------------------------------------------------------------------

    def reserve(self, budgets: tuple[Budget, ...], tokens: int, *, now: float) -> Admission:
        """Room for one call of about `tokens` under every one of `budgets`, or a refusal."""
        import sqlite3

        with self._lock:
            if self._memory is None:
                try:
                    admission = SqliteBudgets(self._connection()).reserve(budgets, tokens, now)
                    admission.backend = "sqlite"
                    return admission
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            admission = self._memory_budgets.reserve(budgets, tokens, now)
            admission.backend = "memory"
            return admission

    def settle(self, admission: Admission, tokens: int) -> None:
        """Replace a reservation's estimate with the tokens the call reported."""
        import sqlite3

        with self._lock:
            if admission.backend == "sqlite" and self._memory is None:
                try:
                    SqliteBudgets(self._connection()).settle(admission, tokens)
                except (sqlite3.Error, OSError) as exc:
                    self._degrade(exc)
            elif admission.backend == "memory":
                self._memory_budgets.settle(admission, tokens)

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
