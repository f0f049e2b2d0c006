"""`openkoi status`: roles, fallback chains and providers; `--costs` for tokens and money.

openkoi status                         roles, chains, cooling models, providers
openkoi status --costs                 totals, by provider/model, by role, by day
openkoi status --costs --since 7d      only the last 7 days (also 12h, 30m, 2w, 2026-11-01)
openkoi status --costs --json          the same as JSON
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.text import Text

from openkoi.cli import _out as out

if TYPE_CHECKING:
    from rich.table import Table

_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now: float | None = None) -> float:
    """`7d`, `12h`, `30m`, `2w`, a date (`2026-11-01`, UTC) or an ISO datetime -> unix seconds.

    A duration longer than the time since 1970 means everything: it starts at the epoch, as
    no ledger row is older. A datetime outside the UTC years 1 to 9999 is a usage error.
    """
    now = time.time() if now is None else now
    value = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhdw])", value)
    if match:
        return max(now - float(match.group(1)) * _UNITS[match.group(2)], 0.0)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration (7d, 12h, 30m, 2w) or a date (2026-11-01)",
            param_hint="--since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        when.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in the year 10000 in UTC
        raise click.BadParameter(
            f"{text!r} is out of range (UTC years 1 to 9999)", param_hint="--since"
        ) from None
    return when.timestamp()


@click.command("status")
@click.option("--costs", is_flag=True, help="token usage and cost from the ledger")
@click.option("--since", metavar="WHEN", help="with --costs: 7d, 12h, 30m, 2w or a date")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def status(costs: bool, since: str | None, as_json: bool) -> None:
    """Show roles, fallback chains and providers, or (--costs) what the calls cost.

    Example: openkoi status --costs --since 7d
    """
    if costs or since:
        report = cost_report(parse_since(since) if since else None)
        printer = _print_costs
    else:
        report = setup_report()
        printer = _print_setup
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        printer(report)


# -- the reports (plain data, for --json and for the tables) ----------------------------------


def cost_report(since: float | None) -> dict[str, Any]:
    from openkoi._config import load_config
    from openkoi.usage import Ledger, summarize, usage_db_path
    from openkoi.usage._backend import open_ledger

    notes: list[str] = []
    said: list[str] = []  # the shared ledger's own warnings (the writer's "unavailable")
    ledger = open_ledger(load_config(), on_warning=said.append)
    path = usage_db_path()
    summary: dict[str, Any] | None = None
    try:
        if ledger.backend != "sqlite":
            summary = _shared_summary(ledger, since, notes)
        shared = summary is not None
        if summary is None:
            if ledger.backend != "sqlite":
                said.clear()  # the line `_shared_summary` wrote says it, and what is shown
            if path.exists():
                with Ledger(path) as local:
                    summary = summarize(local, since, on_warning=notes.append)
    finally:
        ledger.close()
    if summary is None:  # nothing recorded yet: say so without creating the file
        summary = _empty_summary()
    summary["since"] = _iso(since) if since is not None else None
    summary["ledger"] = ledger.where if shared else str(path)
    summary["backend"] = ledger.backend if shared else "sqlite"
    summary["warnings"] = list(dict.fromkeys(said + notes))
    return summary


def _shared_summary(ledger: Any, since: float | None, notes: list[str]) -> dict[str, Any] | None:
    """The fleet's summary, this machine's queued rows sent first so they count; None, with one
    line in `notes`, when the database cannot be used (then each step has waited only once)."""
    from openkoi._errors import LedgerError
    from openkoi.usage import summarize, usage_db_path

    send = getattr(ledger, "send", None)
    if send is not None:
        send()
    down = getattr(ledger, "unavailable", None)  # a send that failed: not tried a second time
    if down is None:
        try:
            return summarize(ledger, since, on_warning=notes.append)
        except LedgerError as exc:
            down = getattr(ledger, "unavailable", None) or str(exc)
    notes.append(
        f"the usage database {ledger.where} is unavailable ({down}); showing this machine's "
        f"rows only ({usage_db_path()}); those not sent yet are sent when it is back"
    )
    return None


def _empty_summary() -> dict[str, Any]:
    empty = dict.fromkeys(
        (
            "calls",
            "ok",
            "failed",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "unpriced_calls",
        ),
        0,
    )
    return {"totals": {**empty, "cost_usd": None}, "by_model": [], "by_role": [], "by_day": []}


def setup_report() -> dict[str, Any]:
    import anyio

    from openkoi._config import load_config
    from openkoi._registry import ProviderRegistry
    from openkoi.routing import resolve_roles
    from openkoi.routing._state import open_state
    from openkoi.usage._backend import open_ledger

    config = load_config()
    registry = ProviderRegistry(config)
    roles = resolve_roles(registry, config)
    now = time.time()

    async def read_state() -> tuple[list[Any], Any]:
        store = open_state(config, on_warning=lambda message: None)
        try:
            return await store.all(), await store.health()
        finally:
            await store.aclose()

    cooldowns, state_health = anyio.run(read_state)
    cooling = [c for c in cooldowns if c.active(now)]
    ledger = open_ledger(config, on_warning=lambda message: None)
    try:
        usage_health = ledger.health()
    finally:
        ledger.close()
    return {
        "roles": {
            a.role: {"model": a.ref, "source": a.source, "chain": list(a.chain)} for a in roles
        },
        "fallback": config.fallback.model_dump(),
        "budgets": {
            name: entry.model_dump(exclude_none=True) for name, entry in config.budgets.items()
        },
        "backends": {
            "state": dataclasses.asdict(state_health),
            "usage": dataclasses.asdict(usage_health),
        },
        "cooling": [
            {
                "model": c.ref,
                "until": _iso(c.until),
                "seconds_left": round(c.until - now, 1),
                "error": c.kind,
                "status": c.status,
                "failures": c.failures,
                "message": c.message,
            }
            for c in cooling
        ],
        "providers": [
            {
                "id": spec.id,
                "name": spec.name,
                "auth": spec.auth,
                "ready": _ready(registry, spec.id),
            }
            for spec in registry.specs()
        ],
    }


def _ready(registry: Any, provider_id: str) -> bool:
    from openkoi._errors import OpenKoiError

    try:
        return bool(registry.is_configured(provider_id))
    except OpenKoiError:
        return False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- tables ------------------------------------------------------------------------------------


def _money(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.4f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def _print_setup(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = out.console()
    roles = Table(title="Roles", title_justify="left")
    for column in ("role", "model", "from", "fallback chain"):
        roles.add_column(column)
    for role, info in report["roles"].items():
        rest = info["chain"][1:] if info["model"] else info["chain"]
        cells = (role, info["model"] or "(none)", info["source"], " → ".join(rest) or "-")
        roles.add_row(*map(escape, cells))
    console.print(roles)
    fb = report["fallback"]
    console.print(
        f"Cooldown after a transient error: {fb['cooldown']:g} s, times {fb['backoff']:g} per failure "
        f"in a row, at most {fb['max_cooldown']:g} s (Retry-After wins); "
        + (f"waits up to {fb['max_wait']:g} s" if fb["wait"] else "does not wait")
        + " when every model is cooling."
    )
    if report["budgets"]:
        console.print(
            "Rate budgets (per minute, sliding): "
            + "; ".join(
                f"{escape(name)} " + ", ".join(f"{k} {v:,}" for k, v in limits.items())
                for name, limits in report["budgets"].items()
            )
        )
    for what, health in report["backends"].items():
        label = "cooldowns and budgets" if what == "state" else "usage ledger"
        state = "ok" if health["healthy"] else "[bold red]unavailable[/]"
        detail = f" ({escape(health['detail'])})" if health["detail"] else ""
        where = escape(f"{health['backend']} {health['where']}")
        console.print(f"{label}: {where}, {state}{detail}")
    if report["cooling"]:
        cooling = Table(title="Cooling down now", title_justify="left")
        for column in ("model", "until", "left", "last error"):
            cooling.add_column(column)
        for c in report["cooling"]:
            error = c["error"] + (f" (HTTP {c['status']})" if c["status"] else "")
            cells = (c["model"], c["until"], f"{c['seconds_left']:g} s", error)
            cooling.add_row(*map(escape, cells))
        console.print(cooling)
    providers = Table(title="Providers", title_justify="left")
    for column in ("id", "name", "auth", "ready"):
        providers.add_column(column)
    for p in report["providers"]:
        ready = "yes" if p["ready"] else "no credential"
        if p["auth"] == "local":
            ready = "no key needed (`openkoi connect status` probes it)"
        providers.add_row(*map(escape, (p["id"], p["name"], p["auth"], ready)))
    console.print(providers)


_TOKEN_COLUMNS = (
    ("calls", "calls"),
    ("ok", "ok"),
    ("failed", "failed"),
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_tokens", "cache read"),
    ("cache_write_tokens", "cache write"),
)


def _print_costs(report: dict[str, Any]) -> None:
    console = out.console()
    for warning in report.get("warnings", ()):
        console.print(Text(f"warning: {warning}", style="yellow"))
    totals = report["totals"]
    since = f" since {report['since']}" if report["since"] else ""
    unpriced = totals["unpriced_calls"]
    console.print(
        f"[bold]{totals['calls']:,} calls{escape(since)}[/] ({totals['ok']:,} ok, {totals['failed']:,} "
        f"failed) · {totals['input_tokens']:,} input, {totals['output_tokens']:,} output, "
        f"{totals['cache_read_tokens']:,} cache-read, {totals['cache_write_tokens']:,} "
        f"cache-write tokens · [bold]{_money(totals['cost_usd'])}[/]"
        + (f" (+ {unpriced:,} call{'s' * (unpriced != 1)} with no known price)" if unpriced else "")
    )
    days: list[dict[str, Any]] = report["by_day"]
    if len(days) > MAX_DAY_ROWS:
        periods = ("By month (UTC; by day with --since or --json)", by_month(days), "day")
    else:
        periods = ("By day (UTC)", days, "day")
    groups = (
        ("By provider/model", report["by_model"], "model"),
        ("By role", report["by_role"], "role"),
        periods,
    )
    for title, rows, key in groups:
        if rows:
            console.print(_cost_table(title, rows, key))


# A terminal table of more days than this is folded into months: a year of use would be
# hundreds of lines (and rich takes about 2 ms to lay out each one).
MAX_DAY_ROWS = 62


def by_month(days: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`by_day` rows summed per calendar month (`day` becomes `YYYY-MM`), in date order; a
    month's cost is unknown only when every one of its days' is."""
    months: dict[str, dict[str, Any]] = {}
    for day in days:
        month = months.setdefault(
            day["day"][:7],
            {"day": day["day"][:7], "cost_usd": None, "unpriced_calls": 0}
            | dict.fromkeys((k for k, _ in _TOKEN_COLUMNS), 0),
        )
        for key, _ in _TOKEN_COLUMNS:
            month[key] += day[key]
        month["unpriced_calls"] += day["unpriced_calls"]
        if day["cost_usd"] is not None:
            month["cost_usd"] = (month["cost_usd"] or 0.0) + day["cost_usd"]
    return [months[m] for m in sorted(months)]


def _cost_label(row: dict[str, Any], key: str) -> str:
    return f"{row['provider']}/{row['model']}" if key == "model" else str(row[key])


def _cost_table(title: str, rows: list[dict[str, Any]], key: str) -> Table:
    """One group of the summary; cells are `Text`, so rich does not parse them as markup."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("")
    for _, header in _TOKEN_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("cost", justify="right")
    for row in rows:
        cost = _money(row["cost_usd"])
        if row["unpriced_calls"] and row["cost_usd"] is not None:
            cost += f" (+{row['unpriced_calls']} unpriced)"
        cells = (_cost_label(row, key), *(f"{row[k]:,}" for k, _ in _TOKEN_COLUMNS), cost)
        table.add_row(*map(Text, cells))
    return table
