"""Values at the edges of what the CLI's options take: refused with a usage error or a clear
reason, never an internal error, and never quietly read as something else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _server import Recorded, Reply
from test_cli_basic import run_cli, sse_answer

CLI = [sys.executable, "-c", "from openkoi.cli import main; main()"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("window", "since"),
    [
        ("99999999999d", "1970-01-01T00:00:00Z"),  # longer than the years since 1970
        ("99999999999999999999999999999w", "1970-01-01T00:00:00Z"),
        ("0001-01-01", "0001-01-01T00:00:00Z"),
    ],
)
def test_a_window_longer_than_the_ledger_counts_everything(window: str, since: str) -> None:
    result = run_cli("status", "--costs", "--since", window, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["since"] == since


@pytest.mark.parametrize("when", ["9999-12-31T23:00-05:00", "0001-01-01T00:30+01:00"])
def test_a_date_outside_the_calendar_is_a_usage_error(when: str) -> None:
    result = run_cli("status", "--costs", "--since", when)
    assert result.returncode == 2, result.stderr
    assert "--since" in result.stderr and "out of range" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "inf"], "--temperature"),
        (["--temperature", "1e999"], "--temperature"),
        (["--temperature", "-1"], "--temperature"),
        (["-o", "top_p=NaN"], "-o"),
        (["-o", "top_p=Infinity"], "-o"),
        (["-o", 'x={"a": [1e999]}'], "-o"),
        (["--reasoning", "²"], "--reasoning"),  # a digit to str.isdigit, not to int()
    ],
)
def test_numbers_no_request_can_carry_are_usage_errors(
    args: list[str], option: str, serve: Any
) -> None:
    server = serve(lambda request: sse_answer(["never"]))
    env = {"OPENAI_API_KEY": "sk-test-args-0000", "OPENAI_BASE_URL": server.url}
    result = run_cli("-m", "openai/gpt-x", *args, "hello there", env=env)
    assert result.returncode == 2, result.stderr
    assert option in _lines(result.stderr)[-1], result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["-m", ""], "--model"),  # the click-free path
        (["--model="], "--model"),
        (["-m", "", "--temperature", "0"], "--model"),  # through click
        (["--executor", ""], "--executor"),
        (["--executor=", "--temperature", "0"], "--executor"),
    ],
)
def test_an_empty_model_is_refused_like_any_bad_ref(
    args: list[str], option: str, serve: Any
) -> None:
    """Not the default model: `-m ""` is a mistake (an unset variable), refused as `-m nope`."""
    server = serve(lambda request: sse_answer(["the default answered"]))
    env = {"OPENAI_API_KEY": "sk-test-args-0000", "OPENAI_BASE_URL": server.url}
    result = run_cli(*args, "hello there", env=env)
    nope = run_cli(*[("nope" if a == "" else a) for a in args], "hello there", env=env)
    assert result.returncode == nope.returncode == 1, result.stderr
    assert _lines(result.stderr) == [
        f"error: {option}: model reference '' must be written as provider/model"
        + _lines(nope.stderr)[0].split("must be written as provider/model", 1)[1]
    ]
    assert result.stdout == "" and server.requests == []


def _connect(key: bytes, stdin: str = "utf-8:surrogateescape") -> Any:
    """`connect openai --key-stdin` with `key`; stdin decoded as `stdin` says."""
    return subprocess.run(
        [*CLI, "connect", "openai", "--key-stdin"],
        input=key,
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": stdin},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (b"sk-abc\x00def123456\n", "it has control or non-printable characters"),
        (b"sk-abc\x1bdef123456\n", "it has control or non-printable characters"),
        (b"sk-abc\xffdef123456\n", "it has control or non-printable characters"),
        (b"sk-" + b"a" * 5_000_000 + b"\n", "it is longer than 4,096 characters"),
        (b"sk-abc def\n", "it has spaces"),
    ],
    ids=["nul", "escape", "xff", "5mb", "space"],
)
def test_a_key_that_cannot_be_one_is_refused_with_its_reason(
    key: bytes, reason: str, _isolated_home: Path
) -> None:
    result = _connect(key)
    errors = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, errors
    assert _lines(errors) == [f"error: that does not look like an API key for OpenAI ({reason})"]
    assert not (_isolated_home / ".openkoi" / "auth.json").exists()


def test_a_key_of_the_longest_length_is_saved(_isolated_home: Path) -> None:
    result = _connect(b"a" * 4096 + b"\n")
    assert result.returncode == 0, result.stderr
    assert b"a" * 4096 in (_isolated_home / ".openkoi" / "auth.json").read_bytes()


def test_a_key_that_is_not_text_on_a_strict_stdin_is_refused(_isolated_home: Path) -> None:
    """With strict UTF-8 stdin, \\xff is not decoded at all: refused, not an internal error."""
    result = _connect(b"sk-abc\xffdef123456\n", stdin="utf-8:strict")
    errors = result.stderr.decode()
    assert result.returncode == 1, errors
    assert _lines(errors) == [
        "error: that does not look like an API key for OpenAI (it has bytes that are not text)"
    ]


def test_the_first_request_has_the_temperature(serve: Any) -> None:
    """The finite values still go through."""
    seen: list[Recorded] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request)
        return sse_answer(["ok"])

    server = serve(handler)
    env = {"OPENAI_API_KEY": "sk-test-args-0000", "OPENAI_BASE_URL": server.url}
    result = run_cli("-m", "openai/gpt-x", "--temperature", "0.5", "-o", "top_p=0.9", "hi", env=env)
    assert result.returncode == 0, result.stderr
    body = seen[0].json()
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9
