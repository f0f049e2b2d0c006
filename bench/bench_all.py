"""Every performance target in one run: each benchmark script runs in turn, in its own process
(with its own servers), its output shown as it comes; at the end, every line that names a
target is printed again, under the script it came from.

Run: uv run python bench/bench_all.py [--only router,plugins]
The scripts keep their own defaults (see each one's docstring); this takes several minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, script and arguments, what it measures); the order of issue 13's targets.
SUITE: list[tuple[str, list[str], str]] = [
    ("concurrency", ["bench_concurrency.py"], "500 and 1,000 concurrent streams"),
    ("router", ["bench_router.py"], "Router.chat and Router.chat_stream"),
    ("plugins", ["bench_plugins.py", "--sections", "cde"], "plugin chat, streaming, pool"),
    ("startup", ["bench_startup.py"], "20 listed plugins a prompt does not use"),
    ("costs", ["bench_costs.py"], "status --costs at 10^3, 10^5 and 10^6 rows"),
    ("cli", ["bench_cli.py"], "CLI first token and exit"),
    ("streaming", ["bench_streaming.py"], "streaming per wire protocol"),
]


def run(name: str, argv: list[str]) -> tuple[list[str], float, int]:
    """Run one script, echoing its output; its lines, seconds and exit code."""
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(HERE / argv[0]), *argv[1:]],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    return lines, time.monotonic() - started, process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated names: " + ", ".join(n for n, *_ in SUITE))
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {name for name, *_ in SUITE}
    unknown = wanted - {name for name, *_ in SUITE}
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(sorted(unknown))}")
    summary: list[tuple[str, str, list[str], float, int]] = []
    for name, argv, what in SUITE:
        if name in wanted:
            lines, seconds, code = run(name, argv)
            summary.append((name, what, [ln for ln in lines if "target" in ln], seconds, code))
    print("\n=== every target, as measured in this run")
    failed = False
    for name, what, targets, seconds, code in summary:
        status = "" if code == 0 else f", FAILED with exit code {code}"
        print(f"{name} ({what}; {seconds:.0f} s{status})")
        for line in targets:
            print(line)
        failed = failed or code != 0
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
