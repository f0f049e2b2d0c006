"""`openkoi connect / disconnect / connect status` end to end, as scripts run them (no TTY).

Each test runs the real CLI in a subprocess with HOME and OPENKOI_HOME in tmp dirs, against the
local sign-in server; then the next `openkoi "prompt"` must use what was saved.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _connect_support import CLI, cli_env, run_cli
from _oauth_server import FakeAuth, start_fake_auth


@pytest.fixture
def fake(serve: Any) -> FakeAuth:
    return start_fake_auth(serve)


def _store() -> dict[str, Any]:
    path = Path(os.environ["OPENKOI_HOME"]) / "auth.json"
    data: dict[str, Any] = json.loads(path.read_text())["providers"]
    return data


def _line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(name + ":"))


def test_connect_copilot_then_prompt_status_disconnect(fake: FakeAuth) -> None:
    fake.github_script = ["authorization_pending", "slow_down", None]
    done = run_cli("connect", "copilot", env=fake.env())
    assert done.returncode == 0, done.stderr
    assert f"Visit: {fake.url}/login/device" in done.stdout
    assert "Enter code: ABCD-1234" in done.stdout
    assert "Waiting for authorization" in done.stdout
    assert "Connected to GitHub Copilot." in done.stdout
    entry = _store()["github-copilot"]
    assert (
        entry["access"] in fake.github_tokens and entry["session"]["api"] == f"{fake.url}/copilot"
    )
    auth_file = Path(os.environ["OPENKOI_HOME"]) / "auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert entry["access"] not in done.stdout + done.stderr

    status = run_cli("connect", "status", env=fake.env())
    assert status.returncode == 0, status.stderr
    line = _line(status.stdout, "GitHub Copilot")
    assert "connected (token valid, expires in 29m" in line or "expires in 30m" in line, line
    assert _line(status.stdout, "ChatGPT").endswith("not connected")
    assert "not running (127.0.0.1:9)" in _line(status.stdout, "Ollama")

    answer = run_cli("Say hello", env=fake.env())
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "Hello from Copilot"
    chats = [r for r in fake.requests if r.path == "/copilot/chat/completions"]
    assert len(chats) == 1
    assert chats[0].headers["authorization"] == f"Bearer {entry['session']['token']}"
    assert chats[0].json()["model"] == "gpt-4.1"
    assert sum(1 for r in fake.requests if r.path == "/copilot_internal/v2/token") == 1

    gone = run_cli("disconnect", "copilot", env=fake.env())
    assert gone.returncode == 0 and "Disconnected GitHub Copilot" in gone.stdout
    assert "github-copilot" not in _store()
    after = run_cli("connect", "status", env=fake.env())
    assert _line(after.stdout, "GitHub Copilot").endswith("not connected")


def test_connect_chatgpt_then_prompt_uses_the_new_token(fake: FakeAuth) -> None:
    fake.chatgpt_script = ["pending", "pending", "slow_down", None]
    done = run_cli("connect", "chatgpt", env=fake.env())
    assert done.returncode == 0, done.stderr
    assert (
        f"Visit: {fake.url}/codex/device" in done.stdout and "Enter code: WXYZ-5678" in done.stdout
    )
    assert "Connected to ChatGPT Plus/Pro." in done.stdout
    entry = _store()["openai-oauth"]
    assert entry["account_id"] == "acct-test-7f3a" and entry["refresh"] == fake.refresh_current
    status = run_cli("connect", "status", env=fake.env())
    assert "connected (token valid, expires in 59m" in _line(status.stdout, "ChatGPT")

    answer = run_cli("Say hello", env=fake.env())
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "Hello from ChatGPT"
    sent = [r for r in fake.requests if r.path == "/backend-api/codex/responses"]
    assert sent[0].headers["authorization"] == f"Bearer {entry['access']}"
    assert sent[0].json()["model"] == "gpt-5.2"


@pytest.mark.parametrize(
    ("target", "script", "words"),
    [
        (
            "copilot",
            {"github_script": ["authorization_pending", "access_denied"]},
            "denied in the browser",
        ),
        ("copilot", {"github_script": ["expired_token"]}, "code expired"),
        ("chatgpt", {"chatgpt_script": ["pending", "access_denied"]}, "denied in the browser"),
        ("chatgpt", {"chatgpt_script": ["pending", "expired_token"]}, "code expired"),
        (
            "copilot",
            {"github_script": ["close", "close", "close"]},
            "lost contact with the sign-in server",
        ),
        ("copilot", {"copilot_status": 404}, "no Copilot access"),
    ],
)
def test_failed_sign_ins_say_why_and_save_nothing(
    serve: Any, target: str, script: dict[str, Any], words: str
) -> None:
    fake = start_fake_auth(serve, **script)
    done = run_cli("connect", target, env=fake.env())
    assert done.returncode == 1
    assert words in done.stderr, done.stderr
    assert f"openkoi connect {target}" in done.stderr or "account" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (Path(os.environ["OPENKOI_HOME"]) / "auth.json").exists()


def test_ctrl_c_while_waiting_cancels_cleanly(fake: FakeAuth) -> None:
    fake.github_script = []  # pending for ever
    proc = subprocess.Popen(
        [*CLI, "connect", "copilot"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(fake.env()),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    seen = ""
    while "Waiting for authorization" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Cancelled; nothing was saved." in err
    assert "Traceback" not in err
    assert not (Path(os.environ["OPENKOI_HOME"]) / "auth.json").exists()


def test_browser_is_opened_where_one_exists(fake: FakeAuth, tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = {**fake.env(), "BROWSER": str(browser)}
    env.pop("OPENKOI_NO_BROWSER")
    done = run_cli("connect", "copilot", env=env)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.read_text().strip() == f"{fake.url}/login/device"
    opened.unlink()
    fake.github_script = [None]
    assert run_cli("connect", "copilot", "--no-browser", env=env).returncode == 0
    time.sleep(0.3)
    assert not opened.exists()


def test_api_key_connect_status_and_env_precedence(tmp_path: Path) -> None:
    saved = run_cli("connect", "anthropic", "--key-stdin", stdin="sk-ant-api03-pasted\n")
    assert saved.returncode == 0, saved.stderr
    assert "Saved the Anthropic API key" in saved.stdout
    assert _store()["anthropic"] == {
        "type": "api-key",
        "key": "sk-ant-api03-pasted",
        "updated_at": pytest.approx(time.time(), abs=60),
    }
    status = run_cli("connect", "status")
    assert _line(status.stdout, "Anthropic").endswith(
        "connected (API key saved by openkoi connect)"
    )
    assert "sk-ant-api03-pasted" not in status.stdout + status.stderr
    with_env = run_cli("connect", "status", env={"ANTHROPIC_API_KEY": "sk-ant-env"})
    assert _line(with_env.stdout, "Anthropic").endswith(
        "connected (API key from env ANTHROPIC_API_KEY)"
    )
    shadowed = run_cli(
        "connect", "anthropic", "--key-stdin", stdin="sk-ant-2\n", env={"ANTHROPIC_API_KEY": "x"}
    )
    assert "ANTHROPIC_API_KEY is set and is used before the saved key" in shadowed.stdout
    bad = run_cli("connect", "openai", "--key-stdin", stdin="   \n")
    assert bad.returncode == 1 and "no API key given for OpenAI" in bad.stderr


def test_status_json_has_no_secrets(tmp_path: Path) -> None:
    run_cli("connect", "groq", "--key-stdin", stdin="gsk_supersecretvalue\n")
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-hidden", "expiresAt": 1000}})
    )
    done = run_cli("connect", "status", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    states = {p["provider"]: p["state"] for p in data["providers"]}
    assert states["groq"] == "connected" and states["anthropic"] == "expired"
    assert states["github-copilot"] == "not-connected"
    assert data["ollama"]["reachable"] is False
    assert "supersecret" not in done.stdout and "hidden" not in done.stdout


def test_disconnect_all_and_other_tools_credentials() -> None:
    run_cli("connect", "openai", "--key-stdin", stdin="sk-openai-1\n")
    key_file = Path(os.environ["OPENKOI_HOME"]) / "credentials" / "deepseek.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("sk-deepseek\n")
    home = Path(os.environ["HOME"])
    claude = home / ".claude" / ".credentials.json"
    claude.parent.mkdir()
    claude.write_text(json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-x"}}))
    other = run_cli("disconnect", "anthropic")
    assert other.returncode == 0
    assert "Anthropic had no stored credential." in other.stdout
    assert "does not delete other tools' credentials" in other.stdout
    assert claude.exists()
    done = run_cli("disconnect", "all")
    assert done.returncode == 0, done.stderr
    assert "DeepSeek" in done.stdout and "OpenAI" in done.stdout
    assert _store() == {} and not key_file.exists()
    again = run_cli("disconnect", "all")
    assert "No stored credentials to remove." in again.stdout


def test_scripts_get_usage_errors_instead_of_pickers() -> None:
    connect = run_cli("connect")
    assert (
        connect.returncode == 2 and "copilot, chatgpt, anthropic, openai, google" in connect.stderr
    )
    disconnect = run_cli("disconnect")
    assert disconnect.returncode == 2 and "openkoi disconnect <target|all>" in disconnect.stderr
    unknown = run_cli("connect", "nowhere")
    assert unknown.returncode == 1 and "unknown connect target 'nowhere'" in unknown.stderr
    qwen = run_cli("connect", "qwen")
    assert qwen.returncode == 1 and "sign in with the Qwen CLI" in qwen.stderr
    nothing = run_cli("hello there")
    assert nothing.returncode == 1
    lines = [line for line in nothing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no provider is configured" in lines[0], nothing.stderr
    assert "openkoi connect" in lines[0]


def test_expired_claude_token_is_not_used_by_the_prompt(serve: Any) -> None:
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text(
        json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": "sk-ant-oat01-old",
                    "expiresAt": int((time.time() - 60) * 1000),
                }
            }
        )
    )
    done = run_cli("hello")
    assert done.returncode == 1 and "no provider is configured" in done.stderr


def test_claude_cli_sign_in_works_with_zero_setup(serve: Any) -> None:
    """Claude Code signed in: the default prompt goes to Anthropic with its OAuth token."""
    seen: list[Any] = []

    def anthropic(request: Any) -> Any:
        from _server import Reply

        seen.append(request)
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "m1",
                        "model": "claude-sonnet-4-5",
                        "usage": {"input_tokens": 5, "output_tokens": 0},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi from Claude"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 3},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return Reply.sse([f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events])

    server = serve(anthropic)
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text(
        json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": "sk-ant-oat01-zero-setup",
                    "expiresAt": int((time.time() + 3600) * 1000),
                }
            }
        )
    )
    done = run_cli("hello", env={"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hi from Claude"
    assert seen[0].headers["authorization"] == "Bearer sk-ant-oat01-zero-setup"
    assert "oauth-" in seen[0].headers["anthropic-beta"] and "x-api-key" not in seen[0].headers
    assert seen[0].json()["model"] == "claude-sonnet-4-5"


def test_copilot_in_a_read_only_home_uses_a_session_for_this_run(fake: FakeAuth) -> None:
    from _connect_support import read_only_prefix

    fake.github_tokens.add("gho_read_only_0001")
    koi = Path(os.environ["OPENKOI_HOME"])
    koi.mkdir()
    (koi / "auth.json").write_text(
        json.dumps(
            {
                "version": 1,
                "providers": {"github-copilot": {"type": "oauth", "access": "gho_read_only_0001"}},
            }
        )
    )
    before = (koi / "auth.json").read_text()
    home = Path(os.environ["HOME"])
    for folder in (koi, home):
        folder.chmod(0o555)
    try:
        done = run_cli("hi", env=fake.env(), prefix=read_only_prefix())
    finally:
        for folder in (home, koi):
            folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from Copilot"
    assert (koi / "auth.json").read_text() == before
