"""The CLI at the end of a real pipe: a reader that leaves early, a terminal that cannot encode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from _server import Reply
from test_cli_basic import run_cli, sse_answer

CLI = [sys.executable, "-c", "from openkoi.cli import main; main()"]


def _long_answer(pieces: int = 400) -> Reply:
    event = {"choices": [{"index": 0, "delta": {"content": "word " * 200}, "finish_reason": None}]}
    events = [f"data: {json.dumps(event)}\n\n"] * pieces
    events.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    events.append("data: [DONE]\n\n")
    return Reply.sse(events, chunk_delay=0.002)


def test_a_reader_that_leaves_early_is_a_normal_end(serve: Any) -> None:
    """`openkoi ... | head -c1`: exit 0, nothing on stderr, and the stream is not left open."""
    server = serve(lambda request: _long_answer())
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-pipes", "OPENAI_BASE_URL": server.url}
    with subprocess.Popen(
        [*CLI, "-m", "openai/gpt-test", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.read(1)
        child.stdout.close()  # what head does after its byte
        try:
            code = child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        errors = child.stderr.read().decode("utf-8", "replace")
    assert first == b"w"
    assert code == 0, errors
    assert errors == ""


def test_an_answer_the_terminal_cannot_encode(serve: Any) -> None:
    server = serve(lambda request: sse_answer(["héllo ", "wörld ✓"]))
    for encoding, expected in (("ascii", "h?llo w?rld ?\n"), ("latin-1", "héllo wörld ?\n")):
        result = subprocess.run(
            [*CLI, "-m", "openai/gpt-test", "hi"],
            capture_output=True,
            env={
                **os.environ,
                "OPENAI_API_KEY": "sk-test-pipes",
                "OPENAI_BASE_URL": server.url,
                "PYTHONIOENCODING": encoding,
            },
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode(encoding) == expected
        assert result.stderr == b""


def test_an_error_the_terminal_cannot_encode(serve: Any) -> None:
    server = serve(
        lambda request: Reply.json({"error": {"message": "modèle ✗ introuvable"}}, status=404)
    )
    result = run_cli(
        "-m",
        "openai/gpt-test",
        "hi",
        env={
            "OPENAI_API_KEY": "sk-test-pipes",
            "OPENAI_BASE_URL": server.url,
            "PYTHONIOENCODING": "ascii",
        },
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "mod?le ? introuvable" in lines[0], result.stderr
