"""`ChatResponse.cost_usd` and the last chunk of a stream: the same number the ledger stores,
priced from genai-prices, with `[pricing]` in config winning and None for a model nobody
prices."""

from __future__ import annotations

from typing import Any

import pytest
from _routing_support import FakeClock, completion, make_config, make_router, stream_answer
from openkoi import ChatRequest, Message
from openkoi._provider import collect
from openkoi.usage._genai import genai_price
from openkoi.usage._pricing import load_price_table

pytestmark = pytest.mark.anyio

ASK = ChatRequest(messages=[Message.user("hi")])
GROQ_MODEL = "llama-3.1-8b-instant"  # not in the shipped table; genai-prices has it


def test_genai_prices_fill_what_the_shipped_table_lacks() -> None:
    table = load_price_table()
    assert load_price_table(genai=False).lookup("groq", GROQ_MODEL) is None
    price = table.lookup("groq", GROQ_MODEL)
    assert price is not None and (price.input, price.output) == (0.05, 0.08)
    assert price.source.startswith("genai-prices:")
    tiered = genai_price("anthropic", "claude-sonnet-4-5")
    assert tiered is not None and tiered.max_input_tokens == 200_000  # past the tier: unknown
    assert genai_price("ollama", "llama3.3") is None  # a provider genai-prices does not know
    assert genai_price("mygateway", GROQ_MODEL) is None  # never guessed from the model name


@pytest.fixture(autouse=True)
def _groq_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-0123456789")


async def _router(serve: Any, reply: Any, pricing: dict[str, Any] | None = None) -> Any:
    server = serve(lambda r: reply)
    config = make_config(
        {"groq": server.url, "mygateway": server.url},
        models={"executor": f"groq/{GROQ_MODEL}"},
        pricing=pricing,
    )
    return make_router(config, FakeClock())


async def test_cost_on_the_response_is_the_ledgers(serve: Any) -> None:
    router = await _router(serve, completion("hello", prompt_tokens=1000, completion_tokens=500))
    async with router:
        response = await router.chat("executor", ASK)
        rows = router.ledger.calls()
    expected = (1000 * 0.05 + 500 * 0.08) / 1e6
    assert response.cost_usd == pytest.approx(expected)
    assert rows[-1]["cost_usd"] == response.cost_usd
    assert rows[-1]["price_source"].startswith("genai-prices:")


async def test_config_pricing_wins(serve: Any) -> None:
    pricing = {f"groq/{GROQ_MODEL}": {"input": 1.0, "output": 2.0}}
    router = await _router(serve, completion("hello", 1000, 500), pricing)
    async with router:
        response = await router.chat("executor", ASK)
    assert response.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)


async def test_the_last_chunk_carries_the_cost(serve: Any) -> None:
    router = await _router(
        serve, stream_answer(["a", "b"], prompt_tokens=200, completion_tokens=20)
    )
    async with router:
        chunks = [c async for c in router.chat_stream("executor", ASK)]
        rows = router.ledger.calls()
    assert chunks[-1].cost_usd == pytest.approx((200 * 0.05 + 20 * 0.08) / 1e6)
    assert all(c.cost_usd is None for c in chunks[:-1])
    assert rows[-1]["cost_usd"] == chunks[-1].cost_usd

    async def replay() -> Any:
        for chunk in chunks:
            yield chunk

    assert (await collect(replay())).cost_usd == chunks[-1].cost_usd


async def test_an_unpriced_model_costs_none(serve: Any) -> None:
    server = serve(lambda r: stream_answer(["a"]) if r.json().get("stream") else completion("a"))
    config = make_config({"mygateway": server.url}, models={"executor": "mygateway/thing"})
    async with make_router(config, FakeClock()) as router:
        response = await router.chat("executor", ASK)
        chunks = [c async for c in router.chat_stream("executor", ASK)]
    assert response.cost_usd is None
    assert all(c.cost_usd is None for c in chunks)
