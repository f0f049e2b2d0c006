"""`openkoi models [PROVIDER]`: what each connected provider offers, read live.

openkoi models                 every connected provider (a local Ollama when it answers)
openkoi models openai          one provider
openkoi models --json          the same as JSON
openkoi models --refresh       ask again instead of using the day-old cache
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.markup import escape

from openkoi._errors import ConfigError, NetworkError, OpenKoiError
from openkoi._model_list import ModelListing, fetch_models, merged
from openkoi._timefmt import utc_moment
from openkoi.cli import _out as out
from openkoi.cli._warm import warm

if TYPE_CHECKING:
    from openkoi._registry import ProviderRegistry
    from openkoi._types import ModelInfo
    from openkoi.usage import PriceTable


@dataclass
class _Outcome:
    provider: str
    listing: ModelListing | None = None
    error: OpenKoiError | None = None
    quiet: bool = False  # a local server that is simply not running, when none was named


def connected(registry: ProviderRegistry) -> list[str]:
    """Providers worth asking: those with a credential, plugins, keyless endpoints, Ollama."""
    chosen = []
    for spec in registry.specs():
        try:
            if spec.auth in ("api-key", "oauth"):
                ready = registry.credential(spec.id) is not None
            else:
                ready = registry.is_configured(spec.id)
        except OpenKoiError:
            ready = False
        if ready:
            chosen.append(spec.id)
    return chosen


async def _gather(
    registry: ProviderRegistry, providers: list[str], *, refresh: bool, named: bool
) -> list[_Outcome]:
    outcomes = [_Outcome(p) for p in providers]

    async def one(outcome: _Outcome) -> None:
        local = registry.spec(outcome.provider).auth == "local"
        try:
            outcome.listing = await fetch_models(
                registry, outcome.provider, refresh=refresh, timeout=2.0 if local else 30.0
            )
        except OpenKoiError as exc:
            outcome.error = exc
            outcome.quiet = local and not named and isinstance(exc, NetworkError)

    try:
        async with anyio.create_task_group() as group:
            for outcome in outcomes:
                group.start_soon(one, outcome)
    finally:
        await registry.aclose()
    return outcomes


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}" if value >= 0.1 else f"${value:.4g}"


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _as_json(provider: str, listing: ModelListing, models: list[ModelInfo]) -> dict[str, Any]:
    return {
        "provider": provider,
        "fetched_at": datetime.fromtimestamp(listing.fetched_at, UTC).isoformat(timespec="seconds"),
        "cached": listing.cached,
        "models": [{"ref": f"{provider}/{m.id}", **m.model_dump(mode="json")} for m in models],
    }


def _print(provider: str, listing: ModelListing, models: list[ModelInfo]) -> None:
    from rich.table import Table

    when = "cached " if listing.cached else ""
    table = Table(
        title=f"{escape(provider)} ({len(models)} models, {when}{utc_moment(listing.fetched_at)})",
        title_justify="left",
    )
    table.add_column("model")
    for header in ("context", "max output", "input $/M", "output $/M"):
        table.add_column(header, justify="right")
    for m in models:
        price = m.pricing
        table.add_row(
            escape(f"{provider}/{m.id}"),
            _tokens(m.context_window),
            _tokens(m.max_output_tokens),
            _money(price.input if price else None),
            _money(price.output if price else None),
        )
    out.console().print(table)


def _prices(registry: ProviderRegistry) -> PriceTable:
    from openkoi.usage import load_price_table

    return load_price_table(registry.config.pricing)


@click.command("models")
@click.argument("provider", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@click.option("--refresh", is_flag=True, help="ask the provider again, ignoring the cache")
def models(provider: str | None, as_json: bool, refresh: bool) -> None:
    """List the models each connected provider offers, with context windows and prices.

    The list is read live from the provider and cached for a day. Example: openkoi models openai
    """
    from openkoi._config import ConfigFile
    from openkoi._registry import ProviderRegistry

    registry = ProviderRegistry(ConfigFile().config)
    if provider is not None:
        providers = [registry.spec(provider.strip().lower()).id]
    else:
        providers = connected(registry)
    prices = _prices(registry)
    warm(registry, providers)  # a plugin's first compile, shown on stderr
    outcomes = anyio.run(
        lambda: _gather(registry, providers, refresh=refresh, named=provider is not None)
    )
    if all(o.quiet for o in outcomes):  # nothing but a local server that is not running
        raise ConfigError("no provider is connected: run `openkoi init` or `openkoi connect` first")
    report = []
    failed = False
    for outcome in outcomes:
        if outcome.listing is None:
            failed = failed or not outcome.quiet
            if not outcome.quiet and outcome.error is not None:
                text = str(outcome.error)  # a ProviderError names its provider itself
                named = text.startswith(f"{outcome.provider}: ")
                out.fail(text if named else f"{outcome.provider}: {text}")
            continue
        listed = sorted(outcome.listing.models, key=lambda m: m.id)
        models_ = merged(outcome.provider, listed, prices)
        if as_json:
            report.append(_as_json(outcome.provider, outcome.listing, models_))
        else:
            _print(outcome.provider, outcome.listing, models_)
    if as_json:
        errors = [
            {"provider": o.provider, "error": str(o.error)}
            for o in outcomes
            if o.error is not None and not o.quiet
        ]
        click.echo(json.dumps({"providers": report, "errors": errors}, indent=2))
    if failed:
        raise click.exceptions.Exit(1)
