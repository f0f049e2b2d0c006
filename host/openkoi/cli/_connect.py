"""`openkoi connect [target]`, `openkoi connect status`, `openkoi disconnect [target|all]`.

Pickers (questionary) appear only in a terminal; every command also works from a script with
arguments and flags (`--key-stdin`, `--json`, `--no-browser`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from openkoi._errors import ConfigError

if TYPE_CHECKING:
    from openkoi._registry import ProviderRegistry
    from openkoi.credentials._device_flow import DeviceCode
    from openkoi.credentials._flows import Target
    from openkoi.credentials._status import StatusReport

ALL_CHOICE = "__all__"


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _registry() -> ProviderRegistry:
    from openkoi._config import ConfigFile
    from openkoi._registry import ProviderRegistry

    return ProviderRegistry(ConfigFile().config)


def _ask(question: Any) -> Any:
    """Run a questionary prompt; Ctrl-C or Esc ends the command quietly."""
    answer = question.ask()
    if answer is None:
        raise click.Abort()
    return answer


# -- connecting --------------------------------------------------------------------------------


def _can_open_browser() -> bool:
    if os.environ.get("OPENKOI_NO_BROWSER"):
        return False
    if sys.platform.startswith("linux"):
        return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))
    return True


def _show_code(open_browser: bool) -> Any:
    def show(code: DeviceCode) -> None:
        click.echo(f"\n  Visit: {code.verification_uri}")
        click.echo(f"  Enter code: {code.user_code}\n")
        if open_browser and _can_open_browser():
            import webbrowser

            try:
                opened = webbrowser.open(code.verification_uri_complete or code.verification_uri)
            except Exception:  # no usable browser is not an error: the URL is printed
                opened = False
            if opened:
                click.echo("  (opened in your browser)")
        click.echo("  Waiting for authorization... (Ctrl-C to cancel)", nl=True)

    return show


def connect_oauth(target: Target, *, open_browser: bool = True) -> None:
    import anyio

    from openkoi.credentials._flows import sign_in
    from openkoi.credentials._store import AuthStore

    store = AuthStore()
    store.check_writable()
    try:
        entry = anyio.run(sign_in, target, _show_code(open_browser))
    except KeyboardInterrupt:
        click.echo("\n  Cancelled; nothing was saved.", err=True)
        raise click.exceptions.Exit(130) from None
    store.put(target.provider, entry)
    click.echo(f"  Connected to {target.title}.")


def _read_key(target: Target, key_stdin: bool) -> str:
    from openkoi.cli._keys import checked_key, stdin_key

    if key_stdin or not _interactive():
        if sys.stdin.isatty():
            raise click.UsageError(
                f"pipe the key on stdin: echo $KEY | openkoi connect {target.name} --key-stdin"
            )
        return stdin_key(target.title)
    import questionary

    raw = _ask(questionary.password(f"Paste your {target.title} API key:"))
    return checked_key(str(raw), target.title)


def connect_key(target: Target, registry: ProviderRegistry, *, key_stdin: bool = False) -> None:
    from openkoi.credentials._flows import save_key
    from openkoi.credentials._store import AuthStore

    store = AuthStore()
    store.check_writable()
    key = _read_key(target, key_stdin)
    save_key(store, target.provider, key)
    click.echo(f"Saved the {target.title} API key ({store.description}).")
    spec = registry.spec(target.provider)
    shadowing = [v for v in spec.api_key_env if os.environ.get(v, "").strip()]
    if shadowing:
        click.echo(f"note: {shadowing[0]} is set and is used before the saved key.")


def connect_ollama(registry: ProviderRegistry) -> None:
    import anyio

    from openkoi.credentials._status import probe_ollama

    status = anyio.run(probe_ollama, registry, 2.0)
    if not status.reachable:
        raise ConfigError(
            f"Ollama is not running at {status.base_url}: install it from "
            "https://ollama.com/download, start it, then run `ollama pull llama3.3`"
        )
    click.echo(f"Ollama: {status.line()}")
    if status.best:
        click.echo(f"Default local model: ollama/{status.best}")


def _connect_target(target: Target, registry: ProviderRegistry, **flags: Any) -> None:
    if target.kind == "oauth":
        connect_oauth(target, open_browser=flags.get("open_browser", True))
    elif target.kind == "local":
        connect_ollama(registry)
    else:
        connect_key(target, registry, key_stdin=flags.get("key_stdin", False))


def _pick_target(registry: ProviderRegistry) -> Target:
    import questionary

    from openkoi.credentials._flows import targets

    choices = [questionary.Choice(f"{t.title} — {t.hint}", value=t) for t in targets(registry)]
    return _ask(questionary.select("Select a provider or integration to connect:", choices))  # type: ignore[no-any-return]


@click.command("connect")
@click.argument("target", required=False)
@click.option("--key-stdin", is_flag=True, help="Read the API key from stdin (for scripts).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser for the sign-in.")
@click.option("--json", "as_json", is_flag=True, help="With `status`: machine-readable output.")
def connect(target: str | None, key_stdin: bool, no_browser: bool, as_json: bool) -> None:
    """Connect a provider: sign in to a subscription, or save an API key.

    TARGET is copilot, chatgpt, a provider id (anthropic, openai, google, groq, ...), ollama,
    or `status`. Without TARGET, a picker lists them all (in a terminal).

    \b
    Examples:
      openkoi connect copilot
      openkoi connect status
      echo "$KEY" | openkoi connect anthropic --key-stdin
    """
    from openkoi.credentials._flows import find_target

    registry = _registry()
    if target == "status":
        show_status(registry, as_json=as_json)
        return
    if target is None:
        if not _interactive():
            from openkoi.credentials._flows import targets

            names = ", ".join(t.name for t in targets(registry))
            raise click.UsageError(f"name what to connect: openkoi connect <{names}|status>")
        chosen = _pick_target(registry)
    else:
        chosen = find_target(registry, target)
    _connect_target(chosen, registry, open_browser=not no_browser, key_stdin=key_stdin)


# -- status --------------------------------------------------------------------------------------


def _report(registry: ProviderRegistry) -> StatusReport:
    import anyio

    from openkoi.credentials._status import gather

    return anyio.run(gather, registry)


def show_status(registry: ProviderRegistry, *, as_json: bool = False) -> None:
    report = _report(registry)
    if as_json:
        data = {
            "store": report.store,
            "store_error": report.store_error,
            "providers": [p.as_json() for p in report.providers],
            "ollama": None
            if report.ollama is None
            else {
                "base_url": report.ollama.base_url,
                "reachable": report.ollama.reachable,
                "models": report.ollama.models,
                "default_model": report.ollama.best,
            },
        }
        click.echo(json.dumps(data, indent=2))
        return
    names = [p.name for p in report.providers] + ["Ollama"]
    width = max(len(n) for n in names) + 2
    click.echo()
    for status in report.providers:
        click.echo(f"  {status.name + ':':<{width}} {status.line()}")
    if report.ollama is not None:
        click.echo(f"  {'Ollama:':<{width}} {report.ollama.line()}")
    click.echo()  # an unreadable store was already reported, once, when it was read


# -- disconnecting -------------------------------------------------------------------------------


def _pick_connected(registry: ProviderRegistry) -> str:
    import questionary

    report = _report(registry)
    choices = []
    for status in report.connected():
        found = status.active
        label = "connected"
        if found is not None and found.source != "store":
            label = found.describe()
        choices.append(questionary.Choice(f"{status.name} ({label})", value=status.id))
    if not choices:
        click.echo("Nothing is connected.")
        raise click.exceptions.Exit(0)
    choices.append(questionary.Choice("All — remove all stored credentials", value=ALL_CHOICE))
    return str(_ask(questionary.select("Select a provider to disconnect:", choices)))


def _explain_other_sources(registry: ProviderRegistry, provider: str) -> None:
    from openkoi.credentials._status import provider_statuses

    statuses, _ = provider_statuses(registry, only=[provider])
    name = registry.spec(provider).name
    for found in statuses[0].findings if statuses else []:
        if found.source == "env":
            click.echo(f"{name} still has a key from {found.where}; unset it to disconnect fully.")
        elif found.source not in ("store", "key-file") and found.usable:
            click.echo(
                f"{name} still uses the {found.describe().split(' from ', 1)[-1]} sign-in; "
                "openkoi does not delete other tools' credentials."
            )


@click.command("disconnect")
@click.argument("target", required=False)
def disconnect(target: str | None) -> None:
    """Remove a stored token or key. `all` removes every credential openkoi stored.

    Without TARGET, a picker lists what is connected (in a terminal).

    \b
    Examples:
      openkoi disconnect copilot
      openkoi disconnect all
    """
    from openkoi.credentials._flows import forget, forget_all
    from openkoi.credentials._store import AuthStore

    registry = _registry()
    if target is None:
        if not _interactive():
            raise click.UsageError("name what to disconnect: openkoi disconnect <target|all>")
        target = _pick_connected(registry)
    store = AuthStore()
    if target in ("all", ALL_CHOICE):
        gone = forget_all(store)
        if gone:
            names = ", ".join(registry.spec(p).name if p in registry.ids() else p for p in gone)
            click.echo(f"Removed stored credentials for {names}.")
        else:
            click.echo("No stored credentials to remove.")
        return
    provider = registry.canonical(target.strip().lower())
    if provider not in registry.ids():
        from openkoi._errors import UnknownProviderError
        from openkoi._registry import unknown_provider_message

        raise UnknownProviderError(unknown_provider_message(target, registry.ids(), ("all",)))
    name = registry.spec(provider).name
    removed = forget(store, provider)
    if removed:
        click.echo(f"Disconnected {name} (removed from {', '.join(removed)}).")
    else:
        click.echo(f"{name} had no stored credential.")
    _explain_other_sources(registry, provider)
