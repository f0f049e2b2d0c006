"""What the server says about waiting, how long cooldowns read, and keys echoed back."""

from __future__ import annotations

from typing import Any

import pytest
from _routing_support import FakeClock, error_reply, make_config, make_router
from _server import Reply
from openkoi._errors import REDACT_PREFIX, AllCandidatesExhausted, AuthenticationError, redact
from openkoi._http import parse_duration, parse_retry_after
from openkoi._types import ChatRequest, Message

REQUEST = ChatRequest(messages=[Message.user("hi")])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45.0),
        ("1m30s", 90.0),
        ("6m0s", 360.0),
        ("250ms", 0.25),
        ("2.5s", 2.5),
        ("1h2m3s", 3723.0),
        ("17", 17.0),
        ("", None),
        ("soon", None),
        ("5x", None),
        ("-3s", None),
        ("1m30", None),
    ],
)
def test_rate_limit_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_retry_after_that_says_nothing_is_none() -> None:
    for value in ("-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e999", "garbage", "  "):
        assert parse_retry_after({"Retry-After": value}) is None, value
    assert parse_retry_after({"retry-after-ms": "nan"}) is None
    assert parse_retry_after({"Retry-After": "0"}) == 0.0  # "now" is an answer
    # a past HTTP-date means now, not never
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    # Retry-After wins over the reset headers; reset headers of a limit with room are ignored
    both = {"retry-after": "3", "x-ratelimit-reset-tokens": "6m0s"}
    assert parse_retry_after(both) == 3.0
    room = {"x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "6m0s"}
    assert parse_retry_after(room) is None


@pytest.mark.anyio
@pytest.mark.parametrize(("offset", "dated"), [(80_000.0, True), (1_000.0, False)])
async def test_a_cooldown_ending_on_another_day_shows_the_date(
    serve: Any, offset: float, dated: bool
) -> None:
    server = serve(lambda r: error_reply(429, {"retry-after": "7200"}))
    config = make_config(
        {"solo": server.url}, models={"executor": "solo/m"}, fallback={"max_cooldown": 10_000}
    )
    clock = FakeClock(1_767_225_600.0 + offset)  # 2026-01-01 00:00:00 UTC + offset
    router = make_router(config, clock, record_usage=False)
    try:
        with pytest.raises(AllCandidatesExhausted) as info:
            await router.chat("executor", REQUEST)
    finally:
        await router.aclose()
    text = str(info.value)
    if dated:  # 22:13:20 + 2 h is tomorrow
        assert "cooling until 2026-01-02 00:13:20 UTC" in text
    else:
        assert "cooling until 02:16:40 UTC" in text


def test_redact_replaces_long_prefixes_only() -> None:
    key = "sk-live-ABCDEFGHIJ0123456789abcdefXYZ"
    assert redact(f"got {key[:20]}...", [key]) == "got [REDACTED]..."
    assert redact(f"got {key[:REDACT_PREFIX]}", [key]) == "got [REDACTED]"
    short = key[: REDACT_PREFIX - 1]
    assert redact(f"keys look like {short}", [key]) == f"keys look like {short}"
    assert redact(f"{key} and {key[:15]}!", [key]) == "[REDACTED] and [REDACTED]!"
    assert redact("a masked sk-live-****XYZ", [key]) == "a masked sk-live-****XYZ"


@pytest.mark.anyio
async def test_an_echoed_key_prefix_reaches_neither_the_caller_nor_the_ledger(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-proj-Zq8mWn3Rt5Vb7Xc9Lk2Jh4Gf6Ds1Ap0"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echo = f"Incorrect API key provided: {key[:20]}. Find your key at the dashboard."
    server = serve(
        lambda r: Reply.json({"error": {"message": echo, "code": "invalid_api_key"}}, 401)
    )
    config = make_config({"openai": server.url}, models={"executor": "openai/gpt-test"})
    router = make_router(config, FakeClock())
    try:
        with pytest.raises(AuthenticationError) as info:
            await router.chat("executor", REQUEST)
        assert router.ledger is not None
        stored = [r["error"] for r in router.ledger.calls()]
    finally:
        await router.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {key}"
    assert len(stored) == 1
    for text in (str(info.value), repr(info.value), stored[0]):
        assert key[:REDACT_PREFIX] not in text
        assert "[REDACTED]" in text
