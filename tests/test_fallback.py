"""The fallback chain under injected faults, against real loopback servers.

Each test asserts the exact candidates tried (by the requests each server saw), the cooldown
windows (on an injected clock; nothing sleeps), the error raised and the ledger rows written.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _routing_support import (
    FakeClock,
    closed_port,
    completion,
    delta,
    error_reply,
    event,
    make_config,
    make_router,
    stream_answer,
    usage_event,
)
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import (
    AllCandidatesExhausted,
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
)
from openkoi._timeouts import Timeouts
from openkoi._types import Attachment, ChatChunk, ChatRequest, Message, TokenUsage
from openkoi.routing import CooldownPolicy, CooldownStore, Router, should_fall_back

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
REQUEST = ChatRequest(messages=[Message.user("hello")])
PRICES = {"backup/m2": {"input": 1.0, "output": 2.0}}


def chain_router(
    primary_url: str,
    backup_url: str,
    clock: FakeClock,
    *,
    third_url: str | None = None,
    fallback: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Router:
    providers = {"primary": primary_url + "/v1", "backup": backup_url + "/v1"}
    chain = ["backup/m2"]
    if third_url:
        providers["third"] = third_url + "/v1"
        chain.append("third/m3")
    config = make_config(
        providers,
        models={"executor": "primary/m1", "fallback": {"executor": chain}},
        pricing=PRICES,
        fallback=fallback,
    )
    return make_router(config, clock, **kwargs)


def rows(router: Router) -> list[tuple[Any, ...]]:
    assert router.ledger is not None
    return [
        (
            r["provider"],
            r["model"],
            r["outcome"],
            r["attempt"],
            r["input_tokens"],
            r["output_tokens"],
            r["cost_usd"],
        )
        for r in router.ledger.calls()
    ]


async def cooldown_of(router: Router, ref: str) -> Any:
    return (await router.state.get([ref], now=router.clock())).get(ref)


# -- transient errors move the chain on ----------------------------------------------------

RFC_DATE_IN_120S = "__date__"


@pytest.mark.parametrize(
    ("reply", "kind", "window"),
    [
        (error_reply(429), "rate-limited", 10.0),  # no Retry-After: the configured default
        (error_reply(429, {"retry-after": "7"}), "rate-limited", 7.0),
        (error_reply(429, {"retry-after-ms": "2500"}), "rate-limited", 2.5),
        (error_reply(429, {"retry-after": RFC_DATE_IN_120S}), "rate-limited", 120.0),
        (error_reply(500), "server", 10.0),
        (error_reply(503), "overloaded", 10.0),
        (error_reply(529), "overloaded", 10.0),
        (error_reply(503, {"retry-after": "30"}), "overloaded", 30.0),
        # a value that says nothing usable gives the default, never 0 s
        (error_reply(429, {"retry-after": "-5"}), "rate-limited", 10.0),
        (error_reply(429, {"retry-after": "NaN"}), "rate-limited", 10.0),
        (error_reply(429, {"retry-after": "inf"}), "rate-limited", 10.0),
        (error_reply(429, {"retry-after": "soon"}), "rate-limited", 10.0),
        (error_reply(429, {"retry-after-ms": "-1"}), "rate-limited", 10.0),
        # OpenAI's reset headers: the exhausted limit's reset
        (
            error_reply(
                429,
                {
                    "x-ratelimit-remaining-requests": "99",
                    "x-ratelimit-reset-requests": "120ms",
                    "x-ratelimit-remaining-tokens": "0",
                    "x-ratelimit-reset-tokens": "1m30s",
                },
            ),
            "rate-limited",
            90.0,
        ),
        (error_reply(429, {"x-ratelimit-reset-requests": "45s"}), "rate-limited", 45.0),
        # a server's value stays within max_cooldown (300 s here)
        (error_reply(429, {"retry-after": "3600"}), "rate-limited", 300.0),
    ],
)
async def test_transient_status_falls_back_and_cools_the_model(
    serve: Serve, reply: Reply, kind: str, window: float
) -> None:
    if reply.headers.get("retry-after") == RFC_DATE_IN_120S:
        reply.headers["retry-after"] = email.utils.formatdate(time.time() + 120, usegmt=True)
    primary = serve(lambda r: reply)
    backup = serve(lambda r: completion("from backup", 11, 5))
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock)
    try:
        answer = await router.chat("executor", REQUEST)
        cooldown = await cooldown_of(router, "primary/m1")
        ledger = rows(router)
    finally:
        await router.aclose()
    assert answer.content == "from backup"
    assert (len(primary.requests), len(backup.requests)) == (1, 1)
    assert cooldown.kind == kind and cooldown.failures == 1
    # HTTP-dates have one-second resolution; everything else is exact.
    assert cooldown.until - clock.now == pytest.approx(window, abs=1.5 if window == 120 else 1e-6)
    assert ledger == [
        ("primary", "m1", kind, 1, 0, 0, 0.0),
        ("backup", "m2", "ok", 2, 11, 5, pytest.approx((11 * 1.0 + 5 * 2.0) / 1e6)),
    ]


async def test_connection_refused_falls_back(serve: Serve) -> None:
    backup = serve(lambda r: completion("from backup"))
    clock = FakeClock()
    router = chain_router(f"http://127.0.0.1:{closed_port()}", backup.url, clock)
    try:
        answer = await router.chat("executor", REQUEST)
        cooldown = await cooldown_of(router, "primary/m1")
        ledger = rows(router)
    finally:
        await router.aclose()
    assert answer.content == "from backup"
    assert cooldown.kind == "network" and cooldown.until == clock.now + 10
    assert [r[:3] for r in ledger] == [("primary", "m1", "network"), ("backup", "m2", "ok")]
    assert ledger[0][4:] == (0, 0, 0.0)  # never reached: nothing consumed


async def test_read_timeout_falls_back_and_records_unknown_tokens(serve: Serve) -> None:
    slow = serve(lambda r: Reply(body="{}", delay=1.5))
    backup = serve(lambda r: completion("from backup"))
    clock = FakeClock()
    router = chain_router(slow.url, backup.url, clock)
    # Short timeouts are provider settings; this is the primary's, before its client exists.
    router.registry.get("primary").settings.timeouts = Timeouts(first_token=0.2)  # type: ignore[attr-defined]
    try:
        started = time.monotonic()
        answer = await router.chat("executor", REQUEST)
        elapsed = time.monotonic() - started
        ledger = rows(router)
        cooldown = await cooldown_of(router, "primary/m1")
    finally:
        await router.aclose()
    assert answer.content == "from backup"
    assert elapsed < 1.2  # the fallback answered after the timeout, not after the slow reply
    assert cooldown.kind == "timeout"
    # A timed-out call may have been billed: its tokens are unknown, not zero.
    assert ledger[0][:3] == ("primary", "m1", "timeout")
    assert ledger[0][4:] == (None, None, None)
    assert ledger[1][:3] == ("backup", "m2", "ok")


# -- permanent errors stop it --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (403, AuthenticationError), (400, InvalidRequestError)],
)
async def test_permanent_error_stops_the_chain(
    serve: Serve, status: int, error: type[ProviderError]
) -> None:
    primary = serve(lambda r: error_reply(status))
    backup = serve(lambda r: completion("never"))
    router = chain_router(primary.url, backup.url, FakeClock())
    try:
        with pytest.raises(error) as info:
            await router.chat("executor", REQUEST)
        assert await cooldown_of(router, "primary/m1") is None
        ledger = rows(router)
    finally:
        await router.aclose()
    assert info.value.status == status
    assert (len(primary.requests), len(backup.requests)) == (1, 0)
    assert [r[:3] for r in ledger] == [("primary", "m1", error.kind)]


def test_should_fall_back_decides_on_transient_alone() -> None:
    assert should_fall_back(RateLimitedError("x"))
    assert should_fall_back(MalformedResponseError("x"))
    assert not should_fall_back(AuthenticationError("x", status=429))
    assert not should_fall_back(ValueError("rate limit"))


# -- cooldowns -----------------------------------------------------------------------------


async def test_cooling_model_is_skipped_until_its_window_ends(serve: Serve) -> None:
    replies = [error_reply(429, {"retry-after": "20"}), completion("primary is back")]
    primary = serve(lambda r: replies.pop(0))
    backup = serve(lambda r: completion("from backup"))
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock)
    try:
        assert (await router.chat("executor", REQUEST)).content == "from backup"
        clock.advance(19.9)
        assert (await router.chat("executor", REQUEST)).content == "from backup"
        assert len(primary.requests) == 1  # skipped while cooling
        clock.advance(0.2)
        assert (await router.chat("executor", REQUEST)).content == "primary is back"
        assert await cooldown_of(router, "primary/m1") is None  # an answer clears the cooldown
        ledger = rows(router)
    finally:
        await router.aclose()
    assert (len(primary.requests), len(backup.requests)) == (2, 2)
    assert [r[:4] for r in ledger] == [
        ("primary", "m1", "rate-limited", 1),
        ("backup", "m2", "ok", 2),
        ("backup", "m2", "ok", 1),  # the skipped model is not an attempt
        ("primary", "m1", "ok", 1),
    ]


async def test_repeated_failures_grow_the_cooldown_up_to_the_cap(serve: Serve) -> None:
    primary = serve(lambda r: error_reply(500))
    backup = serve(lambda r: completion("ok"))
    clock = FakeClock()
    router = chain_router(
        primary.url, backup.url, clock, fallback={"cooldown": 4, "backoff": 3, "max_cooldown": 50}
    )
    windows = []
    try:
        for _ in range(5):
            await router.chat("executor", REQUEST)
            cooldown = await cooldown_of(router, "primary/m1")
            windows.append((cooldown.failures, cooldown.until - clock.now))
            clock.now = cooldown.until + 1  # just after it ends: the streak goes on
        clock.now += 51  # long after the last one ended (more than max_cooldown): a new streak
        await router.chat("executor", REQUEST)
        cooldown = await cooldown_of(router, "primary/m1")
        windows.append((cooldown.failures, cooldown.until - clock.now))
    finally:
        await router.aclose()
    assert windows == [(1, 4), (2, 12), (3, 36), (4, 50), (5, 50), (1, 4)]
    assert len(primary.requests) == 6


def test_policy_arithmetic() -> None:
    policy = CooldownPolicy(cooldown=10, backoff=2, max_cooldown=300)
    assert [policy.seconds(n) for n in (1, 2, 3, 6, 7, 5000)] == [10, 20, 40, 300, 300, 300]
    assert policy.seconds(3, retry_after=1.5) == 1.5  # the server's word wins
    assert policy.seconds(1, retry_after=10**9) == 300  # within max_cooldown
    assert CooldownPolicy(max_cooldown=7200).seconds(1, retry_after=3600) == 3600  # raised cap
    for nonsense in (-1.0, float("nan"), float("inf"), float("-inf")):
        assert policy.seconds(2, retry_after=nonsense) == 20  # the backoff, not 0 s


def test_concurrent_failure_does_not_count_twice(tmp_path: Path) -> None:
    store = CooldownStore(tmp_path / "c.db")
    policy = CooldownPolicy(cooldown=10, backoff=2, max_cooldown=300)
    first = store.fail("p/m", RateLimitedError("x"), now=100.0, policy=policy)
    again = store.fail("p/m", RateLimitedError("x"), now=101.0, policy=policy)
    store.close()
    assert (first.failures, first.until) == (1, 110.0)
    assert (again.failures, again.until) == (1, 111.0)


async def test_all_candidates_exhausted_lists_each_one(serve: Serve) -> None:
    primary = serve(lambda r: error_reply(429, {"retry-after": "40"}))
    backup = serve(lambda r: error_reply(503))
    third = serve(lambda r: Reply(close=True))  # drops the connection: a cut response
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock, third_url=third.url)
    try:
        with pytest.raises(AllCandidatesExhausted) as info:
            await router.chat("executor", REQUEST)
        first = info.value
        clock.advance(5)
        with pytest.raises(AllCandidatesExhausted) as info2:
            await router.chat("executor", REQUEST)
        ledger = rows(router)
    finally:
        await router.aclose()
    assert [(c.ref, c.error.kind, c.cooldown_until, c.skipped) for c in first.candidates] == [
        ("primary/m1", "rate-limited", clock.now - 5 + 40, False),
        ("backup/m2", "overloaded", clock.now - 5 + 10, False),
        ("third/m3", "malformed-response", clock.now - 5 + 10, False),
    ]
    assert first.retry_after == 10 and first.transient and first.role == "executor"
    text = str(first)
    for part in ("primary/m1", "backup/m2", "third/m3", "cooling until", "HTTP 429"):
        assert part in text
    assert isinstance(first.__cause__, ProviderError)
    # The second call tries nothing: every model is cooling, each listed with its last error.
    assert [(c.ref, c.error.kind, c.skipped) for c in info2.value.candidates] == [
        ("primary/m1", "rate-limited", True),
        ("backup/m2", "overloaded", True),
        ("third/m3", "malformed-response", True),
    ]
    assert isinstance(info2.value.candidates[1].error, OverloadedError)
    assert info2.value.retry_after == 5
    assert (len(primary.requests), len(backup.requests), len(third.requests)) == (1, 1, 1)
    assert [r[2] for r in ledger] == ["rate-limited", "overloaded", "malformed-response"]


async def test_an_attachment_server_s_failure_moves_on_without_cooling_the_model(
    serve: Serve,
) -> None:
    """The host downloads a document URL for providers that cannot; when the file's server
    fails, the provider was never asked, so no model of the chain sits out for it."""
    file_replies = [Reply(status=503), Reply(status=503), Reply(body=b"%PDF-1.4 ok")]
    files = serve(lambda r: file_replies.pop(0))
    primary = serve(lambda r: completion("from primary"))
    backup = serve(lambda r: completion("from backup"))
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock)
    pdf = Attachment.from_url(f"{files.url}/report.pdf", "application/pdf")
    request = ChatRequest(messages=[Message.user("summarise", [pdf])])
    try:
        with pytest.raises(AllCandidatesExhausted) as info:
            await router.chat("executor", request)
        cooldowns = [await cooldown_of(router, ref) for ref in ("primary/m1", "backup/m2")]
        answer = await router.chat("executor", request)  # the file server is back
        ledger = rows(router)
    finally:
        await router.aclose()
    assert [(c.ref, c.error.kind, c.cooldown_until) for c in info.value.candidates] == [
        ("primary/m1", "network", None),
        ("backup/m2", "network", None),
    ]
    assert info.value.transient and info.value.retry_after is None
    assert "report.pdf" in str(info.value)
    assert cooldowns == [None, None]
    assert answer.content == "from primary"
    assert len(files.requests) == 3
    assert (len(primary.requests), len(backup.requests)) == (1, 0)
    assert [r[:3] for r in ledger] == [
        ("primary", "m1", "network"),
        ("backup", "m2", "network"),
        ("primary", "m1", "ok"),
    ]


async def test_wait_option_sleeps_until_the_earliest_cooldown(serve: Serve) -> None:
    primary_replies = [error_reply(429, {"retry-after": "8"}), completion("primary after wait")]
    primary = serve(lambda r: primary_replies.pop(0))
    backup = serve(lambda r: error_reply(429, {"retry-after": "30"}))
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock, fallback={"wait": True, "max_wait": 20})
    try:
        answer = await router.chat("executor", REQUEST)
        ledger = rows(router)
    finally:
        await router.aclose()
    assert answer.content == "primary after wait"
    assert clock.sleeps == [8.0]
    assert (len(primary.requests), len(backup.requests)) == (2, 1)
    assert [r[2:4] for r in ledger] == [("rate-limited", 1), ("rate-limited", 2), ("ok", 3)]


async def test_wait_option_gives_up_past_max_wait(serve: Serve) -> None:
    primary = serve(lambda r: error_reply(429, {"retry-after": "90"}))
    backup = serve(lambda r: error_reply(429, {"retry-after": "120"}))
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock, fallback={"wait": True, "max_wait": 60})
    try:
        with pytest.raises(AllCandidatesExhausted) as info:
            await router.chat("executor", REQUEST)
    finally:
        await router.aclose()
    assert clock.sleeps == []
    assert info.value.retry_after == 90


# -- streams -------------------------------------------------------------------------------


async def collect_stream(router: Router) -> tuple[list[str], BaseException | None]:
    texts: list[str] = []
    try:
        async for chunk in router.chat_stream("executor", REQUEST):
            texts.append(chunk.delta)
    except ProviderError as exc:
        return texts, exc
    return texts, None


@pytest.mark.parametrize(
    ("failing", "kind"),
    [
        (error_reply(429), "rate-limited"),
        # An error event before any content: the stream never started, so fall back.
        (
            Reply.sse([event({"error": {"message": "busy", "type": "overloaded_error"}})]),
            "overloaded",
        ),
        # The connection drops before the first event.
        (Reply.sse([delta("x")], cut_after=0), "malformed-response"),
    ],
)
async def test_stream_falls_back_before_its_first_chunk(
    serve: Serve, failing: Reply, kind: str
) -> None:
    primary = serve(lambda r: failing)
    backup = serve(lambda r: stream_answer(["Hel", "lo"], 9, 2))
    router = chain_router(primary.url, backup.url, FakeClock())
    try:
        texts, error = await collect_stream(router)
        ledger = router.ledger.calls() if router.ledger else []
    finally:
        await router.aclose()
    assert ("".join(texts), error) == ("Hello", None)
    assert (len(primary.requests), len(backup.requests)) == (1, 1)
    assert [(r["provider"], r["outcome"], r["operation"]) for r in ledger] == [
        ("primary", kind, "stream"),
        ("backup", "ok", "stream"),
    ]
    ok = ledger[1]
    assert (ok["input_tokens"], ok["output_tokens"]) == (9, 2)
    assert ok["cost_usd"] == pytest.approx((9 + 4) / 1e6)
    assert ok["first_chunk_ms"] is not None and ok["first_chunk_ms"] <= ok["latency_ms"]


async def test_stream_error_after_first_chunk_goes_to_the_caller_with_partial_usage(
    serve: Serve,
) -> None:
    primary = serve(
        lambda r: Reply.sse(
            [
                delta("Partial "),
                delta("answer"),
                event(
                    {
                        "error": {"message": "overloaded mid-way", "type": "overloaded_error"},
                        "usage": {"prompt_tokens": 30, "completion_tokens": 4},
                    }
                ),
            ]
        )
    )
    backup = serve(lambda r: stream_answer(["never"]))
    clock = FakeClock()
    router = chain_router(primary.url, backup.url, clock)
    try:
        texts, error = await collect_stream(router)
        ledger = router.ledger.calls() if router.ledger else []
        cooling = await cooldown_of(router, "primary/m1")
    finally:
        await router.aclose()
    assert texts == ["Partial ", "answer"]
    assert isinstance(error, OverloadedError)
    assert error.partial_usage == TokenUsage(input_tokens=30, output_tokens=4)
    assert len(backup.requests) == 0  # no switch after the first chunk
    # Too late to switch, but the next call skips the model that failed mid-way.
    assert (cooling.kind, cooling.until) == ("overloaded", clock.now + 10)
    assert [
        (r["provider"], r["outcome"], r["input_tokens"], r["output_tokens"]) for r in ledger
    ] == [("primary", "overloaded", 30, 4)]
    assert ledger[0]["cost_usd"] is None  # primary/m1 has no price: unknown, not guessed


async def test_stream_cut_after_first_chunk_records_what_it_saw(serve: Serve) -> None:
    primary = serve(
        lambda r: Reply.sse(
            [delta("one"), usage_event(12, 1), delta("two"), delta("three")], cut_after=3
        )
    )
    backup = serve(lambda r: stream_answer(["never"]))
    router = chain_router(primary.url, backup.url, FakeClock())
    try:
        texts, error = await collect_stream(router)
        ledger = router.ledger.calls() if router.ledger else []
    finally:
        await router.aclose()
    assert texts == ["one", "", "two"]
    assert isinstance(error, MalformedResponseError)
    assert error.partial_usage == TokenUsage(input_tokens=12, output_tokens=1)
    assert (ledger[0]["outcome"], ledger[0]["input_tokens"], ledger[0]["output_tokens"]) == (
        "malformed-response",
        12,
        1,
    )
    assert len(backup.requests) == 0


async def test_stream_closed_early_by_the_caller_is_recorded_as_cancelled(serve: Serve) -> None:
    primary = serve(lambda r: stream_answer(["a", "b", "c"]))
    backup = serve(lambda r: stream_answer(["never"]))
    router = chain_router(primary.url, backup.url, FakeClock())
    try:
        stream = router.chat_stream("executor", REQUEST)
        first: ChatChunk = await anext(stream)  # type: ignore[arg-type]
        await stream.aclose()  # type: ignore[attr-defined]
        ledger = router.ledger.calls() if router.ledger else []
    finally:
        await router.aclose()
    assert first.delta == "a"
    assert [(r["provider"], r["outcome"]) for r in ledger] == [("primary", "cancelled")]


# -- a broken ledger never costs the answer ------------------------------------------------


async def test_corrupted_ledger_still_answers_and_reports(
    serve: Serve, _isolated_home: Path
) -> None:
    db = _isolated_home / ".openkoi" / "usage.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"garbage, not sqlite " * 100)
    primary = serve(lambda r: error_reply(429))
    backup = serve(lambda r: stream_answer(["still ", "here"]))
    warnings: list[str] = []
    router = chain_router(primary.url, backup.url, FakeClock(), on_warning=warnings.append)
    try:
        texts, error = await collect_stream(router)
    finally:
        await router.aclose()
    assert ("".join(texts), error) == ("still here", None)
    assert len(warnings) == 2  # one per attempt, each naming the file
    assert all("usage not recorded" in w and str(db) in w for w in warnings)


async def test_locked_ledger_still_answers_and_reports(serve: Serve, _isolated_home: Path) -> None:
    import sqlite3

    from openkoi.usage import Ledger

    db = _isolated_home / ".openkoi" / "usage.db"
    with Ledger(db) as ledger:
        ledger.calls()  # create it
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    backup = serve(lambda r: completion("answer"))
    warnings: list[str] = []
    router = chain_router(
        f"http://127.0.0.1:{closed_port()}",
        backup.url,
        FakeClock(),
        ledger=Ledger(db, timeout=0.05),
        on_warning=warnings.append,
    )
    try:
        answer = await router.chat("executor", REQUEST)
    finally:
        await router.aclose()
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.content == "answer"
    assert len(warnings) == 2 and all("locked" in w for w in warnings)


async def test_default_warning_is_a_router_warning(serve: Serve, _isolated_home: Path) -> None:
    from openkoi.routing import RouterWarning

    db = _isolated_home / ".openkoi" / "usage.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"garbage, not sqlite " * 100)
    backup = serve(lambda r: completion("answer"))
    primary = serve(lambda r: completion("primary answer"))
    config = make_config(
        {"primary": primary.url + "/v1", "backup": backup.url + "/v1"},
        models={"executor": "primary/m1"},
    )
    from openkoi._registry import ProviderRegistry

    router = Router.from_config(config, registry=ProviderRegistry(config))
    try:
        with pytest.warns(RouterWarning, match="usage not recorded"):
            answer = await router.chat("executor", REQUEST)
    finally:
        await router.aclose()
    assert answer.content == "primary answer"


async def test_unusable_cooldown_file_falls_back_to_memory(serve: Serve, tmp_path: Path) -> None:
    bad = tmp_path / "cooldowns.db"
    bad.write_bytes(b"not a database " * 100)
    primary = serve(lambda r: error_reply(429))
    backup = serve(lambda r: completion("answer"))
    warnings: list[str] = []
    clock = FakeClock()
    router = chain_router(
        primary.url,
        backup.url,
        clock,
        cooldowns=CooldownStore(bad, on_warning=warnings.append),
        record_usage=False,
    )
    try:
        assert (await router.chat("executor", REQUEST)).content == "answer"
        assert (await router.chat("executor", REQUEST)).content == "answer"
    finally:
        await router.aclose()
    assert len(primary.requests) == 1  # the in-memory cooldown still skips it
    assert len(warnings) == 1 and "in memory" in warnings[0]
