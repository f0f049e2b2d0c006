"""stdout that cannot take the output: a reader gone before anything was written (exit 0,
silently, whatever prints: rich tables, click, the prompt) and a full disk (one line, exit 1),
while a real bug is still an internal error (exit 70)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_basic import sse_answer

CLI = [sys.executable, "-c", "from openkoi.cli import main; main()"]
FULL = Path("/dev/full")


def _env(server: Any) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-test-out-0000", "OPENAI_BASE_URL": server.url}


def _run(args: list[str], stdout: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
    )


COMMANDS = [
    ["status"],  # rich tables
    ["status", "--costs"],  # rich
    ["status", "--json"],  # click.echo
    ["--help"],  # click, while the context is made
    ["status", "--help"],
    ["-m", "openai/gpt-x", "hi"],  # the streamed prompt
    ["-m", "openai/gpt-x", "--json", "hi"],  # the whole answer
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_reader_gone_before_the_first_byte_is_a_normal_end(args: list[str], serve: Any) -> None:
    """The read end closed before the command writes: every write is EPIPE (rich used to exit 1)."""
    server = serve(lambda request: sse_answer(["hello ", "there"]))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = _run(args, write_end, _env(server))
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_full_disk_is_one_line_and_exit_1(args: list[str], serve: Any) -> None:
    server = serve(lambda request: sse_answer(["hello ", "there"]))
    with FULL.open("w") as full:
        result = _run(args, full, _env(server))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == ["error: cannot write the output: No space left on device"]


RAISING = (
    "import errno, openkoi.cli._status as status\n"
    "def broken(*args, **kwargs):\n"
    "    raise {error}\n"
    "status.setup_report = broken\n"
    "from openkoi.cli import main\n"
    "main()\n"
)


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "error",
    ["OSError(errno.ENOSPC, 'No space left on device')", "FileNotFoundError(2, 'gone')"],
)
def test_an_os_error_that_is_not_the_output_is_still_a_bug(error: str) -> None:
    """Only a failure to write stdout is the machine's: an OSError raised anywhere else is
    exit 70, even when stdout is a full disk too."""
    with FULL.open("w") as full:
        result = subprocess.run(
            [sys.executable, "-c", RAISING.format(error=error), "status"],
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert result.returncode == 70, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: internal error: "), result.stderr
