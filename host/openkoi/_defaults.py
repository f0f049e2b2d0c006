"""The model used when the caller names none.

Order (the spec's "Default Model Priority", then what `openkoi connect` adds):

    1. anthropic/claude-sonnet-4-5   when Anthropic has a credential
    2. openai/gpt-5.2                when OpenAI has one
    3. google/gemini-2.5-pro         when Google has one
    4. ollama/<best local model>     when a local Ollama answers the probe (bounded, 0.5 s)
    5. subscription providers        GitHub Copilot, ChatGPT, Qwen, when signed in
    6. any other provider with a credential and a default model

With nothing at all, the CLI offers the interactive picker in a terminal (set up Ollama, paste
an API key, or sign in: `cli._ask`); elsewhere it reports one line and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from openkoi._registry import ProviderRegistry

DEFAULT_PRIORITY: tuple[tuple[str, str], ...] = (
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-5.2"),
    ("google", "gemini-2.5-pro"),
)
SUBSCRIPTIONS: tuple[str, ...] = ("github-copilot", "openai-oauth", "qwen")
OLLAMA_PROBE_TIMEOUT = 0.5

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, in a worker thread when any event loop (asyncio's or
    trio's) is running on this one: httpx would take the running one for its own."""
    import asyncio

    import sniffio

    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def best_ollama_model(
    registry: ProviderRegistry, timeout: float = OLLAMA_PROBE_TIMEOUT
) -> str | None:
    """The best installed model of a reachable local Ollama, or None (probe bounded by timeout)."""
    if "ollama" not in registry.ids():
        return None
    from openkoi.credentials._status import probe_ollama

    status = _run(probe_ollama(registry, timeout))
    return status.best if status.reachable else None


def default_model_ref(registry: ProviderRegistry, *, probe_ollama: bool = True) -> str | None:
    known = set(registry.ids())
    for provider, model in DEFAULT_PRIORITY:
        if provider in known and registry.credential(provider) is not None:
            return f"{provider}/{model}"
    if probe_ollama:
        local = best_ollama_model(registry)
        if local:
            return f"ollama/{local}"
    for provider in SUBSCRIPTIONS:
        if provider not in known:
            continue
        spec = registry.spec(provider)
        if spec.default_model and registry.credential(provider) is not None:
            return f"{provider}/{spec.default_model}"
    for spec in registry.specs():
        configured = spec.auth in ("api-key", "oauth") and spec.default_model
        if configured and registry.credential(spec.id) is not None:
            return f"{spec.id}/{spec.default_model}"
    return None
