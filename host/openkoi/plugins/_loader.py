"""Loading the plugins listed in config and registering each as a provider.

    [plugins]
    wasm = ["~/.openkoi/plugins/wasm/cohere.wasm"]

    [plugins.cohere]                     # settings for the plugin whose manifest id is "cohere"
    pool_size = 4                        # instances run in parallel (default 4)
    config = { base_url = "http://127.0.0.1:8080" }   # values for the manifest's config keys
    secrets = { COHERE_API_KEY = "MY_COHERE_KEY" }    # read a secret from another env variable
    limits = { timeout_ms = 30000 }      # override the manifest's requests (host maxima apply)

    [plugins.cohere.network]
    only = ["https://api.cohere.com"]    # narrow: keep only these of the manifest's origins
    extend = ["http://127.0.0.1:8080"]   # grant more, by explicit choice (shown as user-granted)

At start-up only each plugin's manifest and world are read (by seeking from section to section:
its code is never read), checked against its settings and its recorded approval's capabilities,
so a prompt to another provider costs a few small reads per listed plugin. The first use reads
the whole file, checks it again as it is then (digest and capabilities against the approval,
which it records or updates), and only then compiles (or loads from the compiled cache) and
instantiates it. A plugin that cannot be read is skipped with a warning; one that is refused
(approval, settings) is registered with a factory that raises the refusal, so using it says why.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openkoi._errors import ConfigError, OpenKoiError, PluginLoadError
from openkoi.plugins._listing import Listed, add_plugin, listed_for, remember
from openkoi.plugins._manifest import (
    PluginFile,
    PluginHeader,
    RequestedLimits,
    read_plugin_file,
    read_plugin_header,
)

if TYPE_CHECKING:
    from openkoi._config import Config
    from openkoi._provider import ModelProvider, ProviderSettings
    from openkoi._registry import ProviderRegistry
    from openkoi._secrets import Secret
    from openkoi.plugins._egress import EgressPolicy
    from openkoi.plugins._guarded_http import Resolver
    from openkoi.plugins._provider import WasmProvider

log = logging.getLogger("openkoi.plugins")
DEFAULT_POOL_SIZE = 4
MAX_POOL_SIZE = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkSettings(_Strict):
    only: list[str] | None = None
    extend: list[str] = Field(default_factory=list)


class LimitSettings(_Strict):
    memory_mb: int | None = Field(default=None, gt=0)
    timeout_ms: int | None = Field(default=None, gt=0)
    event_timeout_ms: int | None = Field(default=None, gt=0)
    max_response_bytes: int | None = Field(default=None, gt=0)
    max_requests: int | None = Field(default=None, gt=0)


class PluginSettings(_Strict):
    """`[plugins.<id>]`."""

    pool_size: int = Field(default=DEFAULT_POOL_SIZE, ge=1, le=MAX_POOL_SIZE)
    config: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)


def plugin_settings(config: Config, plugin_id: str) -> PluginSettings:
    raw = (config.plugins.model_extra or {}).get(plugin_id, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"[plugins.{plugin_id}] must be a table", key=f"plugins.{plugin_id}")
    try:
        return PluginSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        key = f"plugins.{plugin_id}.{where}"
        if first["type"] == "extra_forbidden":
            message = f"unknown key {key!r}"
        else:
            message = f"{key}: {first['msg']}"
        raise ConfigError(f"invalid config: {message}", key=key) from None


def build_policy(plugin: PluginHeader, settings: PluginSettings) -> EgressPolicy:
    """The manifest's origins, narrowed by `network.only`, extended by `network.extend`."""
    from openkoi.plugins._egress import EgressPolicy, OriginSyntaxError

    pid = plugin.manifest.id
    declared = EgressPolicy.parse(plugin.manifest.allow)
    allow = list(plugin.manifest.allow)
    if settings.network.only is not None:
        try:
            wanted = EgressPolicy.parse(settings.network.only)
        except OriginSyntaxError as exc:
            raise ConfigError(f"plugins.{pid}.network.only: {exc}", key=f"plugins.{pid}") from None
        declared_names = {o.normalized: o.original for o in declared.origins}
        allow = []
        for origin in wanted.origins:
            if origin.normalized not in declared_names:
                raise ConfigError(
                    f"plugins.{pid}.network.only lists {origin.original!r}, which the manifest "
                    f"does not declare (it declares {', '.join(declared_names)}); use "
                    "network.extend to grant a new origin",
                    key=f"plugins.{pid}.network.only",
                )
            allow.append(declared_names[origin.normalized])
    try:
        return EgressPolicy.parse(allow, user_granted=settings.network.extend)
    except OriginSyntaxError as exc:
        raise ConfigError(f"plugins.{pid}.network.extend: {exc}", key=f"plugins.{pid}") from None


def resolve_secrets(
    plugin: PluginHeader, settings: PluginSettings
) -> tuple[dict[str, Secret], list[str]]:
    """The declared secrets the user configured, and the names still missing.

    For each secret, first match wins: the env variable named in `[plugins.<id>.secrets]`, the
    manifest's `env` names, an env variable named like the secret, then a saved key
    (`credentials/<id>.key` for the first secret, `credentials/<id>.<NAME>.key` for others).
    """
    from openkoi._credentials import resolve_api_key

    found: dict[str, Secret] = {}
    missing: list[str] = []
    pid = plugin.manifest.id
    for i, decl in enumerate(plugin.manifest.secrets):
        env: list[str] = []
        if decl.name in settings.secrets:
            env.append(settings.secrets[decl.name])
        env += [*decl.env, decl.name]
        secret = resolve_api_key(pid if i == 0 else f"{pid}.{decl.name}", env)
        if secret is None:
            missing.append(decl.name)
        else:
            found[decl.name] = secret
    return found, missing


def config_values(plugin: PluginHeader, settings: PluginSettings) -> dict[str, str]:
    """The values the guest may read: declared keys only, the user's value over the default."""
    declared = {c.key: c for c in plugin.manifest.config}
    unknown = sorted(set(settings.config) - set(declared))
    if unknown:
        pid = plugin.manifest.id
        raise ConfigError(
            f"plugins.{pid}.config sets {', '.join(unknown)}, which the plugin does not declare "
            f"(it declares: {', '.join(declared) or 'nothing'})",
            key=f"plugins.{pid}.config",
        )
    values = {k: c.default for k, c in declared.items() if c.default is not None}
    values.update(settings.config)
    return values


@dataclass
class LoadedPlugin:
    """A plugin file from config: its header read at start-up, and either accepted or refused.
    `file` is the whole file, read and checked at first use."""

    path: Path
    plugin: PluginHeader | None = None
    settings: PluginSettings | None = None
    error: OpenKoiError | None = None
    approval: str = ""  # "new" or "approved" from the header; check_approval's word after use
    file: PluginFile | None = field(default=None, repr=False)

    @property
    def id(self) -> str | None:
        return self.plugin.manifest.id if self.plugin else None


def read_configured(config: Config) -> list[LoadedPlugin]:
    """Every plugin listed in `[plugins] wasm`, its header read and checked (no code read)."""
    loaded: list[LoadedPlugin] = []
    seen: dict[str, Path] = {}
    for entry in config.plugins.wasm:
        path = Path(entry).expanduser()
        item = LoadedPlugin(path=path)
        loaded.append(item)
        try:
            item.plugin = read_plugin_header(path)
            pid = item.plugin.manifest.id
            if pid in seen:
                raise PluginLoadError(
                    f"{path} and {seen[pid]} both declare the plugin id {pid!r}", path=str(path)
                )
            seen[pid] = path
            _check_header(item, config)
        except OpenKoiError as exc:
            item.error = exc
    return loaded


def _check_header(item: LoadedPlugin, config: Config) -> None:
    """What start-up checks of a plugin whose header was read: its settings, its approval."""
    from openkoi.plugins._approvals import precheck_approval

    assert item.plugin is not None
    item.settings = plugin_settings(config, item.plugin.manifest.id)
    _check_settings(item.plugin, item.settings)
    item.approval = precheck_approval(item.plugin)


def _changed_id(path: Path, before: str, now: str) -> PluginLoadError:
    return PluginLoadError(
        f"{path} changed while openkoi ran: it now declares the plugin id {now!r}, not {before!r}",
        path=str(path),
    )


def _check_settings(plugin: PluginHeader, settings: PluginSettings) -> None:
    build_policy(plugin, settings)
    config_values(plugin, settings)


def read_for_use(item: LoadedPlugin) -> PluginFile:
    """The whole file, checked as it is now (start-up read only its header, and the file may
    have changed since): the same id, its settings, then its approval, which this records.
    Kept on the item, so the bytes checked are the bytes compiled and run."""
    from openkoi.plugins._approvals import check_approval

    if item.error is not None:
        raise item.error
    if item.file is not None:
        return item.file
    assert item.plugin is not None and item.settings is not None
    plugin = read_plugin_file(item.path)
    before, now = item.plugin.manifest.id, plugin.manifest.id
    if now != before:
        raise _changed_id(item.path, before, now)
    _check_settings(plugin, item.settings)
    item.approval = check_approval(plugin)
    item.file = plugin
    return plugin


# The plugins each registry registered, by id (weakly: they go with their registry).
_REGISTERED: weakref.WeakKeyDictionary[ProviderRegistry, dict[str, LoadedPlugin]] = (
    weakref.WeakKeyDictionary()
)


def registered_plugins(registry: ProviderRegistry) -> dict[str, LoadedPlugin]:
    """The plugins `register_plugins` registered with `registry` (and those registered from the
    id cache that have been used), by id."""
    return _REGISTERED.get(registry, {})


def plugin_item(registry: ProviderRegistry, provider_id: str) -> LoadedPlugin | None:
    """The registered plugin `provider_id`, however it was registered; None if it is none."""
    item = registered_plugins(registry).get(provider_id)
    if item is None and provider_id in listed_for(registry):
        item = load_listed(registry, provider_id)
    return item


def load_listed(registry: ProviderRegistry, provider_id: str) -> LoadedPlugin:
    """A plugin registered from the id cache (`_listing`): its header read and checked now, as
    a start-up without the cache would have (a failure is kept on the item, raised on use)."""
    items = _REGISTERED.setdefault(registry, {})
    found = items.get(provider_id)
    if found is not None:
        return found
    listed = listed_for(registry)[provider_id]
    item = LoadedPlugin(path=listed.path)
    try:
        item.plugin = read_plugin_header(listed.path)
        if item.plugin.manifest.id != provider_id:
            raise _changed_id(listed.path, provider_id, item.plugin.manifest.id)
        _check_header(item, registry.config)
    except OpenKoiError as exc:
        item.error = exc
    items[provider_id] = item
    return item


def open_listed(
    registry: ProviderRegistry, provider_id: str, settings: ProviderSettings
) -> ModelProvider:
    """The provider of a plugin registered from the id cache (its spec's factory)."""
    item = load_listed(registry, provider_id)
    plugin = read_for_use(item)
    assert item.settings is not None
    return open_plugin(plugin, item.settings, settings)


def register_plugins(registry: ProviderRegistry) -> list[LoadedPlugin]:
    """Register every configured plugin with the registry (called by `ProviderRegistry`)."""
    loaded = read_configured(registry.config)
    registered: dict[str, LoadedPlugin] = {}
    for item in loaded:
        if item.plugin is None:
            log.warning("plugin %s skipped: %s", item.path, item.error)
            continue
        manifest = item.plugin.manifest
        if add_plugin(registry, Listed(item.path, manifest.id, manifest.name), _factory(item)):
            registered[manifest.id] = item
    _REGISTERED[registry] = registered
    remember(
        (item.path, item.plugin.manifest.id, item.plugin.manifest.name)
        for item in loaded
        if item.plugin is not None
    )
    return loaded


def _factory(item: LoadedPlugin) -> Callable[[ProviderSettings], ModelProvider]:
    def build(settings: ProviderSettings) -> ModelProvider:
        plugin = read_for_use(item)
        assert item.settings is not None
        return open_plugin(plugin, item.settings, settings)

    return build


def open_plugin(
    plugin: PluginFile,
    plugin_settings: PluginSettings,
    settings: ProviderSettings | None = None,
    *,
    resolver: Resolver | None = None,
) -> WasmProvider:
    """Compile (or load from the cache) and wrap a plugin as a provider. `resolver` replaces
    DNS (tests)."""
    from openkoi._provider import ProviderSettings
    from openkoi.plugins._limits import effective_limits
    from openkoi.plugins._provider import WasmProvider
    from openkoi.plugins._runtime import PluginRuntime

    secrets, missing = resolve_secrets(plugin, plugin_settings)
    limits = effective_limits(
        plugin.manifest.limits, RequestedLimits(**plugin_settings.limits.model_dump())
    )
    runtime = PluginRuntime(
        plugin,
        policy=build_policy(plugin, plugin_settings),
        secrets=secrets,
        config=config_values(plugin, plugin_settings),
        limits=limits,
        pool_size=plugin_settings.pool_size,
        missing_secrets={name: _secret_hint(plugin, name, plugin_settings) for name in missing},
        resolver=resolver,
    )
    settings = settings or ProviderSettings(
        id=plugin.manifest.id, name=plugin.manifest.name, base_url=""
    )
    return WasmProvider(runtime, settings)


def _secret_hint(plugin: PluginHeader, name: str, settings: PluginSettings) -> str:
    decl = next(s for s in plugin.manifest.secrets if s.name == name)
    env = settings.secrets.get(name) or (decl.env[0] if decl.env else name)
    return f"set {env} (or map it under [plugins.{plugin.manifest.id}.secrets])"


def load_plugin_file(
    path: Path,
    settings: dict[str, Any] | None = None,
    *,
    app_config: Config | None = None,
    resolver: Resolver | None = None,
) -> WasmProvider:
    """Open one plugin file directly (tests, the demo, benchmarks). `settings` is a
    `[plugins.<id>]` table, used instead of the one in `app_config`."""
    from openkoi._config import Config

    plugin = read_plugin_file(path)
    if settings is not None:
        try:
            checked = PluginSettings.model_validate(settings)
        except ValidationError as exc:
            raise ConfigError(f"invalid plugin settings: {exc.errors()[0]['msg']}") from None
    else:
        checked = plugin_settings(app_config or Config(), plugin.manifest.id)
    return open_plugin(plugin, checked, resolver=resolver)
