"""Choosing backends from config and environment, URLs without passwords, the budget rule."""

from __future__ import annotations

import pytest
from openkoi._backends import describe_error, redact_url, url_secrets
from openkoi._config import validate_config
from openkoi._errors import ConfigError
from openkoi._types import ChatRequest, Message
from openkoi.routing import Budget, budgets_for, state_url
from openkoi.routing._budgets import WINDOW, MemoryBudgets, decide, estimate_tokens
from openkoi.usage import usage_database


@pytest.mark.parametrize(
    ("section", "value", "key"),
    [
        ("state", {"url": "http://127.0.0.1:6379"}, "state.url"),
        ("usage", {"database": "mysql://x/y"}, "usage.database"),
        ("budgets", {"openai": {"rpm": -1}}, "budgets.openai.rpm"),
        ("budgets", {"openai": {"rps": 5}}, "budgets.openai.rps"),
    ],
)
def test_bad_backend_settings_are_config_errors(section: str, value: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config({section: value})
    assert caught.value.key == key


@pytest.mark.parametrize(
    "url",
    [
        "redis://:slash/PartTwo9@127.0.0.1:6379/0",  # unencoded: the client reads 'slash' as a port
        "redis://:hash#PartTwo9@127.0.0.1:6379/0",
        "rediss://:ques?PartTwo9@127.0.0.1:6379/0",
        "redis://:PartTwo9@127.0.0.1:notaport/0",
        "redis://:PartTwo9@127.0.0.1:99999/0",
        "valkey://:PartTwo9@127.0.0.1:6379/zero",
        "redis://:PartTwo9@127.0.0.1:6379?db=one",
    ],
)
def test_a_redis_url_the_client_cannot_read_is_a_config_error_without_its_password(
    url: str,
) -> None:
    """The Redis client raises a bare ValueError naming the piece it could not read (a piece
    of the password, for one written with `/`, `?` or `#`): that was exit 70 with the piece
    shown. It is a config error naming the key, from the file or the environment."""
    with pytest.raises(ConfigError) as from_file:
        validate_config({"state": {"url": url}})
    with pytest.raises(ConfigError) as from_env:
        state_url(validate_config({}), {"OPENKOI_STATE_URL": url})
    assert from_file.value.key == "state.url" and from_env.value.key == "OPENKOI_STATE_URL"
    for error in (from_file.value, from_env.value):
        assert "percent-encoded" in str(error)
        for piece in ("PartTwo9", "slash", "hash", "ques", "notaport", "zero"):
            assert piece not in str(error)
    assert validate_config({"state": {"url": "redis://:p%2Fw@h:6379/2"}}).state.url


def test_backend_error_text_never_shows_a_piece_of_the_password() -> None:
    """A client's error names what it could not read: for a password written with `/`, the
    piece before it, taken for a port. `describe_error` masks every such piece."""
    url = "postgresql://openkoi:slash/PgTwo9@127.0.0.1:5432/postgres?password=Query%2F77zz"
    secrets = url_secrets(url)
    for piece in ("slash/PgTwo9", "slash", "PgTwo9", "Query/77zz", "77zz"):
        assert piece in secrets
    port = ValueError('invalid integer value "slash" for connection option "port"')
    assert describe_error(port, secrets) == (
        'ValueError: invalid integer value "***" for connection option "port"'
    )
    assert "Query" not in describe_error(ValueError("bad password Query/77zz"), secrets)
    assert url_secrets("redis://h:6379/0") == ()


def test_the_environment_overrides_the_config_file() -> None:
    config = validate_config(
        {"state": {"url": "redis://a:6379/0"}, "usage": {"database": "postgresql://db/x"}}
    )
    assert state_url(config, {}) == "redis://a:6379/0"
    assert state_url(config, {"OPENKOI_STATE_URL": "rediss://b:6380/1"}) == "rediss://b:6380/1"
    assert state_url(config, {"OPENKOI_STATE_URL": "sqlite"}) is None
    assert usage_database(config, {}) == "postgresql://db/x"
    assert usage_database(config, {"OPENKOI_USAGE_DATABASE": "local"}) is None
    with pytest.raises(ConfigError, match="OPENKOI_STATE_URL: expected a redis://"):
        state_url(config, {"OPENKOI_STATE_URL": "localhost:6379"})
    with pytest.raises(ConfigError, match="OPENKOI_USAGE_DATABASE: expected a postgresql://"):
        usage_database(config, {"OPENKOI_USAGE_DATABASE": "sqlite:///tmp/x.db"})
    assert state_url(validate_config({}), {}) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:s3cret@h/0", "redis://user:***@h/0"),
        ("postgresql://openkoi@db/x", "postgresql://openkoi@db/x"),
        (
            "postgresql://u:p%40ss@db/x?password=zz&sslmode=require",
            "postgresql://u:***@db/x?password=***&sslmode=require",
        ),
        (
            "unix:///run/redis.sock?db=0&password=zz",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        # A password written with `/`, `?` or `#` unencoded: a URL parser ends the host part
        # there and would show the password as the host or path.
        ("postgresql://u:slash/PgTwo9@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://u:hash#PgTwo9@db/x", "postgresql://u:***@db/x"),
        ("redis://:ques?PgTwo9@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://:a@b@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://we/ird@h/0", "redis://***@h/0"),
        ("redis://h/0#frag-s3cret", "redis://h/0"),
        ("no-scheme-s3cret", "(unparseable URL)"),
    ],
)
def test_urls_are_shown_without_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    for secret in ("PgTwo9", "s3cret", "zz"):
        assert secret not in redact_url(url)


def test_a_call_counts_against_its_model_and_its_provider() -> None:
    config = validate_config(
        {"budgets": {"openai/gpt-5.2": {"rpm": 500, "tpm": 200_000}, "openai": {"rpm": 900}}}
    )
    assert budgets_for("openai/gpt-5.2", config.budgets) == (
        Budget("openai/gpt-5.2", 500, 200_000),
        Budget("openai", 900, None),
    )
    assert budgets_for("openai/gpt-4.1", config.budgets) == (Budget("openai", 900, None),)
    assert budgets_for("anthropic/claude", config.budgets) == ()


def test_the_window_slides() -> None:
    budget = Budget("p/m", rpm=3)
    events = [(100.0, 0), (110.0, 0), (130.0, 0)]
    assert decide(events, budget, 0, 150.0)[0] is False
    _, wait, label = decide(events, budget, 0, 150.0)
    assert wait == pytest.approx(100.0 + WINDOW - 150.0) and label == "p/m rpm=3"
    assert decide(events, budget, 0, 160.001)[0] is True  # the first has left the window
    assert decide([], Budget("p/m", rpm=0), 0, 0.0)[:1] == (False,)


def test_tokens_are_reserved_then_settled() -> None:
    budgets = (Budget("p/m", tpm=1000),)
    store = MemoryBudgets()
    first = store.reserve(budgets, 800, now=0.0)
    assert first.ok
    refused = store.reserve(budgets, 300, now=1.0)
    assert not refused.ok and refused.budget == "p/m tpm=1000"
    assert refused.retry_after == pytest.approx(WINDOW - 1.0)
    store.settle(first, 200)  # the call used less than it reserved
    assert store.reserve(budgets, 300, now=2.0).ok
    # One call bigger than the whole budget waits for an empty window, not forever.
    assert store.reserve((Budget("q", tpm=100),), 5000, now=0.0).ok


def test_a_reservation_is_max_tokens_plus_the_input() -> None:
    request = ChatRequest(system="x" * 40, messages=[Message.user("y" * 80)], max_tokens=256)
    assert estimate_tokens(request) == 256 + 30
    assert estimate_tokens(ChatRequest(messages=[Message.user("hi")])) == 1
