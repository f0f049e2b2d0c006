"""Choosing the ledger: `$OPENKOI_HOME/usage.db` (SQLite), or PostgreSQL for a fleet.

`[usage] database` (or `OPENKOI_USAGE_DATABASE`) names the PostgreSQL database; every row is
still written to the local file first, as today, and sent from there in the background.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from openkoi._backends import Health
from openkoi._config import Config, UsageSection, backend_url
from openkoi.usage._ledger import CallRecord, Ledger

USAGE_DATABASE_ENV = "OPENKOI_USAGE_DATABASE"


class LedgerBackend(Protocol):
    """Where call rows go and where `openkoi status --costs` reads them."""

    backend: str
    day_sql: str  # the SQL of a row's UTC day, `YYYY-MM-DD`

    @property
    def where(self) -> str: ...

    def record(self, record: CallRecord) -> int:
        """Keep one row; never waits on a network (raises `LedgerError` if the local file fails)."""
        ...

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """A read-only query with `?` placeholders; raises `LedgerError`."""
        ...

    def calls(self, since: float | None = None) -> list[dict[str, Any]]: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...


def usage_database(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """`OPENKOI_USAGE_DATABASE`, else `[usage] database`."""
    return backend_url(USAGE_DATABASE_ENV, UsageSection, "database", config.usage.database, environ)


def open_ledger(config: Config, *, on_warning: Callable[[str], None]) -> LedgerBackend:
    url = usage_database(config)
    if url is None:
        return Ledger()
    from openkoi.usage._ledger_pg import PgLedger  # only with a PostgreSQL ledger configured

    return PgLedger(url, local=Ledger(), timeout=config.usage.timeout, on_warning=on_warning)
