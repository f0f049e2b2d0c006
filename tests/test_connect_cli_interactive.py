"""The pickers, in a real pseudo-terminal (pexpect): connect, disconnect and the first run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from _connect_support import finish, spawn_cli
from _oauth_server import FakeAuth, chat_sse, start_fake_auth
from _server import Recorded, Reply

DOWN = "\x1b[B"
ENTER = "\r"


_spawn = spawn_cli
_finish = finish


def _store() -> dict[str, Any]:
    path = Path(os.environ["OPENKOI_HOME"]) / "auth.json"
    data: dict[str, Any] = json.loads(path.read_text())["providers"]
    return data


def test_connect_picker_lists_targets_and_saves_a_pasted_key() -> None:
    child = _spawn("connect")
    child.expect("Select a provider or integration to connect")
    child.expect("GitHub Copilot — Device-code OAuth \\(use your existing subscription\\)")
    child.expect("ChatGPT Plus/Pro — Device-code OAuth")
    child.expect("Ollama — Local models")
    child.send(DOWN + DOWN)
    child.send(ENTER)
    child.expect("Paste your Anthropic API key")
    child.sendline("sk-ant-api03-typed-in")
    child.expect("Saved the Anthropic API key")
    assert _finish(child) == 0
    assert "sk-ant-api03-typed-in" not in (child.before or "")
    assert _store()["anthropic"]["key"] == "sk-ant-api03-typed-in"


def test_connect_picker_runs_the_copilot_sign_in(serve: Any) -> None:
    fake: FakeAuth = start_fake_auth(serve, github_script=["authorization_pending", None])
    child = _spawn("connect", env=fake.env())
    child.expect("Select a provider or integration to connect")
    child.send(ENTER)
    child.expect("Enter code: ABCD-1234")
    child.expect("Connected to GitHub Copilot.")
    assert _finish(child) == 0
    assert _store()["github-copilot"]["access"] in fake.github_tokens


def test_disconnect_picker_shows_only_connected_and_all() -> None:
    home = Path(os.environ["OPENKOI_HOME"])
    home.mkdir(parents=True)
    (home / "auth.json").write_text(
        json.dumps(
            {
                "version": 1,
                "providers": {
                    "anthropic": {"type": "api-key", "key": "sk-ant-1"},
                    "github-copilot": {"type": "oauth", "access": "gho_1"},
                },
            }
        )
    )
    child = _spawn("disconnect", env={"OPENAI_API_KEY": "sk-openai-env"})
    child.expect("Select a provider to disconnect")
    child.expect("GitHub Copilot \\(connected\\)")
    child.expect("Anthropic \\(connected\\)")
    child.expect("OpenAI \\(API key from env OPENAI_API_KEY\\)")
    child.expect("All — remove all stored credentials")
    screen = child.before or ""
    assert "ChatGPT" not in screen and "Google" not in screen
    child.send(DOWN)  # Anthropic is second (after GitHub Copilot)
    child.send(ENTER)
    child.expect("Disconnected Anthropic")
    assert _finish(child) == 0
    assert set(_store()) == {"github-copilot"}

    child = _spawn("disconnect")
    child.expect("All — remove all stored credentials")
    child.send(DOWN + ENTER)
    child.expect("Removed stored credentials for GitHub Copilot")
    assert _finish(child) == 0
    assert _store() == {}


def test_picker_cancelled_with_ctrl_c() -> None:
    child = _spawn("connect")
    child.expect("Select a provider or integration to connect")
    child.sendcontrol("c")
    assert _finish(child) == 130
    assert not (Path(os.environ["OPENKOI_HOME"]) / "auth.json").exists()


def test_first_run_picker_paste_a_key_then_answers(serve: Any) -> None:
    seen: list[Recorded] = []

    def openai(request: Recorded) -> Reply:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer sk-first-run-key":
            return Reply.json({"error": {"message": "bad key"}}, 401)
        return Reply.sse(chat_sse("Hi from the first run"))

    server = serve(openai)
    child = _spawn("What is up?", env={"OPENAI_BASE_URL": f"{server.url}/v1"})
    child.expect("No model provider is set up yet")
    child.expect("How do you want to start")
    child.expect("Ollama — free")
    child.send(DOWN + ENTER)  # Paste an API key
    child.expect("Which provider is the key for")
    child.send(DOWN + ENTER)  # Anthropic, then OpenAI
    child.expect("Paste your OpenAI API key")
    child.sendline("sk-first-run-key")
    child.expect("Saved the OpenAI API key")
    child.expect("Hi from the first run")
    assert _finish(child) == 0
    assert seen and seen[-1].json()["model"] == "gpt-5.2"
    assert _store()["openai"]["key"] == "sk-first-run-key"


def test_first_run_picker_without_ollama_explains_and_fails() -> None:
    child = _spawn("hello")
    child.expect("How do you want to start")
    child.send(ENTER)  # Ollama
    child.expect("Ollama is not running or has no models")
    child.expect("no provider is configured")
    assert _finish(child) == 1
