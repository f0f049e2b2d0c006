"""The default model with a local Ollama in the picture: priority, the bounded probe, status."""

from __future__ import annotations

import time
from typing import Any

import pytest
from _connect_support import run_cli
from _server import Recorded, Reply
from openkoi._defaults import default_model_ref
from openkoi._registry import ProviderRegistry
from openkoi.credentials._store import AuthStore

TAGS = {"models": [{"name": "gemma2:2b"}, {"name": "llama3.3:latest"}, {"name": "mistral:7b"}]}


def _ollama(serve: Any, monkeypatch: pytest.MonkeyPatch, tags: Any = TAGS, delay: float = 0) -> Any:
    def handler(request: Recorded) -> Reply:
        assert request.path == "/api/tags"
        return Reply(
            status=200,
            body=__import__("json").dumps(tags),
            headers={"content-type": "application/json"},
            delay=delay,
        )

    server = serve(handler)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    return server


def test_ollama_best_model_after_the_api_key_providers(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ollama(serve, monkeypatch)
    AuthStore().put("github-copilot", {"type": "oauth", "access": "gho_x"})
    assert default_model_ref(ProviderRegistry()) == "ollama/llama3.3:latest"
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    assert default_model_ref(ProviderRegistry()) == "google/gemini-2.5-pro"


def test_ollama_without_models_falls_through_to_subscriptions(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _ollama(serve, monkeypatch, tags={"models": []})
    AuthStore().put("openai-oauth", {"type": "oauth", "access": "a", "refresh": "r"})
    assert default_model_ref(ProviderRegistry()) == "openai-oauth/gpt-5.2"
    assert [r.path for r in server.requests] == ["/api/tags"]


def test_probe_is_bounded_by_its_timeout(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _ollama(serve, monkeypatch, delay=5)
    AuthStore().put("github-copilot", {"type": "oauth", "access": "gho_x"})
    started = time.monotonic()
    assert default_model_ref(ProviderRegistry()) == "github-copilot/gpt-4.1"
    assert time.monotonic() - started < 2.0


def test_probe_not_made_when_a_key_provider_wins(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _ollama(serve, monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert default_model_ref(ProviderRegistry()) == "openai/gpt-5.2"
    assert server.requests == []


@pytest.mark.anyio
async def test_default_model_from_inside_an_event_loop(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ollama(serve, monkeypatch)
    assert default_model_ref(ProviderRegistry()) == "ollama/llama3.3:latest"


def test_status_and_connect_ollama_through_the_cli(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _ollama(serve, monkeypatch)
    status = run_cli("connect", "status")
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.strip().startswith("Ollama:"))
    assert line.strip().endswith(f"connected ({server.url.split('://')[1]}, 3 models)")
    done = run_cli("connect", "ollama")
    assert done.returncode == 0, done.stderr
    assert "Default local model: ollama/llama3.3:latest" in done.stdout
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    down = run_cli("connect", "ollama")
    assert down.returncode == 1 and "Ollama is not running at" in down.stderr
    assert "ollama pull llama3.3" in down.stderr
