"""No secret in the HTTP stack's DEBUG log lines, even when a server echoes it in a response
header (httpcore logs every header value of a response's head). Real loopback servers."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from _server import LoopbackServer, Recorded, Reply
from openkoi._log_scrub import STACK_LOGGERS
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, Message
from openkoi.plugins._egress import EgressPolicy
from openkoi.plugins._guarded_http import GuardedClient
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
KEY = "sk-logs-0123456789abcdefSECRET"
PLUGIN_KEY = "plug-0123456789abcdefSECRET"


def echoing(request: Recorded) -> Reply:
    """A chat answer whose head echoes the request's credentials back, as debug headers do."""
    echoed = request.headers.get("authorization", "") or request.headers.get("x-key", "")
    return Reply.json(
        {"choices": [{"message": {"role": "assistant", "content": "hi"}}]},
        headers={"x-echo-authorization": echoed, "x-echo-prefix": echoed[:20]},
    )


def _stack_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in STACK_LOGGERS]


def _assert_clean(lines: list[str], secret: str) -> None:
    assert any("x-echo-authorization" in line for line in lines)  # the head was logged
    for line in lines:
        assert secret not in line and secret[:10] not in line, line
    assert any("[REDACTED]" in line for line in lines)


async def test_a_provider_s_key_echoed_in_a_header_is_not_logged(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(echoing)
    provider = OpenAICompatibleProvider(
        ProviderSettings(id="openai", name="OpenAI", base_url=server.url, api_key=Secret(KEY))
    )
    try:
        with caplog.at_level(logging.DEBUG):
            response = await provider.chat(ChatRequest(model="m", messages=[Message.user("x")]))
    finally:
        await provider.aclose()
    assert response.content == "hi"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    _assert_clean(_stack_lines(caplog), KEY)


async def test_a_plugin_s_secret_echoed_in_a_header_is_not_logged(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(echoing)
    origin = f"http://127.0.0.1:{server.port}"

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    client = GuardedClient(
        EgressPolicy.parse([origin]), {"KEY": Secret(PLUGIN_KEY)}, resolver=loopback
    )
    try:
        with caplog.at_level(logging.DEBUG):
            response = await client.send("GET", origin + "/", [("x-key", "{{secret:KEY}}")], None)
            await response.text()
    finally:
        await client.aclose()
    assert server.requests[0].headers["x-key"] == PLUGIN_KEY
    _assert_clean(_stack_lines(caplog), PLUGIN_KEY)
