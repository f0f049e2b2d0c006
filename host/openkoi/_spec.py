"""What a provider is before it is configured: `ProviderSpec`, the record every provider source
registers (the built-ins' entry point, plugins, custom OpenAI-compatible endpoints). Its own
module, so that those sources need not import the registry that imports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from openkoi._provider import ModelProvider, ProviderSettings
    from openkoi._secrets import Secret

AuthKind = Literal["api-key", "oauth", "local", "aws", "plugin", "none"]


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider is, before it is configured. `factory` builds an instance from settings."""

    id: str
    name: str
    factory: Callable[[ProviderSettings], ModelProvider]
    default_base_url: str = ""
    default_model: str | None = None
    embedding_model: str | None = None
    api_key_env: tuple[str, ...] = ()
    base_url_env: tuple[str, ...] = ()
    auth: AuthKind = "api-key"
    connect_hint: str = ""
    # For providers whose credential is not a plain key (OAuth, AWS): returns it or None.
    credential: Callable[[], Secret | None] | None = field(default=None, compare=False)
    aliases: tuple[str, ...] = ()
