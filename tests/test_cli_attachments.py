"""`openkoi -a FILE --schema JSON`, `--json`, `-o key=value` and `--reasoning`, run as a user
runs them (a subprocess) against loopback servers speaking each built-in provider's protocol."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from _server import Recorded, Reply
from test_cli_basic import run_cli, sse_answer
from test_typed_failures import WIRES

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PNG64 = base64.b64encode(PNG).decode()
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDOPENKOITEST00001",
    "AWS_SECRET_ACCESS_KEY": "openkoi/test/secret/0123456789",
    "AWS_REGION": "us-west-2",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _image_in(name: str, body: dict[str, Any]) -> bool:
    text = json.dumps(body)
    return PNG64 in text


def _schema_in(name: str, body: dict[str, Any]) -> bool:
    if name == "anthropic":
        return body["output_config"]["format"]["schema"]["required"] == ["n"]
    if name == "openai":
        return body["response_format"]["json_schema"]["schema"]["required"] == ["n"]
    if name == "google":
        return body["generationConfig"]["responseJsonSchema"] == SCHEMA
    if name == "ollama":
        return body["format"] == SCHEMA
    if name == "bedrock":
        return body["toolConfig"]["toolChoice"] == {"tool": {"name": "structured_output"}}
    raise AssertionError(name)


CASES = {
    "anthropic": (
        "anthropic/claude-sonnet-4-5",
        {"ANTHROPIC_API_KEY": "sk-ant-cli-0123456789"},
        "ANTHROPIC_BASE_URL",
    ),
    "openai": ("openai/gpt-4o", {"OPENAI_API_KEY": "sk-cli-0123456789"}, "OPENAI_BASE_URL"),
    "google": (
        "google/gemini-2.5-flash",
        {"GEMINI_API_KEY": "gm-cli-0123456789"},
        "GOOGLE_BASE_URL",
    ),
    "bedrock": (
        "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        AWS,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    ),
    "ollama": ("ollama/llama3.2-vision", {}, "OLLAMA_HOST"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_attach_and_schema_reach_the_wire(name: str, serve: Any, tmp_path: Path) -> None:
    model, env, url_env = CASES[name]
    wire = WIRES[name]
    bodies: list[dict[str, Any]] = []

    def handler(request: Recorded) -> Reply:
        bodies.append(request.json())
        return wire.frame(wire.events)

    server = serve(handler)
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    url = f"{server.url}/v1" if name == "openai" else server.url
    result = run_cli(
        "-m", model, "-a", str(photo), "--schema", json.dumps(SCHEMA), "what is this?",
        env={**env, url_env: url},
    )  # fmt: skip
    assert bodies, result.stderr
    assert _image_in(name, bodies[-1]), bodies[-1]
    assert _schema_in(name, bodies[-1]), bodies[-1]
    # the canned answer is no JSON: one clear line, the raw text kept out of a traceback
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "schema" in result.stderr or "JSON" in result.stderr


def _json_answer(request: Recorded) -> Reply:
    return sse_answer(['{"n": ', "42}"])


def test_schema_prints_the_validated_json(serve: Any, tmp_path: Path) -> None:
    server = serve(_json_answer)
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    result = run_cli(
        "-m", "openai/gpt-4o", "--schema", str(schema_file), "a number",
        env={"OPENAI_API_KEY": "sk-cli-0123456789", "OPENAI_BASE_URL": f"{server.url}/v1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"n": 42}


def test_json_options_and_reasoning(serve: Any) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: Recorded) -> Reply:
        bodies.append(request.json())
        return sse_answer(["hello"])

    server = serve(handler)
    result = run_cli(
        "-m", "openai/gpt-4o", "--json", "-o", "seed=7", "-o", "user=alice",
        "--reasoning", "high", "hi",
        env={"OPENAI_API_KEY": "sk-cli-0123456789", "OPENAI_BASE_URL": f"{server.url}/v1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["text"] == "hello" and out["stop_reason"] == "end_turn"
    assert set(out) >= {"tool_calls", "usage", "cost_usd", "model"}
    assert bodies[-1]["seed"] == 7 and bodies[-1]["user"] == "alice"
    assert bodies[-1]["reasoning_effort"] == "high"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "/nonexistent/photo.png"], "cannot read attachment"),
        (["--schema", "{not json"], "not JSON"),
        (["-o", "novalue"], "key=value"),
        (["--reasoning", "lots"], "low, medium, high"),
    ],
)
def test_bad_flags_are_one_line_errors(args: list[str], message: str) -> None:
    result = run_cli("-m", "openai/gpt-4o", *args, "hi", env={"OPENAI_API_KEY": "sk-x-0123456789"})
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["http://", "http:///photo.png", "http://exa mple.com/a.png"])
def test_a_malformed_attachment_url_is_the_callers_error(url: str, serve: Any) -> None:
    """Not "openai: could not reach the server" (transient, cooling the model down): a
    permanent error naming the attachment, and the model still answers the next prompt."""
    bodies: list[dict[str, Any]] = []

    def handler(request: Recorded) -> Reply:
        bodies.append(request.json())
        return sse_answer(["hello"])

    server = serve(handler)
    env = {"OPENAI_API_KEY": "sk-cli-0123456789", "OPENAI_BASE_URL": f"{server.url}/v1"}
    result = run_cli("-a", url, "-m", "openai/gpt-x", "hello there", env=env)
    assert result.returncode != 0
    assert "attachment" in result.stderr and "not a URL" in result.stderr, result.stderr
    assert "could not reach" not in result.stderr and "cooling" not in result.stderr
    assert "Traceback" not in result.stderr
    assert bodies == []
    again = run_cli("-m", "openai/gpt-x", "hello there", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "hello"
