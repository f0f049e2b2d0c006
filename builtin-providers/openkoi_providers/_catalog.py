"""The built-in providers: ids, names, endpoints, default models and key variables.

Factories import their vendor module only when a provider is first used, so listing providers
stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openkoi._config import ProviderEntry
    from openkoi._provider import ModelProvider, ProviderSettings
    from openkoi._registry import ProviderRegistry
    from openkoi._secrets import Secret
    from openkoi._spec import ProviderSpec


def lazy_factory(module: str) -> Callable[[ProviderSettings], ModelProvider]:
    def factory(settings: ProviderSettings) -> ModelProvider:
        created: ModelProvider = import_module(f"openkoi_providers.{module}").create(settings)
        return created

    factory.__qualname__ = f"lazy_factory({module!r})"
    return factory


# id, display name, base URL, default model, key variable
OPENAI_COMPATIBLE: tuple[tuple[str, str, str, str, str], ...] = (
    ("groq", "Groq", "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile", "GROQ_API_KEY"),
    ("openrouter", "OpenRouter", "https://openrouter.ai/api/v1", "auto", "OPENROUTER_API_KEY"),
    (
        "together",
        "Together",
        "https://api.together.xyz/v1",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "TOGETHER_API_KEY",
    ),
    ("deepseek", "DeepSeek", "https://api.deepseek.com/v1", "deepseek-chat", "DEEPSEEK_API_KEY"),
    ("minimax", "MiniMax", "https://api.minimax.io/v1", "MiniMax-M2.5", "MINIMAX_API_KEY"),
    ("moonshot", "Moonshot / Kimi", "https://api.moonshot.cn/v1", "kimi-k2.5", "MOONSHOT_API_KEY"),
    ("xai", "xAI", "https://api.x.ai/v1", "grok-4-0709", "XAI_API_KEY"),
)


def openai_specs() -> list[ProviderSpec]:
    from openkoi._spec import ProviderSpec

    factory = lazy_factory("openai_compat")
    specs = [
        ProviderSpec(
            id="openai",
            name="OpenAI",
            factory=lambda s: factory(_with_option(s, "max_tokens_field", "max_completion_tokens")),
            default_base_url="https://api.openai.com/v1",
            default_model="gpt-5.2",
            embedding_model="text-embedding-3-small",
            api_key_env=("OPENAI_API_KEY",),
            base_url_env=("OPENAI_BASE_URL",),
        )
    ]
    for pid, name, url, model, key_var in OPENAI_COMPATIBLE:
        specs.append(
            ProviderSpec(
                id=pid,
                name=name,
                factory=factory,
                default_base_url=url,
                default_model=model,
                api_key_env=(key_var,),
                base_url_env=(f"{pid.upper()}_BASE_URL",),
            )
        )
    return specs


def _aws_credential() -> Secret | None:
    """The AWS chain's presence, checked without network calls or importing botocore."""
    from openkoi_providers._aws import aws_credential

    return aws_credential()


def _with_option(settings: ProviderSettings, key: str, value: object) -> ProviderSettings:
    settings.options.setdefault(key, value)
    return settings


def custom_spec(name: str, entry: ProviderEntry) -> ProviderSpec:
    """A `[providers.NAME]` entry with a base_url: an OpenAI-compatible provider, no code."""
    from openkoi._spec import ProviderSpec

    env = (
        (entry.api_key_env,)
        if entry.api_key_env
        else (f"{name.upper().replace('-', '_')}_API_KEY",)
    )
    return ProviderSpec(
        id=name,
        name=entry.name or name,
        factory=lazy_factory("openai_compat"),
        default_base_url=entry.base_url or "",
        default_model=entry.default_model,
        api_key_env=env,
        # A local server often needs no key; a missing one is sent as no Authorization header.
        auth="api-key" if entry.api_key_env else "none",
    )


def native_specs() -> list[ProviderSpec]:
    """The providers with their own protocols. Each module owns its `create(settings)`."""
    from openkoi._spec import ProviderSpec

    return [
        ProviderSpec(
            id="anthropic",
            name="Anthropic",
            factory=lazy_factory("anthropic"),
            default_base_url="https://api.anthropic.com",
            default_model="claude-sonnet-4-5",
            api_key_env=("ANTHROPIC_API_KEY",),
            base_url_env=("ANTHROPIC_BASE_URL",),
        ),
        ProviderSpec(
            id="google",
            name="Google Gemini",
            factory=lazy_factory("gemini"),
            default_base_url="https://generativelanguage.googleapis.com",
            default_model="gemini-2.5-pro",
            embedding_model="gemini-embedding-001",
            api_key_env=("GOOGLE_API_KEY", "GEMINI_API_KEY"),
            base_url_env=("GOOGLE_BASE_URL", "GEMINI_BASE_URL"),
            aliases=("gemini",),
        ),
        ProviderSpec(
            id="ollama",
            name="Ollama",
            factory=lazy_factory("ollama"),
            default_base_url="http://localhost:11434",
            base_url_env=("OLLAMA_HOST",),
            auth="local",
        ),
        ProviderSpec(
            id="bedrock",
            name="AWS Bedrock",
            factory=lazy_factory("bedrock"),
            default_model="anthropic.claude-sonnet-4-20250514",
            embedding_model="amazon.titan-embed-text-v2:0",
            base_url_env=("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "BEDROCK_BASE_URL"),
            auth="aws",
            credential=_aws_credential,
        ),
        ProviderSpec(
            id="github-copilot",
            name="GitHub Copilot",
            factory=lazy_factory("copilot"),
            default_base_url="https://api.githubcopilot.com",
            default_model="gpt-4.1",
            auth="oauth",
            connect_hint="run `openkoi connect copilot`",
            aliases=("copilot",),
        ),
        ProviderSpec(
            id="openai-oauth",
            name="ChatGPT",
            factory=lazy_factory("chatgpt"),
            default_base_url="https://chatgpt.com/backend-api/codex",
            default_model="gpt-5.2",
            base_url_env=("OPENKOI_CHATGPT_BASE_URL",),
            auth="oauth",
            connect_hint="run `openkoi connect chatgpt`",
            aliases=("chatgpt",),
        ),
        ProviderSpec(  # signed in through the Qwen CLI (~/.qwen/oauth_creds.json)
            id="qwen",
            name="Qwen",
            factory=lazy_factory("openai_compat"),
            default_base_url="https://portal.qwen.ai/v1",
            default_model="qwen3-coder-plus",
            base_url_env=("QWEN_BASE_URL",),
            auth="oauth",
            connect_hint="sign in with the Qwen CLI (`qwen`)",
        ),
    ]


def register(registry: ProviderRegistry) -> None:
    for spec in (*openai_specs(), *native_specs()):
        registry.add(spec)
    registry.custom_factory = custom_spec
