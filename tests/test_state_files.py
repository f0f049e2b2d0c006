"""openkoi's own files when they are damaged: one line naming the file, and every command that
does not need that file still works. And atomic writes leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from openkoi._fileio import STALE_TEMP_SECONDS, atomic_write_bytes, atomic_write_text
from test_cli_basic import run_cli, sse_answer

BAD = b"\xff\xfe\x00not \xc3( text"


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _home() -> Path:
    return Path(os.environ["OPENKOI_HOME"])


# file, whether a prompt to openai/gpt-test (key in the environment) needs it
STATE_FILES = [
    ("config.toml", True),
    ("auth.json", False),
    ("approvals.json", False),
    ("cooldowns.db", False),
    ("usage.db", False),
    ("credentials/groq.key", False),
]


@pytest.mark.parametrize(("name", "needed"), STATE_FILES)
def test_a_damaged_state_file_is_one_line_and_the_prompt_still_answers(
    serve: Any, name: str, needed: bool
) -> None:
    path = _home() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BAD)
    server = serve(lambda request: sse_answer(["Hello", " there"]))
    env = {"OPENAI_API_KEY": "sk-test-state-files", "OPENAI_BASE_URL": server.url}
    result = run_cli("-m", "openai/gpt-test", "hi", env=env)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    said = _lines(result.stderr)
    assert len(said) <= 1, result.stderr
    assert all(str(path) in line for line in said), result.stderr
    if needed:
        assert result.returncode == 1 and said and "not valid UTF-8" in said[0]
        assert server.requests == []
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout == "Hello there\n"
    assert path.read_bytes() == BAD  # left for the user to look at


@pytest.mark.parametrize(("name", "needed"), STATE_FILES)
@pytest.mark.parametrize("command", [("connect", "status"), ("status",)])
def test_a_damaged_state_file_in_the_status_commands(
    name: str, needed: bool, command: tuple[str, ...]
) -> None:
    path = _home() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BAD)
    result = run_cli(*command, env={"OPENAI_API_KEY": "sk-test-state-files"})
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "ExceptionGroup" not in result.stderr
    said = _lines(result.stderr)
    assert len(said) <= 1, result.stderr
    assert all(str(path) in line for line in said), result.stderr
    assert result.returncode == (1 if needed else 0), result.stderr
    if name == "auth.json":
        assert len(said) == 1 and "not valid UTF-8" in said[0]


def test_an_unreadable_saved_key_is_named_and_other_keys_still_work(serve: Any) -> None:
    bad = _home() / "credentials" / "openai.key"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(BAD)
    (_home() / "credentials" / "mine.key").write_text("sk-mine-0123456789\n")
    server = serve(lambda request: sse_answer(["ok"]))
    (_home() / "config.toml").write_text(
        f'[providers.mine]\nbase_url = "{server.url}"\ndefault_model = "m"\n'
    )
    result = run_cli("-m", "mine/m", "hi", env={"OPENAI_BASE_URL": server.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert server.requests[0].headers["authorization"] == "Bearer sk-mine-0123456789"
    failed = run_cli("-m", "openai/gpt-test", "hi", env={"OPENAI_BASE_URL": server.url})
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert str(bad) in failed.stderr


# -- atomic writes ------------------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_stale_temp_files_of_the_target_are_swept(tmp_path: Path) -> None:
    tmp_path = tmp_path / "state"
    target = tmp_path / "config.toml"
    stale = tmp_path / ".config.toml.k3j4h5.tmp"
    fresh = tmp_path / ".config.toml.a1b2c3.tmp"  # a concurrent writer's, right now
    other = tmp_path / ".auth.json.z9y8x7.tmp"  # another file's
    tmp_path.mkdir()
    for path in (stale, fresh, other):
        path.write_text("half")
    _age(stale, STALE_TEMP_SECONDS + 60)
    _age(other, STALE_TEMP_SECONDS + 60)
    atomic_write_text(target, "x = 1\n")
    assert target.read_text() == "x = 1\n"
    assert not stale.exists()
    assert fresh.exists() and other.exists()


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    tmp_path = tmp_path / "state"
    tmp_path.mkdir()
    target = tmp_path / "auth.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auth.json"]


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from openkoi import _fileio

    def stall(fd):
        print("writing", flush=True)
        time.sleep(60)

    _fileio.os.fsync = stall
    _fileio.atomic_write_text(Path(sys.argv[1]), "new = true\\n")
    """
)


def test_a_write_killed_midway_is_cleaned_up_by_a_later_write(tmp_path: Path) -> None:
    tmp_path = tmp_path / "state"
    tmp_path.mkdir()
    target = tmp_path / "config.toml"
    target.write_text("old = true\n")
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    ) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            writer.send_signal(signal.SIGKILL)
        finally:
            if writer.poll() is None:
                writer.kill()
            writer.wait(timeout=10)
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].name.startswith(".config.toml.")
    assert target.read_text() == "old = true\n"
    _age(left[0], STALE_TEMP_SECONDS + 1)
    atomic_write_text(target, "newer = true\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
    assert target.read_text() == "newer = true\n"
