"""Built-in providers pointed at a loopback server, for tests of servers that misbehave: each
holds the same credential `KEY`, so a test can look for it wherever an error ends up."""

from __future__ import annotations

import struct
import zlib

import anyio
import pytest
from openkoi._errors import REDACT_PREFIX, ProviderError
from openkoi._provider import HTTPProvider, ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi._timeouts import Timeouts
from openkoi._types import ChatRequest, Message
from openkoi_providers import anthropic, bedrock, gemini, ollama, openai_compat

KEY = "sk-fault-SECRETKEY-0123456789abcdef"
FAMILIES = ("openai", "anthropic", "google", "ollama", "bedrock")
REQUEST = ChatRequest(messages=[Message.user("hi")])


# family -> (module, provider id, name, default model)
_FAMILIES = {
    "openai": (openai_compat, "openai", "OpenAI", "m"),
    "anthropic": (anthropic, "anthropic", "Anthropic", "claude-sonnet-4-5"),
    "google": (gemini, "google", "Gemini", "gemini-2.5-flash"),
    "ollama": (ollama, "ollama", "Ollama", "llama3"),
    "bedrock": (bedrock, "bedrock", "AWS Bedrock", "amazon.nova-pro-v1:0"),
}


def make(family: str, url: str, **timeouts: float) -> HTTPProvider:
    """The built-in provider of `family` at `url`, holding `KEY`, with these deadlines."""
    module, provider_id, name, model = _FAMILIES[family]
    settings = ProviderSettings(
        id=provider_id,
        name=name,
        base_url=url + "/v1" if family == "openai" else url,
        api_key=Secret(KEY),
        default_model=model,
        timeouts=Timeouts(**timeouts),
    )
    if family == "bedrock":
        return bedrock.create(settings, region="us-east-1")
    provider: HTTPProvider = module.create(settings)
    return provider


async def failure(provider: HTTPProvider, mode: str = "stream") -> ProviderError:
    """The error a `mode` call ("stream", "chat" or "models") to `provider` ends with, the
    provider closed; bounded, so a regression fails rather than hangs."""
    try:
        with pytest.raises(ProviderError) as info, anyio.fail_after(10):
            if mode == "stream":
                await collect(provider.chat_stream(REQUEST))
            elif mode == "chat":
                await provider.chat(REQUEST)
            else:
                await provider.models()
    finally:
        await provider.aclose()
    return info.value


def event_frame(headers: dict[str, str], payload: bytes = b"") -> bytes:
    """One AWS event-stream message with string headers, CRCs included."""
    head = b""
    for name, value in headers.items():
        raw = value.encode()
        head += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    frame = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return frame + struct.pack(">I", zlib.crc32(frame))


def assert_scrubbed(error: ProviderError, secret: str = KEY) -> None:
    """Neither `secret` nor any prefix of it `REDACT_PREFIX` or more characters long is in the
    error's text, its repr or any of its string fields."""
    texts = {"str": str(error), "repr": repr(error)}
    texts.update({k: v for k, v in vars(error).items() if isinstance(v, str)})
    for where, text in texts.items():
        for length in range(REDACT_PREFIX, len(secret) + 1):
            assert secret[:length] not in text, f"{secret[:length]!r} is in {where}: {text!r}"
