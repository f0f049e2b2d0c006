"""openkoi: one typed, async way to use any LLM provider.

`import openkoi` is kept light: names are imported from their modules on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # types
    "Attachment": "openkoi._types",
    "ChatChunk": "openkoi._types",
    "ChatRequest": "openkoi._types",
    "ChatResponse": "openkoi._types",
    "Message": "openkoi._types",
    "NativeTurn": "openkoi._types",
    "TextPart": "openkoi._types",
    "ModelInfo": "openkoi._types",
    "ModelPricing": "openkoi._types",
    "TokenUsage": "openkoi._types",
    "ToolCall": "openkoi._types",
    "ToolCallDelta": "openkoi._types",
    "ToolDef": "openkoi._types",
    "Timeouts": "openkoi._timeouts",
    # the provider interface
    "ModelProvider": "openkoi._provider",
    "HTTPProvider": "openkoi._provider",
    "ProviderSettings": "openkoi._provider",
    "collect": "openkoi._provider",
    "ProviderRegistry": "openkoi._registry",
    "ProviderSpec": "openkoi._spec",
    "ModelRef": "openkoi._refs",
    "parse_model_ref": "openkoi._refs",
    "Secret": "openkoi._secrets",
    # config
    "Config": "openkoi._config",
    "ConfigFile": "openkoi._config",
    "load_config": "openkoi._config",
    # errors
    "OpenKoiError": "openkoi._errors",
    "ConfigError": "openkoi._errors",
    "ModelRefError": "openkoi._errors",
    "UnknownProviderError": "openkoi._errors",
    "CredentialsMissingError": "openkoi._errors",
    "InvalidToolArgumentsError": "openkoi._errors",
    "OutputValidationError": "openkoi._errors",
    "ProviderError": "openkoi._errors",
    "RateLimitedError": "openkoi._errors",
    "OverloadedError": "openkoi._errors",
    "ServerError": "openkoi._errors",
    "ProviderTimeoutError": "openkoi._errors",
    "NetworkError": "openkoi._errors",
    "CertificateError": "openkoi._errors",
    "LocalPoolTimeoutError": "openkoi._errors",
    "MalformedResponseError": "openkoi._errors",
    "AuthenticationError": "openkoi._errors",
    "InvalidRequestError": "openkoi._errors",
    "ContextOverflowError": "openkoi._errors",
    "ContentPolicyError": "openkoi._errors",
    "UnsupportedError": "openkoi._errors",
    "PluginDeniedError": "openkoi._errors",
    "PluginLimitError": "openkoi._errors",
    "PluginTrapError": "openkoi._errors",
    "PluginError": "openkoi._errors",
    "PluginApprovalError": "openkoi._errors",
    "ManifestError": "openkoi._errors",
    "PluginLoadError": "openkoi._errors",
    "PluginBuildError": "openkoi._errors",
    "CredentialStoreError": "openkoi._errors",
    "AllCandidatesExhausted": "openkoi._errors",
    "LedgerError": "openkoi._errors",
    "BudgetExceededError": "openkoi._errors",
    # roles, fallback and usage
    "Router": "openkoi.routing",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'openkoi' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from openkoi._config import Config, ConfigFile, load_config
    from openkoi._errors import (
        AllCandidatesExhausted,
        AuthenticationError,
        BudgetExceededError,
        CertificateError,
        ConfigError,
        ContentPolicyError,
        ContextOverflowError,
        CredentialsMissingError,
        CredentialStoreError,
        InvalidRequestError,
        InvalidToolArgumentsError,
        LedgerError,
        LocalPoolTimeoutError,
        MalformedResponseError,
        ManifestError,
        ModelRefError,
        NetworkError,
        OpenKoiError,
        OutputValidationError,
        OverloadedError,
        PluginApprovalError,
        PluginBuildError,
        PluginDeniedError,
        PluginError,
        PluginLimitError,
        PluginLoadError,
        PluginTrapError,
        ProviderError,
        ProviderTimeoutError,
        RateLimitedError,
        ServerError,
        UnknownProviderError,
        UnsupportedError,
    )
    from openkoi._provider import HTTPProvider, ModelProvider, ProviderSettings, collect
    from openkoi._refs import ModelRef, parse_model_ref
    from openkoi._registry import ProviderRegistry
    from openkoi._secrets import Secret
    from openkoi._spec import ProviderSpec
    from openkoi._timeouts import Timeouts
    from openkoi._types import (
        Attachment,
        ChatChunk,
        ChatRequest,
        ChatResponse,
        Message,
        ModelInfo,
        ModelPricing,
        NativeTurn,
        TextPart,
        TokenUsage,
        ToolCall,
        ToolCallDelta,
        ToolDef,
    )
    from openkoi.routing import Router
