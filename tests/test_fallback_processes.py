"""Cooldowns and ledger rows shared by separate processes routing at the same time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from _routing_support import completion, config_toml, error_reply, write_config
from _server import LoopbackServer, Recorded, Reply
from openkoi._types import ChatRequest, Message
from openkoi.routing import Router
from openkoi.usage import Ledger

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]

_ROUTE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import anyio
    from openkoi._types import ChatRequest, Message
    from openkoi.routing import Router

    calls, go = int(sys.argv[1]), Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.005)

    async def main() -> None:
        async with Router.from_config() as router:
            for _ in range(calls):
                answer = await router.chat("executor", ChatRequest(messages=[Message.user("hi")]))
                print(answer.content)

    anyio.run(main)
    """
)


def start_routers(count: int, calls: int, go: Path) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", _ROUTE, str(calls), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for code, _, err in results:
        assert code == 0 and "Warning" not in err, err
    return [out for _, out, _ in results]


async def test_two_processes_write_the_ledger_at_once(
    serve: Serve, _isolated_home: Path, tmp_path: Path
) -> None:
    # Retry-After: 0 never leaves the primary cooling, so every call is two attempts.
    primary = serve(lambda r: error_reply(429, {"retry-after": "0"}))
    slow_ok = completion("ok", 20, 10)
    slow_ok.delay = 0.01  # keeps both processes' calls overlapping
    backup = serve(lambda r: slow_ok)
    write_config(
        _isolated_home,
        config_toml(
            {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
            "primary/m1",
            ["backup/m2"],
            {"backup/m2": {"input": 3.0, "output": 6.0}},
        ),
    )
    go = tmp_path / "go"
    procs = start_routers(2, 8, go)
    go.touch()
    outputs = finish(procs)
    assert [out.split() for out in outputs] == [["ok"] * 8, ["ok"] * 8]
    with Ledger() as ledger:
        rows = ledger.calls()
    assert len(rows) == 32
    assert len({r["pid"] for r in rows}) == 2
    by_request: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for r in rows:
        by_request[r["request_id"]].append((r["provider"], r["outcome"], r["attempt"]))
    assert len(by_request) == 16
    for attempts in by_request.values():
        assert sorted(attempts, key=lambda a: a[2]) == [
            ("primary", "rate-limited", 1),
            ("backup", "ok", 2),
        ]
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert {(r["input_tokens"], r["output_tokens"]) for r in ok} == {(20, 10)}
    assert sum(r["cost_usd"] for r in ok) == pytest.approx(16 * (20 * 3 + 10 * 6) / 1e6)
    assert (len(primary.requests), len(backup.requests)) == (16, 16)


async def test_a_cooldown_set_by_one_process_is_honoured_by_another(
    serve: Serve, _isolated_home: Path, tmp_path: Path
) -> None:
    primary = serve(lambda r: error_reply(429, {"retry-after": "60"}))
    backup = serve(lambda r: completion("from backup"))
    write_config(
        _isolated_home,
        config_toml(
            {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
            "primary/m1",
            ["backup/m2"],
        ),
    )
    go = tmp_path / "go"
    go.touch()
    assert finish(start_routers(1, 1, go)) == ["from backup\n"]
    assert len(primary.requests) == 1
    # This process, with its own router, skips the model the other process saw fail.
    async with Router.from_config() as router:
        answer = await router.chat("executor", ChatRequest(messages=[Message.user("hi")]))
        cooling = (await router.state.get(["primary/m1"], now=router.clock()))["primary/m1"]
    assert answer.content == "from backup"
    assert len(primary.requests) == 1
    assert cooling.kind == "rate-limited" and cooling.status == 429
