"""The model used when the caller names none.

Order: the spec's priority among providers that have a credential (anthropic, openai, google,
then a local Ollama), then any other configured provider.
"""

from __future__ import annotations

from openkoi._registry import ProviderRegistry

DEFAULT_PRIORITY: tuple[tuple[str, str], ...] = (
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-5.2"),
    ("google", "gemini-2.5-pro"),
)


def default_model_ref(registry: ProviderRegistry) -> str | None:
    known = set(registry.ids())
    for provider, model in DEFAULT_PRIORITY:
        if provider in known and registry.credential(provider) is not None:
            return f"{provider}/{model}"
    for spec in registry.specs():
        configured = spec.auth in ("api-key", "oauth") and spec.default_model
        if configured and registry.credential(spec.id) is not None:
            return f"{spec.id}/{spec.default_model}"
    return None
