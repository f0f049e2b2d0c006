"""Real Redis and PostgreSQL servers on 127.0.0.1 for the fleet tests, started by the tests.

Missing binaries are installed with apt when we can (root on Debian, as CI is), else the tests
fail loudly: they never skip. PostgreSQL refuses to run as root, so as root the cluster is owned
by and run as the `postgres` user (created by the Debian package).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

_APT = {"redis-server": "redis-server", "postgresql": "postgresql"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _install(package: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{package} is not installed: apt-get install -y {package}", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"could not install {package}: {done.stderr[-2000:]}", pytrace=False)


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        _install(_APT["redis-server"])
        found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is still missing after apt-get install", pytrace=False)
    return found


def postgres_bindir() -> Path:
    def find() -> Path | None:
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[4]))
        for directory in reversed(dirs):
            if Path(directory, "initdb").exists():
                return Path(directory)
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    found = find()
    if found is None:
        _install(_APT["postgresql"])
        found = find()
    if found is None:
        pytest.fail("PostgreSQL's initdb is still missing after apt-get install", pytrace=False)
    return found


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """`redis-server` with no persistence on a free port; `kill()` and `start()` again."""

    def __init__(self) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def flush(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()


class PostgresServer:
    """A throwaway cluster (`initdb` in a temp dir, `pg_ctl start`); `restart()` kills it hard."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="openkoi-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.sockets.mkdir()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr[-2000:]}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://openkoi@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "openkoi",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        return self.start()

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "  # a commit survives a crash
            "-c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# -- "machines": processes with their own OPENKOI_HOME, sharing only the servers ----------------

ROUTER_SCRIPT = """
import sys, time
from pathlib import Path
import anyio
from openkoi._errors import AllCandidatesExhausted
from openkoi._types import ChatRequest, Message
from openkoi.routing import Router

calls, go = int(sys.argv[1]), Path(sys.argv[2])
max_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else None
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)

def warn(message):
    print("warning: " + message, file=sys.stderr, flush=True)

async def main() -> None:
    async with Router.from_config(on_warning=warn) as router:
        for _ in range(calls):
            request = ChatRequest(messages=[Message.user("hi")], max_tokens=max_tokens)
            try:
                answer = await router.chat("executor", request)
            except AllCandidatesExhausted as exc:
                print("exhausted: " + str(exc), flush=True)
            else:
                print("answer: " + answer.content, flush=True)

anyio.run(main)
"""


def machine_home(root: Path, name: str, config: str) -> Path:
    """An OPENKOI_HOME with `config` as its config.toml."""
    home = root / name / ".openkoi"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(config, encoding="utf-8")
    return home


def start_machine(home: Path, *args: str) -> subprocess.Popen[str]:
    import sys

    env = {**os.environ, "OPENKOI_HOME": str(home), "HOME": str(home.parent)}
    return subprocess.Popen(
        [sys.executable, "-c", ROUTER_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish_machines(
    procs: list[subprocess.Popen[str]], timeout: float = 120
) -> list[tuple[str, str]]:
    """(stdout, stderr) of each process, asserting each exited cleanly."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            results.append((out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def fleet_config(
    providers: dict[str, str],
    executor: str,
    fallbacks: Sequence[str] = (),
    *,
    state: str | None = None,
    usage: str | None = None,
    budgets: dict[str, dict[str, int]] | None = None,
    fallback: dict[str, object] | None = None,
    state_timeout: float = 5.0,
) -> str:
    """A config.toml for machines sharing `state` and `usage`. The state store's deadline is
    long: these tests check what machines share, and a machine that falls back to local state
    because a loaded test machine was slow past the default 0.25 s would share nothing."""
    lines = ["[models]", f'executor = "{executor}"']
    if fallbacks:
        lines += [
            "[models.fallback]",
            "executor = [" + ", ".join(f'"{f}"' for f in fallbacks) + "]",
        ]
    for name, url in providers.items():
        lines += [f"[providers.{name}]", f'base_url = "{url}"']
    if state:
        lines += ["[state]", f'url = "{state}"', f"timeout = {state_timeout}"]
    if usage:
        lines += ["[usage]", f'database = "{usage}"']
    for ref, limits in (budgets or {}).items():
        lines += [f'[budgets."{ref}"]'] + [f"{k} = {v}" for k, v in limits.items()]
    if fallback:
        lines += ["[fallback]"] + [
            f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in fallback.items()
        ]
    return "\n".join(lines) + "\n"
