"""The device-code sign-ins and token refreshes against the local sign-in server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from _oauth_server import ACCOUNT_ID, FakeAuth, chatgpt_access_token, start_fake_auth
from openkoi._errors import AuthenticationError, MalformedResponseError, NetworkError
from openkoi.credentials import _chatgpt_oauth, _copilot_token, _github, _jwt, _pkce
from openkoi.credentials._device_flow import DeviceCode
from openkoi.credentials._endpoints import ChatGPTEndpoints, GitHubEndpoints
from openkoi.credentials._store import AuthStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake(serve: Any, monkeypatch: pytest.MonkeyPatch) -> FakeAuth:
    auth = start_fake_auth(serve)
    for key, value in auth.env().items():
        monkeypatch.setenv(key, value)
    return auth


class Shown:
    def __init__(self) -> None:
        self.codes: list[DeviceCode] = []

    def __call__(self, code: DeviceCode) -> None:
        self.codes.append(code)


async def _github_flow(fake: FakeAuth) -> tuple[str, Shown]:
    shown = Shown()
    async with httpx.AsyncClient() as client:
        token = await _github.device_flow(client, GitHubEndpoints.from_env(), shown)
    return token, shown


async def test_github_flow_pending_slow_down_then_token(fake: FakeAuth) -> None:
    fake.github_script = ["authorization_pending", "slow_down", "authorization_pending", None]
    token, shown = await _github_flow(fake)
    assert token.startswith("gho_testtoken")
    assert [c.user_code for c in shown.codes] == ["ABCD-1234"]
    assert shown.codes[0].verification_uri == f"{fake.url}/login/device"
    assert "dev-code-secret-1" not in repr(shown.codes[0])
    polls = fake.github_polls
    assert len(polls) == 4
    # interval 5 s and slow_down +5 s, scaled by 0.01: 0.05 s, then 0.10 s after slow_down
    assert polls[1] - polls[0] >= 0.045
    assert polls[2] - polls[1] >= 0.095
    assert polls[3] - polls[2] >= 0.095


@pytest.mark.parametrize(
    ("outcome", "words"),
    [("access_denied", "denied in the browser"), ("expired_token", "code expired")],
)
async def test_github_flow_denied_or_expired(fake: FakeAuth, outcome: str, words: str) -> None:
    fake.github_script = ["authorization_pending", outcome]
    with pytest.raises(AuthenticationError) as info:
        await _github_flow(fake)
    assert words in str(info.value)
    assert "openkoi connect copilot" in str(info.value)
    assert not fake.github_tokens


async def test_github_flow_deadline(fake: FakeAuth) -> None:
    fake.github_script = []  # pending forever
    fake.github_expires_in = 12  # 0.12 s once scaled; polls every 0.05 s
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="expired before it was authorized"):
        await _github_flow(fake)
    assert time.monotonic() - started < 2
    assert 1 <= len(fake.github_polls) <= 4


async def test_github_flow_network_error_mid_poll(fake: FakeAuth) -> None:
    fake.github_script = ["authorization_pending", "close", "close", "close", None]
    with pytest.raises(NetworkError) as info:
        await _github_flow(fake)
    assert "lost contact with the sign-in server" in str(info.value)
    assert "openkoi connect copilot" in str(info.value)
    assert len(fake.github_polls) == 4


async def test_github_flow_recovers_from_one_network_error(fake: FakeAuth) -> None:
    fake.github_script = ["close", None]
    token, _ = await _github_flow(fake)
    assert token in fake.github_tokens


async def test_copilot_exchange_names_endpoint(fake: FakeAuth) -> None:
    token, _ = await _github_flow(fake)
    async with httpx.AsyncClient() as client:
        session = await _copilot_token.exchange(client, GitHubEndpoints.from_env(), token, {})
    assert session["api"] == f"{fake.url}/copilot"
    assert session["token"] in fake.copilot_valid
    assert session["expires_at"] > time.time() + 1000
    assert _copilot_token.session_is_fresh(session)
    assert not _copilot_token.session_is_fresh({**session, "expires_at": time.time() + 30})


async def test_copilot_exchange_errors(fake: FakeAuth) -> None:
    async with httpx.AsyncClient() as client:
        ep = GitHubEndpoints.from_env()
        with pytest.raises(AuthenticationError, match="no longer accepts") as info:
            await _copilot_token.exchange(client, ep, "gho_revoked_token", {})
        assert "gho_revoked_token" not in str(info.value)
        fake.github_tokens.add("gho_valid_but_no_copilot")
        fake.copilot_status = 404
        with pytest.raises(AuthenticationError, match="no Copilot access"):
            await _copilot_token.exchange(client, ep, "gho_valid_but_no_copilot", {})


async def _chatgpt(fake: FakeAuth) -> tuple[dict[str, Any], Shown]:
    shown = Shown()
    async with httpx.AsyncClient() as client:
        entry = await _chatgpt_oauth.device_flow(client, ChatGPTEndpoints.from_env(), shown)
    return entry, shown


async def test_chatgpt_flow_pending_then_pkce_exchange(fake: FakeAuth) -> None:
    fake.chatgpt_script = ["pending", "slow_down", "pending", None]
    entry, shown = await _chatgpt(fake)
    assert shown.codes[0].user_code == "WXYZ-5678"
    assert shown.codes[0].verification_uri == f"{fake.url}/codex/device"
    assert entry["type"] == "oauth"
    assert entry["access"] in fake.access_valid
    assert entry["refresh"] == fake.refresh_current
    assert entry["account_id"] == ACCOUNT_ID
    assert entry["expires_at"] == pytest.approx(time.time() + 3600, abs=5)
    gaps = [b - a for a, b in zip(fake.chatgpt_polls, fake.chatgpt_polls[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # slow_down added 5 s (scaled)
    exchange = [r for r in fake.requests if r.path == "/oauth/token"]
    assert len(exchange) == 1 and b"code_verifier=" in exchange[0].body


@pytest.mark.parametrize("outcome", ["access_denied", "expired_token"])
async def test_chatgpt_flow_denied_or_expired(fake: FakeAuth, outcome: str) -> None:
    fake.chatgpt_script = ["pending", outcome]
    with pytest.raises(AuthenticationError, match="openkoi connect chatgpt"):
        await _chatgpt(fake)
    assert "/oauth/token" not in fake.paths()


async def test_chatgpt_flow_rejects_mismatched_verifier(fake: FakeAuth) -> None:
    fake.chatgpt_bad_verifier = True
    with pytest.raises(MalformedResponseError, match="PKCE verifier does not match"):
        await _chatgpt(fake)
    assert "/oauth/token" not in fake.paths()


async def test_refresh_rotates_and_keeps_other_entries(fake: FakeAuth) -> None:
    entry, _ = await _chatgpt(fake)
    store = AuthStore()
    store.put("openai-oauth", {**entry, "expires_at": time.time() - 10})
    store.put("anthropic", {"type": "api-key", "key": "sk-ant-keep-me"})
    first_refresh = entry["refresh"]

    async def renew(old: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return await _chatgpt_oauth.refresh(client, ChatGPTEndpoints.from_env(), old)

    new = await store.refresh("openai-oauth", _chatgpt_oauth.is_fresh, renew)
    assert new["refresh"] != first_refresh and new["refresh"] == fake.refresh_current
    assert first_refresh in fake.refresh_spent
    assert new["account_id"] == ACCOUNT_ID
    assert store.get("openai-oauth")["access"] == new["access"]  # type: ignore[index]
    assert store.get("anthropic") == {
        "type": "api-key",
        "key": "sk-ant-keep-me",
        "updated_at": pytest.approx(time.time(), abs=60),
    }
    # fresh now: a second call spends nothing
    again = await store.refresh("openai-oauth", _chatgpt_oauth.is_fresh, renew)
    assert again["access"] == new["access"] and fake.refreshes == 1


async def test_revoked_refresh_token_asks_to_reconnect(fake: FakeAuth) -> None:
    entry, _ = await _chatgpt(fake)
    store = AuthStore()
    store.put("openai-oauth", {**entry, "expires_at": time.time() - 10})
    store.put("github-copilot", {"type": "oauth", "access": "gho_other"})
    fake.refresh_revoked = True

    async def renew(old: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return await _chatgpt_oauth.refresh(client, ChatGPTEndpoints.from_env(), old)

    with pytest.raises(AuthenticationError) as info:
        await store.refresh("openai-oauth", _chatgpt_oauth.is_fresh, renew)
    assert "openkoi connect chatgpt" in str(info.value)
    assert entry["refresh"] not in str(info.value)
    kept = store.read()
    assert kept["github-copilot"]["access"] == "gho_other"
    assert kept["openai-oauth"]["refresh"] == entry["refresh"]
    assert "error" in kept["openai-oauth"]


def test_entry_from_tokens_reads_claims_and_keeps_refresh() -> None:
    access = chatgpt_access_token(600, 1, account="acct-from-access")
    entry = _chatgpt_oauth.entry_from_tokens(
        {"access_token": access}, previous={"refresh": "rt-old"}
    )
    assert entry["refresh"] == "rt-old"
    assert entry["account_id"] == "acct-from-access"
    assert entry["expires_at"] == pytest.approx(time.time() + 600, abs=5)
    assert _chatgpt_oauth.is_fresh(entry)
    assert not _chatgpt_oauth.is_fresh({**entry, "expires_at": time.time() + 60})
    with pytest.raises(MalformedResponseError, match="no refresh token"):
        _chatgpt_oauth.entry_from_tokens({"access_token": access})


def test_pkce_and_jwt_helpers() -> None:
    pair = _pkce.generate()
    assert _pkce.is_valid_verifier(pair.verifier)
    assert _pkce.matches(pair.verifier, pair.challenge)
    assert not _pkce.matches(pair.verifier + "x", pair.challenge)
    assert pair.verifier not in repr(pair)
    # RFC 7636 appendix B
    assert (
        _pkce.challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    assert _jwt.claims("not-a-jwt") == {}
    assert _jwt.claims("a.%%%.c") == {}
    assert _jwt.chatgpt_account_id(None, "x.y.z", chatgpt_access_token(5, 1)) == ACCOUNT_ID
