"""Roles: which model each role uses, and that each role's requests reach its own service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _routing_support import FakeClock, completion, make_config, make_router
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import ConfigError, ModelRefError, UnknownProviderError
from openkoi._registry import ProviderRegistry
from openkoi._types import ChatRequest, Message
from openkoi.routing import DEFAULT_EMBEDDER, ROLES, resolve_roles

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]

REQUEST = ChatRequest(messages=[Message.user("hello")])


def registry_for(**models: object) -> ProviderRegistry:
    return ProviderRegistry(
        make_config(
            {"alpha": "http://127.0.0.1:1/v1", "beta": "http://127.0.0.1:2/v1"},
            models=dict(models),
        )
    )


def test_roles_are_the_four_of_the_spec() -> None:
    assert ROLES == ("executor", "evaluator", "planner", "embedder")


def test_precedence_flags_then_model_then_env_then_config_then_default() -> None:
    registry = registry_for(
        executor="alpha/cfg-exec", evaluator="alpha/cfg-eval", planner="alpha/cfg-plan"
    )
    config_only = resolve_roles(registry, environ={})
    assert [(a.role, a.ref, a.source) for a in config_only] == [
        ("executor", "alpha/cfg-exec", "config"),
        ("evaluator", "alpha/cfg-eval", "config"),
        ("planner", "alpha/cfg-plan", "config"),
        ("embedder", DEFAULT_EMBEDDER, "default"),
    ]
    env = resolve_roles(registry, environ={"OPENKOI_MODEL": "beta/env"})
    assert {a.role: a.ref for a in env} == {
        "executor": "beta/env",
        "evaluator": "beta/env",
        "planner": "beta/env",
        "embedder": DEFAULT_EMBEDDER,  # OPENKOI_MODEL never sets the embedder
    }
    flags = resolve_roles(
        registry,
        model="beta/flag",
        overrides={"evaluator": "alpha/judge", "embedder": "beta/emb", "planner": None},
        environ={"OPENKOI_MODEL": "beta/env"},
    )
    assert [(a.role, a.ref, a.source) for a in flags] == [
        ("executor", "beta/flag", "--model"),
        ("evaluator", "alpha/judge", "--evaluator"),
        ("planner", "beta/flag", "--model"),
        ("embedder", "beta/emb", "--embedder"),
    ]


def test_default_model_comes_from_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    roles = resolve_roles(registry_for(evaluator="alpha/judge"), environ={})
    assert (roles["executor"].ref, roles["executor"].source) == ("openai/gpt-5.2", "default")
    assert roles["evaluator"].ref == "alpha/judge"
    assert roles["planner"].ref == "openai/gpt-5.2"


def test_nothing_configured_leaves_the_role_unset_and_routing_says_so() -> None:
    registry = ProviderRegistry(make_config({}))
    roles = resolve_roles(registry, environ={})
    assert (roles["executor"].ref, roles["executor"].source) == (None, "unset")
    router = make_router(registry.config, FakeClock(), record_usage=False)
    with pytest.raises(ConfigError, match="no model is assigned to the executor role"):
        router.chain("executor")


def test_refs_are_canonical_and_chains_have_each_model_once() -> None:
    config = make_config(
        {},
        models={
            "executor": "gemini/gemini-2.5-pro",
            "fallback": {"executor": ["google/gemini-2.5-pro", "openai/gpt-5.2"]},
        },
    )
    roles = resolve_roles(ProviderRegistry(config), environ={})
    assert roles["executor"].ref == "google/gemini-2.5-pro"
    assert roles["executor"].chain == ("google/gemini-2.5-pro", "openai/gpt-5.2")


@pytest.mark.parametrize(
    ("models", "error", "key"),
    [
        (
            {"fallback": {"executor": ["openai/gpt-5.2", "gpt-4o"]}},
            ModelRefError,
            "models.fallback.executor[1]",
        ),
        (
            {"fallback": {"planner": ["nosuch/model"]}},
            UnknownProviderError,
            "models.fallback.planner[0]",
        ),
        ({"fallback": {"exector": ["openai/gpt-5.2"]}}, ConfigError, "models.fallback.exector"),
        ({"evaluator": "claude-opus"}, ModelRefError, "models.evaluator"),
    ],
)
def test_bad_refs_are_config_errors_naming_the_key(
    models: dict[str, object], error: type[ConfigError], key: str
) -> None:
    registry = ProviderRegistry(make_config({}, models=models))
    with pytest.raises(error) as info:
        resolve_roles(registry, environ={})
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ModelRefError) as info:
        resolve_roles(registry_for(), overrides={"executor": "no-slash"}, environ={})
    assert info.value.key == "--executor"
    with pytest.raises(UnknownProviderError) as info2:
        resolve_roles(registry_for(), model="nosuch/x", environ={})
    assert info2.value.key == "--model"


@pytest.mark.anyio
async def test_each_role_goes_to_its_own_service(serve: Serve) -> None:
    alpha = serve(lambda r: completion("from alpha"))
    beta = serve(lambda r: completion("from beta"))
    config = make_config(
        {"alpha": alpha.url + "/v1", "beta": beta.url + "/v1"},
        models={"executor": "alpha/exec-model", "evaluator": "beta/judge-model"},
    )
    router = make_router(config, FakeClock(), record_usage=False)
    try:
        executed = await router.chat("executor", REQUEST)
        judged = await router.chat("evaluator", REQUEST)
    finally:
        await router.aclose()
    assert (executed.content, judged.content) == ("from alpha", "from beta")
    assert [(r.path, r.json()["model"]) for r in alpha.requests] == [
        ("/v1/chat/completions", "exec-model")
    ]
    assert [(r.path, r.json()["model"]) for r in beta.requests] == [
        ("/v1/chat/completions", "judge-model")
    ]


@pytest.mark.anyio
async def test_embed_uses_the_embedder_role(serve: Serve, _isolated_home: Path) -> None:
    server = serve(
        lambda r: Reply.json(
            {"data": [{"index": 0, "embedding": [0.5, 1.5]}, {"index": 1, "embedding": [2.0, 3.0]}]}
        )
    )
    config = make_config({"alpha": server.url + "/v1"}, models={"embedder": "alpha/emb-small"})
    router = make_router(config, FakeClock())
    try:
        vectors = await router.embed(["a", "b"])
        assert await router.embed([]) == []
        rows = router.ledger.calls() if router.ledger else []
    finally:
        await router.aclose()
    assert vectors == [[0.5, 1.5], [2.0, 3.0]]
    assert [(r.path, r.json()["model"], r.json()["input"]) for r in server.requests] == [
        ("/v1/embeddings", "emb-small", ["a", "b"])
    ]
    assert [(r["role"], r["operation"], r["outcome"], r["input_tokens"]) for r in rows] == [
        ("embedder", "embed", "ok", None)
    ]


@pytest.mark.anyio
async def test_spec_example_openai_executor_and_anthropic_evaluator(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server = serve(lambda r: completion("executed by openai", 10, 4))
    anthropic_server = serve(
        lambda r: Reply.json(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-6",
                "content": [{"type": "text", "text": "judged by anthropic"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 20, "output_tokens": 6},
            }
        )
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test-0000")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0000")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_server.url)
    config = make_config(
        {}, models={"executor": "openai/gpt-5.2", "evaluator": "anthropic/claude-opus-4-6"}
    )
    router = make_router(config, FakeClock())
    try:
        executed = await router.chat("executor", REQUEST)
        judged = await router.chat("evaluator", REQUEST)
        rows = router.ledger.calls() if router.ledger else []
    finally:
        await router.aclose()
    assert (executed.content, judged.content) == ("executed by openai", "judged by anthropic")
    assert [(r.path, r.json()["model"]) for r in openai_server.requests] == [
        ("/v1/chat/completions", "gpt-5.2")
    ]
    assert [(r.path, r.json()["model"]) for r in anthropic_server.requests] == [
        ("/v1/messages", "claude-opus-4-6")
    ]
    # Each row is costed with its own model's shipped price.
    assert [(r["provider"], r["role"], r["price_input"], r["price_output"]) for r in rows] == [
        ("openai", "executor", 1.75, 14.0),
        ("anthropic", "evaluator", 5.0, 25.0),
    ]
    assert rows[0]["cost_usd"] == pytest.approx((10 * 1.75 + 4 * 14.0) / 1e6)
    assert rows[1]["cost_usd"] == pytest.approx((20 * 5.0 + 6 * 25.0) / 1e6)
