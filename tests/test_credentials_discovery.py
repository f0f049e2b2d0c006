"""Credential discovery over fake home directories: every source, its order, bad files."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from _oauth_server import chatgpt_access_token
from openkoi._defaults import default_model_ref
from openkoi._registry import ProviderRegistry
from openkoi.credentials import _discovery
from openkoi.credentials._discovery import findings, resolve
from openkoi.credentials._store import AuthStore

ANTHROPIC_ENV = ("ANTHROPIC_API_KEY",)


def _home() -> Path:
    return Path(os.environ["HOME"])


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _claude(token: str = "sk-ant-oat01-claude", expires_in: float = 3600) -> Path:
    return _write(
        _home() / ".claude" / ".credentials.json",
        {
            "claudeAiOauth": {
                "accessToken": token,
                "refreshToken": "sk-ant-ort01-r",
                "expiresAt": int((time.time() + expires_in) * 1000),
                "scopes": ["user:inference"],
            }
        },
    )


def _saved_key(provider: str, key: str) -> Path:
    return _write(Path(os.environ["OPENKOI_HOME"]) / "credentials" / f"{provider}.key", key + "\n")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery must not touch the network: any connect() fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("discovery made a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_nothing_anywhere() -> None:
    assert findings("anthropic", ANTHROPIC_ENV) == []
    assert resolve("anthropic", ANTHROPIC_ENV) is None
    assert default_model_ref(ProviderRegistry(), probe_ollama=False) is None


def test_env_wins_over_every_other_source(monkeypatch: pytest.MonkeyPatch) -> None:
    _claude()
    _saved_key("anthropic", "sk-ant-saved")
    AuthStore().put("anthropic", {"type": "api-key", "key": "sk-ant-stored"})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    found = findings("anthropic", ANTHROPIC_ENV)
    assert [f.source for f in found] == ["env", "store", "claude-cli", "key-file"]
    secret = resolve("anthropic", ANTHROPIC_ENV)
    assert secret is not None and secret.reveal() == "sk-ant-from-env"
    assert secret.source == "env:ANTHROPIC_API_KEY" and secret.kind == "api-key"


def test_store_then_claude_then_saved_key() -> None:
    _saved_key("anthropic", "sk-ant-saved")
    assert resolve("anthropic", ANTHROPIC_ENV).reveal() == "sk-ant-saved"  # type: ignore[union-attr]
    _claude("sk-ant-oat01-fresh")
    secret = resolve("anthropic", ANTHROPIC_ENV)
    assert secret is not None and secret.reveal() == "sk-ant-oat01-fresh"
    assert secret.kind == "oauth" and secret.expires_at == pytest.approx(time.time() + 3600, abs=5)
    AuthStore().put("anthropic", {"type": "api-key", "key": "sk-ant-stored"})
    assert resolve("anthropic", ANTHROPIC_ENV).reveal() == "sk-ant-stored"  # type: ignore[union-attr]


def test_expired_claude_token_is_reported_not_used() -> None:
    path = _claude("sk-ant-oat01-old", expires_in=-7200)
    _saved_key("anthropic", "sk-ant-saved")
    found = findings("anthropic", ANTHROPIC_ENV)
    claude = next(f for f in found if f.source == "claude-cli")
    assert claude.state == "expired" and claude.secret is None and not claude.usable
    assert claude.where == str(path)
    assert resolve("anthropic", ANTHROPIC_ENV).reveal() == "sk-ant-saved"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not valid JSON"),
        ({"claudeAiOauth": {"refreshToken": "x"}}, "no claudeAiOauth.accessToken"),
        ({"somethingElse": 1}, "no claudeAiOauth.accessToken"),
    ],
)
def test_malformed_claude_file_is_skipped_with_a_warning(
    content: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(_home() / ".claude" / ".credentials.json", content)
    _saved_key("anthropic", "sk-ant-saved")
    with caplog.at_level(logging.WARNING, logger="openkoi.credentials"):
        secret = resolve("anthropic", ANTHROPIC_ENV)
    assert secret is not None and secret.reveal() == "sk-ant-saved"
    warnings = [r.getMessage() for r in caplog.records]
    assert any(str(path) in w and why in w for w in warnings), warnings


def test_claude_config_dir_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    elsewhere = tmp_path / "claude-elsewhere"
    _write(elsewhere / ".credentials.json", {"claudeAiOauth": {"accessToken": "sk-ant-oat01-dir"}})
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(elsewhere))
    secret = resolve("anthropic", ANTHROPIC_ENV)
    assert (
        secret is not None and secret.reveal() == "sk-ant-oat01-dir" and secret.expires_at is None
    )


def _fake_security(tmp_path: Path, payload: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "security-called"
    script = bin_dir / "security"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {marker}\n'
        '[ "$1 $2 $3" = "find-generic-password -s Claude Code-credentials" ] || exit 44\n'
        f"cat <<'EOF'\n{payload}\nEOF\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return marker


def test_macos_keychain_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = json.dumps(
        {
            "claudeAiOauth": {
                "accessToken": "sk-ant-oat01-keychain",
                "expiresAt": int((time.time() + 600) * 1000),
            }
        }
    )
    marker = _fake_security(tmp_path, payload, monkeypatch)
    _saved_key("anthropic", "sk-ant-saved")
    # Not macOS: the Keychain is never asked.
    assert resolve("anthropic", ANTHROPIC_ENV).reveal() == "sk-ant-saved"  # type: ignore[union-attr]
    assert not marker.exists()
    monkeypatch.setattr(_discovery, "_is_macos", lambda: True)
    secret = resolve("anthropic", ANTHROPIC_ENV)
    assert (
        secret is not None and secret.reveal() == "sk-ant-oat01-keychain" and secret.kind == "oauth"
    )
    assert "-w" in marker.read_text()
    # The Claude CLI file comes first.
    _claude("sk-ant-oat01-file")
    assert resolve("anthropic", ANTHROPIC_ENV).reveal() == "sk-ant-oat01-file"  # type: ignore[union-attr]


def test_macos_keychain_malformed_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_security(tmp_path, "garbage", monkeypatch)
    monkeypatch.setattr(_discovery, "_is_macos", lambda: True)
    with caplog.at_level(logging.WARNING, logger="openkoi.credentials"):
        found = findings("anthropic", ANTHROPIC_ENV)
    assert [(f.source, f.state) for f in found] == [("claude-keychain", "invalid")]
    assert any("Claude Code-credentials" in r.getMessage() for r in caplog.records)


def test_codex_cli_api_key_and_tokens() -> None:
    access = chatgpt_access_token(3600, 1)
    _write(
        _home() / ".codex" / "auth.json",
        {
            "OPENAI_API_KEY": "sk-proj-codex",
            "tokens": {
                "id_token": "x",
                "access_token": access,
                "refresh_token": "rt",
                "account_id": "a",
            },
            "last_refresh": "2026-01-01T00:00:00Z",
        },
    )
    key = resolve("openai", ("OPENAI_API_KEY",))
    assert key is not None and key.reveal() == "sk-proj-codex" and key.kind == "api-key"
    token = resolve("openai-oauth")
    assert token is not None and token.reveal() == access and token.kind == "oauth"
    assert token.expires_at == pytest.approx(time.time() + 3600, abs=5)
    assert token.source.startswith("codex-cli:")


def test_codex_cli_expired_tokens_and_null_key(caplog: pytest.LogCaptureFixture) -> None:
    _write(
        _home() / ".codex" / "auth.json",
        {"OPENAI_API_KEY": None, "tokens": {"access_token": chatgpt_access_token(-60, 1)}},
    )
    assert resolve("openai", ("OPENAI_API_KEY",)) is None
    found = findings("openai-oauth")
    assert [(f.source, f.state) for f in found] == [("codex-cli", "expired")]
    assert resolve("openai-oauth") is None


def test_codex_home_and_malformed_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    codex = tmp_path / "codex-home"
    path = _write(codex / "auth.json", "[1, 2")
    monkeypatch.setenv("CODEX_HOME", str(codex))
    _saved_key("openai", "sk-openai-saved")
    with caplog.at_level(logging.WARNING, logger="openkoi.credentials"):
        assert resolve("openai", ("OPENAI_API_KEY",)).reveal() == "sk-openai-saved"  # type: ignore[union-attr]
        assert resolve("openai-oauth") is None
    matching = [r for r in caplog.records if str(path) in r.getMessage()]
    assert len(matching) == 1  # one warning per file, not one per provider


def test_qwen_cli_credentials(caplog: pytest.LogCaptureFixture) -> None:
    path = _write(
        _home() / ".qwen" / "oauth_creds.json",
        {
            "access_token": "qwen-access",
            "refresh_token": "qwen-refresh",
            "token_type": "Bearer",
            "resource_url": "portal.qwen.ai",
            "expiry_date": int((time.time() + 900) * 1000),
        },
    )
    secret = resolve("qwen")
    assert secret is not None and secret.reveal() == "qwen-access" and secret.kind == "oauth"
    registry = ProviderRegistry()
    assert registry.credential("qwen") == secret
    assert default_model_ref(registry, probe_ollama=False) == "qwen/qwen3-coder-plus"
    _write(path, json.dumps({"access_token": "qwen-old", "expiry_date": 1000}))
    assert resolve("qwen") is None
    assert findings("qwen")[0].state == "expired"
    _write(path, "")
    with caplog.at_level(logging.WARNING, logger="openkoi.credentials"):
        assert resolve("qwen") is None
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_store_oauth_states() -> None:
    store = AuthStore()
    past, future = time.time() - 60, time.time() + 600
    store.put(
        "openai-oauth", {"type": "oauth", "access": "a1", "refresh": "r1", "expires_at": past}
    )
    found = findings("openai-oauth")[0]
    assert found.state == "refreshable" and found.usable  # the provider refreshes it
    store.put("openai-oauth", {"type": "oauth", "access": "a1", "expires_at": past})
    assert findings("openai-oauth")[0].state == "expired" and resolve("openai-oauth") is None
    store.put(
        "openai-oauth",
        {
            "type": "oauth",
            "access": "a1",
            "refresh": "r",
            "expires_at": future,
            "error": "revoked (test)",
        },
    )
    assert findings("openai-oauth")[0].state == "revoked" and resolve("openai-oauth") is None
    store.put(
        "github-copilot",
        {"type": "oauth", "access": "gho_x", "session": {"token": "s", "expires_at": future}},
    )
    copilot = findings("github-copilot")[0]
    assert copilot.usable and copilot.expires_at == future and copilot.secret.reveal() == "gho_x"  # type: ignore[union-attr]


def test_corrupted_store_does_not_hide_other_sources(caplog: pytest.LogCaptureFixture) -> None:
    store_path = _write(Path(os.environ["OPENKOI_HOME"]) / "auth.json", "{{{")
    _saved_key("openai", "sk-openai-saved")
    with caplog.at_level(logging.WARNING, logger="openkoi.credentials"):
        assert resolve("openai", ("OPENAI_API_KEY",)).reveal() == "sk-openai-saved"  # type: ignore[union-attr]
    assert any(str(store_path) in r.getMessage() for r in caplog.records)
    assert store_path.read_text() == "{{{"


def test_findings_never_show_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    _claude("sk-ant-oat01-topsecret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-topsecret")
    for provider, env in (("anthropic", ANTHROPIC_ENV), ("openai", ("OPENAI_API_KEY",))):
        for found in findings(provider, env):
            text = f"{found!r} {found} {found.describe()} {found.secret!r}"
            assert "topsecret" not in text


def test_registry_uses_discovery_and_config_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from openkoi._config import Config, ProviderEntry

    _claude("sk-ant-oat01-reg")
    registry = ProviderRegistry()
    secret = registry.credential("anthropic")
    assert secret is not None and secret.kind == "oauth" and secret.reveal() == "sk-ant-oat01-reg"
    assert registry.is_configured("anthropic")
    assert default_model_ref(registry, probe_ollama=False) == "anthropic/claude-sonnet-4-5"
    monkeypatch.setenv("MY_ANTHROPIC", "sk-ant-custom-var")
    configured = ProviderRegistry(
        Config(providers={"anthropic": ProviderEntry(api_key_env="MY_ANTHROPIC")})
    )
    assert configured.credential("anthropic").reveal() == "sk-ant-custom-var"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"GOOGLE_API_KEY": "g"}, "google/gemini-2.5-pro"),
        ({"GOOGLE_API_KEY": "g", "OPENAI_API_KEY": "o"}, "openai/gpt-5.2"),
        (
            {"GOOGLE_API_KEY": "g", "OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a"},
            "anthropic/claude-sonnet-4-5",
        ),
        ({"GROQ_API_KEY": "q"}, "groq/llama-3.3-70b-versatile"),
        ({"store:github-copilot": "gho"}, "github-copilot/gpt-4.1"),
        ({"store:openai-oauth": "a", "store:github-copilot": "gho"}, "github-copilot/gpt-4.1"),
        ({"store:openai-oauth": "a"}, "openai-oauth/gpt-5.2"),
        ({"store:openai-oauth": "a", "GROQ_API_KEY": "q"}, "openai-oauth/gpt-5.2"),
        ({"store:openai-oauth": "a", "GOOGLE_API_KEY": "g"}, "google/gemini-2.5-pro"),
    ],
)
def test_default_model_priority(
    setup: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in setup.items():
        if name.startswith("store:"):
            AuthStore().put(name[6:], {"type": "oauth", "access": value})
        else:
            monkeypatch.setenv(name, value)
    assert default_model_ref(ProviderRegistry(), probe_ollama=False) == expected


def test_status_lines() -> None:
    from openkoi.credentials._status import ProviderStatus, duration

    now = time.time()
    assert [duration(s) for s in (5, 60, 3599, 3600, 7980, 90000, 86400)] == [
        "<1m",
        "1m",
        "59m",
        "1h",
        "2h 13m",
        "1d 1h",
        "1d",
    ]
    _claude("sk-ant-oat01-status", expires_in=5 * 3600 + 12 * 60 + 30)
    line = ProviderStatus("anthropic", "Anthropic", findings("anthropic", ANTHROPIC_ENV)).line(now)
    assert (
        line
        == "connected (token valid, expires in 5h 12m; Claude CLI (~/.claude/.credentials.json))"
    )
    store = AuthStore()
    store.put(
        "openai-oauth", {"type": "oauth", "access": "a", "refresh": "r", "expires_at": now - 180}
    )
    chatgpt = ProviderStatus("openai-oauth", "ChatGPT", findings("openai-oauth"))
    assert chatgpt.line(now) == "connected (token expired 3m ago, refreshes on next use)"
    store.put(
        "openai-oauth",
        {
            "type": "oauth",
            "access": "a",
            "refresh": "r",
            "error": "refresh_token_reused; run `openkoi connect chatgpt`",
        },
    )
    revoked = ProviderStatus("openai-oauth", "ChatGPT", findings("openai-oauth"))
    assert revoked.state == "revoked" and revoked.line(now).startswith(
        "needs reconnecting (refresh_token_reused"
    )
    _write(_home() / ".qwen" / "oauth_creds.json", "nope")
    qwen = ProviderStatus("qwen", "Qwen", findings("qwen"))
    assert qwen.state == "invalid" and qwen.line(now).startswith("not connected (skipped ")
    assert ProviderStatus("google", "Google", []).line(now) == "not connected"
