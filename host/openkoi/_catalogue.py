"""Context windows and output limits of well-known models, as their vendors document them.

A live model list often says nothing about limits (OpenAI's and Anthropic's `/models` give ids
only); `openkoi models` fills the gaps from here. A dated id (`claude-sonnet-4-5-20250929`) is
looked up as itself, then without its date.
"""

from __future__ import annotations

import re

# provider/model -> (context window, max output tokens or None)
LIMITS: dict[str, tuple[int, int | None]] = {
    "openai/gpt-5.2": (400_000, 128_000),
    "openai/gpt-5.1": (400_000, 128_000),
    "openai/gpt-5": (400_000, 128_000),
    "openai/gpt-5-mini": (400_000, 128_000),
    "openai/gpt-5-nano": (400_000, 128_000),
    "openai/gpt-4.1": (1_047_576, 32_768),
    "openai/gpt-4.1-mini": (1_047_576, 32_768),
    "openai/gpt-4.1-nano": (1_047_576, 32_768),
    "openai/gpt-4o": (128_000, 16_384),
    "openai/gpt-4o-mini": (128_000, 16_384),
    "openai/o3": (200_000, 100_000),
    "openai/o4-mini": (200_000, 100_000),
    "openai/text-embedding-3-small": (8_191, None),
    "openai/text-embedding-3-large": (8_191, None),
    "anthropic/claude-opus-4-5": (200_000, 64_000),
    "anthropic/claude-sonnet-4-5": (200_000, 64_000),
    "anthropic/claude-haiku-4-5": (200_000, 64_000),
    "anthropic/claude-opus-4-1": (200_000, 32_000),
    "anthropic/claude-opus-4-0": (200_000, 32_000),
    "anthropic/claude-sonnet-4-0": (200_000, 64_000),
    "anthropic/claude-sonnet-4": (200_000, 64_000),
    "anthropic/claude-opus-4": (200_000, 32_000),
    "anthropic/claude-3-5-haiku": (200_000, 8_192),
    "google/gemini-2.5-pro": (1_048_576, 65_536),
    "google/gemini-2.5-flash": (1_048_576, 65_536),
    "google/gemini-2.5-flash-lite": (1_048_576, 65_536),
    "groq/llama-3.3-70b-versatile": (131_072, 32_768),
    "deepseek/deepseek-chat": (128_000, 8_192),
    "xai/grok-4-0709": (256_000, None),
    "bedrock/anthropic.claude-sonnet-4-20250514-v1:0": (200_000, 64_000),
}

_DATED = re.compile(r"-\d{8}$")


def undated(model: str) -> str:
    """`claude-sonnet-4-5-20250929` -> `claude-sonnet-4-5`; other ids unchanged."""
    return _DATED.sub("", model)


def known_limits(provider: str, model: str) -> tuple[int, int | None] | None:
    return LIMITS.get(f"{provider}/{model}") or LIMITS.get(f"{provider}/{undated(model)}")
