"""Token usage and cost: the ledger (`usage.db`), the price table, and their summaries."""

from __future__ import annotations

from openkoi.usage._ledger import CallRecord, Ledger, usage_db_path
from openkoi.usage._pricing import Price, PriceTable, load_price_table, shipped_prices
from openkoi.usage._summary import summarize

__all__ = [
    "CallRecord",
    "Ledger",
    "Price",
    "PriceTable",
    "load_price_table",
    "shipped_prices",
    "summarize",
    "usage_db_path",
]
