"""The plain prompt's click-free parser (`openkoi.cli._fast`) against click itself: whatever it
accepts, click reads the same way, and whatever else it leaves to click."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
from _server import Recorded, Reply
from hypothesis import given, settings
from hypothesis import strategies as st
from openkoi.cli import _prompt
from openkoi.cli._ask import Ask
from openkoi.cli._fast import simple_prompt
from openkoi.cli._group import cli


def read_by_click(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Ask:
    """The Ask that `openkoi <args>` hands over after click parsed and checked it."""
    seen: list[Ask] = []
    with monkeypatch.context() as patch:
        patch.setattr(_prompt, "ask", seen.append)
        cli.main(args=args, prog_name="openkoi", standalone_mode=False)
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    ("args", "model", "system", "text"),
    [
        (["hi"], None, None, "hi"),
        (["-m", "openai/gpt-4o-mini", "hi", "there"], "openai/gpt-4o-mini", None, "hi there"),
        (["--model=a/b", "hi"], "a/b", None, "hi"),
        (["hi", "--model", "a/b"], "a/b", None, "hi"),  # options may follow the words
        (["-m", "a/b", "-m", "c/d", "hi"], "c/d", None, "hi"),  # the last one wins
        (["-s", "be brief", "what is TCP?"], None, "be brief", "what is TCP?"),
        (["--system=", "hi"], None, "", "hi"),
        (["two words", "and more"], None, None, "two words and more"),
        (["hi", "status"], None, None, "hi status"),  # two words are a prompt
    ],
)
def test_plain_prompts_are_read_without_click(
    args: list[str],
    model: str | None,
    system: str | None,
    text: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = simple_prompt(args)
    assert asked is not None
    assert (asked.text, asked.model, asked.system) == (text, model, system)
    assert read_by_click(args, monkeypatch) == asked


def test_roles_are_read_without_click() -> None:
    asked = simple_prompt(["--executor", "a/b", "--planner=c/d", "hi"])
    assert asked is not None
    assert asked.roles == {"executor": "a/b", "evaluator": None, "planner": "c/d", "embedder": None}


@pytest.mark.parametrize(
    "args",
    [
        [],  # the prompt comes from stdin, or click says how to give one
        ["-m", "a/b"],  # no words
        ["-m"],  # a missing value is click's to report
        ["hi", "-m"],
        ["-m", "-x", "hi"],  # a value that looks like an option
        ["-mfoo", "hi"],  # attached short values: click's spelling
        ["-s=x", "hi"],
        ["status"],  # a command
        ["run", "hi"],
        ["stauts"],  # one word that looks like a command is refused by click
        ["help"],
        ["--", "status"],  # a prompt on purpose
        ["-h"],
        ["--help", "hi"],
        ["--version"],
        ["--temperature", "0.5", "hi"],  # checked by click
        ["--max-tokens", "0", "hi"],
        ["-o", "k=v", "hi"],
        ["--json", "hi"],
        ["-a", "file.png", "hi"],
        ["-", "hi"],
        ["-5", "degrees"],
        ["--modle", "a/b", "hi"],  # a misspelt option: click names it
    ],
)
def test_everything_else_is_left_to_click(args: list[str]) -> None:
    assert simple_prompt(args) is None


TOKENS = st.sampled_from(
    [
        "hi",
        "two words",
        "status",
        "stauts",
        "run",
        "-m",
        "--model",
        "--model=x/y",
        "a/b",
        "-s",
        "--system",
        "--system=be brief",
        "--executor",
        "--evaluator=e/f",
        "--embedder",
        "-",
        "--",
        "-h",
        "--temperature",
        "0.5",
        "-o",
        "k=v",
        "-mfoo",
        "",
        " ",
        "--=x",
        "-m=a/b",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=7))
def test_what_the_fast_path_accepts_click_reads_the_same_way(args: list[str]) -> None:
    asked = simple_prompt(args)
    if asked is None:
        return
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert read_by_click(args, monkeypatch) == asked


def test_click_and_the_fast_path_agree_on_a_full_plain_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["-m", "a/b", "--system", "s", "--executor=e/x", "question", "--embedder", "m/e"]
    asked = simple_prompt(args)
    assert asked is not None
    clicked: Any = read_by_click(args, monkeypatch)
    assert clicked == asked
    assert clicked.roles["executor"] == "e/x" and clicked.roles["embedder"] == "m/e"


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "openai/gpt-4o-mini", "hi"],  # the click-free path
        ["--temperature", "0", "-m", "openai/gpt-4o-mini", "hi"],  # through click
    ],
)
def test_ctrl_c_during_a_prompt_ends_the_same_way_on_both_paths(
    serve: Any, args: list[str]
) -> None:
    arrived = threading.Event()

    def hang(request: Recorded) -> Reply:
        arrived.set()
        return Reply(delay=3600)

    server = serve(hang)
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-test-ctrl-c-0000",
        "OPENAI_BASE_URL": server.url + "/v1",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert arrived.wait(30), "the request never arrived"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert out == ""
    assert [line for line in err.splitlines() if line.strip()] == ["error: aborted"]
