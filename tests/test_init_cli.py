"""`openkoi init`: the scripted form against a real loopback endpoint, and the guided picker in a
real pseudo-terminal (pexpect)."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from _connect_support import finish, run_cli, spawn_cli
from _server import Recorded, Reply
from test_cli_basic import sse_answer

DOWN = "\x1b[B"
ENTER = "\r"
KEY = "sk-gateway-123"


def _home() -> Path:
    return Path(os.environ["OPENKOI_HOME"])


def _config() -> dict[str, Any]:
    return tomllib.loads((_home() / "config.toml").read_text())


def _gateway(serve: Any, seen: list[Recorded], models: list[str] | None = None) -> Any:
    listed = ["llama-3.3-70b", "qwen2.5-coder"] if models is None else models

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return Reply.json({"error": {"message": "invalid api key [auth]"}}, 401)
        if request.path == "/v1/models":
            return Reply.json({"object": "list", "data": [{"id": m} for m in listed]})
        if request.path == "/v1/chat/completions":
            return sse_answer(["hello ", "from the gateway"])
        return Reply.json({"error": {"message": "no such route"}}, 404)

    return serve(handler)


_spawn = spawn_cli
_finish = finish


def test_scripted_init_checks_once_writes_config_and_key_then_answers(serve: Any) -> None:
    seen: list[Recorded] = []
    server = _gateway(serve, seen)
    url = f"{server.url}/v1"
    done = run_cli(
        "init",
        "--base-url",
        url,
        "--name",
        "Gateway",
        "--model",
        "llama-3.3-70b",
        "--key-stdin",
        stdin=KEY + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert [r.path for r in seen] == ["/v1/models"]  # one request checks the endpoint
    config = _config()
    assert config["providers"]["gateway"] == {"base_url": url, "default_model": "llama-3.3-70b"}
    assert config["models"]["executor"] == "gateway/llama-3.3-70b"
    key_file = _home() / "credentials" / "gateway.key"
    assert key_file.read_text().strip() == KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert KEY not in (_home() / "config.toml").read_text()
    assert KEY not in done.stdout + done.stderr

    answer = run_cli("Say hello")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "hello from the gateway"
    assert seen[-1].json()["model"] == "llama-3.3-70b"


def test_scripted_init_picks_the_only_model_and_names_from_the_host(serve: Any) -> None:
    seen: list[Recorded] = []
    server = _gateway(serve, seen, models=["only-model"])
    done = run_cli("init", "--base-url", f"{server.url}/v1/", "--key-stdin", stdin=KEY)
    assert done.returncode == 0, done.stderr
    providers = _config()["providers"]
    (name,) = providers
    assert name.startswith("127-0-0-1") or name.startswith("custom")
    assert providers[name]["default_model"] == "only-model"
    assert providers[name]["base_url"] == f"{server.url}/v1"


def test_scripted_init_refusals_save_nothing(serve: Any) -> None:
    seen: list[Recorded] = []
    server = _gateway(serve, seen)
    url = f"{server.url}/v1"
    wrong_key = run_cli("init", "--base-url", url, "--model", "m", "--key-stdin", stdin="sk-bad")
    assert wrong_key.returncode == 1
    assert "HTTP 401" in wrong_key.stderr and "invalid api key [auth]" in wrong_key.stderr
    assert "sk-bad" not in wrong_key.stderr
    many = run_cli("init", "--base-url", url, "--key-stdin", stdin=KEY)
    assert many.returncode == 2 and "--model" in many.stderr and "qwen2.5-coder" in many.stderr
    wrong_path = run_cli("init", "--base-url", server.url, "--model", "m", "--key-stdin", stdin=KEY)
    assert wrong_path.returncode == 1 and "/v1" in wrong_path.stderr
    builtin = run_cli("init", "--base-url", url, "--name", "openai", "--model", "m", "--no-check")
    assert builtin.returncode == 1 and "already a provider" in builtin.stderr
    bad_url = run_cli("init", "--base-url", "ftp://x", "--model", "m")
    assert bad_url.returncode == 1 and "not an http" in bad_url.stderr
    down = run_cli("init", "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    no_terminal = run_cli("init")
    assert no_terminal.returncode == 2 and "--base-url URL" in no_terminal.stderr
    assert not (_home() / "config.toml").exists()
    assert not (_home() / "credentials").exists()


def test_guided_init_other_url_asks_checks_and_saves(serve: Any) -> None:
    seen: list[Recorded] = []
    server = _gateway(serve, seen)
    url = f"{server.url}/v1"
    child = _spawn("init")
    child.expect("What is set up now")
    child.expect("Default model: \\(none yet\\)")
    child.expect("How do you want to start")
    child.expect("Ollama — free")
    child.expect("Other \\(OpenAI-compatible URL\\)")
    child.send(DOWN * 4 + ENTER)  # Ollama, key, Copilot, ChatGPT, Other
    child.expect("Base URL of the OpenAI-compatible API")
    child.sendline(url)
    child.expect("API key")
    child.sendline(KEY)
    child.expect("Default model")
    child.expect("qwen2.5-coder")
    child.send(DOWN + ENTER)
    child.expect("A short id for this provider")
    child.send("\x7f" * 40 + "mygw" + ENTER)
    child.expect("Saved \\[providers.mygw\\]")
    assert _finish(child) == 0
    assert KEY not in (child.before or "")
    assert [r.path for r in seen] == ["/v1/models"]
    assert _config()["providers"]["mygw"] == {"base_url": url, "default_model": "qwen2.5-coder"}
    assert (_home() / "credentials" / "mygw.key").read_text().strip() == KEY

    # Again: what is configured is shown, and keeping it changes nothing.
    before = (_home() / "config.toml").read_text()
    child = _spawn("init", env={"ANTHROPIC_API_KEY": "sk-ant-env"})
    child.expect("What is set up now")
    child.expect("Anthropic: +connected")
    child.expect(f"mygw: {url}, default model qwen2.5-coder")
    child.expect("Default model: mygw/qwen2.5-coder")
    child.expect("What do you want to set up")
    child.expect("Nothing — keep the setup as it is")
    child.send(DOWN * 5 + ENTER)
    child.expect("Nothing changed")
    assert _finish(child) == 0
    assert (_home() / "config.toml").read_text() == before


def test_guided_init_pastes_a_key_and_leaves_the_endpoint_alone(serve: Any) -> None:
    (_home()).mkdir(parents=True)
    (_home() / "config.toml").write_text(
        '# my gateway\n[providers.mygw]\nbase_url = "http://127.0.0.1:9/v1"\ndefault_model = "m"\n'
    )
    before = (_home() / "config.toml").read_text()
    child = _spawn("init")
    child.expect("What do you want to set up")
    child.send(DOWN + ENTER)  # Paste an API key
    child.expect("Which provider is the key for")
    child.send(ENTER)  # Anthropic
    child.expect("Paste your Anthropic API key")
    child.sendline("sk-ant-api03-init")
    child.expect("Saved the Anthropic API key")
    assert _finish(child) == 0
    assert (_home() / "config.toml").read_text() == before


def test_guided_init_cancelled_saves_nothing() -> None:
    child = _spawn("init")
    child.expect("How do you want to start")
    child.send(DOWN * 4 + ENTER)
    child.expect("Base URL")
    child.sendcontrol("c")
    assert _finish(child) == 130
    assert not (_home() / "config.toml").exists()
