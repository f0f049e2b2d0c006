"""`openkoi models` and `ModelProvider.models()`: live lists from real loopback servers, merged
with the catalogue and the price table, cached for a day."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from _connect_support import run_cli
from _server import Recorded, Reply
from openkoi import ProviderRegistry
from openkoi._config import Config
from openkoi._errors import MalformedResponseError
from openkoi_providers._listing import get_listing

OPENAI_MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-5.2", "object": "model", "created": 1, "owned_by": "system"},
        {"id": "text-embedding-3-small", "object": "model", "created": 1, "owned_by": "system"},
        {"id": "ft:gpt-4.1:acme:[eu]:abc", "object": "model", "created": 1, "owned_by": "acme"},
    ],
}


def _models_json(result: Any) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _by_ref(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["ref"]: m for p in data["providers"] for m in p["models"]}


def test_openai_list_is_live_merged_and_cached_for_a_day(serve: Any) -> None:
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        return Reply.json(OPENAI_MODELS)

    server = serve(handler)
    env = {"OPENAI_API_KEY": "sk-list-key", "OPENAI_BASE_URL": f"{server.url}/v1"}
    data = _models_json(run_cli("models", "openai", "--json", env=env))
    assert [r.path for r in seen] == ["/v1/models"]
    assert seen[0].headers["authorization"] == "Bearer sk-list-key"
    models = _by_ref(data)
    assert set(models) == {
        "openai/gpt-5.2",
        "openai/text-embedding-3-small",
        "openai/ft:gpt-4.1:acme:[eu]:abc",
    }
    gpt = models["openai/gpt-5.2"]
    assert gpt["context_window"] == 400_000 and gpt["max_output_tokens"] == 128_000
    assert gpt["pricing"]["input"] == 1.75 and gpt["pricing"]["output"] == 14.0
    assert models["openai/text-embedding-3-small"]["supports_embeddings"] is True
    assert data["providers"][0]["cached"] is False
    assert "sk-list-key" not in json.dumps(data)

    # Within a day the cache answers; --refresh asks again.
    again = _models_json(run_cli("models", "openai", "--json", env=env))
    assert len(seen) == 1 and again["providers"][0]["cached"] is True
    assert _by_ref(again) == models
    _models_json(run_cli("models", "openai", "--json", "--refresh", env=env))
    assert len(seen) == 2

    # A day-old cache is fetched again.
    cache = Path(os.environ["OPENKOI_HOME"]) / "cache" / "models" / "openai.json"
    stored = json.loads(cache.read_text())
    stored["fetched_at"] -= 86_401
    cache.write_text(json.dumps(stored))
    _models_json(run_cli("models", "openai", "--json", env=env))
    assert len(seen) == 3
    assert "sk-list-key" not in cache.read_text()

    # Another base URL is another list.
    other = serve(lambda r: Reply.json({"data": [{"id": "only-here"}]}))
    moved = _models_json(
        run_cli("models", "openai", "--json", env={**env, "OPENAI_BASE_URL": f"{other.url}/v1"})
    )
    assert set(_by_ref(moved)) == {"openai/only-here"}


def test_table_keeps_brackets_and_long_ids_in_a_pipe(serve: Any) -> None:
    server = serve(lambda r: Reply.json(OPENAI_MODELS))
    env = {"OPENAI_API_KEY": "sk-k", "OPENAI_BASE_URL": f"{server.url}/v1"}
    result = run_cli("models", env=env)
    assert result.returncode == 0, result.stderr
    assert "openai/ft:gpt-4.1:acme:[eu]:abc" in result.stdout
    assert "openai/text-embedding-3-small" in result.stdout
    assert "400,000" in result.stdout and "$1.75" in result.stdout
    assert "…" not in result.stdout


def test_anthropic_pages_through_v1_models(serve: Any) -> None:
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        if "after_id" not in request.query:
            return Reply.json(
                {
                    "data": [
                        {
                            "type": "model",
                            "id": "claude-sonnet-4-5-20250929",
                            "display_name": "Claude Sonnet 4.5",
                            "created_at": "2025-09-29T00:00:00Z",
                        }
                    ],
                    "has_more": True,
                    "first_id": "claude-sonnet-4-5-20250929",
                    "last_id": "claude-sonnet-4-5-20250929",
                }
            )
        return Reply.json(
            {
                "data": [{"type": "model", "id": "claude-haiku-4-5-20251001"}],
                "has_more": False,
                "last_id": "claude-haiku-4-5-20251001",
            }
        )

    server = serve(handler)
    env = {"ANTHROPIC_API_KEY": "sk-ant-list", "ANTHROPIC_BASE_URL": server.url}
    models = _by_ref(_models_json(run_cli("models", "anthropic", "--json", env=env)))
    assert [r.path for r in seen] == ["/v1/models", "/v1/models"]
    assert seen[1].query["after_id"] == "claude-sonnet-4-5-20250929"
    assert seen[0].headers["x-api-key"] == "sk-ant-list"
    assert seen[0].headers["anthropic-version"]
    sonnet = models["anthropic/claude-sonnet-4-5-20250929"]
    assert sonnet["name"] == "Claude Sonnet 4.5"
    assert sonnet["context_window"] == 200_000  # from the catalogue, by the undated id
    assert sonnet["pricing"]["input"] == 3.0
    assert set(models) == {
        "anthropic/claude-sonnet-4-5-20250929",
        "anthropic/claude-haiku-4-5-20251001",
    }


def test_compatible_listing_fields_and_a_server_without_models(serve: Any, tmp_path: Path) -> None:
    groq = serve(
        lambda r: Reply.json(
            {
                "data": [
                    {"id": "llama-3.3-70b-versatile", "context_window": 131072},
                    {
                        "id": "vendor/model-x",
                        "context_length": 32768,
                        "top_provider": {"max_completion_tokens": 4096},
                        "pricing": {"prompt": "0.0000005", "completion": "0.0000015"},
                    },
                ]
            }
        )
    )
    bare = serve(lambda r: Reply.json({"error": {"message": "not found"}}, 404))
    config = Path(os.environ["OPENKOI_HOME"]) / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[providers.bare]\nbase_url = "{bare.url}/v1"\ndefault_model = "local-llm"\n'
    )
    env = {"GROQ_API_KEY": "gsk-1", "GROQ_BASE_URL": f"{groq.url}/openai/v1"}
    models = _by_ref(_models_json(run_cli("models", "--json", env=env)))
    assert models["groq/llama-3.3-70b-versatile"]["context_window"] == 131072
    x = models["groq/vendor/model-x"]
    assert x["context_window"] == 32768 and x["max_output_tokens"] == 4096
    assert x["pricing"] == {"input": 0.5, "output": 1.5, "cache_read": None, "cache_write": None}
    assert "bare/local-llm" in models  # no /models route: what is configured


def test_one_failing_provider_is_reported_and_the_rest_listed(serve: Any) -> None:
    good = serve(lambda r: Reply.json(OPENAI_MODELS))
    bad = serve(
        lambda r: Reply.json(
            {"error": {"message": "field [tools] must be a list; see [docs]"}}, 500
        )
    )
    env = {
        "OPENAI_API_KEY": "sk-1",
        "OPENAI_BASE_URL": f"{good.url}/v1",
        "DEEPSEEK_API_KEY": "sk-2",
        "DEEPSEEK_BASE_URL": f"{bad.url}/v1",
    }
    result = run_cli("models", env=env)
    assert result.returncode == 1
    assert "openai/gpt-5.2" in result.stdout
    assert (
        "deepseek" in result.stderr and "field [tools] must be a list; see [docs]" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_gemini_and_ollama_through_the_cli(serve: Any) -> None:
    gemini = serve(
        lambda r: Reply.json(
            {
                "models": [
                    {
                        "name": "models/gemini-2.5-pro",
                        "displayName": "Gemini 2.5 Pro",
                        "inputTokenLimit": 1048576,
                        "outputTokenLimit": 65536,
                        "supportedGenerationMethods": ["generateContent"],
                    }
                ]
            }
        )
    )
    ollama = serve(
        lambda r: Reply.json({"models": [{"name": "llama3.3:latest", "model": "llama3.3:latest"}]})
    )
    env = {"GOOGLE_API_KEY": "g-1", "GOOGLE_BASE_URL": gemini.url, "OLLAMA_HOST": ollama.url}
    models = _by_ref(_models_json(run_cli("models", "--json", env=env)))
    assert models["google/gemini-2.5-pro"]["context_window"] == 1048576
    assert models["google/gemini-2.5-pro"]["pricing"] is not None
    assert "ollama/llama3.3:latest" in models


def test_unknown_provider_suggests_and_nothing_connected_says_so() -> None:
    typo = run_cli("models", "antropic")
    assert typo.returncode == 1
    assert "unknown provider 'antropic'; did you mean 'anthropic'?" in typo.stderr
    nothing = run_cli("models")
    assert nothing.returncode == 1 and "openkoi init" in nothing.stderr


@pytest.mark.anyio
async def test_library_models_is_the_live_list(serve: Any) -> None:
    openai = serve(lambda r: Reply.json(OPENAI_MODELS))
    anthropic = serve(
        lambda r: Reply.json({"data": [{"id": "claude-opus-4-5"}], "has_more": False})
    )
    os.environ["OPENAI_API_KEY"] = "sk-lib"
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-lib"
    try:
        registry = ProviderRegistry(Config())
        registry.override("openai", default_base_url=f"{openai.url}/v1")
        registry.override("anthropic", default_base_url=anthropic.url)
        try:
            listed = [m.id for m in await registry.get("openai").models()]
            assert listed == ["ft:gpt-4.1:acme:[eu]:abc", "gpt-5.2", "text-embedding-3-small"]
            assert [m.id for m in await registry.get("anthropic").models()] == ["claude-opus-4-5"]
        finally:
            await registry.aclose()
    finally:
        del os.environ["OPENAI_API_KEY"], os.environ["ANTHROPIC_API_KEY"]


@pytest.mark.anyio
async def test_a_listing_larger_than_the_cap_is_refused(serve: Any) -> None:
    big = {"data": [{"id": f"model-{i}"} for i in range(2000)]}
    server = serve(lambda r: Reply(body=json.dumps(big), chunks=None))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

        async def listing(**limit: int) -> Any:
            return await get_listing(
                client,
                "/models",
                provider="openai",
                headers={},
                secrets=(),
                on_error=lambda response, text: MalformedResponseError("x"),
                **limit,
            )

        with pytest.raises(MalformedResponseError, match="larger than"):
            await listing(limit=10_000)
        assert len((await listing())["data"]) == 2000
