"""Writing ledger rows off the call's path: a call hands its row to a writer thread and goes on.

An INSERT into `usage.db` costs a routed call a few hundred microseconds of its latency (a
third of a loopback chat); the writer thread does it while the event loop waits on the
network, and commits whatever has piled up in one transaction. Nothing is lost on a clean exit:
`close()` (the router's `aclose`) and, failing that, an `atexit` hook write every row still
queued, and a read through this ledger first waits for the rows already handed over, so a
caller always reads its own calls. A crash (SIGKILL, power loss) can lose the rows of the calls
that ended in the last moment before it, those not yet committed: the writer commits as soon as
a row arrives, so that is the rows of a few milliseconds, never more than `MAX_QUEUED`.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from openkoi._backends import Health
from openkoi.usage._backend import LedgerBackend
from openkoi.usage._ledger import CallRecord

# Rows waiting for the writer at most; past that a call writes its own row (no row is dropped).
MAX_QUEUED = 10_000
# Failed writes remembered for the caller's thread at most (each is one warning).
MAX_REPORTED = 100
# How long a read, or closing, waits for the writer to catch up (a locked usage.db).
FLUSH_TIMEOUT = 30.0


class QueuedLedger:
    """A `LedgerBackend` whose `record` queues the row for a writer thread."""

    def __init__(self, inner: LedgerBackend, *, on_warning: Callable[[str], None]) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.day_sql = inner.day_sql
        self._warn = on_warning
        self._queue: deque[CallRecord] = deque()
        self._cond = threading.Condition()
        self._busy = False  # the writer holds rows it took from the queue
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()  # one writer at a time: the thread or a caller
        self._healthy = False  # a write has succeeded since the last one failed
        self._failures: list[str] = []  # the writer thread's, until a caller's thread says them
        ref = weakref.ref(self)
        self._atexit = lambda: _flush_ref(ref)
        atexit.register(self._atexit)

    def __repr__(self) -> str:
        return f"QueuedLedger({self.inner!r})"

    @property
    def where(self) -> str:
        return self.inner.where

    def record(self, record: CallRecord) -> int:
        """Queue one row (returns 0: its id is not known yet). Until a write has succeeded, and
        again after one failed, rows are written on the caller's path, so a usage.db that
        cannot be written is reported by the call that met it (`LedgerError`)."""
        self._report()
        with self._cond:
            queued = self._healthy and len(self._queue) < MAX_QUEUED and not self._stopping
            if queued:
                self._queue.append(record)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="openkoi-usage-writer", daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
                return 0
        with self._write_lock:
            rowid = self.inner.record(record)
        self._healthy = True
        return rowid

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                rows = list(self._queue)
                self._queue.clear()
                self._busy = True
            try:
                self._write(rows)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, rows: list[CallRecord]) -> None:
        """Write `rows`, in one transaction when the backend can; a failure is kept for the
        caller's thread (`_report`), row by row, and the next rows go on the call's path."""
        with self._write_lock:
            many = getattr(self.inner, "record_many", None)
            if many is not None and len(rows) > 1:
                try:
                    many(rows)
                    return
                except Exception:
                    pass
            for row in rows:
                try:
                    self.inner.record(row)
                except Exception as exc:
                    self._healthy = False
                    with self._cond:
                        if len(self._failures) < MAX_REPORTED:
                            self._failures.append(f"usage not recorded: {exc}")

    def _report(self) -> None:
        """Say, on the caller's thread, which writes of the writer thread failed."""
        if self._failures:
            with self._cond:
                failures, self._failures = self._failures, []
            for message in failures:
                self._warn(message)

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Wait until every row handed over so far is written; False if `timeout` passed."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    # -- reads see every row handed over -----------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        self.flush()
        self._report()
        return self.inner.query(sql, params)

    def calls(self, since: float | None = None) -> list[dict[str, Any]]:
        self.flush()
        self._report()
        return self.inner.calls(since)

    def health(self) -> Health:
        return self.inner.health()

    def close(self) -> None:
        """Write every queued row, stop the writer, close the backend."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(FLUSH_TIMEOUT)
        with self._cond:  # rows the writer did not get to (it timed out on a locked file)
            rest = list(self._queue)
            self._queue.clear()
        if rest:
            self._write(rest)
        self._report()
        atexit.unregister(self._atexit)
        self.inner.close()


def _flush_ref(ref: weakref.ReferenceType[QueuedLedger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.flush()
