"""The Copilot and ChatGPT providers against the local sign-in and API server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from _oauth_server import ACCOUNT_ID, FakeAuth, chatgpt_access_token, start_fake_auth
from openkoi._errors import AuthenticationError
from openkoi._provider import collect
from openkoi._registry import ProviderRegistry
from openkoi._types import ChatRequest, Message, ToolCall, ToolDef
from openkoi.credentials._store import AuthStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake(serve: Any, monkeypatch: pytest.MonkeyPatch) -> FakeAuth:
    auth = start_fake_auth(serve)
    for key, value in auth.env().items():
        monkeypatch.setenv(key, value)
    return auth


def _hello() -> ChatRequest:
    return ChatRequest(messages=[Message.user("hi")])


def _connect_copilot(fake: FakeAuth, session: dict[str, Any] | None = None) -> str:
    token = "gho_stored_token_0001"
    fake.github_tokens.add(token)
    entry: dict[str, Any] = {"type": "oauth", "access": token}
    if session is not None:
        entry["session"] = session
    AuthStore().put("github-copilot", entry)
    return token


async def _ask(ref: str, request: ChatRequest | None = None) -> Any:
    registry = ProviderRegistry()
    try:
        provider, model = registry.resolve(ref)
        req = (request or _hello()).model_copy(update={"model": model})
        return await collect(provider.chat_stream(req))
    finally:
        await registry.aclose()


def _count(fake: FakeAuth, path: str) -> int:
    return sum(1 for r in fake.requests if r.path == path)


# -- Copilot -----------------------------------------------------------------------------------


async def test_copilot_exchanges_once_and_uses_the_named_endpoint(fake: FakeAuth) -> None:
    github = _connect_copilot(fake)
    answer = await _ask("copilot/gpt-4.1")
    assert answer.content == "Hello from Copilot"
    assert answer.usage.input_tokens == 12 and answer.usage.output_tokens == 5
    chat = next(r for r in fake.requests if r.path == "/copilot/chat/completions")
    assert chat.headers["authorization"] == f"Bearer {fake.copilot_sessions[0]}"
    assert chat.headers["copilot-integration-id"] == "vscode-chat"
    assert chat.headers["editor-version"].startswith("vscode/")
    assert chat.json()["model"] == "gpt-4.1" and "max_completion_tokens" not in chat.json()
    exchange = next(r for r in fake.requests if r.path == "/copilot_internal/v2/token")
    assert exchange.headers["authorization"] == f"token {github}"
    stored = AuthStore().get("github-copilot")
    assert stored is not None and stored["session"]["token"] == fake.copilot_sessions[0]
    # A second process (a fresh registry) reuses the cached session.
    assert (await _ask("github-copilot/gpt-4.1")).content == "Hello from Copilot"
    assert _count(fake, "/copilot_internal/v2/token") == 1


async def test_copilot_renews_a_session_about_to_expire(fake: FakeAuth) -> None:
    stale = {"token": "tid=stale", "expires_at": time.time() + 30, "api": f"{fake.url}/copilot"}
    fake.copilot_valid.add("tid=stale")
    _connect_copilot(fake, stale)
    assert (await _ask("copilot/gpt-4.1")).content == "Hello from Copilot"
    assert _count(fake, "/copilot_internal/v2/token") == 1
    chat = next(r for r in fake.requests if r.path == "/copilot/chat/completions")
    assert chat.headers["authorization"] != "Bearer tid=stale"


async def test_copilot_401_renews_once_and_retries(fake: FakeAuth) -> None:
    _connect_copilot(fake)
    fake.chat_rejections = 1
    assert (await _ask("copilot/gpt-4.1")).content == "Hello from Copilot"
    assert _count(fake, "/copilot_internal/v2/token") == 2
    assert _count(fake, "/copilot/chat/completions") == 2


async def test_copilot_second_401_is_an_auth_error(fake: FakeAuth) -> None:
    _connect_copilot(fake)
    fake.chat_rejections = 5
    with pytest.raises(AuthenticationError) as info:
        await _ask("copilot/gpt-4.1")
    assert info.value.status == 401
    assert _count(fake, "/copilot/chat/completions") == 2
    assert "tid=" not in str(info.value)


async def test_copilot_non_streaming_chat_retries_on_401(fake: FakeAuth) -> None:
    _connect_copilot(fake)
    fake.chat_rejections = 1
    registry = ProviderRegistry()
    provider, model = registry.resolve("copilot/gpt-4.1")
    try:
        answer = await provider.chat(_hello().model_copy(update={"model": model}))
    finally:
        await registry.aclose()
    assert answer.content == "Hello from Copilot" and answer.usage.output_tokens == 5
    assert _count(fake, "/copilot_internal/v2/token") == 2
    assert _count(fake, "/copilot/chat/completions") == 2


async def test_copilot_revoked_github_token_asks_to_reconnect(fake: FakeAuth) -> None:
    AuthStore().put("github-copilot", {"type": "oauth", "access": "gho_revoked_000"})
    AuthStore().put("anthropic", {"type": "api-key", "key": "sk-ant-keep"})
    with pytest.raises(AuthenticationError, match="openkoi connect copilot"):
        await _ask("copilot/gpt-4.1")
    entries = AuthStore().read()
    assert "error" in entries["github-copilot"] and entries["anthropic"]["key"] == "sk-ant-keep"
    from openkoi.credentials import findings

    assert findings("github-copilot")[0].state == "revoked"


# -- ChatGPT -----------------------------------------------------------------------------------


def _connect_chatgpt(fake: FakeAuth, expires_in: float = 3600) -> dict[str, Any]:
    tokens = fake._issue()
    entry = {
        "type": "oauth",
        "access": tokens["access_token"],
        "refresh": tokens["refresh_token"],
        "expires_at": time.time() + expires_in,
        "account_id": ACCOUNT_ID,
    }
    AuthStore().put("openai-oauth", entry)
    return entry


async def test_chatgpt_streams_with_account_header_and_usage(fake: FakeAuth) -> None:
    entry = _connect_chatgpt(fake)
    request = ChatRequest(system="Be brief.", messages=[Message.user("hi")], max_tokens=50)
    answer = await _ask("chatgpt/gpt-5.2", request)
    assert answer.content == "Hello from ChatGPT"
    assert answer.usage.input_tokens == 16 and answer.usage.cache_read_tokens == 4
    assert answer.usage.output_tokens == 3 and answer.stop_reason == "end_turn"
    sent = next(r for r in fake.requests if r.path == "/backend-api/codex/responses")
    assert sent.headers["authorization"] == f"Bearer {entry['access']}"
    assert sent.headers["chatgpt-account-id"] == ACCOUNT_ID
    assert sent.headers["openai-beta"] == "responses=experimental"
    body = sent.json()
    assert body["instructions"] == "Be brief." and body["store"] is False and body["stream"] is True
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert body["max_output_tokens"] == 50
    assert fake.refreshes == 0


async def test_chatgpt_refreshes_before_expiry_and_rotates(fake: FakeAuth) -> None:
    entry = _connect_chatgpt(fake, expires_in=60)  # inside the refresh margin
    assert (await _ask("chatgpt/gpt-5.2")).content == "Hello from ChatGPT"
    assert fake.refreshes == 1
    stored = AuthStore().get("openai-oauth")
    assert stored is not None and stored["refresh"] != entry["refresh"]
    assert stored["refresh"] == fake.refresh_current and stored["access"] != entry["access"]
    sent = next(r for r in fake.requests if r.path == "/backend-api/codex/responses")
    assert sent.headers["authorization"] == f"Bearer {stored['access']}"


async def test_chatgpt_401_refreshes_once_and_retries(fake: FakeAuth) -> None:
    _connect_chatgpt(fake)
    fake.responses_rejections = 1
    assert (await _ask("chatgpt/gpt-5.2")).content == "Hello from ChatGPT"
    assert fake.refreshes == 1
    assert _count(fake, "/backend-api/codex/responses") == 2
    fake.responses_rejections = 5
    with pytest.raises(AuthenticationError) as info:
        await _ask("chatgpt/gpt-5.2")
    assert info.value.status == 401 and fake.refreshes == 2


async def test_chatgpt_revoked_refresh_token(fake: FakeAuth) -> None:
    _connect_chatgpt(fake, expires_in=-10)
    fake.refresh_revoked = True
    with pytest.raises(AuthenticationError, match="openkoi connect chatgpt"):
        await _ask("chatgpt/gpt-5.2")
    assert _count(fake, "/backend-api/codex/responses") == 0


async def test_chatgpt_with_codex_cli_tokens(
    fake: FakeAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    from pathlib import Path

    access = chatgpt_access_token(3600, 99)
    fake.access_valid.add(access)
    codex = Path(os.environ["HOME"]) / ".codex"
    codex.mkdir()
    (codex / "auth.json").write_text(
        json.dumps({"tokens": {"access_token": access, "refresh_token": "codex-rt"}})
    )
    assert (await _ask("chatgpt/gpt-5.2")).content == "Hello from ChatGPT"
    sent = next(r for r in fake.requests if r.path == "/backend-api/codex/responses")
    assert sent.headers["chatgpt-account-id"] == ACCOUNT_ID  # from the token's claim
    fake.responses_rejections = 1
    with pytest.raises(AuthenticationError, match="sign in with that tool again"):
        await _ask("chatgpt/gpt-5.2")
    assert fake.refreshes == 0  # another tool's refresh token is never spent


async def test_chatgpt_maps_tool_round_trips(fake: FakeAuth) -> None:
    _connect_chatgpt(fake)
    request = ChatRequest(
        messages=[
            Message.user("multiply 2 by 3"),
            Message.assistant(
                "Let me compute.", [ToolCall(id="call_1", name="mul", arguments='{"a":2,"b":3}')]
            ),
            Message.tool_result("call_1", "6"),
        ],
        tools=[
            ToolDef(
                name="mul", description="Multiply", parameters={"type": "object", "properties": {}}
            )
        ],
    )
    await _ask("chatgpt/gpt-5.2", request)
    body = next(r for r in fake.requests if r.path == "/backend-api/codex/responses").json()
    assert body["input"][1:] == [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me compute."}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "mul", "arguments": '{"a":2,"b":3}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "6"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "mul",
            "description": "Multiply",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        }
    ]
