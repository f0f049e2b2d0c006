"""The CLI as people use it: brackets survive every output path, typos are not sent as paid
prompts, names get suggestions, piped tables keep every character, exit codes mean one thing."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import _plugins
import pytest
from _connect_support import run_cli
from _server import Recorded, Reply
from test_cli_basic import sse_answer

BRACKETS = "field [tools] must be a list; see [docs]"


def _config(text: str) -> None:
    path = Path(os.environ["OPENKOI_HOME"]) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# -- 1. text that vanishes ---------------------------------------------------------------------


def test_brackets_survive_errors_notes_tables_and_costs(serve: Any) -> None:
    def failing(request: Recorded) -> Reply:
        return Reply.json({"error": {"message": BRACKETS, "type": "invalid_request_error"}}, 400)

    def flaky(request: Recorded) -> Reply:
        return Reply.json({"error": {"message": "[upstream] is down"}}, 500)

    answers: list[Recorded] = []

    def good(request: Recorded) -> Reply:
        answers.append(request)
        return sse_answer(["ok"])

    bad, down, fine = serve(failing), serve(flaky), serve(good)
    env = {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": f"{bad.url}/v1"}

    # an error from a server
    failed = run_cli("-m", "openai/gpt-5.2", "hi", env=env)
    assert failed.returncode == 1 and BRACKETS in failed.stderr
    # an error about what the user typed
    typed = run_cli("-m", "foo[bar]/y", "hi", env=env)
    assert typed.returncode == 1 and "'foo[bar]'" in typed.stderr

    # a note about a fallback, quoting the server; a provider name and a model id from config
    _config(
        f'[providers.gw]\nname = "Gateway [eu]"\nbase_url = "{down.url}/v1"\n'
        'default_model = "m[1]"\n'
        f'[providers.ok]\nbase_url = "{fine.url}/v1"\ndefault_model = "n[2]"\n'
        '[models]\nexecutor = "gw/m[1]"\n[models.fallback]\nexecutor = ["ok/n[2]"]\n'
    )
    noted = run_cli("hi", env=env)
    assert noted.returncode == 0, noted.stderr
    assert noted.stdout == "ok\n"
    assert "answered by ok/n[2]" in noted.stderr and "[upstream] is down" in noted.stderr
    assert answers[-1].json()["model"] == "n[2]"

    status = run_cli("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "Gateway [eu]" in status.stdout and "gw/m[1]" in status.stdout
    assert "ok/n[2]" in status.stdout
    costs = run_cli("status", "--costs", env=env)
    assert costs.returncode == 0, costs.stderr
    assert "ok/n[2]" in costs.stdout and "gw/m[1]" in costs.stdout


# -- 2. typos that cost money ------------------------------------------------------------------


def test_a_one_word_prompt_like_a_command_is_refused_and_never_sent(serve: Any) -> None:
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        return sse_answer(["answered"])

    server = serve(handler)
    env = {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": f"{server.url}/v1"}
    for typo, meant in (
        ("stauts", "status"),
        ("modles", "models"),
        ("STATUS", "status"),
        ("conect", "connect"),
        ("help", "--help"),
        ("login", "connect"),
        ("biuld", "plugin build"),
    ):
        result = run_cli(typo, env=env)
        assert result.returncode == 2, (typo, result.stderr)
        assert f"did you mean `openkoi {meant}`?" in result.stderr
        assert "Traceback" not in result.stderr
    refused_with_model = run_cli("-m", "openai/gpt-5.2", "stauts", env=env)
    assert refused_with_model.returncode == 2
    assert seen == []

    for args in (("run", "stauts"), ("--", "stauts"), ("hello",), ("what", "is", "status")):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout == "answered\n"
    sent = [r.json()["messages"][-1]["content"] for r in seen]
    assert sent == ["stauts", "stauts", "hello", "what is status"]


def test_unknown_names_suggest_the_nearest(tmp_path: Path) -> None:
    disconnect = run_cli("disconnect", "antropic")
    assert disconnect.returncode == 1
    assert "unknown provider 'antropic'; did you mean 'anthropic'?" in disconnect.stderr
    assert "unknown connect target" not in disconnect.stderr
    assert re.search(r"known providers: .*\ball\b", disconnect.stderr)

    connect = run_cli("connect", "antropic")
    assert connect.returncode == 1 and "did you mean 'anthropic'?" in connect.stderr
    model = run_cli("-m", "antropic/claude-sonnet-4-5", "hi")
    assert model.returncode == 1 and "did you mean 'anthropic'?" in model.stderr
    far = run_cli("connect", "zzzzzz")
    assert far.returncode == 1 and "did you mean" not in far.stderr

    wasm = tmp_path / "cohere.wasm"
    wasm.write_bytes(_plugins.cohere().read_bytes())
    _config(f'[plugins]\nwasm = ["{wasm}"]\n[plugins.cohre]\npool_size = 1\n')
    listed = run_cli("plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert "[plugins.cohre] matches no configured plugin; did you mean 'cohere'?" in listed.stderr


# -- 5. tables that cut ------------------------------------------------------------------------


def test_piped_status_keeps_every_character() -> None:
    result = run_cli("status", env={"COLUMNS": "60"})
    assert result.returncode == 0, result.stderr
    assert "openai/text-embedding-3-small" in result.stdout
    assert "no key needed (`openkoi connect status` probes it)" in result.stdout
    assert "…" not in result.stdout
    assert "github-copilot" in result.stdout


# -- 7. exit codes -----------------------------------------------------------------------------


def test_exit_codes(serve: Any) -> None:
    assert run_cli("--version").returncode == 0
    server = serve(lambda r: Reply.json({"error": {"message": "bad key"}}, 401))
    provider_error = run_cli(
        "hi", env={"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": f"{server.url}/v1"}
    )
    assert provider_error.returncode == 1
    usage = run_cli("status", "--no-such-flag")
    assert usage.returncode == 2
    wasm = _plugins.cohere()
    approve = run_cli("plugin", "approve", str(wasm))
    assert approve.returncode == 2
    assert "needs -y when not run in a terminal" in approve.stderr
    assert "aborted" not in approve.stderr


# -- 8. help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_shows_the_prompt_and_whole_summaries(flag: str) -> None:
    result = run_cli(flag)
    assert result.returncode == 0
    text = _flat(result.stdout)
    assert 'openkoi "Explain SSE in one line"' in text
    assert "-m, --model" in text and "-s, --system" in text
    assert "Connect a provider: sign in to a subscription, or save an API key." in text
    assert "Show roles, fallback chains and providers, or (--costs) what the calls cost." in text
    assert "init" in text and "models" in text
    assert "..." not in result.stdout.replace("[ARGS]...", "")
