"""Ctrl-C twice during a call (a terminal's Ctrl-C under `uv run` is two SIGINTs a few ms apart):
exit 130 with the one "aborted" line, no traceback, and the call's ledger row still written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _server import Recorded, Reply
from test_cli_exit import rows

CLI = [sys.executable, "-c", "from openkoi.cli import main; main()"]


def _slow_answer(pieces: int = 60, delay: float = 0.25) -> Reply:
    """A stream that takes pieces * delay seconds: the call is still running when Ctrl-C comes."""
    event = {"choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
    return Reply.sse([f"data: {json.dumps(event)}\n\n"] * pieces, chunk_delay=delay)


def _interrupt_twice(child: subprocess.Popen[bytes], gap: float) -> None:
    child.send_signal(signal.SIGINT)
    time.sleep(gap)
    child.send_signal(signal.SIGINT)


@pytest.mark.parametrize("gap", [0.002, 0.02])
@pytest.mark.parametrize(
    "args",
    [
        ["-m", "openai/gpt-4o-mini", "hi"],  # streamed, the click-free path
        ["--temperature", "0", "-m", "openai/gpt-4o-mini", "hi"],  # streamed, through click
        ["--json", "-m", "openai/gpt-4o-mini", "hi"],  # the whole answer
    ],
    ids=["fast", "click", "json"],
)
def test_two_interrupts_end_the_call_once_and_keep_its_ledger_row(
    args: list[str], gap: float, serve: Any, _isolated_home: Path
) -> None:
    arrived = threading.Event()

    def handler(request: Recorded) -> Reply:
        arrived.set()
        return _slow_answer()

    server = serve(handler)
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-sigint-0000", "OPENAI_BASE_URL": server.url}
    with subprocess.Popen(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as child:
        try:
            assert arrived.wait(30), "the request never arrived"
            if "--json" in args:
                time.sleep(0.5)  # the answer is coming, nothing is printed yet
            else:
                assert child.stdout is not None and child.stdout.read(1) == b"w"
            _interrupt_twice(child, gap)
            _, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
    errors = err.decode("utf-8", "replace")
    assert child.returncode == 130, errors
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors
    assert [line for line in errors.splitlines() if line.strip()] == ["error: aborted"]
    recorded = rows(_isolated_home)
    assert len(recorded) == 1, recorded
    assert recorded[0][:2] == ("openai", "gpt-4o-mini")


def test_a_wind_down_that_hangs_still_ends_the_process(_isolated_home: Path) -> None:
    """The later interrupts are ignored only for a while: a wind-down stuck for good ends
    within the bound, as interrupted."""
    hanging = (
        "import anyio, signal, time\n"
        "import openkoi.cli._ask as ask_module\n"
        "from openkoi.cli._sigint import first_interrupt_only\n"
        "async def stuck(*args):\n"
        "    with first_interrupt_only():\n"
        "        try:\n"
        "            await anyio.sleep(60)\n"
        "        finally:\n"
        "            print('winding down', flush=True)\n"
        "            time.sleep(60)\n"
        "ask_module._stream = stuck\n"
        "from openkoi.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-sigint-0000", "OPENAI_BASE_URL": "http://x"}
    with subprocess.Popen(
        [sys.executable, "-c", hanging, "-m", "openai/gpt-4o-mini", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as child:
        try:
            time.sleep(1.5)  # started and waiting in the call
            started = time.monotonic()
            _interrupt_twice(child, 0.01)
            out, err = child.communicate(timeout=30)
            took = time.monotonic() - started
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 130, err
    assert out == b"winding down\n"
    assert err.decode().split() == ["error:", "aborted"]
    assert 2.5 < took < 10
