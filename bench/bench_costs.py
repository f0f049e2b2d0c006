"""`openkoi status --costs` over ledgers of 10^3, 10^5 and 10^6 rows, for each `--since` window.

Run: uv run python bench/bench_costs.py [--rounds 5] [--sizes 1000,100000,1000000]
Target: 10^6 rows within 1.3x of the 10^3-row time, for every window, the same totals.
Rows are spread over the year before now (about 2,700 a day at 10^6), over 6 models and 3
roles, as months of use would leave them. Each figure is the median wall time of a fresh
`openkoi status --costs` process; the sizes are interleaved within each round.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _harness import median, row
from openkoi.usage import Ledger, summarize
from openkoi.usage._db import open_database
from openkoi.usage._ledger import COLUMNS, MIGRATIONS, CallRecord
from openkoi.usage._summary import scan_summary

WINDOWS = ("all", "30d", "7d", "12h", "30m", "date")
YEAR = 365 * 86_400
MODELS = [
    ("openai", "gpt-5.2", 1.75),
    ("openai", "gpt-5-mini", 0.25),
    ("anthropic", "claude-sonnet-4-5", 3.0),
    ("anthropic", "claude-haiku-4-5", 1.0),
    ("gemini", "gemini-2.5-pro", 1.25),
    ("mygateway", "llama-3.3-70b", 0.0),  # unpriced
]


def fill(path: Path, rows: int, now: float) -> float:
    """`rows` calls over the year before `now`; the rollups are built by the migration, whose
    seconds this returns (what the first command after upgrading pays, once)."""
    rng = random.Random(rows)
    conn = open_database(path, MIGRATIONS[:2], timeout=30)
    batch = []
    for i in range(rows):
        provider, model, price = MODELS[i % len(MODELS)]
        tokens_in, tokens_out = rng.randrange(50, 9000), rng.randrange(10, 2000)
        cost = (tokens_in * price + tokens_out * price * 5) / 1e6 if price else None
        batch.append(
            (now - rng.random() * YEAR, provider, model, ("executor", "evaluator", "planner")[i % 3],
             "chat", "ok" if i % 17 else "rate-limited", None, tokens_in, tokens_out,
             rng.randrange(0, 500), 0, 900.0, 300.0, cost, price or None, None, None, None,
             "bench", f"r{i}", 1, 1, f"u{i}", "bench")
        )  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", batch
    )
    conn.execute("COMMIT")
    conn.close()
    started = time.perf_counter()
    with Ledger(path) as ledger:
        ledger.query("SELECT 1")  # opening applies the rollup migration
    return time.perf_counter() - started


def status_costs(home: Path, window: str, now: float) -> float:
    args = ["status", "--costs"]
    if window == "date":
        args += ["--since", time.strftime("%Y-%m-%d", time.gmtime(now - 90 * 86_400))]
    elif window != "all":
        args += ["--since", window]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENKOI_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"status --costs failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def in_process(path: Path, now: float) -> None:
    """The summary alone, new and reference readings, and that they agree to the cent."""
    with Ledger(path) as ledger:
        for since in (None, now - 7 * 86_400, now - 1800):
            new_time = min(_timed(summarize, ledger, since) for _ in range(3))
            old_time = _timed(scan_summary, ledger, since)
            new, old = summarize(ledger, since)["totals"], scan_summary(ledger, since)["totals"]
            same = new["calls"] == old["calls"] and round(new["cost_usd"] or 0, 2) == round(
                old["cost_usd"] or 0, 2
            )
            label = "all" if since is None else f"{(now - since) / 3600:g} h"
            row(
                f"summarize, since {label}",
                f"{new_time * 1000:.1f} ms",
                f"four scans: {old_time * 1000:.0f} ms; totals {'equal' if same else 'DIFFER'}",
            )


def _timed(
    fn: Callable[[Ledger, float | None], object], ledger: Ledger, since: float | None
) -> float:
    started = time.perf_counter()
    fn(ledger, since)
    return time.perf_counter() - started


def write_cost(folder: Path) -> None:
    """What the rollup triggers add to one row's INSERT (`Ledger.record`)."""
    rates = {}
    for label, migrations in (("without rollups", MIGRATIONS[:2]), ("with rollups", MIGRATIONS)):
        path = folder / f"write-{len(migrations)}.db"
        open_database(path, migrations, timeout=5).close()
        ledger = Ledger(path)
        records = [
            CallRecord("openai", "gpt-5.2", "executor", "chat", "ok", time.time(), 1.0)
            for _ in range(3200)
        ]
        for record in records[:200]:
            ledger.record(record)
        started = time.perf_counter()
        for record in records[200:]:
            ledger.record(record)
        rates[label] = (time.perf_counter() - started) / 3000
        ledger.close()
    for label, seconds in rates.items():
        row(f"Ledger.record, {label}", f"{seconds * 1e6:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"openkoi status --costs benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)"
    )
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        homes = {}
        for size in sizes:
            home = Path(tmp) / f"home-{size}"
            home.mkdir()
            migration = fill(home / "usage.db", size, now)
            row(f"rollup migration over {size:,} existing rows", f"{migration:.2f} s", "once")
            homes[size] = home
        samples: dict[tuple[int, str], list[float]] = {}
        for _ in range(args.rounds):
            for window in WINDOWS:
                for size, home in homes.items():
                    samples.setdefault((size, window), []).append(status_costs(home, window, now))
        base = sizes[0]
        print(f"status --costs wall, median of {args.rounds} fresh processes")
        for window in WINDOWS:
            first = median(samples[(base, window)])
            for size in sizes:
                wall = median(samples[(size, window)])
                note = (
                    f"{wall / first:.2f}x the {base:,}-row time, target <= 1.3x"
                    if size != base
                    else ""
                )
                row(f"--since {window}, {size:,} rows", f"{wall * 1000:.0f} ms", note)
        print(f"in process, {sizes[-1]:,} rows")
        in_process(homes[sizes[-1]] / "usage.db", now)
        print("writing one row")
        write_cost(Path(tmp))


if __name__ == "__main__":
    main()
