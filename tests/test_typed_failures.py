"""Whatever a server sends, only an `OpenKoiError` leaves a built-in provider.

Each provider gets a valid answer (whole and streamed) in which one value at a time is replaced
by a value of the wrong type; every variant must either parse or fail as a typed error naming
the provider. Real loopback servers, real framing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _oauth_server import chatgpt_access_token
from _server import Recorded, Reply
from openkoi._errors import MalformedResponseError, OpenKoiError
from openkoi._provider import HTTPProvider, ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi._timeouts import Timeouts
from openkoi._types import ChatRequest, Message
from openkoi_providers import anthropic, bedrock, chatgpt, copilot, gemini, ollama, openai_compat
from test_bedrock import event as bedrock_event

pytestmark = pytest.mark.anyio

KEY = "sk-typed-failures-0123456789abcdef"
WRONG: tuple[Any, ...] = (None, 7, "x", [], {}, [{"type": 1}])


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOPENKOITEST00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "openkoi/test/secret/0123456789")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for var in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
        monkeypatch.delenv(var, raising=False)


def mutations(value: Any) -> Iterator[Any]:
    """`value` with one node (the root, a key's value or a list item) replaced by each WRONG."""
    for wrong in WRONG:
        if wrong != value:
            yield wrong
    if isinstance(value, dict):
        for key, item in value.items():
            for changed in mutations(item):
                yield {**value, key: changed}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for changed in mutations(item):
                yield [*value[:i], changed, *value[i + 1 :]]


@dataclass
class Wire:
    """One provider's protocol: how to build it, a valid answer, and how to frame a stream."""

    make: Callable[[str], HTTPProvider]
    model: str
    answer: dict[str, Any]
    events: list[dict[str, Any]]
    frame: Callable[[list[dict[str, Any]]], Reply]
    embedding: dict[str, Any] | None = None


def _settings(provider_id: str, url: str, **extra: Any) -> ProviderSettings:
    return ProviderSettings(
        id=provider_id,
        name=provider_id,
        base_url=url,
        api_key=Secret(KEY),
        timeouts=Timeouts(connect=5.0, first_token=5.0, idle=5.0, total=10.0),
        **extra,
    )


def _sse(events: list[dict[str, Any]], done: bool = False) -> Reply:
    texts = [f"data: {json.dumps(e)}\n\n" for e in events] + (["data: [DONE]\n\n"] if done else [])
    return Reply.sse(texts)


def _ndjson(events: list[dict[str, Any]]) -> Reply:
    lines: list[bytes | str] = [json.dumps(e) + "\n" for e in events]
    return Reply(chunks=lines, headers={"content-type": "application/x-ndjson"})


def _eventstream(events: list[dict[str, Any]]) -> Reply:
    parts: list[bytes | str] = [bedrock_event(e["kind"], e["data"]) for e in events]
    return Reply(chunks=parts, headers={"content-type": "application/vnd.amazon.eventstream"})


OPENAI = Wire(
    make=lambda url: openai_compat.create(_settings("openai", url, default_model="m")),
    model="m",
    answer={
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "hi",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    },
    events=[
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    ],
    frame=lambda events: _sse(events, done=True),
    embedding={
        "data": [{"index": 0, "embedding": [0.5, 0.25]}],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    },
)

ANTHROPIC = Wire(
    make=lambda url: anthropic.create(_settings("anthropic", url, default_model="claude")),
    model="claude",
    answer={
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
    events=[
        {
            "type": "message_start",
            "message": {"model": "claude", "usage": {"input_tokens": 3, "output_tokens": 0}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop"},
    ],
    frame=_sse,
)

GEMINI = Wire(
    make=lambda url: gemini.create(
        _settings("google", url, default_model="g", embedding_model="e")
    ),
    model="g",
    answer={
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "hi"}, {"functionCall": {"name": "f", "args": {"a": 1}}}],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        "modelVersion": "g",
    },
    events=[
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}]},
        {
            "candidates": [
                {
                    "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        },
    ],
    frame=_sse,
    embedding={"embeddings": [{"values": [0.5, 0.25]}]},
)

OLLAMA = Wire(
    make=lambda url: ollama.create(
        ProviderSettings(id="ollama", name="Ollama", base_url=url, default_model="llama")
    ),
    model="llama",
    answer={
        "model": "llama",
        "message": {
            "role": "assistant",
            "content": "hi",
            "thinking": "hm",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 3,
        "eval_count": 1,
    },
    events=[
        {"model": "llama", "message": {"role": "assistant", "content": "hi"}, "done": False},
        {
            "model": "llama",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": 1,
        },
    ],
    frame=_ndjson,
    embedding={"embeddings": [[0.5, 0.25]], "prompt_eval_count": 2},
)

BEDROCK = Wire(
    make=lambda url: bedrock.create(
        ProviderSettings(
            id="bedrock",
            name="AWS Bedrock",
            base_url=url,
            default_model="amazon.nova-pro-v1:0",
            embedding_model="amazon.titan-embed-text-v2:0",
            timeouts=Timeouts(connect=5.0, first_token=5.0, idle=5.0, total=10.0),
        )
    ),
    model="amazon.nova-pro-v1:0",
    answer={
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hm"}}},
                    {"text": "hi"},
                    {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 1},
    },
    events=[
        {"kind": "messageStart", "data": {"role": "assistant"}},
        {"kind": "contentBlockDelta", "data": {"contentBlockIndex": 0, "delta": {"text": "hi"}}},
        {
            "kind": "contentBlockStart",
            "data": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}},
        },
        {
            "kind": "contentBlockDelta",
            "data": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{}"}}},
        },
        {"kind": "messageStop", "data": {"stopReason": "tool_use"}},
        {"kind": "metadata", "data": {"usage": {"inputTokens": 3, "outputTokens": 1}}},
    ],
    frame=_eventstream,
    embedding={"embedding": [0.5, 0.25], "inputTextTokenCount": 2},
)

CHATGPT = Wire(
    make=lambda url: chatgpt.create(
        ProviderSettings(
            id="openai-oauth",
            name="ChatGPT",
            base_url=url,
            api_key=Secret(chatgpt_access_token(3600, 1), source="env:TEST"),
            default_model="gpt-5.2",
            options={"stream": False},
            timeouts=Timeouts(connect=5.0, first_token=5.0, idle=5.0, total=10.0),
        )
    ),
    model="gpt-5.2",
    answer={
        "id": "r1",
        "status": "completed",
        "model": "gpt-5.2",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ],
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
    events=[
        {"type": "response.created", "response": {"id": "r1", "status": "in_progress"}},
        {"type": "response.output_text.delta", "output_index": 0, "delta": "hi"},
        {
            "type": "response.completed",
            "response": {
                "id": "r1",
                "status": "completed",
                "model": "gpt-5.2",
                "output": [],
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        },
    ],
    frame=_sse,
)

WIRES = {
    "openai-oauth": CHATGPT,
    "openai": OPENAI,
    "anthropic": ANTHROPIC,
    "google": GEMINI,
    "ollama": OLLAMA,
    "bedrock": BEDROCK,
}


def test_every_built_in_provider_keeps_the_guarded_entry_points() -> None:
    """The guard lives in HTTPProvider's public methods; a vendor overriding one would bypass
    it (Copilot speaks the OpenAI wire format above, through its session token)."""
    classes = [
        openai_compat.OpenAICompatibleProvider,
        copilot.CopilotProvider,
        chatgpt.ChatGPTProvider,
        anthropic.AnthropicProvider,
        gemini.GeminiProvider,
        ollama.OllamaProvider,
        bedrock.BedrockProvider,
    ]
    for cls in classes:
        assert issubclass(cls, HTTPProvider)
        for name in ("chat", "chat_stream", "embed", "embed_with_usage", "models"):
            assert getattr(cls, name) is getattr(HTTPProvider, name), (cls.__name__, name)


def _check(exc: BaseException, provider: HTTPProvider) -> None:
    assert isinstance(exc, OpenKoiError), f"{type(exc).__name__} escaped: {exc!r}"
    assert str(exc).startswith(f"{provider.id}: "), str(exc)
    assert KEY not in str(exc)


async def _run_all(serve: Any, wire: Wire, replies: list[Reply], call: str) -> int:
    """Send each reply in turn; returns how many ended in a typed error."""
    queue = list(replies)

    def handler(request: Recorded) -> Reply:
        return queue.pop(0)

    server = serve(handler)
    provider = wire.make(server.url)
    request = ChatRequest(model=wire.model, messages=[Message.user("hi")])
    failed = 0
    try:
        for _ in replies:
            try:
                if call == "chat":
                    await provider.chat(request)
                elif call == "stream":
                    await collect(provider.chat_stream(request))
                else:
                    await provider.embed(["a"])
            except Exception as exc:
                _check(exc, provider)
                failed += 1
    finally:
        await provider.aclose()
    assert not server.errors
    return failed


def _streaming(make: Callable[[str], HTTPProvider]) -> Callable[[str], HTTPProvider]:
    def build(url: str) -> HTTPProvider:
        provider = make(url)
        provider.settings.options["stream"] = True
        return provider

    return build


@pytest.mark.parametrize("name", sorted(WIRES))
async def test_wrong_shapes_in_a_whole_answer(serve: Any, name: str) -> None:
    wire = WIRES[name]
    replies = [Reply.json(body) for body in mutations(wire.answer)]
    failed = await _run_all(serve, wire, replies, "chat")
    assert failed > 0  # the mutations do reach the parser


@pytest.mark.parametrize("name", sorted(WIRES))
async def test_wrong_shapes_in_a_stream(serve: Any, name: str) -> None:
    wire = WIRES[name]
    replies = []
    for i, item in enumerate(wire.events):
        payload = item["data"] if name == "bedrock" else item
        for changed in mutations(payload):
            if not isinstance(changed, dict):
                continue  # the framing itself (covered by each provider's own tests)
            replaced = {**item, "data": changed} if name == "bedrock" else changed
            replies.append(wire.frame([*wire.events[:i], replaced, *wire.events[i + 1 :]]))
    if name == "openai-oauth":
        wire = Wire(**{**wire.__dict__, "make": _streaming(wire.make)})
    failed = await _run_all(serve, wire, replies, "stream")
    assert failed > 0


@pytest.mark.parametrize("name", sorted(n for n, w in WIRES.items() if w.embedding))
async def test_wrong_shapes_in_embeddings(serve: Any, name: str) -> None:
    wire = WIRES[name]
    assert wire.embedding is not None
    replies = [Reply.json(body) for body in mutations(wire.embedding)]
    failed = await _run_all(serve, wire, replies, "embed")
    assert failed > 0


async def test_the_excerpt_names_the_shape_and_scrubs_secrets(serve: Any) -> None:
    """A refusal that is an object (and echoes the key) is malformed; the key is not repeated."""
    body = json.loads(json.dumps(OPENAI.answer))
    body["choices"][0]["message"]["refusal"] = {"echo": KEY}
    server = serve(lambda request: Reply.json(body))
    provider = OPENAI.make(server.url)
    try:
        with pytest.raises(MalformedResponseError) as info:
            await provider.chat(ChatRequest(messages=[Message.user("hi")]))
    finally:
        await provider.aclose()
    text = str(info.value)
    assert text.startswith("openai: the answer has an unexpected shape")
    assert "refusal" in text and "[REDACTED]" in text and KEY not in text
    assert info.value.transient  # the chain moves on to the next model


async def test_a_request_json_cannot_hold_is_the_callers_error(serve: Any) -> None:
    from openkoi._errors import InvalidRequestError

    server = serve(lambda request: Reply.json(OPENAI.answer))
    provider = OPENAI.make(server.url)
    request = ChatRequest(messages=[Message.user("hi")], extra={"when": object()})
    try:
        with pytest.raises(InvalidRequestError, match="cannot be sent as JSON"):
            await provider.chat(request)
    finally:
        await provider.aclose()
    assert server.requests == []


NON_FINITE = (float("nan"), float("inf"), float("-inf"))


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_a_request_refuses_non_finite_floats(value: float) -> None:
    """`json.dumps` would send `NaN` / `Infinity`, which is not JSON."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finite"):
        ChatRequest(messages=[Message.user("hi")], temperature=value)


@pytest.mark.parametrize("call", ["chat", "stream"])
@pytest.mark.parametrize("name", sorted(WIRES))
async def test_non_finite_numbers_are_refused_before_sending(
    serve: Any, name: str, call: str
) -> None:
    """NaN or infinity anywhere in the body (here `extra` and a tool's schema) is the caller's
    permanent error, and nothing reaches the server."""
    from openkoi._errors import InvalidRequestError
    from openkoi._types import ToolDef

    wire = WIRES[name]
    server = serve(lambda request: Reply.json(wire.answer))
    provider = (_streaming(wire.make) if call == "stream" else wire.make)(server.url)
    number = {"type": "number", "maximum": float("inf")}
    tool = ToolDef(name="f", parameters={"type": "object", "properties": {"n": number}})
    requests = [
        ChatRequest(model=wire.model, messages=[Message.user("hi")], extra={"seed": value})
        for value in NON_FINITE
    ]
    requests.append(ChatRequest(model=wire.model, messages=[Message.user("hi")], tools=[tool]))
    try:
        for request in requests:
            with pytest.raises(InvalidRequestError, match="cannot be sent as JSON") as info:
                if call == "chat":
                    await provider.chat(request)
                else:
                    await collect(provider.chat_stream(request))
            assert not info.value.transient
            _check(info.value, provider)
    finally:
        await provider.aclose()
    assert server.requests == []


async def test_a_wrong_shape_moves_the_chain_on(serve: Any) -> None:
    """Before, a raw ValidationError left the router and stopped the chain."""
    from _routing_support import FakeClock, completion, make_config, make_router

    broken = {"choices": [{"index": 0, "message": {"content": {"parts": 1}}}]}
    primary = serve(lambda request: Reply.json(broken))
    backup = serve(lambda request: completion("from backup"))
    config = make_config(
        {"primary": primary.url, "backup": backup.url},
        models={"executor": "primary/m", "fallback": {"executor": ["backup/m"]}},
    )
    clock = FakeClock()
    router = make_router(config, clock)
    try:
        answer = await router.chat("executor", ChatRequest(messages=[Message.user("hi")]))
        cooling = (await router.state.get(["primary/m"], now=router.clock()))["primary/m"]
        outcomes = [r["outcome"] for r in router.ledger.calls()] if router.ledger else []
    finally:
        await router.aclose()
    assert answer.content == "from backup"
    assert cooling.kind == "malformed-response" and cooling.until > clock.now
    assert outcomes == ["malformed-response", "ok"]
