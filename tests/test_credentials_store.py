"""auth.json: atomic, private, locked; corrupted files left alone; two processes at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _connect_support import cli_env, read_only_prefix, run_cli
from _keyring_backend import FileKeyring
from _oauth_server import FakeAuth, start_fake_auth
from openkoi._errors import CredentialStoreError
from openkoi.credentials._store import AuthStore


def _home() -> Path:
    return Path(os.environ["OPENKOI_HOME"])


def test_put_get_remove_and_file_mode() -> None:
    store = AuthStore()
    assert store.read() == {}
    store.put("anthropic", {"type": "api-key", "key": "sk-ant-one"})
    store.put("openai-oauth", {"type": "oauth", "access": "a", "refresh": "r", "expires_at": 5.0})
    path = _home() / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(_home().stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["version"] == 1 and set(data["providers"]) == {"anthropic", "openai-oauth"}
    assert store.get("anthropic")["key"] == "sk-ant-one"  # type: ignore[index]
    assert store.remove("anthropic") is True
    assert store.remove("anthropic") is False
    assert set(store.read()) == {"openai-oauth"}
    assert store.clear() == ["openai-oauth"]
    assert store.read() == {}
    leftovers = [p.name for p in _home().iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 1, "providers": {"anthropic": {"type"',
        '["not", "a", "store"]',
        '{"providers": {"x": 1}}',
    ],
)
def test_corrupted_file_is_reported_and_left_untouched(content: str) -> None:
    path = _home() / "auth.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    store = AuthStore()
    with pytest.raises(CredentialStoreError) as info:
        store.read()
    assert str(path) in str(info.value) and "untouched" in str(info.value)
    with pytest.raises(CredentialStoreError):
        store.put("openai", {"type": "api-key", "key": "sk-new"})
    with pytest.raises(CredentialStoreError):
        store.clear()
    assert path.read_text() == content


def test_corrupted_store_through_the_cli_is_left_untouched() -> None:
    path = _home() / "auth.json"
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    saved = run_cli("connect", "openai", "--key-stdin", stdin="sk-openai-new-key\n")
    assert saved.returncode == 1
    assert str(path) in saved.stderr and "not valid JSON" in saved.stderr
    assert "Traceback" not in saved.stderr
    status = run_cli("connect", "status")
    assert status.returncode == 0, status.stderr
    assert str(path) in status.stderr
    gone = run_cli("disconnect", "all")
    assert gone.returncode == 1 and str(path) in gone.stderr
    assert path.read_text() == "{oops"


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from openkoi.credentials._store import AuthStore
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.005)
    store = AuthStore()
    for i in range(25):
        store.put(f"{sys.argv[1]}-{i}", {"type": "api-key", "key": f"k-{sys.argv[1]}-{i}"})
    """
)


def _spawn(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_two_processes_writing_lose_nothing(tmp_path: Path) -> None:
    AuthStore().put("keep", {"type": "api-key", "key": "kept"})
    go = tmp_path / "go"
    procs = [_spawn(_WRITER, name, str(go)) for name in ("left", "right")]
    time.sleep(0.3)
    go.touch()
    for proc in procs:
        _finish(proc)
    entries = AuthStore().read()
    assert len(entries) == 51
    assert entries["keep"]["key"] == "kept"
    assert entries["left-24"]["key"] == "k-left-24" and entries["right-0"]["key"] == "k-right-0"


_REFRESHER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    import httpx
    from openkoi.credentials import _chatgpt_oauth
    from openkoi.credentials._endpoints import ChatGPTEndpoints
    from openkoi.credentials._store import AuthStore

    async def renew(entry):
        async with httpx.AsyncClient() as client:
            return await _chatgpt_oauth.refresh(client, ChatGPTEndpoints.from_env(), entry)

    async def main():
        go = Path(sys.argv[1])
        while not go.exists():
            await asyncio.sleep(0.005)
        entry = await AuthStore().refresh("openai-oauth", _chatgpt_oauth.is_fresh, renew)
        print(json.dumps({"access": entry["access"], "refresh": entry["refresh"]}))

    asyncio.run(main())
    """
)


def test_two_processes_refreshing_at_once_spend_the_refresh_token_once(
    serve: Any, tmp_path: Path
) -> None:
    fake: FakeAuth = start_fake_auth(serve, refresh_delay=0.4)
    fake.refresh_current = "rt-secret-start"
    AuthStore().put(
        "openai-oauth",
        {
            "type": "oauth",
            "access": "old",
            "refresh": "rt-secret-start",
            "expires_at": time.time() - 5,
        },
    )
    AuthStore().put("anthropic", {"type": "api-key", "key": "sk-ant-untouched"})
    go = tmp_path / "go"
    procs = [_spawn(_REFRESHER, str(go), env=fake.env()) for _ in range(2)]
    time.sleep(0.3)
    go.touch()
    results = [json.loads(_finish(p)) for p in procs]
    assert fake.refreshes == 1  # the loser waited on the lock, re-read, and found a fresh token
    assert results[0] == results[1]
    entries = AuthStore().read()
    assert entries["openai-oauth"]["refresh"] == fake.refresh_current == results[0]["refresh"]
    assert entries["openai-oauth"]["access"] in fake.access_valid
    assert entries["anthropic"]["key"] == "sk-ant-untouched"


def test_read_only_home_gives_a_clear_error(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text(
        json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": "sk-ant-oat01-ro",
                    "expiresAt": (time.time() + 3600) * 1000,
                }
            }
        )
    )
    for folder in (home / ".claude", home):
        folder.chmod(0o555)
    try:
        prefix = read_only_prefix()
        saved = run_cli(
            "connect", "openai", "--key-stdin", stdin="sk-openai-1234567\n", prefix=prefix
        )
        assert saved.returncode == 1, saved.stderr
        assert "cannot save credentials" in saved.stderr and "read-only" in saved.stderr
        assert "Traceback" not in saved.stderr
        status = run_cli("connect", "status", prefix=prefix)
        assert status.returncode == 0, status.stderr
        assert "Anthropic:" in status.stdout and "Claude CLI" in status.stdout
        assert "sk-ant-oat01-ro" not in status.stdout + status.stderr
        assert not (home / ".openkoi").exists()
    finally:
        for folder in (home, home / ".claude"):
            folder.chmod(0o755)


@pytest.fixture
def keyring_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import keyring
    import keyring.core

    ring = tmp_path / "keyring.json"
    monkeypatch.setenv("OPENKOI_TEST_KEYRING_FILE", str(ring))
    monkeypatch.setenv("OPENKOI_CREDENTIAL_STORE", "keyring")
    previous = keyring.core._keyring_backend
    keyring.set_keyring(FileKeyring())
    yield ring
    keyring.core._keyring_backend = previous


def test_keyring_backend_keeps_the_document_out_of_home(keyring_store: Path) -> None:
    store = AuthStore()
    assert "OS keyring" in store.description and "FileKeyring" in store.description
    store.put("anthropic", {"type": "api-key", "key": "sk-ant-in-keyring"})
    store.put("openai", {"type": "api-key", "key": "sk-openai-in-keyring"})
    assert not (_home() / "auth.json").exists()
    raw = json.loads(keyring_store.read_text())
    assert "sk-ant-in-keyring" in raw["openkoi/auth.json"]
    assert set(AuthStore().read()) == {"anthropic", "openai"}
    from openkoi.credentials import resolve

    secret = resolve("anthropic", ["ANTHROPIC_API_KEY"])
    assert secret is not None and secret.reveal() == "sk-ant-in-keyring"


def test_keyring_backend_through_the_cli(keyring_store: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "_keyring_backend.FileKeyring"}
    saved = run_cli("connect", "groq", "--key-stdin", stdin="gsk_in_keyring_123\n", env=env)
    assert saved.returncode == 0, saved.stderr
    assert "OS keyring" in saved.stdout
    assert "gsk_in_keyring_123" in keyring_store.read_text()
    assert not (_home() / "auth.json").exists()
    status = run_cli("connect", "status", env=env)
    assert "Groq:" in status.stdout and "saved by openkoi connect" in status.stdout


def test_keyring_requested_but_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    import keyring.core
    from keyring.backends import fail

    monkeypatch.setenv("OPENKOI_CREDENTIAL_STORE", "keyring")
    previous = keyring.core._keyring_backend
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(CredentialStoreError, match="no usable OS keyring"):
            AuthStore()
    finally:
        keyring.core._keyring_backend = previous
    monkeypatch.setenv("OPENKOI_CREDENTIAL_STORE", "vault")
    with pytest.raises(CredentialStoreError, match="'file' or 'keyring'"):
        AuthStore()
