"""Model references and the built-in provider table."""

from __future__ import annotations

import pytest
from openkoi import (
    CredentialsMissingError,
    ModelRefError,
    ProviderRegistry,
    UnknownProviderError,
    parse_model_ref,
)
from openkoi._secrets import Secret


@pytest.mark.parametrize(
    ("text", "provider", "model"),
    [
        ("openai/gpt-5.2", "openai", "gpt-5.2"),
        (
            "together/meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "together",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        ),
        ("openrouter/auto", "openrouter", "auto"),
        (
            "bedrock/anthropic.claude-sonnet-4-20250514",
            "bedrock",
            "anthropic.claude-sonnet-4-20250514",
        ),
        ("ollama/qwen2.5-coder:7b", "ollama", "qwen2.5-coder:7b"),
        ("  groq/llama-3.3-70b-versatile ", "groq", "llama-3.3-70b-versatile"),
    ],
)
def test_split_on_first_slash(text: str, provider: str, model: str) -> None:
    ref = parse_model_ref(text)
    assert (ref.provider, ref.model) == (provider, model)
    assert str(ref) == f"{provider}/{model}"


@pytest.mark.parametrize("text", ["gpt-5.2", "/gpt", "openai/", "", "   "])
def test_missing_prefix_lists_known_providers(text: str) -> None:
    with pytest.raises(ModelRefError) as info:
        parse_model_ref(text, ["openai", "groq"])
    assert "provider/model" in str(info.value)
    assert "groq, openai" in str(info.value)


def test_builtin_table_matches_the_spec() -> None:
    registry = ProviderRegistry()
    expected = {
        "openai": ("https://api.openai.com/v1", "gpt-5.2", "OPENAI_API_KEY"),
        "groq": ("https://api.groq.com/openai/v1", "llama-3.3-70b-versatile", "GROQ_API_KEY"),
        "openrouter": ("https://openrouter.ai/api/v1", "auto", "OPENROUTER_API_KEY"),
        "together": (
            "https://api.together.xyz/v1",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "TOGETHER_API_KEY",
        ),
        "deepseek": ("https://api.deepseek.com/v1", "deepseek-chat", "DEEPSEEK_API_KEY"),
        "minimax": ("https://api.minimax.io/v1", "MiniMax-M2.5", "MINIMAX_API_KEY"),
        "moonshot": ("https://api.moonshot.cn/v1", "kimi-k2.5", "MOONSHOT_API_KEY"),
        "xai": ("https://api.x.ai/v1", "grok-4-0709", "XAI_API_KEY"),
    }
    for pid, (url, model, env) in expected.items():
        spec = registry.spec(pid)
        assert (spec.default_base_url, spec.default_model, spec.api_key_env[0]) == (url, model, env)
    assert registry.spec("openai").embedding_model == "text-embedding-3-small"


def test_unknown_provider_lists_known() -> None:
    registry = ProviderRegistry()
    with pytest.raises(UnknownProviderError) as info:
        registry.resolve("nosuch/model")
    assert "openai" in str(info.value) and "groq" in str(info.value)


def test_missing_key_names_the_variable() -> None:
    registry = ProviderRegistry()
    with pytest.raises(CredentialsMissingError) as info:
        registry.resolve("groq/llama-3.3-70b-versatile")
    assert "GROQ_API_KEY" in str(info.value)


def test_saved_key_file_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from openkoi._paths import openkoi_home

    folder = openkoi_home() / "credentials"
    folder.mkdir(parents=True)
    (folder / "deepseek.key").write_text("sk-saved-0000000\n")
    registry = ProviderRegistry()
    key = registry.settings("deepseek").api_key
    assert key is not None and key.reveal() == "sk-saved-0000000"
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-env-11111111")
    key = ProviderRegistry().settings("deepseek").api_key
    assert key is not None and key.reveal() == "sk-env-11111111"  # env wins


def test_secret_never_printed() -> None:
    secret = Secret("sk-very-secret-value", source="env:X")
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert "sk-very-secret-value" not in text
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_provider_repr_has_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAI_API_KEY", "xai-secret-123456789")
    registry = ProviderRegistry()
    provider, _ = registry.resolve("xai/grok-4-0709")
    assert "xai-secret-123456789" not in repr(provider)
    assert "xai-secret-123456789" not in repr(registry.settings("xai"))
