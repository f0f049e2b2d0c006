"""Rate budgets: `[budgets."provider/model"]` and `[budgets.provider]`, requests and tokens per
minute, one number for every process that shares the state store.

Windows slide: a budget of `rpm = N` admits at most N calls in any 60 seconds (not N per clock
minute, which lets 2N through across a minute boundary). A call reserves its tokens up front (its
`max_tokens` plus a rough count of its input, four characters a token) and is settled afterwards
to the tokens the provider reported. This module holds the rule itself (`decide`), kept pure, and
the two local stores that apply it: in memory and in SQLite. Redis applies the same rule in Lua.
A stored entry no code of ours would write (garbage tokens, a start more than a window ahead) is
deleted by the next reservation, which says so, rather than trusted or fatal.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from openkoi._config import BudgetEntry
from openkoi._errors import BudgetExceededError
from openkoi._types import ChatRequest, TokenUsage
from openkoi.usage._db import write_transaction

if TYPE_CHECKING:
    import sqlite3

WINDOW = 60.0  # seconds: budgets are per minute
MAX_TOKENS = 10**12  # tokens one call counts, at most: a larger stored number is bad data


def brief(value: object) -> str:
    """A stored value as a warning shows it: its repr, cut short (it may be megabytes)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "..."


def clamp_tokens(tokens: int) -> int:
    """`tokens` within [0, MAX_TOKENS]: what is stored is always what we accept back."""
    return min(max(tokens, 0), MAX_TOKENS)


@dataclass(frozen=True)
class Budget:
    """One `[budgets.<name>]` table; `name` is a model ref or a provider id."""

    name: str
    rpm: int | None = None
    tpm: int | None = None

    def label(self, which: str) -> str:
        return f"{self.name} {which}={self.rpm if which == 'rpm' else self.tpm}"


@dataclass
class Admission:
    """The outcome of asking for room: `ok`, or refused by `budget` until `retry_after` seconds
    have passed. `backend` says which store holds the reservation (it is settled there)."""

    ok: bool
    budgets: tuple[Budget, ...] = ()
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tokens: int = 0
    budget: str | None = None
    retry_after: float = 0.0
    backend: str = ""

    def error(self, ref: str) -> BudgetExceededError:
        return BudgetExceededError(
            f"over the rate budget {self.budget} (room again in {self.retry_after:.1f} s)",
            budget=self.budget or ref,
            provider=ref.partition("/")[0],
            retry_after=self.retry_after,
        )


def budgets_for(ref: str, table: Mapping[str, BudgetEntry]) -> tuple[Budget, ...]:
    """The budgets a call to `ref` counts against: the model's, then its provider's."""
    found = []
    for name in (ref, ref.partition("/")[0]):
        entry = table.get(name)
        if entry is not None and (entry.rpm is not None or entry.tpm is not None):
            found.append(Budget(name, entry.rpm, entry.tpm))
    return tuple(found)


def estimate_tokens(request: ChatRequest | None) -> int:
    """Tokens to reserve before a call: its output cap plus about a token per 4 input characters."""
    if request is None:
        return 0
    chars = len(request.system or "")
    for message in request.messages:
        chars += len(message.content or "")
    return (request.max_tokens or 0) + (chars + 3) // 4


def used_tokens(usage: TokenUsage | None) -> int:
    """What a finished call counts against a tpm budget: the input and output it reported."""
    return 0 if usage is None else usage.input_tokens + usage.output_tokens


def decide(
    events: Sequence[tuple[float, int]], budget: Budget, tokens: int, now: float
) -> tuple[bool, float, str | None]:
    """May one more call of `tokens` start now? `events` are (start, tokens) within the window.

    Returns (ok, seconds until it may, the budget's label when not). A single call larger than
    the whole tpm budget waits for an empty window rather than forever.
    """
    live = sorted(e for e in events if e[0] > now - WINDOW)
    if budget.rpm is not None and len(live) + 1 > budget.rpm:
        if budget.rpm == 0 or not live:
            return False, WINDOW, budget.label("rpm")
        oldest = live[len(live) - budget.rpm]  # once it leaves the window there is room
        return False, max(oldest[0] + WINDOW - now, 0.001), budget.label("rpm")
    if budget.tpm is not None:
        if budget.tpm == 0:
            return False, WINDOW, budget.label("tpm")
        need = min(tokens, budget.tpm)
        used = sum(t for _, t in live)
        if used + need > budget.tpm or used >= budget.tpm:
            freed, wait = 0, WINDOW
            for start, spent in live:  # the wait until enough of the window has left it
                freed += spent
                if used - freed + need <= budget.tpm and used - freed < budget.tpm:
                    wait = start + WINDOW - now
                    break
            return False, max(wait, 0.001), budget.label("tpm")
    return True, 0.0, None


class MemoryBudgets:
    """Budgets kept in this process only: the fallback when no shared store can be used."""

    def __init__(self) -> None:
        self._events: dict[str, dict[str, tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def reserve(self, budgets: Sequence[Budget], tokens: int, now: float) -> Admission:
        with self._lock:
            windows = []
            for budget in budgets:
                window = self._events.setdefault(budget.name, {})
                for key in [k for k, (at, _) in window.items() if at <= now - WINDOW]:
                    del window[key]
                ok, wait, label = decide(list(window.values()), budget, tokens, now)
                if not ok:
                    return Admission(False, tuple(budgets), budget=label, retry_after=wait)
                windows.append(window)
            admission = Admission(True, tuple(budgets), tokens=tokens)
            for window in windows:
                window[admission.id] = (now, tokens)
            return admission

    def settle(self, admission: Admission, tokens: int) -> None:
        with self._lock:
            for budget in admission.budgets:
                window = self._events.get(budget.name, {})
                if admission.id in window:
                    window[admission.id] = (window[admission.id][0], tokens)


class SqliteBudgets:
    """Budgets in the machine's state file, shared by its processes (`BEGIN IMMEDIATE`)."""

    def __init__(
        self, conn: sqlite3.Connection, *, on_bad: Callable[[str, str], None] | None = None
    ) -> None:
        self.conn = conn
        self.on_bad = on_bad  # (budget, what is wrong) for each bad entry deleted

    def _drop_bad(self, conn: sqlite3.Connection, names: list[str], now: float) -> None:
        """Delete the entries of `names` that no reservation of ours would have written."""
        marks = ", ".join("?" * len(names))
        where = (
            f"budget IN ({marks}) AND NOT (typeof(at) IN ('integer', 'real') AND at <= ? "
            "AND typeof(tokens) IN ('integer', 'real') AND tokens BETWEEN 0 AND ?)"
        )
        args = (*names, now + WINDOW, MAX_TOKENS)
        bad = conn.execute(
            f"SELECT budget, id, at, tokens FROM budget_events WHERE {where} LIMIT 10", args
        ).fetchall()
        if not bad:
            return
        conn.execute(f"DELETE FROM budget_events WHERE {where}", args)
        for name, id_, at, tokens in bad:
            if self.on_bad is not None:
                self.on_bad(str(name), f"{brief(id_)} at {brief(at)}, {brief(tokens)} tokens")

    def reserve(self, budgets: Sequence[Budget], tokens: int, now: float) -> Admission:
        names = [b.name for b in budgets]
        marks = ", ".join("?" * len(names))
        tokens = clamp_tokens(tokens)
        with write_transaction(self.conn) as conn:
            self._drop_bad(conn, names, now)
            conn.execute(
                f"DELETE FROM budget_events WHERE budget IN ({marks}) AND at <= ?",
                (*names, now - WINDOW),
            )
            for budget in budgets:
                rows = conn.execute(
                    "SELECT at, tokens FROM budget_events WHERE budget = ?", (budget.name,)
                ).fetchall()
                ok, wait, label = decide(rows, budget, tokens, now)
                if not ok:
                    return Admission(False, tuple(budgets), budget=label, retry_after=wait)
            admission = Admission(True, tuple(budgets), tokens=tokens)
            conn.executemany(
                "INSERT INTO budget_events (budget, id, at, tokens) VALUES (?, ?, ?, ?)",
                [(name, admission.id, now, tokens) for name in names],
            )
            return admission

    def settle(self, admission: Admission, tokens: int) -> None:
        self.conn.execute(
            "UPDATE budget_events SET tokens = ? WHERE id = ?", (clamp_tokens(tokens), admission.id)
        )
