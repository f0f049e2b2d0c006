"""The provider registry: which providers exist and how to build a configured instance of one.

Providers register through the `openkoi.providers` entry-point group: each entry point names a
`register(registry)` function that calls `registry.add(ProviderSpec(...))`. The built-in providers
use the same group. `[providers.NAME]` config entries with a `base_url` and no built-in of that
name become OpenAI-compatible providers with no code.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace

from openkoi._body import MAX_RESPONSE_BYTES
from openkoi._config import Config, ProviderEntry
from openkoi._credentials import resolve_api_key
from openkoi._errors import CredentialsMissingError, UnknownProviderError
from openkoi._provider import ModelProvider, ProviderSettings
from openkoi._refs import ModelRef, parse_model_ref
from openkoi._secrets import Secret
from openkoi._spec import AuthKind as AuthKind
from openkoi._spec import ProviderSpec as ProviderSpec
from openkoi._suggest import did_you_mean
from openkoi._timeouts import Timeouts, resolve_timeouts
from openkoi._transport import DEFAULT_IDLE_CONNECTIONS, DEFAULT_MAX_CONNECTIONS

ENTRY_POINT_GROUP = "openkoi.providers"

CustomFactory = Callable[[str, ProviderEntry], ProviderSpec]


class ProviderRegistry:
    def __init__(self, config: Config | None = None, *, load_entry_points: bool = True) -> None:
        self.config = config or Config()
        self._specs: dict[str, ProviderSpec] = {}
        self._aliases: dict[str, str] = {}
        self._instances: dict[str, ModelProvider] = {}
        self.custom_factory: CustomFactory | None = None
        if load_entry_points:
            self._load_entry_points()
        if self.config.plugins.wasm:
            self._register_plugins()
        self._add_custom_providers()

    # -- registration -------------------------------------------------------------------

    def add(self, spec: ProviderSpec) -> None:
        self._specs[spec.id] = spec
        for alias in spec.aliases:
            self._aliases[alias] = spec.id

    def _register_plugins(self) -> None:
        """The listed plugins: from the id cache when every file matches it (no plugin code
        imported, `plugins._listing`), else by reading each file's header."""
        from openkoi.plugins._listing import add_plugin, cached_listing, keep_listed

        listed = cached_listing(self.config.plugins.wasm)
        if listed is None:
            from openkoi.plugins._loader import register_plugins

            register_plugins(self)
            return
        for item in listed:
            if add_plugin(self, item, _listed_factory(weakref.ref(self), item.id)):
                keep_listed(self, item)

    def is_plugin(self, provider_id: str) -> bool:
        spec = self._specs.get(self.canonical(provider_id))
        return spec is not None and spec.auth == "plugin"

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            register = ep.load()
            register(self)

    def _add_custom_providers(self) -> None:
        for name, entry in self.config.providers.items():
            if name in self._specs or name in self._aliases:
                continue
            if entry.base_url and self.custom_factory is not None:
                self.add(self.custom_factory(name, entry))

    # -- lookup -------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[ProviderSpec]:
        return [self._specs[i] for i in self.ids()]

    def canonical(self, provider_id: str) -> str:
        return self._aliases.get(provider_id, provider_id)

    def spec(self, provider_id: str) -> ProviderSpec:
        provider_id = self.canonical(provider_id)
        try:
            return self._specs[provider_id]
        except KeyError:
            raise UnknownProviderError(unknown_provider_message(provider_id, self.ids())) from None

    def parse_ref(self, text: str) -> ModelRef:
        ref = parse_model_ref(text, self.ids())
        spec = self.spec(ref.provider)
        return ModelRef(spec.id, ref.model)

    def credential(self, provider_id: str) -> Secret | None:
        spec = self.spec(provider_id)
        entry = self.config.providers.get(spec.id)
        env_vars: Iterable[str] = spec.api_key_env
        if entry and entry.api_key_env:
            env_vars = (entry.api_key_env, *spec.api_key_env)
        if spec.credential is not None:
            found = resolve_api_key(spec.id, env_vars) if env_vars else None
            return found or spec.credential()
        return resolve_api_key(spec.id, env_vars) if spec.auth != "plugin" else None

    def settings(self, provider_id: str) -> ProviderSettings:
        spec = self.spec(provider_id)
        entry = self.config.providers.get(spec.id) or ProviderEntry()
        base_url = entry.base_url
        for var in spec.base_url_env:
            if not base_url and os.environ.get(var, "").strip():
                base_url = os.environ[var].strip().rstrip("/")
        return ProviderSettings(
            id=spec.id,
            name=entry.name or spec.name,
            base_url=base_url or spec.default_base_url,
            api_key=self.credential(spec.id),
            default_model=entry.default_model or spec.default_model,
            embedding_model=entry.embedding_model or spec.embedding_model,
            headers=dict(entry.headers),
            options=dict(entry.options),
            timeouts=_timeouts(entry, self.config),
            max_connections=entry.max_connections or DEFAULT_MAX_CONNECTIONS,
            idle_connections=(
                DEFAULT_IDLE_CONNECTIONS
                if entry.idle_connections is None
                else entry.idle_connections
            ),
            max_response_bytes=entry.max_response_bytes or MAX_RESPONSE_BYTES,
            proxy=entry.proxy,
            ca_bundle=entry.ca_bundle,
        )

    def is_configured(self, provider_id: str) -> bool:
        """True when the provider has what it needs to be tried (no network calls)."""
        spec = self.spec(provider_id)
        if spec.auth in ("none", "local", "plugin"):
            return True
        if spec.auth == "aws":
            return spec.credential is None or spec.credential() is not None
        return self.credential(spec.id) is not None

    def get(self, provider_id: str) -> ModelProvider:
        """A configured instance, built once and reused (it owns a pooled HTTP client)."""
        spec = self.spec(provider_id)
        if spec.id in self._instances:
            return self._instances[spec.id]
        settings = self.settings(spec.id)
        if spec.auth in ("api-key", "oauth") and settings.api_key is None:
            raise CredentialsMissingError(_missing_key_message(spec, settings), provider=spec.id)
        instance = spec.factory(settings)
        self._instances[spec.id] = instance
        return instance

    def resolve(self, ref_text: str) -> tuple[ModelProvider, str]:
        ref = self.parse_ref(ref_text)
        return self.get(ref.provider), ref.model

    def override(self, provider_id: str, **changes: object) -> None:
        """Replace fields of a registered spec (tests, and config that narrows a provider)."""
        spec = self.spec(provider_id)
        self._specs[spec.id] = replace(spec, **changes)  # type: ignore[arg-type]
        self._instances.pop(spec.id, None)

    async def aclose(self) -> None:
        instances, self._instances = self._instances, {}
        for instance in instances.values():
            await instance.aclose()


def _timeouts(entry: ProviderEntry, config: Config) -> Timeouts:
    """The provider's table over `[timeouts]` over the defaults."""
    d = resolve_timeouts(entry.timeouts, config.timeouts)
    return Timeouts(connect=d.connect, first_token=d.first_token, idle=d.idle, total=d.total)


def unknown_provider_message(name: str, known: list[str], extra: tuple[str, ...] = ()) -> str:
    """`unknown provider 'antropic'; did you mean 'anthropic'? known providers: ...`"""
    names = [*known, *extra]
    return f"unknown provider {name!r}{did_you_mean(name, names) or ';'} known providers: " + (
        ", ".join(names)
    )


def _missing_key_message(spec: ProviderSpec, settings: ProviderSettings) -> str:
    ways = []
    if spec.api_key_env:
        ways.append(f"set {spec.api_key_env[0]}")
    ways.append(spec.connect_hint or f"run `openkoi connect {spec.id}`")
    return f"{settings.name} needs a credential: " + " or ".join(ways)


def _listed_factory(
    registry: weakref.ref[ProviderRegistry], provider_id: str
) -> Callable[[ProviderSettings], ModelProvider]:
    """Build a plugin registered from the id cache: its file is read and checked now."""

    def build(settings: ProviderSettings) -> ModelProvider:
        from openkoi.plugins._loader import open_listed

        owner = registry()
        if owner is None:  # pragma: no cover - a spec outliving its registry
            raise UnknownProviderError(f"plugin {provider_id} belongs to a closed registry")
        return open_listed(owner, provider_id, settings)

    return build
