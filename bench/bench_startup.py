"""Start-up with listed plugins a prompt does not use: a CLI prompt to a native provider with 0
and with N plugins in `[plugins] wasm`, in fresh processes, interleaved.

Run: uv run python bench/bench_startup.py [--plugins 20] [--rounds 15]
Target: N = 20 listed plugins cost <= 5% wall and <= 10 MiB peak RSS (VmHWM) over none.
The plugins are copies of the Cohere example (componentize-py, about 18.5 MB each) with their
own ids, all approved beforehand, as on a machine that has used them. Start-up registers them
from the id cache (`openkoi/plugins/_listing.py`) once a start has read their headers; the
"cache cold" rows remove that cache before each start, as after a plugin file changed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ServerProcess, median, row
from bench_core import sse_body

# The CLI in this interpreter, reporting its own peak RSS (kB) on stderr as it exits.
MEASURED_CLI = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
    "from openkoi.cli import main\n"
    "main()\n"
)


def make_plugins(folder: Path, count: int) -> list[Path]:
    """`count` copies of the Cohere example, each with its own id, approved."""
    from _plugins import cohere
    from openkoi.plugins._approvals import check_approval
    from openkoi.plugins._manifest import embed_manifest, parse_manifest, read_plugin_file

    source = cohere()
    wasm = source.read_bytes()
    manifest = json.loads(read_plugin_file(source).manifest.to_json())
    paths = []
    for i in range(count):
        manifest["id"] = f"cohere{i}"
        path = folder / f"cohere{i}.wasm"
        path.write_bytes(embed_manifest(wasm, parse_manifest(manifest, "bench")))
        check_approval(read_plugin_file(path))
        paths.append(path)
    return paths


def write_config(home: Path, url: str, plugins: list[Path]) -> None:
    lines = [
        f"[plugins]\nwasm = {json.dumps([str(p) for p in plugins])}\n",
        f'[providers.local]\nbase_url = "{url}/v1"\ndefault_model = "m"\n',
    ]
    (home / "config.toml").write_text("".join(lines))


def one_prompt(home: Path, cold: bool = False) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `openkoi --model local/m hi` in a fresh process; `cold`:
    without the plugin id cache a previous start wrote."""
    if cold:
        (home / "cache" / "plugin-ids.json").unlink(missing_ok=True)
    env = {**os.environ, "OPENKOI_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_CLI, "--model", "local/m", "hi"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the prompt failed: {done.stderr.strip()}")
    peak = next(int(x.split()[1]) for x in done.stderr.splitlines() if x.startswith("PEAK "))
    return wall, peak / 1024


def registry_cost(plugins: list[Path], runs: int = 20) -> None:
    """`ProviderRegistry(config)` in this process: what listing the plugins costs at start-up,
    without the noise of a whole process."""
    from openkoi._config import validate_config
    from openkoi._registry import ProviderRegistry
    from openkoi.plugins._listing import cache_path as listing_cache

    listed = validate_config({"plugins": {"wasm": [str(p) for p in plugins]}})
    configs = {"none": validate_config({}), "listed": listed, "listed, cache cold": listed}
    seconds: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(runs):
        for name, config in configs.items():
            if name == "listed, cache cold":
                listing_cache().unlink(missing_ok=True)
            started = time.perf_counter()
            ProviderRegistry(config)
            seconds[name].append(time.perf_counter() - started)
    none = median(seconds["none"])
    row("ProviderRegistry(config), none listed", f"{none * 1000:.2f} ms", "in process")
    for name in ("listed", "listed, cache cold"):
        cost = median(seconds[name])
        row(
            f"ProviderRegistry(config), {len(plugins)} {name}",
            f"{cost * 1000:.2f} ms",
            f"{(cost - none) / len(plugins) * 1000:.2f} ms per plugin",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plugins", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"openkoi start-up benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(stream_body=sse_body(20)) as server:
        root = Path(tmp)
        homes = {"none": root / "none", "listed": root / "listed"}
        for home in homes.values():
            home.mkdir()
        os.environ["OPENKOI_HOME"] = str(homes["listed"])  # where make_plugins approves
        plugins = make_plugins(root, args.plugins)
        write_config(homes["none"], server.url, [])
        write_config(homes["listed"], server.url, plugins)
        for home in homes.values():
            one_prompt(home)  # warm the page cache and the ledger file
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in [*homes, "cold"]}
        for _ in range(args.rounds):
            for name, home in homes.items():
                samples[name].append(one_prompt(home))
            samples["cold"].append(one_prompt(homes["listed"], cold=True))
        report(samples, args.plugins)
        registry_cost(plugins)


def report(samples: dict[str, list[tuple[float, float]]], count: int) -> None:
    wall = {k: median([s[0] for s in v]) for k, v in samples.items()}
    peak = {k: median([s[1] for s in v]) for k, v in samples.items()}
    rounds = len(samples["none"])
    print(f"prompt to a native provider, median of {rounds} interleaved fresh processes")
    row("no plugins listed: wall", f"{wall['none'] * 1000:.1f} ms")
    row(f"{count} plugins listed: wall", f"{wall['listed'] * 1000:.1f} ms")
    ratio = wall["listed"] / wall["none"]
    row("wall ratio", f"{ratio:.3f}x", "target <= 1.05x")
    row("no plugins listed: peak RSS (VmHWM)", f"{peak['none']:.1f} MiB")
    row(f"{count} plugins listed: peak RSS (VmHWM)", f"{peak['listed']:.1f} MiB")
    row("peak RSS added", f"{peak['listed'] - peak['none']:+.1f} MiB", "target <= 10 MiB")
    row(f"{count} plugins listed, cache cold: wall", f"{wall['cold'] * 1000:.1f} ms")
    row("wall ratio, cache cold", f"{wall['cold'] / wall['none']:.3f}x", "a start after a change")


if __name__ == "__main__":
    main()
