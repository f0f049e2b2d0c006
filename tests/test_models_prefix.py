"""A listing failure names its provider once.

`ProviderError.__str__` already starts with "<provider>: ", so whoever prints one must not add
the prefix again. The provider layer is checked here; the CLI's own line is in cli/_models.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from _connect_support import run_cli
from _server import Reply
from openkoi import NetworkError, ServerError
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _provider(url: str) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings(id="openai", name="OpenAI", base_url=url, api_key=Secret("sk-1234567890"))
    )


async def test_an_unreachable_listing_names_the_provider_once() -> None:
    provider = _provider(f"http://127.0.0.1:{_closed_port()}/v1")
    try:
        with pytest.raises(NetworkError) as info:
            await provider.models()
    finally:
        await provider.aclose()
    assert str(info.value).startswith("openai: could not reach the server")
    assert "openai: openai:" not in str(info.value)
    assert not info.value.message.startswith("openai")


async def test_a_failing_listing_names_the_provider_once(serve: Any) -> None:
    server = serve(lambda r: Reply.json({"error": {"message": "down for a bit"}}, 500))
    provider = _provider(f"{server.url}/v1")
    try:
        with pytest.raises(ServerError) as info:
            await provider.models()
    finally:
        await provider.aclose()
    assert str(info.value) == "openai: down for a bit (HTTP 500)"


def test_openkoi_models_names_the_provider_once() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    result = run_cli("models", "openai", env={"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": url})
    assert result.returncode == 1
    assert "openai: could not reach the server" in result.stderr
    assert "openai: openai:" not in result.stderr
