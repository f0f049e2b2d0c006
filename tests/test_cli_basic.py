"""The `openkoi` command as a user runs it: a real subprocess against a loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import openkoi
from _server import Recorded, Reply


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def sse_answer(words: list[str]) -> Reply:
    events = [
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
        + "\n\n"
        for w in words
    ]
    events.append(
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        + "\n\n"
    )
    events.append("data: [DONE]\n\n")
    return Reply.sse(events)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert openkoi.__version__ in result.stdout


def test_no_provider_is_one_clear_line() -> None:
    result = run_cli("hello")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "no provider" in lines[0].lower() and "openkoi connect" in lines[0]
    assert "Traceback" not in result.stderr


def test_streams_answer_from_argument_and_stdin(serve: Any) -> None:
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        return sse_answer(["Hel", "lo", " wor", "ld"])

    server = serve(handler)
    env = {"OPENAI_API_KEY": "sk-cli-test-000000", "OPENAI_BASE_URL": server.url + "/v1"}
    result = run_cli("--model", "openai/gpt-test", "say", "hi", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world\n"
    assert seen[0].json()["messages"][-1] == {"role": "user", "content": "say hi"}
    assert seen[0].path == "/v1/chat/completions"

    result = run_cli("--model", "openai/gpt-test", stdin="from stdin\n", env=env)
    assert result.returncode == 0, result.stderr
    assert seen[1].json()["messages"][-1]["content"] == "from stdin"


def test_custom_endpoint_from_config(serve: Any) -> None:
    from openkoi._paths import config_path

    server = serve(lambda r: sse_answer(["custom ok"]))
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[providers.local]\nbase_url = "{server.url}/v1"\ndefault_model = "m"\n')
    result = run_cli("--model", "local/m", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "custom ok\n"


def test_bad_inputs_are_one_line_errors(serve: Any) -> None:
    from openkoi._paths import config_path

    cases = [
        (("--model", "gpt-5.2", "hi"), {}, "provider/model"),
        (("--model", "nosuch/x", "hi"), {}, "unknown provider"),
        (("--model", "groq/x", "hi"), {}, "GROQ_API_KEY"),
    ]
    for args, env, fragment in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[models\n")
    result = run_cli("--model", "openai/x", "hi", env={"OPENAI_API_KEY": "sk-000000000"})
    assert result.returncode == 1
    assert "not valid TOML" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_provider_error_is_one_line_without_the_key(serve: Any) -> None:
    key = "sk-cli-secret-99999999"
    server = serve(lambda r: Reply.json({"error": {"message": f"bad key {key}"}}, 401))
    env = {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.url}
    result = run_cli("--model", "openai/gpt-test", "hi", env=env)
    assert result.returncode == 1
    assert key not in result.stderr + result.stdout
    assert "HTTP 401" in result.stderr and "Traceback" not in result.stderr


def test_empty_prompt_is_a_usage_error() -> None:
    result = run_cli("--model", "openai/x", stdin="")
    assert result.returncode == 2
    assert "prompt" in result.stderr.lower() and "Traceback" not in result.stderr
