"""Running the `openkoi` CLI in a subprocess for the credential and connect tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-c", "from openkoi.cli import main; main()"]
TESTS = Path(__file__).resolve().parent


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment (HOME and OPENKOI_HOME already point at tmp dirs)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    prefix: list[str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), *CLI, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
    )


def read_only_prefix() -> list[str]:
    """A command prefix under which a chmod 0555 folder really is read-only.

    Root ignores file modes; dropping CAP_DAC_OVERRIDE from the bounding set makes the kernel
    check them again. Other users need nothing.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root without setpriv: cannot make a read-only home")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def spawn_cli(*args: str, env: Mapping[str, str] | None = None) -> Any:
    """The CLI in a real pseudo-terminal (pexpect), 200 columns wide."""
    import pexpect

    full = cli_env({"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})})
    return pexpect.spawn(
        CLI[0], [*CLI[1:], *args], env=full, encoding="utf-8", timeout=30, dimensions=(40, 200)
    )


def finish(child: Any) -> int:
    """Wait for a spawned CLI to end; its exit status."""
    import pexpect

    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return int(child.exitstatus)
