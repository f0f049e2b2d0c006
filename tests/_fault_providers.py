"""Built-in providers pointed at a loopback server, for tests of servers that misbehave: each
holds the same credential `KEY`, so a test can look for it wherever an error ends up."""

from __future__ import annotations

import struct
import zlib

from openkoi._errors import REDACT_PREFIX, ProviderError
from openkoi._provider import HTTPProvider, ProviderSettings
from openkoi._secrets import Secret
from openkoi._timeouts import Timeouts
from openkoi._types import ChatRequest, Message
from openkoi_providers import anthropic, bedrock, gemini, ollama, openai_compat

KEY = "sk-fault-SECRETKEY-0123456789abcdef"
FAMILIES = ("openai", "anthropic", "google", "ollama", "bedrock")
REQUEST = ChatRequest(messages=[Message.user("hi")])


def make(family: str, url: str, **timeouts: float) -> HTTPProvider:
    """The built-in provider of `family` at `url`, holding `KEY`, with these deadlines."""
    limits = Timeouts(**timeouts)
    if family == "openai":
        return openai_compat.create(
            ProviderSettings(
                id="openai",
                name="OpenAI",
                base_url=url + "/v1",
                api_key=Secret(KEY),
                default_model="m",
                timeouts=limits,
            )
        )
    if family == "anthropic":
        return anthropic.create(
            ProviderSettings(
                id="anthropic",
                name="Anthropic",
                base_url=url,
                api_key=Secret(KEY),
                default_model="claude-sonnet-4-5",
                timeouts=limits,
            )
        )
    if family == "google":
        return gemini.create(
            ProviderSettings(
                id="google",
                name="Gemini",
                base_url=url,
                api_key=Secret(KEY),
                default_model="gemini-2.5-flash",
                timeouts=limits,
            )
        )
    if family == "ollama":
        return ollama.create(
            ProviderSettings(
                id="ollama",
                name="Ollama",
                base_url=url,
                api_key=Secret(KEY),
                default_model="llama3",
                timeouts=limits,
            )
        )
    if family == "bedrock":
        return bedrock.create(
            ProviderSettings(
                id="bedrock",
                name="AWS Bedrock",
                base_url=url,
                api_key=Secret(KEY, kind="api-key"),
                default_model="amazon.nova-pro-v1:0",
                timeouts=limits,
            ),
            region="us-east-1",
        )
    raise ValueError(family)


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
