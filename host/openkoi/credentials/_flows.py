"""What `openkoi connect` does for each kind of target, without any terminal code.

The CLI passes a `show` callback (print the code, open the browser); everything else here is
scriptable and testable: the OAuth sign-ins, saving and removing keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from openkoi._errors import ConfigError
from openkoi._suggest import did_you_mean
from openkoi.credentials._device_flow import DeviceCode
from openkoi.credentials._discovery import saved_key_path
from openkoi.credentials._store import AuthStore, Entry

if TYPE_CHECKING:
    from openkoi._registry import ProviderRegistry

TargetKind = Literal["oauth", "api-key", "local"]
ShowCode = Callable[[DeviceCode], Awaitable[None] | None]


@dataclass(frozen=True)
class Target:
    name: str  # what the user types: copilot, chatgpt, anthropic, ...
    provider: str  # the provider id
    title: str
    hint: str
    kind: TargetKind


SUBSCRIPTION_TARGETS = (
    Target(
        "copilot",
        "github-copilot",
        "GitHub Copilot",
        "Device-code OAuth (use your existing subscription)",
        "oauth",
    ),
    Target(
        "chatgpt",
        "openai-oauth",
        "ChatGPT Plus/Pro",
        "Device-code OAuth (use your existing subscription)",
        "oauth",
    ),
)
_FIRST = ("anthropic", "openai", "google")


def targets(registry: ProviderRegistry) -> list[Target]:
    """Every connect target: subscriptions, then API-key providers, then Ollama."""
    out = [t for t in SUBSCRIPTION_TARGETS if t.provider in registry.ids()]
    keyed = [s for s in registry.specs() if s.auth == "api-key" and s.api_key_env]
    keyed.sort(key=lambda s: (_FIRST.index(s.id) if s.id in _FIRST else len(_FIRST), s.id))
    out += [Target(s.id, s.id, s.name, f"API key ({s.api_key_env[0]})", "api-key") for s in keyed]
    if "ollama" in registry.ids():
        out.append(Target("ollama", "ollama", "Ollama", "Local models: free, no key", "local"))
    return out


def find_target(registry: ProviderRegistry, name: str) -> Target:
    wanted = name.strip().lower()
    every = targets(registry)
    for target in every:
        if wanted in (target.name, target.provider):
            return target
    canonical = registry.canonical(wanted)
    for target in every:
        if target.provider == canonical:
            return target
    if canonical in registry.ids():
        spec = registry.spec(canonical)
        how = spec.connect_hint or {
            "aws": "it uses the AWS credential chain (environment, ~/.aws, SSO)",
            "plugin": "it is a plugin; see `openkoi plugin`",
        }.get(spec.auth, "it needs no credential")
        raise ConfigError(f"openkoi cannot connect {spec.name} itself: {how}")
    names = [t.name for t in every] + ["status"]
    hint = did_you_mean(wanted, names) or ";"
    raise ConfigError(f"unknown connect target {name!r}{hint} choose one of: {', '.join(names)}")


async def sign_in(target: Target, show: ShowCode) -> Entry:
    """Run the target's device-code sign-in; returns the entry to store (nothing saved yet)."""
    import httpx

    async with httpx.AsyncClient(timeout=30.0) as client:
        if target.provider == "github-copilot":
            from openkoi.credentials import _copilot_token, _github
            from openkoi.credentials._endpoints import GitHubEndpoints

            ep = GitHubEndpoints.from_env()
            token = await _github.device_flow(client, ep, show)
            # Proves the account has Copilot before anything is saved.
            session = await _copilot_token.exchange(
                client, ep, token, dict(_copilot_token.EDITOR_HEADERS)
            )
            return {"type": "oauth", "access": token, "session": session}
        if target.provider == "openai-oauth":
            from openkoi.credentials import _chatgpt_oauth
            from openkoi.credentials._endpoints import ChatGPTEndpoints

            return await _chatgpt_oauth.device_flow(client, ChatGPTEndpoints.from_env(), show)
    raise ConfigError(f"{target.title} has no device-code sign-in")


def clean_key(raw: str, title: str) -> str:
    key = raw.strip()
    if not key:
        raise ConfigError(f"no API key given for {title}")
    if any(c.isspace() for c in key) or not key.isprintable():
        raise ConfigError(f"that does not look like an API key for {title} (it has spaces)")
    return key


def save_key(store: AuthStore, provider: str, key: str) -> None:
    store.put(provider, {"type": "api-key", "key": key})


def forget(store: AuthStore, provider: str) -> list[str]:
    """Remove what openkoi saved for `provider`; returns what was removed."""
    removed = []
    if store.remove(provider):
        removed.append(store.description)
    path = saved_key_path(provider)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        removed.append(str(path))
    return removed


def forget_all(store: AuthStore) -> list[str]:
    """Remove every stored credential; returns the providers that had one."""
    gone = set(store.clear())
    folder = saved_key_path("x").parent
    if folder.is_dir():
        for path in folder.glob("*.key"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                gone.add(path.stem)
    return sorted(gone)
