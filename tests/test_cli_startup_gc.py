"""The `openkoi` process starts with the cyclic collector paused and runs the command itself
with it on; a caller's own collector is never left changed."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from _routing_support import stream_answer
from openkoi.cli import _gc, main

# The CLI as the `openkoi` command runs it (no argv), reporting on stderr as it ends: how many
# collections ran between `main()` starting and start-up's end (the collector's resume), whether
# the collector was on when the prompt's event loop started, and whether it is on at the end.
# (After the resume, the price table's background import may trigger one: not start-up's.)
PROBED_CLI = """\
import atexit, gc, json, sys
import anyio
from openkoi.cli import _gc  # before the prompt's module binds resume_collector
seen = {"collections": 0, "on_at_call": None, "resumed": False}
def count(phase, info):
    if phase == "stop" and not seen["resumed"]:
        seen["collections"] += 1
real_resume = _gc.resume_collector
def resume():
    seen["resumed"] = seen["resumed"] or not gc.isenabled()
    real_resume()
_gc.resume_collector = resume
real_run = anyio.run
def run(*args, **kwargs):
    seen["on_at_call"] = gc.isenabled()
    return real_run(*args, **kwargs)
anyio.run = run
atexit.register(lambda: sys.stderr.write(
    "GC " + json.dumps({**seen, "on_at_exit": gc.isenabled()}) + "\\n"))
from openkoi.cli import main
gc.collect()
gc.callbacks.append(count)
main()
"""


def probed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBED_CLI, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("GC "))
    return done, json.loads(line.removeprefix("GC "))


def test_a_prompt_starts_without_collections_and_calls_with_the_collector_on(serve: Any) -> None:
    server = serve(lambda request: stream_answer(["hello ", "there"]))
    env = {"OPENAI_API_KEY": "sk-test-gc-0000", "OPENAI_BASE_URL": server.url + "/v1"}
    done, seen = probed("-m", "openai/gpt-4o-mini", "hi", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello there\n"
    # Config, registry, router and every module they import: not one collection on the way.
    assert seen == {"collections": 0, "on_at_call": True, "on_at_exit": True, "resumed": True}


def test_other_commands_and_failures_run_and_end_with_the_collector_on() -> None:
    cases = (
        (["status"], 0, True),  # its event loop (the providers' checks) runs with it on
        (["-m", "nosuch/model", "hi"], 1, None),  # fails before any call
        (["--version"], 0, None),
    )
    for args, code, on_at_call in cases:
        done, seen = probed(*args, env={})
        assert done.returncode == code, (args, done.stderr)
        assert seen["on_at_call"] is on_at_call, args
        assert seen["on_at_exit"] is True, args


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as the test found it, whatever the test did to it."""
    was_on = gc.isenabled()
    yield
    gc.unfreeze()
    if was_on:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector")
def test_pause_and_resume_leave_a_collector_that_was_off_off() -> None:
    gc.enable()
    _gc.pause_collector()
    assert not gc.isenabled()
    _gc.resume_collector()
    assert gc.isenabled()
    _gc.resume_collector()  # twice: still on, nothing more
    assert gc.isenabled()
    gc.disable()
    _gc.pause_collector()
    _gc.resume_collector()
    assert not gc.isenabled()  # the caller turned it off: it stays off


@pytest.mark.usefixtures("collector")
def test_main_called_with_argv_keeps_the_callers_collector(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gc.enable()
    frozen = gc.get_freeze_count()
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert "openkoi" in capsys.readouterr().out
    assert gc.isenabled() and gc.get_freeze_count() == frozen
