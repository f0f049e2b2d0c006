"""CLI latency: `openkoi --model openai/gpt-4o-mini "prompt"` in a fresh process against a bare
httpx script in a fresh process, both streaming the same answer from one loopback server.

Run: uv run python bench/bench_cli.py [--rounds 15] [--tokens 20] [--before PYTHON]
Targets: time to the first token <= 1.4x the bare script's; exit within 50 ms of the last
token (the ledger row written on the way out included).

Each round spawns both, interleaved, and reads their stdout as it arrives: "first token" is
spawn to the first byte of the first delta, "exit" is the last delta's last byte to the
process's end. The CLI runs with its own HOME, OPENKOI_HOME and XDG folders (no real config or
key); after the rounds its usage.db must hold one row per run, with its cost. A third process,
the library alone (one provider's `chat_stream`, no CLI, config, router or ledger), shows how
much of the CLI's first token is the library's own start-up. `--before` adds the CLI of
another checkout's interpreter (e.g. `/work/main/.venv/bin/python`) to the same rounds, with
its own HOME (two installs sharing one would each find the other's genai-prices cache stale).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ServerProcess, median, row
from bench_core import sse_body

BARE_SCRIPT = """\
import json, sys
sys.modules.setdefault("trio", None)  # installed here for openkoi's tests, not in a user's env
import httpx
url, key = sys.argv[1], sys.argv[2]
body = {"model": "gpt-4o-mini", "stream": True,
        "messages": [{"role": "user", "content": "say hi"}]}
out = sys.stdout
with httpx.Client() as client:
    with client.stream("POST", url + "/v1/chat/completions", json=body,
                       headers={"authorization": "Bearer " + key}) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            choices = json.loads(data)["choices"]
            if choices and choices[0]["delta"].get("content"):
                out.write(choices[0]["delta"]["content"])
                out.flush()
out.write("\\n")
"""

LIBRARY_SCRIPT = """\
import os, sys
sys.modules.setdefault("httpx._main", None)  # as the CLI does
sys.modules.setdefault("trio", None)  # as the CLI does
import anyio
from openkoi import ChatRequest, Message
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi_providers.openai_compat import OpenAICompatibleProvider
async def main():
    settings = ProviderSettings(id="openai", name="OpenAI", base_url=sys.argv[1] + "/v1",
                                api_key=Secret(sys.argv[2]))
    out = sys.stdout
    request = ChatRequest(model="gpt-4o-mini", messages=[Message.user("say hi")])
    async for chunk in OpenAICompatibleProvider(settings).chat_stream(request):
        if chunk.delta:
            out.write(chunk.delta)
            out.flush()
    out.write("\\n")
anyio.run(main)
"""

KEY = "sk-bench-000000000000"


def timed_process(argv: list[str], env: dict[str, str], first: bytes, last: bytes) -> Sample:
    """Spawn `argv`; the times its stdout first holds `first` and last completes `last`, and
    the time it exited, all from the spawn."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    assert process.stdout is not None
    seen = b""
    first_at = last_at = None
    fd = process.stdout.fileno()
    while True:
        piece = os.read(fd, 65536)
        if not piece:
            break
        seen += piece
        now = time.perf_counter()
        if first_at is None and first in seen:
            first_at = now
        if last_at is None and last in seen:
            last_at = now
    code = process.wait()
    exited = time.perf_counter()
    errors = process.stderr.read() if process.stderr else b""
    if code != 0 or first_at is None or last_at is None:
        raise SystemExit(f"{argv[:3]} failed ({code}): {errors.decode()[-400:]} {seen[-200:]!r}")
    return Sample(first_at - started, exited - last_at, exited - started)


class Sample:
    def __init__(self, first: float, after_last: float, total: float) -> None:
        self.first, self.after_last, self.total = first, after_last, total


def isolated_env(root: Path, url: str) -> dict[str, str]:
    """The environment of both processes: nothing of the real user's config, keys or caches."""
    home = root / "home"
    for sub in ("", ".openkoi", "config", "cache", "data", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
    return {
        **keep,
        "HOME": str(home),
        "OPENKOI_HOME": str(home / ".openkoi"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": url + "/v1",
        "OLLAMA_HOST": "http://127.0.0.1:9",  # no real local server is probed
    }


def ledger_rows(env: dict[str, str]) -> tuple[int, int]:
    """(rows, rows with a cost) in the CLI's usage.db."""
    path = Path(env["OPENKOI_HOME"]) / "usage.db"
    with sqlite3.connect(path) as db:
        rows, costed = db.execute("SELECT count(*), count(cost_usd) FROM calls").fetchone()
    return int(rows), int(costed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--before", metavar="PYTHON", help="also time this interpreter's CLI")
    args = parser.parse_args()
    print(f"openkoi CLI latency benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    print(f"  load average {os.getloadavg()[0]:.2f}")
    first, last = b"tok0 ", f"tok{args.tokens - 1} ".encode()
    with (
        tempfile.TemporaryDirectory() as tmp,
        ServerProcess(stream_body=sse_body(args.tokens)) as server,
    ):
        env = isolated_env(Path(tmp) / "now", server.url)
        cli = ["-c", "from openkoi.cli import main; main()", "-m", "openai/gpt-4o-mini", "hi"]
        commands = {
            "bare httpx script": ([sys.executable, "-c", BARE_SCRIPT, server.url, KEY], env),
            "openkoi library alone": ([sys.executable, "-c", LIBRARY_SCRIPT, server.url, KEY], env),
            "openkoi": ([sys.executable, *cli], env),
        }
        if args.before:
            commands["openkoi before"] = (
                [args.before, *cli],
                isolated_env(Path(tmp) / "before", server.url),
            )
        for argv, argv_env in commands.values():  # warm the page cache; creates usage.db
            timed_process(argv, argv_env, first, last)
        samples: dict[str, list[Sample]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, (argv, argv_env) in commands.items():
                samples[name].append(timed_process(argv, argv_env, first, last))
        homes = [env] + ([commands["openkoi before"][1]] if args.before else [])
        counts = [ledger_rows(home) for home in homes]
        rows, costed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    runs = (args.rounds + 1) * (2 if args.before else 1)
    report(samples, rows, costed, runs)


def report(samples: dict[str, list[Sample]], rows: int, costed: int, runs: int) -> None:
    print(f"median of {len(samples['openkoi'])} interleaved rounds, fresh processes")
    figures = {}
    for name, values in samples.items():
        figures[name] = (
            median([s.first for s in values]),
            median([s.after_last for s in values]),
            median([s.total for s in values]),
        )
        ms = [f"{v * 1000:.1f}" for v in figures[name]]
        row(f"{name}: first token / after last / total", f"{ms[0]} / {ms[1]} / {ms[2]} ms")
    bare, koi = figures["bare httpx script"], figures["openkoi"]
    library = figures["openkoi library alone"]
    row("first token ratio (library alone / bare)", f"{library[0] / bare[0]:.2f}x")
    row("first token ratio (openkoi / bare)", f"{koi[0] / bare[0]:.2f}x", "target <= 1.4x")
    row("openkoi exit after the last token", f"{koi[1] * 1000:.1f} ms", "target <= 50 ms")
    row("total ratio (openkoi / bare)", f"{koi[2] / bare[2]:.2f}x")
    if "openkoi before" in figures:
        before = figures["openkoi before"]
        row("before: first token ratio (before / bare)", f"{before[0] / bare[0]:.2f}x")
        row("before: exit after the last token", f"{before[1] * 1000:.1f} ms")
    row("ledger rows written / with a cost", f"{rows} / {costed}", f"of {runs} openkoi runs")
    if rows != runs or costed != runs:
        raise SystemExit("the ledger did not record every run with its cost")


if __name__ == "__main__":
    main()
