"""Garbage in the state stores (a hand-written Redis key, a hand-edited cooldowns.db row) is
ignored with one warning naming it: never a raw exception, never the whole store given up."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from _routing_support import completion, error_reply, make_config
from _server import LoopbackServer, Recorded, Reply
from openkoi._config import Config, validate_config
from openkoi._errors import AllCandidatesExhausted, RateLimitedError
from openkoi._timefmt import utc_moment
from openkoi._types import ChatRequest, Message
from openkoi.routing import CooldownPolicy, FailoverState, RedisState, Router
from openkoi.routing._cooldown import MAX_MESSAGE, CooldownStore, cooldowns_db_path

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
HI = ChatRequest(messages=[Message.user("hi")])
KEY = "openkoi:cooldown:primary/m1"
SOON = r"room again at (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d UTC"  # within the window


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


def _ms() -> int:
    return int(time.time() * 1000)


def _cooldown(**fields: str | int | None) -> dict[Any, Any]:
    """A cooldown hash as another machine writes it, with `fields` changed (None: left out)."""
    base: dict[str, str | int | None] = {
        "until": _ms() + 60_000,
        "failures": 1,
        "kind": "rate-limited",
        "message": "written elsewhere",
        "status": 429,
        "updated": _ms(),
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


def _config(
    primary: LoopbackServer, backup: LoopbackServer, *, state: str | None, **extra: Any
) -> Config:
    """backup/m2 first, then primary/m1: a shared cooldown of the backup must be honoured."""
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "backup/m2", "fallback": {"executor": ["primary/m1"]}},
    )
    data = config.model_dump(exclude_none=True)
    if state is not None:
        data["state"] = {"url": state, "timeout": 5.0}
    return validate_config({**data, **extra})


BAD_COOLDOWNS: dict[str, Callable[[redis.Redis], object]] = {
    "a string key": lambda c: c.set(KEY, "garbage"),
    "until garbage": lambda c: c.hset(KEY, mapping=_cooldown(until="garbage")),
    "until inf": lambda c: c.hset(KEY, mapping=_cooldown(until="inf")),
    "until 10**20 ms": lambda c: c.hset(KEY, mapping=_cooldown(until=10**20)),
    "until ten years ahead": lambda c: c.hset(
        KEY, mapping=_cooldown(until=_ms() + 10 * 365 * 86_400_000)
    ),
    "failures 'one', no TTL": lambda c: c.hset(
        KEY, mapping=_cooldown(until=_ms() - 1000, failures="one")
    ),
    "status garbage": lambda c: c.hset(KEY, mapping=_cooldown(status="abc")),
    "only an until": lambda c: c.hset(KEY, "until", _ms() + 60_000),
}


@pytest.mark.parametrize("bad", list(BAD_COOLDOWNS))
async def test_one_bad_cooldown_key_is_ignored_and_redis_still_shared(
    bad: str, serve: Serve, redis_url: str
) -> None:
    primary = serve(lambda r: completion("from primary"))
    backup = serve(lambda r: completion("from backup"))
    client = _redis(redis_url)
    BAD_COOLDOWNS[bad](client)
    # Another machine's cooldown of the backup, in the same Redis: still honoured.
    client.hset("openkoi:cooldown:backup/m2", mapping=_cooldown())
    warnings: list[str] = []
    async with Router.from_config(
        _config(primary, backup, state=redis_url), on_warning=warnings.append
    ) as router:
        for _ in range(3):
            assert (await router.chat("executor", HI)).content == "from primary"
        assert isinstance(router.state, FailoverState) and not router.state.degraded
    client.close()
    assert backup.requests == []
    assert len(warnings) == 1, warnings
    assert f"holds a bad key {KEY} (" in warnings[0] and "unavailable" not in warnings[0]


async def test_a_bad_cooldown_key_is_replaced_when_the_model_fails_again(
    serve: Serve, redis_url: str
) -> None:
    primary = serve(lambda r: error_reply(503))
    backup = serve(lambda r: completion("from backup"))
    client = _redis(redis_url)
    client.hset(KEY, mapping=_cooldown(until=_ms() - 1000, failures="one"))  # no TTL
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "primary/m1", "fallback": {"executor": ["backup/m2"]}},
    )
    config = validate_config({**config.model_dump(exclude_none=True), "state": {"url": redis_url}})
    warnings: list[str] = []
    async with Router.from_config(config, on_warning=warnings.append) as router:
        assert (await router.chat("executor", HI)).content == "from backup"
        assert (await router.chat("executor", HI)).content == "from backup"
        assert isinstance(router.state, FailoverState) and not router.state.degraded
    stored = client.hgetall(KEY)
    ttl = client.pttl(KEY)
    client.close()
    assert len(primary.requests) == 1  # the second call saw the cooldown that replaced it
    assert stored["kind"] == "overloaded" and stored["failures"] == "1"
    assert 0 < ttl <= 310_000  # it now expires by itself
    assert len(warnings) == 1 and "its failures is 'one'" in warnings[0]


async def test_a_stored_cooldown_of_kind_budget_is_a_typed_error(
    serve: Serve, redis_url: str
) -> None:
    primary = serve(lambda r: completion("from primary"))
    backup = serve(lambda r: completion("from backup"))
    client = _redis(redis_url)
    for ref in ("primary/m1", "backup/m2"):
        client.hset(f"openkoi:cooldown:{ref}", mapping=_cooldown(kind="budget"))
    client.close()
    async with Router.from_config(
        _config(primary, backup, state=redis_url), on_warning=_no_warning
    ) as router:
        with pytest.raises(AllCandidatesExhausted) as exhausted:
            await router.chat("executor", HI)
    assert [c.ref for c in exhausted.value.candidates] == ["backup/m2", "primary/m1"]
    assert "cooling until" in str(exhausted.value)


async def test_a_huge_message_from_another_machine_is_cut(serve: Serve, redis_url: str) -> None:
    primary = serve(lambda r: completion("from primary"))
    backup = serve(lambda r: completion("from backup"))
    client = _redis(redis_url)
    for ref in ("primary/m1", "backup/m2"):
        client.hset(f"openkoi:cooldown:{ref}", mapping=_cooldown(message="y" * 5_000_000))
    client.close()
    async with Router.from_config(
        _config(primary, backup, state=redis_url), on_warning=_no_warning
    ) as router:
        with pytest.raises(AllCandidatesExhausted) as exhausted:
            await router.chat("executor", HI)
    assert all(len(c.error.message) <= MAX_MESSAGE for c in exhausted.value.candidates)
    assert len(str(exhausted.value)) < 3 * MAX_MESSAGE


async def test_a_huge_message_is_cut_before_it_is_stored(redis_url: str, tmp_path: Path) -> None:
    policy = CooldownPolicy()
    error = RateLimitedError("z" * 100_000, retry_after=30)
    store = RedisState(redis_url, timeout=5.0)
    try:
        shared = await store.fail("p/m", error, now=time.time(), policy=policy)
    finally:
        await store.aclose()
    local = CooldownStore(tmp_path / "cooldowns.db")
    try:
        mine = local.fail("p/m", error, now=time.time(), policy=policy)
        (row,) = local._connection().execute("SELECT length(message) FROM cooldowns").fetchall()
    finally:
        local.close()
    client = _redis(redis_url)
    stored = client.hget("openkoi:cooldown:p/m", "message") or ""
    client.close()
    assert len(stored) <= MAX_MESSAGE and row[0] <= MAX_MESSAGE
    assert len(shared.message) <= MAX_MESSAGE and len(mine.message) <= MAX_MESSAGE


BAD_BUDGETS: dict[str, Callable[[redis.Redis], object]] = {
    "tokens 'garbage'": lambda c: (
        c.hset("openkoi:budget:p/m:tokens", "junk", "garbage"),
        c.zadd("openkoi:budget:p/m:calls", {"junk": _ms()}),
    ),
    "tokens inf": lambda c: (
        c.hset("openkoi:budget:p/m:tokens", "junk", "inf"),
        c.zadd("openkoi:budget:p/m:calls", {"junk": _ms()}),
    ),
    "calls a string": lambda c: c.set("openkoi:budget:p/m:calls", "garbage"),
    "tokens a list": lambda c: c.rpush("openkoi:budget:p/m:tokens", "garbage"),
    "calls in the year 33658": lambda c: c.zadd(
        "openkoi:budget:p/m:calls", {f"f{i}": 10**15 for i in range(5)}
    ),
}


@pytest.mark.parametrize("bad", list(BAD_BUDGETS))
async def test_a_bad_budget_key_is_deleted_and_the_budget_still_shared(
    bad: str, serve: Serve, redis_url: str
) -> None:
    model = serve(lambda r: completion("ok"))
    client = _redis(redis_url)
    BAD_BUDGETS[bad](client)
    config = make_config({"p": model.url + "/v1"}, models={"executor": "p/m"})
    config = validate_config(
        {
            **config.model_dump(exclude_none=True),
            "state": {"url": redis_url, "timeout": 5.0},
            "budgets": {"p/m": {"rpm": 3, "tpm": 100_000}},
        }
    )
    warnings: list[str] = []
    async with Router.from_config(config, on_warning=warnings.append) as router:
        for _ in range(3):
            assert (await router.chat("executor", HI)).content == "ok"
        with pytest.raises(AllCandidatesExhausted, match=SOON):
            await router.chat("executor", HI)
        assert isinstance(router.state, FailoverState) and not router.state.degraded
    calls = client.zcard("openkoi:budget:p/m:calls")
    tokens = client.hvals("openkoi:budget:p/m:tokens")
    client.close()
    assert calls == 3 and sorted(tokens) == ["16"] * 3  # the three calls, counted in Redis
    assert len(warnings) == 1, warnings
    assert "holds a bad key openkoi:budget:p/m:" in warnings[0] and "deleted" in warnings[0]


# -- the machine's own file -------------------------------------------------------------------


def _row(**fields: Any) -> dict[str, Any]:
    base = {
        "ref": "backup/m2",
        "until": time.time() + 60,
        "failures": 1,
        "kind": "rate-limited",
        "message": "cooling",
        "status": 429,
        "updated_at": time.time(),
    }
    return {**base, **fields}


def _create_file() -> None:
    store = CooldownStore()
    store.all()  # creates the file and its tables
    store.close()


def _insert(rows: list[dict[str, Any]], sql_message: str | None = None) -> None:
    _create_file()
    with sqlite3.connect(cooldowns_db_path()) as conn:
        for row in rows:
            conn.execute(
                "INSERT INTO cooldowns (ref, until, failures, kind, message, status, updated_at) "
                f"VALUES (:ref, :until, :failures, :kind, {sql_message or ':message'}, :status, "
                ":updated_at)",
                row,
            )
    conn.close()


BAD_ROWS: dict[str, dict[str, Any]] = {  # what is wrong with primary/m1's row
    "until garbage": {"until": "garbage"},
    "until inf": {"until": math.inf},
    "until 1e17 s": {"until": 1e17},
    "failures 'x'": {"failures": "x"},
    "failures 0": {"failures": 0},
    "status garbage": {"status": "abc"},
}


@pytest.mark.parametrize("bad", list(BAD_ROWS))
async def test_a_bad_row_in_cooldowns_db_is_ignored_with_one_warning(
    bad: str, serve: Serve
) -> None:
    primary = serve(lambda r: completion("from primary"))
    backup = serve(lambda r: completion("from backup"))
    _insert([_row(ref="primary/m1", **BAD_ROWS[bad]), _row()])
    warnings: list[str] = []
    async with Router.from_config(
        _config(primary, backup, state=None), on_warning=warnings.append
    ) as router:
        for _ in range(2):
            assert (await router.chat("executor", HI)).content == "from primary"
    store = CooldownStore()
    try:
        listed = [c.ref for c in store.all()]
        assert not store.in_memory
    finally:
        store.close()
    assert listed == ["backup/m2"]
    assert backup.requests == []  # the good row beside it still counts
    assert len(warnings) == 1, warnings
    assert "holds a bad cooldown of primary/m1 (" in warnings[0]
    assert str(cooldowns_db_path()) in warnings[0]


async def test_a_bad_row_in_cooldowns_db_is_replaced_when_the_model_fails(serve: Serve) -> None:
    primary = serve(lambda r: error_reply(503))
    backup = serve(lambda r: completion("from backup"))
    _insert([_row(ref="primary/m1", until="garbage")])
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "primary/m1", "fallback": {"executor": ["backup/m2"]}},
    )
    async with Router.from_config(config, on_warning=lambda message: None) as router:
        for _ in range(2):
            assert (await router.chat("executor", HI)).content == "from backup"
    assert len(primary.requests) == 1
    store = CooldownStore()
    try:
        (cooldown,) = store.all()
    finally:
        store.close()
    assert cooldown.kind == "overloaded" and cooldown.until > time.time()


async def test_text_that_is_not_utf8_in_cooldowns_db_does_not_give_up_the_file(
    serve: Serve,
) -> None:
    primary = serve(lambda r: completion("from primary"))
    backup = serve(lambda r: completion("from backup"))
    _insert([_row()], sql_message="CAST(X'C328FFFE' AS TEXT)")
    async with Router.from_config(
        _config(primary, backup, state=None), on_warning=_no_warning
    ) as router:
        assert (await router.chat("executor", HI)).content == "from primary"
    assert backup.requests == []  # its cooldown was read, bad bytes and all


async def test_bad_budget_rows_in_cooldowns_db_are_deleted(serve: Serve) -> None:
    model = serve(lambda r: completion("ok"))
    _create_file()
    with sqlite3.connect(cooldowns_db_path()) as conn:
        conn.executemany(
            "INSERT INTO budget_events (budget, id, at, tokens) VALUES (?, ?, ?, ?)",
            [("p/m", "junk", time.time(), "garbage"), ("p/m", "later", 1e15, 5)]
            + [("p/m", f"f{i}", time.time() + 86_400, 1) for i in range(3)],
        )
    conn.close()
    config = make_config({"p": model.url + "/v1"}, models={"executor": "p/m"})
    config = validate_config(
        {**config.model_dump(exclude_none=True), "budgets": {"p/m": {"rpm": 2, "tpm": 10**6}}}
    )
    warnings: list[str] = []
    async with Router.from_config(config, on_warning=warnings.append) as router:
        for _ in range(2):
            assert (await router.chat("executor", HI)).content == "ok"
        with pytest.raises(AllCandidatesExhausted, match=SOON):
            await router.chat("executor", HI)
    assert len(model.requests) == 2
    assert len(warnings) == 1 and "holds a bad budget entry of p/m" in warnings[0]


# -- showing a moment ---------------------------------------------------------------------------


@pytest.mark.parametrize("when", [1e17, 1e20, -1e20, math.inf, -math.inf, math.nan])
def test_utc_moment_shows_any_float(when: float) -> None:
    shown = utc_moment(when, now=1_767_225_600.0)
    assert shown.endswith("UTC") or shown == "an unknown time"
    assert utc_moment(1_767_225_605.0, now=when)  # and any `now`


def test_utc_moment_clamps_the_far_future_to_the_last_four_digit_year() -> None:
    assert utc_moment(1e20, now=0.0) == "9999-12-31 23:59:59 UTC"
    assert utc_moment(1_767_225_605.0, now=1_767_225_600.0) == "00:00:05 UTC"


def _no_warning(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")
