"""The background ledger writer: a caller reads its own rows, and a clean exit loses none."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from openkoi._errors import LedgerError
from openkoi._types import TokenUsage
from openkoi.usage import CallRecord, Ledger
from openkoi.usage._writer import QueuedLedger


def record(i: int) -> CallRecord:
    return CallRecord(
        "openai", "gpt-5.2", "executor", "chat", "ok", time.time(), 1.0,
        usage=TokenUsage(input_tokens=i, output_tokens=1), request_id=f"r{i}",
    )  # fmt: skip


def test_reads_through_the_writer_see_every_row_handed_over(tmp_path: Path) -> None:
    warnings: list[str] = []
    ledger = QueuedLedger(Ledger(tmp_path / "usage.db"), on_warning=warnings.append)
    try:
        for i in range(500):
            ledger.record(record(i))
        rows = ledger.calls()
    finally:
        ledger.close()
    assert [r["input_tokens"] for r in rows] == list(range(500))
    assert len({r["uid"] for r in rows}) == 500 and warnings == []


def test_a_clean_exit_without_close_loses_no_row(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ledger_writer import record
        from openkoi.usage import Ledger
        from openkoi.usage._writer import QueuedLedger
        ledger = QueuedLedger(Ledger(Path({str(db)!r})), on_warning=print)
        for i in range(2000):
            ledger.record(record(i))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with Ledger(db) as ledger:
        assert ledger.query("SELECT COUNT(*) AS n FROM calls")[0]["n"] == 2000


def test_a_file_that_cannot_be_written_is_reported_by_the_call(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    db.write_bytes(b"not a database " * 100)
    warnings: list[str] = []
    ledger = QueuedLedger(Ledger(db), on_warning=warnings.append)
    try:
        with pytest.raises(LedgerError, match="usage database"):  # on the caller's path
            ledger.record(record(1))
    finally:
        ledger.close()
