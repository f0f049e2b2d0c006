"""Cooldowns and rate budgets shared by every openkoi process on the machine, in
`$OPENKOI_HOME/cooldowns.db` (the default state store; `[state] url` puts them in Redis).

A model that failed transiently is skipped until its cooldown ends, by this process and by the
next CLI run alike. If the file cannot be used (locked for too long, corrupted, read-only), the
store says so once and keeps cooldowns in memory for the rest of the process: a broken state file
never stops a call. A row that is not one this code would write (a hand edit, garbage) is
ignored with one warning naming it, and replaced when the model fails again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from openkoi._errors import ERROR_KINDS, BudgetExceededError, ProviderError
from openkoi._paths import openkoi_home
from openkoi.routing._budgets import Admission, Budget, MemoryBudgets, SqliteBudgets, brief
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


MAX_MESSAGE = 1000  # characters of an error message kept with a cooldown, and shown from one
HORIZON = 366 * 86400.0  # seconds: no cooldown ends further ahead (a longer one is bad data)
MAX_FAILURES = 1_000_000  # failures in a row that a cooldown counts
MAX_REPORTED = 256  # bad entries warned about per store, so garbage cannot flood the warnings
FIELDS = ("until", "failures", "kind", "message", "status", "updated")

# The error class a cooldown's kind is rebuilt as. A budget's error is never a cooldown's (and
# takes other arguments): a stored one is rebuilt as the generic error.
_REBUILT = {kind: cls for kind, cls in ERROR_KINDS.items() if cls is not BudgetExceededError}


# A row as `read_cooldown` takes it; text fields cut in SQL, so a huge one is never read whole.
_COLUMNS = (
    f"ref, until, failures, substr(kind, 1, 65), substr(message, 1, {MAX_MESSAGE + 1}), "
    "status, updated_at"
)


def short_message(text: str) -> str:
    """`text` cut to `MAX_MESSAGE` characters: a message read back (written by any machine, or
    by hand) ends up on one line of the CLI's error."""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


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
        cls = _REBUILT.get(self.kind, ProviderError)
        return cls(self.message, provider=self.ref.partition("/")[0], status=self.status)


def _number(value: object) -> float | None:
    """A finite number, stored as a number or as text; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def read_cooldown(
    ref: str,
    fields: Sequence[object],
    *,
    now: float,
    seconds: Callable[[float], float] = float,
) -> Cooldown | str:
    """The cooldown stored as `fields` (`FIELDS`, in order), or what is wrong with them: stored
    data may be hand-written or garbage, and must never fail a call. `seconds` maps a stored time
    into the caller's clock; one more than `HORIZON` after `now` is out of range."""
    until_raw, failures_raw, kind, message, status_raw, updated_raw = fields
    missing = [n for n, v in zip(FIELDS, fields, strict=True) if v is None and n != "status"]
    if missing:
        return f"has no {', '.join(missing)}"
    moments = []
    for name, raw in (("until", until_raw), ("updated", updated_raw)):
        number = _number(raw)
        if number is None:
            return f"its {name} is {brief(raw)}, not a number"
        moment = seconds(number)
        if moment > now + HORIZON:
            return f"its {name} is {brief(raw)}, more than a year ahead"
        moments.append(moment)
    failures = _number(failures_raw)
    if failures is None or not failures.is_integer() or not 1 <= failures <= MAX_FAILURES:
        return f"its failures is {brief(failures_raw)}, not a count from 1 to {MAX_FAILURES}"
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if not isinstance(kind, str) or not 0 < len(kind) <= 64:
        return f"its kind is {brief(kind)}, not an error kind"
    if not isinstance(message, str):
        return f"its message is {brief(message)}, not text"
    status = None
    if status_raw is not None and status_raw != "":
        code = _number(status_raw)
        if code is None or not code.is_integer() or not 100 <= code <= 599:
            return f"its status is {brief(status_raw)}, not an HTTP status"
        status = int(code)
    return Cooldown(
        ref, moments[0], int(failures), kind, short_message(message), status, moments[1]
    )


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
        self._reported: set[str] = set()

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
            # Text that is not UTF-8 (a hand edit) is a bad row to skip, not a broken file.
            self._conn.text_factory = lambda data: data.decode("utf-8", "replace")
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

    def _bad(self, what: str, problem: str, done: str = "ignored") -> None:
        """Say once that `what` in the file is garbage: it is `done` with, never trusted or fatal."""
        if what in self._reported or len(self._reported) >= MAX_REPORTED:
            return
        self._reported.add(what)
        if self.on_warning is not None:
            self.on_warning(f"the state file {self.path} holds a bad {what} ({problem}): {done}")

    def _row(self, row: Sequence[object], now: float | None) -> Cooldown | None:
        """A row as a `Cooldown`, or None (with a warning) when it is not one we would write."""
        ref = row[0]
        if not isinstance(ref, str):
            self._bad(f"cooldown row {brief(ref)}", "its ref is not text")
            return None
        found = read_cooldown(ref, row[1:], now=time.time() if now is None else now)
        if isinstance(found, str):
            self._bad(f"cooldown of {ref}", found)
            return None
        return found

    def _budgets(self) -> SqliteBudgets:
        return SqliteBudgets(
            self._connection(),
            on_bad=lambda name, why: self._bad(f"budget entry of {name}", why, "deleted"),
        )

    # -- queries ------------------------------------------------------------------------

    def get(self, refs: Iterable[str], *, now: float | None = None) -> dict[str, Cooldown]:
        """Every stored cooldown of `refs`, expired or not; `now` (default: the time) dates them."""
        import sqlite3

        refs = list(refs)
        with self._lock:
            if self._memory is None:
                try:
                    marks = ", ".join("?" * len(refs))
                    rows = self._connection().execute(
                        f"SELECT {_COLUMNS} FROM cooldowns WHERE ref IN ({marks})", refs
                    )
                    found = [self._row(row, now) for row in rows]
                    return {c.ref: c for c in found if c is not None}
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
                        f"SELECT {_COLUMNS} FROM cooldowns ORDER BY ref"
                    )
                    found = [self._row(row, None) for row in rows]
                    return [c for c in found if c is not None]
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
                            f"SELECT {_COLUMNS} FROM cooldowns WHERE ref = ?",
                            (ref,),
                        ).fetchone()
                        previous = self._row(row, now) if row else None  # a bad one is replaced
                        cooldown = _next(previous, ref, error, now, policy)
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
                    admission = self._budgets().reserve(budgets, tokens, now)
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
                    self._budgets().settle(admission, tokens)
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
    failures = min(failures, MAX_FAILURES)
    until = now + min(policy.seconds(failures, error.retry_after), HORIZON)  # what we read back
    if previous is not None and previous.active(now):
        until = max(until, previous.until)
    return Cooldown(
        ref=ref,
        until=until,
        failures=failures,
        kind=error.kind,
        message=short_message(error.message),
        status=error.status,
        updated_at=now,
    )
