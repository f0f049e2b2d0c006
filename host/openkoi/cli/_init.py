"""`openkoi init`: the first setup, guided in a terminal, or without prompts for scripts.

openkoi init                                       the provider picker (in a terminal)
openkoi init --base-url URL [--name ID] [--model MODEL] [--key-stdin]
                                                   an OpenAI-compatible endpoint, no prompts

The picker offers Ollama, an API key, a subscription sign-in and "Other (OpenAI-compatible
URL)". An endpoint is checked with one `GET /models` before anything is written; it is saved as
`[providers.<id>]` in config.toml, its key as `~/.openkoi/credentials/<id>.key` (0600). Running
init again shows what is set up and changes only what the user picks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from openkoi._endpoint import check_id, list_endpoint_models, normalize_url, provider_id_for
from openkoi._errors import ConfigError
from openkoi.cli._connect import _ask, _connect_target, _interactive, show_status

if TYPE_CHECKING:
    from openkoi._config import ConfigFile
    from openkoi._registry import ProviderRegistry

OTHER = "other"
KEEP = "keep"
SCRIPT_USAGE = "openkoi init --base-url URL [--name ID] [--model MODEL] [--key-stdin]"
_MAX_CHOICES = 40  # a longer model list is typed (with completion) instead of scrolled


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    model: str
    key: str | None


def _files() -> tuple[ConfigFile, ProviderRegistry]:
    from openkoi._config import ConfigFile
    from openkoi._registry import ProviderRegistry

    config = ConfigFile()
    return config, ProviderRegistry(config.config)


def _builtin(name: str) -> bool:
    """A provider id that exists without config: a built-in, an entry point, or an alias."""
    from openkoi._config import Config
    from openkoi._registry import ProviderRegistry

    bare = ProviderRegistry(Config())
    return name in bare.ids() or bare.canonical(name) != name


def _check_free(name: str, registry: ProviderRegistry) -> None:
    """The id must be new, or an endpoint an earlier `init` wrote (which is then updated)."""
    ours = name in registry.config.providers and not _builtin(name)
    if not ours and (name in registry.ids() or _builtin(name)):
        raise ConfigError(
            f"{name!r} is already a provider; choose another id for this endpoint (--name)"
        )


def _pick_model(listed: list[str], wanted: str | None, base_url: str) -> str:
    if wanted:
        if listed and wanted not in listed:
            click.echo(f"note: {base_url} does not list {wanted!r}; saved as you gave it", err=True)
        return wanted
    if len(listed) == 1:
        return listed[0]
    shown = ", ".join(listed[:10]) + (", ..." if len(listed) > 10 else "")
    offered = f" (it offers {len(listed)}: {shown})" if listed else " (it lists none)"
    raise click.UsageError(f"name the default model with --model{offered}")


def save_endpoint(config: ConfigFile, registry: ProviderRegistry, endpoint: Endpoint) -> str:
    """Write `[providers.<id>]` and the key; returns the default model ref when init set it."""
    from openkoi._defaults import default_model_ref
    from openkoi._fileio import atomic_write_text
    from openkoi.credentials._discovery import saved_key_path

    became_default = not config.config.models.executor and (
        default_model_ref(registry, probe_ollama=False) is None
    )
    table = f"providers.{endpoint.name}"
    config.set(f"{table}.base_url", endpoint.base_url)
    config.set(f"{table}.default_model", endpoint.model)
    ref = f"{endpoint.name}/{endpoint.model}"
    if became_default:
        config.set("models.executor", ref)
    if endpoint.key:
        path = saved_key_path(endpoint.name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(path, endpoint.key + "\n", mode=0o600)
        click.echo(f"Saved the key for {endpoint.name} in {path}.")
    config.save()
    click.echo(f"Saved [providers.{endpoint.name}] to {config.path}.")
    if became_default:
        click.echo(f"Default model: {ref}.")
    click.echo(f'Try it: openkoi -m {ref} "Hello"')
    return ref


def _check(base_url: str, key: str | None) -> list[str]:
    import anyio

    click.echo(f"Checking {base_url}/models ...", err=True)
    listed = anyio.run(lambda: list_endpoint_models(base_url, key))
    click.echo(f"{base_url} answered; it lists {len(listed)} model(s).", err=True)
    return listed


# -- without prompts ----------------------------------------------------------------------------


def scripted(
    base_url: str, name: str | None, model: str | None, key_stdin: bool, check: bool
) -> None:
    from openkoi.cli._keys import stdin_key

    url = normalize_url(base_url)
    provider = check_id(name) if name else provider_id_for(url)
    config, registry = _files()
    _check_free(provider, registry)
    key = None
    if key_stdin:
        if sys.stdin.isatty():
            raise click.UsageError(f"pipe the key on stdin: echo $KEY | {SCRIPT_USAGE}")
        key = stdin_key(provider)
    listed = _check(url, key) if check else []
    if not check and not model:
        raise click.UsageError("with --no-check, name the default model with --model")
    endpoint = Endpoint(provider, url, _pick_model(listed, model, url), key)
    save_endpoint(config, registry, endpoint)


# -- guided -------------------------------------------------------------------------------------


def _show_configured(config: ConfigFile, registry: ProviderRegistry) -> bool:
    """Print what is set up; True when anything is."""
    from openkoi._defaults import default_model_ref

    custom = {n: e for n, e in config.config.providers.items() if e.base_url and not _builtin(n)}
    default = config.config.models.executor or default_model_ref(registry, probe_ollama=False)
    click.echo("What is set up now:")
    show_status(registry)
    for name, entry in custom.items():
        model = f", default model {entry.default_model}" if entry.default_model else ""
        click.echo(f"  {name}: {entry.base_url}{model} (config.toml)")
    click.echo(f"  Default model: {default or '(none yet)'}")
    click.echo()
    return bool(custom or default)


def _picker(configured: bool) -> Any:
    import questionary

    from openkoi.credentials._flows import SUBSCRIPTION_TARGETS

    choices = [
        questionary.Choice("Ollama — free, runs models on this machine", value="ollama"),
        questionary.Choice("Paste an API key — Anthropic, OpenAI, Google, ...", value="key"),
        *(
            questionary.Choice(f"{t.title} — sign in with your subscription", value=t.name)
            for t in SUBSCRIPTION_TARGETS
        ),
        questionary.Choice("Other (OpenAI-compatible URL) — a gateway or server", value=OTHER),
    ]
    if configured:
        choices.append(questionary.Choice("Nothing — keep the setup as it is", value=KEEP))
    question = "What do you want to set up?" if configured else "How do you want to start?"
    return _ask(questionary.select(question, choices))


def _ask_endpoint(config: ConfigFile, registry: ProviderRegistry) -> Endpoint:
    import questionary

    def valid_url(text: str) -> bool | str:
        try:
            normalize_url(text)
        except ConfigError as exc:
            return str(exc)
        return True

    url = normalize_url(
        str(
            _ask(
                questionary.text(
                    "Base URL of the OpenAI-compatible API (e.g. http://localhost:8000/v1):",
                    validate=valid_url,
                )
            )
        )
    )
    raw_key = str(_ask(questionary.password("API key (leave empty if it needs none):"))).strip()
    if raw_key:
        from openkoi.cli._keys import checked_key

        raw_key = checked_key(raw_key, url)
    listed = _check(url, raw_key or None)
    if listed and len(listed) <= _MAX_CHOICES:
        model = str(_ask(questionary.select("Default model:", listed)))
    elif listed:
        model = str(
            _ask(
                questionary.autocomplete(
                    "Default model (Tab completes):",
                    listed,
                    validate=lambda t: bool(t.strip()) or "name a model",
                )
            )
        ).strip()
    else:
        model = str(
            _ask(questionary.text("Default model:", validate=lambda t: bool(t.strip())))
        ).strip()

    def valid_id(text: str) -> bool | str:
        try:
            _check_free(check_id(text), registry)
        except ConfigError as exc:
            return str(exc)
        return True

    name = check_id(
        str(
            _ask(
                questionary.text(
                    "A short id for this provider:", default=provider_id_for(url), validate=valid_id
                )
            )
        )
    )
    return Endpoint(name, url, model, raw_key or None)


def set_up(choice: str, config: ConfigFile, registry: ProviderRegistry) -> str | None:
    """Do what the user picked; returns a model ref to use now, when there is one."""
    import questionary

    from openkoi.credentials._flows import SUBSCRIPTION_TARGETS, targets

    if choice == OTHER:
        return save_endpoint(config, registry, _ask_endpoint(config, registry))
    if choice == "ollama":
        from openkoi._defaults import best_ollama_model

        model = best_ollama_model(registry, timeout=2.0)
        if model is None:
            click.echo(
                "Ollama is not running or has no models: install it from "
                "https://ollama.com/download, then run `ollama pull llama3.3` and try again."
            )
            return None
        click.echo(f"Using ollama/{model}.")
        return f"ollama/{model}"
    if choice == "key":
        keyed = [t for t in targets(registry) if t.kind == "api-key"]
        target = _ask(
            questionary.select(
                "Which provider is the key for?",
                [questionary.Choice(f"{t.title} — {t.hint}", value=t) for t in keyed],
            )
        )
    else:
        target = next(t for t in SUBSCRIPTION_TARGETS if t.name == choice)
    _connect_target(target, registry)
    model = registry.spec(target.provider).default_model
    return f"{target.provider}/{model}" if model else None


def first_run_picker(registry: ProviderRegistry) -> str | None:
    """Nothing is configured and a prompt was given: set something up, then answer it."""
    click.echo("No model provider is set up yet.")
    config, _ = _files()
    return set_up(_picker(configured=False), config, registry)


@click.command("init")
@click.option(
    "--base-url", metavar="URL", help="an OpenAI-compatible endpoint, set up without prompts"
)
@click.option(
    "--name", metavar="ID", help="with --base-url: its provider id (default: from the host)"
)
@click.option("--model", metavar="MODEL", help="with --base-url: its default model")
@click.option("--key-stdin", is_flag=True, help="with --base-url: read its API key from stdin")
@click.option("--no-check", is_flag=True, help="with --base-url: save without asking it for models")
def init(
    base_url: str | None, name: str | None, model: str | None, key_stdin: bool, no_check: bool
) -> None:
    """Set up a provider: Ollama, an API key, a subscription or an OpenAI-compatible URL.

    \b
    Examples:
      openkoi init
      echo "$KEY" | openkoi init --base-url https://llm.example.com/v1 --model llama-3.3-70b --key-stdin
    """
    if base_url is not None:
        scripted(base_url, name, model, key_stdin, check=not no_check)
        return
    if name or model or key_stdin or no_check:
        raise click.UsageError(
            f"--name, --model, --key-stdin and --no-check go with --base-url: {SCRIPT_USAGE}"
        )
    if not _interactive():
        raise click.UsageError(
            f"`openkoi init` asks questions in a terminal; from a script: {SCRIPT_USAGE}"
        )
    config, registry = _files()
    configured = _show_configured(config, registry)
    choice = _picker(configured)
    if choice == KEEP:
        click.echo("Nothing changed.")
        return
    set_up(choice, config, registry)
