"""Token usage and cost: the ledger (`usage.db`), the price table, and their summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openkoi.usage._backend import LedgerBackend, open_ledger, usage_database
from openkoi.usage._ledger import CallRecord, Ledger, usage_db_path
from openkoi.usage._pricing import Price, PriceTable, load_price_table, shipped_prices
from openkoi.usage._summary import summarize

if TYPE_CHECKING:
    from openkoi.usage._ledger_pg import PgLedger

__all__ = [
    "CallRecord",
    "Ledger",
    "LedgerBackend",
    "PgLedger",
    "Price",
    "PriceTable",
    "load_price_table",
    "open_ledger",
    "shipped_prices",
    "summarize",
    "usage_database",
    "usage_db_path",
]


def __getattr__(name: str) -> Any:
    """`PgLedger` is imported on first use: the local ledger never needs it."""
    if name == "PgLedger":
        from openkoi.usage._ledger_pg import PgLedger

        return PgLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
