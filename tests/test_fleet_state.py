"""Cooldowns and rate budgets shared through a real Redis by processes that share nothing else."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from _fleet import RedisServer, finish_machines, fleet_config, machine_home, start_machine
from _routing_support import completion, error_reply, make_config, make_router
from _server import LoopbackServer, Recorded, Reply
from openkoi._config import validate_config
from openkoi._errors import AllCandidatesExhausted, BudgetExceededError, RateLimitedError
from openkoi._types import ChatRequest, Message
from openkoi.routing import CooldownPolicy, FailoverState, RedisState, Router
from openkoi.routing._cooldown import CooldownStore
from openkoi.routing._state import LocalState

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
HI = ChatRequest(messages=[Message.user("hi")])


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


async def test_a_429_on_one_machine_skips_the_model_on_another(
    serve: Serve, redis_url: str, tmp_path: Path
) -> None:
    primary = serve(lambda r: error_reply(429, {"retry-after": "60"}))
    backup = serve(lambda r: completion("from backup"))
    config = fleet_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        "primary/m1",
        ["backup/m2"],
        state=redis_url,
    )
    go = tmp_path / "go"
    go.touch()
    first = finish_machines([start_machine(machine_home(tmp_path, "a", config), "1", str(go))])
    second = finish_machines([start_machine(machine_home(tmp_path, "b", config), "3", str(go))])
    assert first[0][0].split("\n")[0] == "answer: from backup"
    assert second[0][0].split() == ["answer:", "from", "backup"] * 3
    assert len(primary.requests) == 1  # machine b never tried it: the cooldown is in Redis
    assert "warning" not in first[0][1] + second[0][1]
    client = _redis(redis_url)
    stored = client.hgetall("openkoi:cooldown:primary/m1")
    ttl = client.pttl("openkoi:cooldown:primary/m1")
    client.close()
    assert stored["kind"] == "rate-limited" and stored["status"] == "429"
    assert 60_000 < ttl <= 360_000  # the cooldown plus the streak memory (max_cooldown)
    # Neither machine wrote a cooldown of its own.
    for name in ("a", "b"):
        assert CooldownStore(tmp_path / name / ".openkoi" / "cooldowns.db").all() == []


_FAILER = textwrap.dedent(
    """
    import json, random, sys, time
    from pathlib import Path
    import anyio
    from openkoi._errors import RateLimitedError
    from openkoi.routing import CooldownPolicy, RedisState

    url, go, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    while not go.exists():
        time.sleep(0.002)

    async def main() -> None:
        store = RedisState(url, timeout=2.0)
        policy = CooldownPolicy(cooldown=1, backoff=2, max_cooldown=600)
        seen = []
        for _ in range(40):
            asked = rng.choice([1, 5, 30, 90, 120, 200])
            now = time.time()
            c = await store.fail("shared/m", RateLimitedError("429", retry_after=asked), now=now, policy=policy)
            failed = time.time()
            stored = (await store.get(["shared/m"], now=failed))["shared/m"]
            seen.append([now + asked, c.until, stored.until, failed - now, time.time() - failed])
        await store.aclose()
        print(json.dumps(seen))

    anyio.run(main)
    """
)


async def test_concurrent_failures_from_many_processes_only_extend_a_cooldown(
    redis_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FAILER, redis_url, str(go), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(8)
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    async with _store(redis_url) as store:
        final = (await store.get(["shared/m"], now=time.time()))["shared/m"]
    asked = [a for seen in results for a, *_ in seen]
    for seen in results:
        for requested, granted, stored, fail_took, _ in seen:
            # What a process was told is at least what it asked for (never shortened by others):
            # times from Redis are mapped from the moment its reply arrived...
            assert granted >= requested - 0.002
            # ...and what it reads back is at least that, but for the part of the round trip
            # after the server's moment, which the mapping counts in once only.
            assert stored >= granted - fail_took - 0.002
        # What one process reads back never goes down, within the same allowance.
        for (*_, earlier, _, get_took), (*_, later, _, _) in itertools.pairwise(seen):
            assert later >= earlier - get_took - 0.002
    assert final.until == pytest.approx(max(asked), abs=0.2)
    assert final.failures == 1  # failures while cooling do not count twice


class _store:
    """`async with _store(url) as store:` a RedisState closed afterwards."""

    def __init__(self, url: str, **kwargs: float) -> None:
        self.store = RedisState(url, **kwargs)

    async def __aenter__(self) -> RedisState:
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.aclose()


async def test_a_cooldown_ends_by_itself_with_its_redis_key(serve: Serve, redis_url: str) -> None:
    primary_replies = [error_reply(429, {"retry-after": "0.3"}), completion("primary again")]
    primary = serve(lambda r: primary_replies.pop(0))
    backup = serve(lambda r: completion("from backup"))
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "primary/m1", "fallback": {"executor": ["backup/m2"]}},
        fallback={"max_cooldown": 0.5},
    )
    config = validate_config({**config.model_dump(exclude_none=True), "state": {"url": redis_url}})
    async with Router.from_config(config, on_warning=_no_warning) as router:
        assert isinstance(router.state, FailoverState)
        assert (await router.chat("executor", HI)).content == "from backup"
        client = _redis(redis_url)
        ttl = client.pttl("openkoi:cooldown:primary/m1")
        assert 0 < ttl <= 800  # 0.3 s of cooldown + 0.5 s of streak memory, then gone
        assert (await router.chat("executor", HI)).content == "from backup"  # still cooling
        time.sleep(0.35)
        assert (await router.chat("executor", HI)).content == "primary again"
        time.sleep(0.5)
        assert client.exists("openkoi:cooldown:primary/m1") == 0  # Redis dropped it itself
        client.close()
    assert len(primary.requests) == 2 and len(backup.requests) == 2


def _no_warning(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")


async def test_an_rpm_budget_admits_exactly_n_across_processes(
    serve: Serve, redis_url: str, tmp_path: Path
) -> None:
    model = serve(lambda r: completion("ok"))
    config = fleet_config(
        {"p": model.url + "/v1"}, "p/m", state=redis_url, budgets={"p/m": {"rpm": 25}}
    )
    go = tmp_path / "go"
    procs = [
        start_machine(machine_home(tmp_path, f"m{i}", config), "12", str(go)) for i in range(4)
    ]
    go.touch()
    finished = finish_machines(procs)
    assert all("warning" not in err for _, err in finished)  # every machine used the shared store
    outputs = [out for out, _ in finished]
    answers = sum(out.count("answer: ok") for out in outputs)
    refused = [line for out in outputs for line in out.splitlines() if line.startswith("exhausted")]
    assert answers == 25 and len(refused) == 48 - 25
    assert len(model.requests) == 25
    assert all("over the rate budget p/m rpm=25" in line for line in refused)


async def test_a_provider_rpm_budget_moves_the_chain_to_another_provider(
    serve: Serve, redis_url: str
) -> None:
    primary = serve(lambda r: completion("primary"))
    backup = serve(lambda r: completion("backup"))
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "primary/m1", "fallback": {"executor": ["backup/m2"]}},
    )
    config = validate_config(
        {
            **config.model_dump(exclude_none=True),
            "state": {"url": redis_url},
            "budgets": {"primary": {"rpm": 2}},
        }
    )
    async with Router.from_config(config, on_warning=_no_warning) as router:
        answers = [(await router.chat("executor", HI)).content for _ in range(4)]
    assert answers == ["primary", "primary", "backup", "backup"]


async def test_a_tpm_budget_is_shared_by_two_routers_and_settled_to_reported_usage(
    serve: Serve, redis_url: str
) -> None:
    model = serve(lambda r: completion("ok", prompt_tokens=200, completion_tokens=100))
    config = make_config({"p": model.url + "/v1"}, models={"executor": "p/m"})
    config = validate_config(
        {
            **config.model_dump(exclude_none=True),
            "state": {"url": redis_url},
            "budgets": {"p/m": {"tpm": 1000}},
        }
    )
    big = ChatRequest(messages=[Message.user("hi")], max_tokens=500)
    async with (
        Router.from_config(config, on_warning=_no_warning) as one,
        Router.from_config(config, on_warning=_no_warning) as two,
    ):
        # 300 tokens each, as reported: three calls use 900 of 1,000.
        for router in (one, two, one):
            assert (await router.chat("executor", HI)).content == "ok"
        # 500 reserved up front from max_tokens would go over: refused before any request.
        with pytest.raises(AllCandidatesExhausted) as refused:
            await two.chat("executor", big)
        # A small call still fits (900 + its estimate), and then the budget is spent.
        assert (await two.chat("executor", HI)).content == "ok"
        with pytest.raises(AllCandidatesExhausted) as spent:
            await one.chat("executor", HI)
    assert len(model.requests) == 4
    for exc in (refused.value, spent.value):
        error = exc.candidates[0].error
        assert isinstance(error, BudgetExceededError) and error.budget == "p/m tpm=1000"
        assert 0 < (error.retry_after or 0) <= 60
    client = _redis(redis_url)
    tokens = client.hvals("openkoi:budget:p/m:tokens")
    client.close()
    assert sorted(int(t) for t in tokens) == [300] * 4


async def test_redis_killed_mid_run_falls_back_to_local_state_with_one_warning(
    serve: Serve, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openkoi.routing._state as state_module

    monkeypatch.setattr(state_module, "RETRY_SHARED", 0.3)
    primary = serve(lambda r: error_reply(503))
    backup = serve(lambda r: completion("from backup"))
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "primary/m1", "fallback": {"executor": ["backup/m2"]}},
        fallback={"cooldown": 60},
    )
    config = validate_config(
        {
            **config.model_dump(exclude_none=True),
            "state": {"url": redis_server.url},
            "budgets": {"backup/m2": {"rpm": 1000}},
        }
    )
    warnings: list[str] = []
    async with Router.from_config(config, on_warning=warnings.append) as router:
        assert (await router.chat("executor", HI)).content == "from backup"
        assert warnings == []
        redis_server.kill()
        started = time.monotonic()
        for _ in range(5):
            assert (await router.chat("executor", HI)).content == "from backup"
        took = time.monotonic() - started
        health = await router.state.health()
        # The primary's cooldown was in Redis; after the kill it is learnt again, locally, once.
        assert len(primary.requests) == 2
        local = CooldownStore()
        try:
            assert [c.ref for c in local.all()] == ["primary/m1"]
        finally:
            local.close()
        # Redis comes back (empty, as after a restart): the router returns to it by itself.
        redis_server.start()
        time.sleep(0.35)
        assert (await router.chat("executor", HI)).content == "from backup"
        client = _redis(redis_server.url)
        stored = client.hgetall("openkoi:cooldown:primary/m1")
        client.close()
        assert stored["kind"] == "overloaded" and stored["status"] == "503"
        assert (await router.state.health()).healthy
    assert len(warnings) == 1, warnings
    assert "shared state store redis://127.0.0.1" in warnings[0]
    assert "kept on this machine" in warnings[0]
    assert took < 3.0
    assert not health.healthy


async def test_a_stream_settles_its_reservation_to_the_usage_it_reported(serve: Serve) -> None:
    from _routing_support import FakeClock, stream_answer

    model = serve(lambda r: stream_answer(["a", "b"], prompt_tokens=40, completion_tokens=2))
    config = make_config({"p": model.url + "/v1"}, models={"executor": "p/m"})
    config = validate_config(
        {**config.model_dump(exclude_none=True), "budgets": {"p/m": {"tpm": 10_000}}}
    )
    router = make_router(config, FakeClock())
    request = ChatRequest(messages=[Message.user("hi")], max_tokens=900)
    try:
        chunks = [c.delta async for c in router.chat_stream("executor", request)]
    finally:
        await router.aclose()
    assert "".join(chunks) == "ab"
    store = CooldownStore()
    try:
        conn = store._connection()
        assert conn.execute("SELECT budget, tokens FROM budget_events").fetchall() == [
            ("p/m", 42)  # 901 reserved up front, 40 + 2 once the stream reported its usage
        ]
    finally:
        store.close()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


async def test_a_hung_redis_costs_one_deadline_and_one_warning(
    serve: Serve, blackhole: int
) -> None:
    model = serve(lambda r: completion("ok"))
    config = make_config({"p": model.url + "/v1"}, models={"executor": "p/m"})
    config = validate_config(
        {
            **config.model_dump(exclude_none=True),
            "state": {"url": f"redis://:hunter2@127.0.0.1:{blackhole}/0", "timeout": 0.2},
        }
    )
    warnings: list[str] = []
    async with Router.from_config(config, on_warning=warnings.append) as router:
        started = time.monotonic()
        for _ in range(10):
            assert (await router.chat("executor", HI)).content == "ok"
        took = time.monotonic() - started
    assert len(warnings) == 1 and "hunter2" not in warnings[0]
    assert "redis://:***@127.0.0.1" in warnings[0]
    assert took < 2.0  # one deadline (0.4 s), then local state until the retry interval


async def test_the_local_store_applies_budgets_and_waits_for_room(serve: Serve) -> None:
    from _routing_support import FakeClock

    model = serve(lambda r: completion("ok"))
    config = make_config(
        {"p": model.url + "/v1"},
        models={"executor": "p/m"},
        fallback={"wait": True, "max_wait": 120},
    )
    config = validate_config(
        {**config.model_dump(exclude_none=True), "budgets": {"p/m": {"rpm": 2}}}
    )
    clock = FakeClock()
    router = make_router(config, clock)
    assert isinstance(router.state, LocalState)
    try:
        for _ in range(2):
            await router.chat("executor", HI)
        clock.advance(10)
        await router.chat("executor", HI)  # waits until the first call leaves the window
    finally:
        await router.aclose()
    assert clock.sleeps == [pytest.approx(50.0)]
    assert len(model.requests) == 3
    no_wait = validate_config({**config.model_dump(exclude_none=True), "fallback": {}})
    router = make_router(no_wait, clock)
    try:
        await router.chat("executor", HI)
        with pytest.raises(AllCandidatesExhausted, match=r"rate budget p/m rpm=2"):
            await router.chat("executor", HI)  # the file remembers the other router's calls
    finally:
        await router.aclose()


def test_status_shows_each_backend_and_its_health(
    redis_url: str, redis_server: RedisServer, _isolated_home: Path
) -> None:
    from test_status_cli import openkoi

    home = _isolated_home / ".openkoi"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'[state]\nurl = "{redis_url}"\n[budgets."openai/gpt-5.2"]\nrpm = 500\ntpm = 200000\n'
    )
    result = openkoi("status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backends"]["state"]["backend"] == "redis"
    assert report["backends"]["state"]["healthy"] is True
    assert report["backends"]["usage"]["backend"] == "sqlite"
    assert report["budgets"] == {"openai/gpt-5.2": {"rpm": 500, "tpm": 200000}}
    table = openkoi("status")
    assert f"cooldowns and budgets: redis {redis_url}, ok" in table.stdout
    redis_server.kill()
    (home / "config.toml").write_text(f'[state]\nurl = "{redis_server.url}"\n')
    down = openkoi("status", "--json")
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["backends"]["state"]["healthy"] is False
    assert report["backends"]["state"]["detail"]


async def test_a_longer_cooldown_is_never_shortened_by_a_shorter_failure(redis_url: str) -> None:
    policy = CooldownPolicy(cooldown=1, backoff=2, max_cooldown=300)
    async with _store(redis_url) as store:
        now = time.time()
        long = await store.fail(
            "p/m", RateLimitedError("429", retry_after=120), now=now, policy=policy
        )
        short = await store.fail(
            "p/m", RateLimitedError("429", retry_after=1), now=now, policy=policy
        )
        await store.clear("p/m", now=time.time())  # still cooling: clear leaves it alone
        kept = (await store.get(["p/m"], now=time.time()))["p/m"]
    assert long.until == pytest.approx(now + 120, abs=0.1)
    assert short.until == pytest.approx(long.until, abs=0.1)
    assert kept.until == pytest.approx(long.until, abs=0.1)
