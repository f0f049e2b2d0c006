"""Prices kept on disk from genai-prices: the same price as the database gives, only while the
installed database and the price's dates say it holds, and never a reason for a call to fail."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from genai_prices import data_snapshot, types
from openkoi.usage import _genai, _genai_cache
from openkoi.usage._pricing_types import Price


@pytest.fixture(autouse=True)
def _fresh_lookups() -> None:
    _genai.genai_price.cache_clear()


def cached_file() -> dict[str, object]:
    data: dict[str, object] = json.loads(_genai_cache.cache_path().read_text())
    return data


def test_a_resolved_price_is_kept_and_read_back_the_same() -> None:
    fresh = _genai.genai_price("openai", "gpt-4o-mini")
    assert fresh is not None and fresh.source.startswith("genai-prices:openai/")
    entries = cached_file()["entries"]
    assert isinstance(entries, dict) and set(entries) == {"openai/gpt-4o-mini"}
    _genai.genai_price.cache_clear()
    source = _genai_cache.database_source()
    assert source is not None
    found, kept = _genai_cache.cached_price(
        _genai_cache.read_entries(source), "openai/gpt-4o-mini", date.today()
    )
    assert found and kept == fresh
    assert _genai.genai_price("openai", "gpt-4o-mini") == fresh
    # a model the database does not know is kept as "no price" too
    assert _genai.genai_price("openai", "no-such-model-xyz") is None
    assert cached_file()["entries"] == {
        **entries,
        "openai/no-such-model-xyz": {"price": None, "until": None},
    }


def test_another_database_or_a_broken_file_is_ignored() -> None:
    real = _genai.genai_price("openai", "gpt-4o-mini")
    path = _genai_cache.cache_path()
    data = cached_file()
    wrong = Price(input=1234.0, output=5678.0, source="not from this database")
    data["source"] = ["/elsewhere/data.py", 1, 2]
    data["entries"] = {"openai/gpt-4o-mini": {"price": vars(wrong), "until": None}}
    path.write_text(json.dumps(data))
    _genai.genai_price.cache_clear()
    assert _genai.genai_price("openai", "gpt-4o-mini") == real  # stale: resolved again
    assert cached_file()["source"] == _genai_cache.database_source()
    for broken in ("{not json", json.dumps([1, 2]), "\udcff"):
        path.write_text(broken, errors="surrogateescape")
        _genai.genai_price.cache_clear()
        assert _genai.genai_price("openai", "gpt-4o-mini") == real
    path.unlink()
    path.mkdir()  # cannot be written: the price is still right
    _genai.genai_price.cache_clear()
    assert _genai.genai_price("openai", "gpt-4o-mini") == real


def test_an_entry_holds_until_its_price_s_next_start_date() -> None:
    source = ["x", 1, 2]
    price = Price(input=1.0, output=2.0, source="s")
    _genai_cache.store_price(source, {}, "v/m", price, date(2030, 1, 1))
    entries = _genai_cache.read_entries(source)
    assert _genai_cache.cached_price(entries, "v/m", date(2029, 12, 31)) == (True, price)
    assert _genai_cache.cached_price(entries, "v/m", date(2030, 1, 1)) == (False, None)
    assert _genai_cache.read_entries(["x", 1, 3]) == {}


def test_prices_by_time_of_day_are_never_kept_and_dated_ones_until_the_next_date() -> None:
    snapshot = data_snapshot.get_snapshot()
    today = datetime.now(tz=UTC).date()
    by_time = by_date = None
    for provider in snapshot.providers:
        for model in provider.models:
            if not isinstance(model.prices, list):
                continue
            kinds = {type(p.constraint) for p in model.prices if p.constraint is not None}
            if types.TimeOfDateConstraint in kinds:
                by_time = model
            elif kinds == {types.StartDateConstraint}:
                by_date = model
    assert by_time is not None and by_date is not None
    assert _genai._holds(by_time.prices, today, types.StartDateConstraint) == (False, None)
    assert isinstance(by_date.prices, list)
    starts = [p.constraint.start_date for p in by_date.prices if p.constraint is not None]
    keep, until = _genai._holds(by_date.prices, min(starts), types.StartDateConstraint)
    later = [s for s in starts if s > min(starts)]
    assert keep and until == (min(later) if later else None)
