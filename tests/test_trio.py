"""The router under trio, as the README promises: it answers; the Redis client (asyncio only) is
not used, so a shared store counts as unavailable and local state is kept, with one warning;
closing does not touch it; and the default-model probe of a local Ollama runs on a thread of its
own, since httpx would take trio's loop for the probe's."""

from __future__ import annotations

from typing import Any

import pytest
from _routing_support import completion, make_config
from _server import Reply
from openkoi._config import validate_config
from openkoi._defaults import default_model_ref
from openkoi._registry import ProviderRegistry
from openkoi._types import ChatRequest, Message
from openkoi.routing import FailoverState, Router

pytestmark = pytest.mark.anyio

HI = ChatRequest(messages=[Message.user("hi")])


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def test_a_router_with_redis_configured_answers_under_trio(
    serve: Any, redis_url: str
) -> None:
    llm = serve(lambda request: completion("from trio"))
    config = make_config({"p": llm.url + "/v1"}, models={"executor": "p/m"})
    config = config.model_copy(
        update={"state": validate_config({"state": {"url": redis_url}}).state}
    )
    warnings: list[str] = []
    async with Router.from_config(config, on_warning=warnings.append) as router:
        for _ in range(3):
            assert (await router.chat("executor", HI)).content == "from trio"
        health = await router.state.health()
        assert isinstance(router.state, FailoverState) and router.state.degraded
    assert not health.healthy and "runs on asyncio, not trio" in health.detail
    assert len(warnings) == 1 and "unavailable" in warnings[0]
    assert len(llm.requests) == 3


async def test_the_local_ollama_probe_runs_under_trio(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ollama = serve(lambda request: Reply.json({"models": [{"name": "llama3.2:3b"}]}))
    monkeypatch.setenv("OLLAMA_HOST", ollama.url)
    assert default_model_ref(ProviderRegistry()) == "ollama/llama3.2:3b"
    assert [r.path for r in ollama.requests][:1] == ["/api/tags"]
