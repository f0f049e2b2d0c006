"""How the `openkoi` process ends: without the interpreter's teardown, yet with its answer
complete, its ledger rows written, its `atexit` hooks run and its exit codes unchanged; and what
a prompt does not import (httpx's own CLI, rich, tomlkit, click, genai-prices once a price is
known)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from _routing_support import error_reply, stream_answer

# The CLI as the `openkoi` command runs it (no argv), with a hook that reports on stderr, as the
# process ends, which of these modules it imported.
WATCHED = (
    "httpx._main", "rich", "tomlkit", "genai_prices", "openkoi.plugins._loader", "click", "trio"
)  # fmt: skip
REPORTING_CLI = (
    "import atexit, json, sys\n"
    f"atexit.register(lambda: sys.stderr.write('IMPORTED ' + json.dumps("
    f"[m for m in {WATCHED!r} if sys.modules.get(m) is not None]) + '\\n'))\n"
    "from openkoi.cli import main\n"
    "main()\n"
)


def openkoi(*args: str, env: dict[str, str], stdout: Any = subprocess.PIPE) -> Any:
    return subprocess.run(
        [sys.executable, "-c", REPORTING_CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def imported(stderr: str) -> list[str]:
    line = next(x for x in stderr.splitlines() if x.startswith("IMPORTED "))
    found: list[str] = json.loads(line.removeprefix("IMPORTED "))
    return found


def rows(home: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / ".openkoi" / "usage.db") as db:
        return db.execute(
            "SELECT provider, model, outcome, input_tokens, output_tokens, cost_usd, price_source"
            " FROM calls ORDER BY id"
        ).fetchall()


def test_a_prompt_to_a_file_is_complete_and_recorded_with_its_price(
    serve: Any, _isolated_home: Path, tmp_path: Path
) -> None:
    """stdout to a file is block-buffered: ending the process early must not lose its tail.
    The price comes from genai-prices the first time, from the disk after."""
    words = [f"word{i} " for i in range(2_000)]
    server = serve(lambda request: stream_answer(words, 12, 2_000))
    env = {"OPENAI_API_KEY": "sk-test-exit-0000", "OPENAI_BASE_URL": server.url + "/v1"}
    answer = tmp_path / "answer.txt"
    for run in range(2):
        with answer.open("w") as out:
            done = openkoi("-m", "openai/gpt-4o-mini", "hi", env=env, stdout=out)
        assert done.returncode == 0, done.stderr
        assert answer.read_text() == "".join(words) + "\n"
        found = imported(done.stderr)  # the atexit hook ran
        assert "httpx._main" not in found and "rich" not in found and "tomlkit" not in found
        assert "trio" not in found  # installed for the tests; the CLI's loop is asyncio's
        assert "openkoi.plugins._loader" not in found
        assert "click" not in found  # the plain prompt's own parser (openkoi.cli._fast)
        assert ("genai_prices" in found) == (run == 0)
    first, second = rows(_isolated_home)
    assert first == second
    assert first[:5] == ("openai", "gpt-4o-mini", "ok", 12, 2_000)
    assert first[5] is not None and first[5] > 0 and first[6].startswith("genai-prices:openai/")


def test_a_fallback_records_both_attempts_and_a_failure_keeps_its_exit_code(
    serve: Any, _isolated_home: Path
) -> None:
    """The second row of a process goes through the ledger's writer thread; the process ends
    only once it is written."""
    primary = serve(lambda request: error_reply(503))
    backup = serve(lambda request: stream_answer(["from ", "backup"]))
    config = _isolated_home / ".openkoi" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[providers.primary]\nbase_url = "{primary.url}/v1"\n'
        f'[providers.backup]\nbase_url = "{backup.url}/v1"\n'
        '[models]\nexecutor = "primary/m1"\n[models.fallback]\nexecutor = ["backup/m2"]\n'
    )
    done = openkoi("hi", env={})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from backup\n"
    assert "tomlkit" not in imported(done.stderr)  # config.toml is read without it
    assert [(r[0], r[2]) for r in rows(_isolated_home)] == [
        ("primary", "overloaded"),
        ("backup", "ok"),
    ]

    refusing = serve(lambda request: error_reply(401))
    config.write_text(f'[providers.refusing]\nbase_url = "{refusing.url}/v1"\n')
    failed = openkoi("-m", "refusing/m3", "hi", env={})
    assert failed.returncode == 1
    errors = [x for x in failed.stderr.splitlines() if not x.startswith("IMPORTED ")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in failed.stderr
    assert len(rows(_isolated_home)) == 3


def test_a_usage_error_keeps_click_s_exit_code(_isolated_home: Path) -> None:
    done = openkoi("--max-tokens", "0", "hi", env={})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--max-tokens" in done.stderr
    imported(done.stderr)  # the atexit hook ran on this path too
