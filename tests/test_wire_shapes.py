"""Answer shapes that vendors really send and that used to be lost or misread: Mistral's typed
content parts, OpenAI's legacy `function_call`, the zero values Snowflake Cortex fills every
field with, Groq's `x_groq` usage, Responses reasoning sent as raw `reasoning_text`, Bedrock's
server-side tools, Anthropic's compaction and advisor iterations, and the token counts of
embedding calls (down to the ledger)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _oauth_server import chatgpt_access_token
from _routing_support import FakeClock, make_config, make_router
from _server import Recorded, Reply
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi._types import ChatRequest, Message, TokenUsage
from openkoi_providers.chatgpt import ChatGPTProvider
from test_typed_failures import ANTHROPIC, BEDROCK, OPENAI, _eventstream, _sse
from test_typed_failures import _aws_env as _aws_env  # the same fake AWS credentials, autouse

pytestmark = pytest.mark.anyio

ASK = ChatRequest(messages=[Message.user("hi")])

# -- Mistral: content as a list of typed parts --------------------------------------------------

MISTRAL_CONTENT = [
    {"type": "thinking", "thinking": [{"type": "text", "text": "Two and two "}]},
    {"type": "thinking", "thinking": [{"type": "text", "text": "make four."}]},
    {"type": "text", "text": "The answer "},
    {"type": "text", "text": "is 4."},
]


async def test_mistral_content_parts_in_a_whole_answer(serve: Any) -> None:
    body = json.loads(json.dumps(OPENAI.answer))
    message = body["choices"][0]["message"]
    message["content"] = MISTRAL_CONTENT
    del message["tool_calls"]
    body["choices"][0]["finish_reason"] = "stop"
    server = serve(lambda request: Reply.json(body))
    provider = OPENAI.make(server.url)
    try:
        response = await provider.chat(ASK)
    finally:
        await provider.aclose()
    assert response.content == "The answer is 4."
    assert response.reasoning == "Two and two make four."
    assert response.stop_reason == "end_turn"


async def test_mistral_content_parts_in_a_stream(serve: Any) -> None:
    def part(content: Any, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "x",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        }

    events = [
        part([{"type": "thinking", "thinking": [{"type": "text", "text": "Two and two "}]}]),
        part([{"type": "thinking", "thinking": [{"type": "text", "text": "make four."}]}]),
        part([{"type": "text", "text": "The answer "}]),
        part("is 4."),
        part("", "stop"),
        {"id": "x", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9}},
    ]
    server = serve(lambda request: _sse(events, done=True))
    provider = OPENAI.make(server.url)
    try:
        chunks = [c async for c in provider.chat_stream(ASK)]
    finally:
        await provider.aclose()
    assert "".join(c.reasoning_delta for c in chunks) == "Two and two make four."
    assert "".join(c.delta for c in chunks) == "The answer is 4."
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 9


async def test_a_mistral_answer_through_the_router_is_an_answer(serve: Any) -> None:
    """Before, the parts raised a raw ValidationError that stopped the chain."""
    body = {
        "id": "m1",
        "model": "magistral",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": MISTRAL_CONTENT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 9},
    }
    server = serve(lambda request: Reply.json(body))
    config = make_config({"mistral": server.url}, models={"executor": "mistral/magistral"})
    router = make_router(config, FakeClock(), record_usage=False)
    try:
        response = await router.chat("executor", ASK)
    finally:
        await router.aclose()
    assert (response.content, response.reasoning) == ("The answer is 4.", "Two and two make four.")


# -- OpenAI legacy function_call --------------------------------------------------------------


async def test_legacy_function_call_is_a_tool_call_whole_and_streamed(serve: Any) -> None:
    whole = {
        "id": "chatcmpl-legacy",
        "model": "gpt-3.5-turbo-0613",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                "finish_reason": "function_call",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 12},
    }

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-legacy",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
        }

    events = [
        delta({"role": "assistant", "function_call": {"name": "get_weather", "arguments": ""}}),
        delta({"function_call": {"arguments": '{"city"'}}),
        delta({"function_call": {"arguments": ': "Oslo"}'}}),
        delta({}, "function_call"),
    ]
    replies = [Reply.json(whole), _sse(events, done=True)]
    server = serve(lambda request: replies.pop(0))
    provider = OPENAI.make(server.url)
    try:
        chat = await provider.chat(ASK)
        streamed = await collect(provider.chat_stream(ASK))
    finally:
        await provider.aclose()
    for response in (chat, streamed):
        assert response.stop_reason == "tool_use"
        assert [(c.name, c.parsed_arguments()) for c in response.tool_calls] == [
            ("get_weather", {"city": "Oslo"})
        ]
    assert chat.tool_calls[0].id == streamed.tool_calls[0].id == "call_chatcmpl-legacy"


# -- gateways that fill every field: Snowflake Cortex's zero values -----------------------------

EMPTY_LEGACY = {"function_call": {"arguments": "", "name": ""}, "refusal": ""}
DETAILS = [
    {
        "type": "reasoning.text",
        "text": "Check the ",
        "signature": "EvAB",
        "format": "x",
        "index": 0,
    },
    {"type": "reasoning.encrypted", "data": "opaque-bytes", "index": 1},
    {"type": "reasoning.summary", "summary": "weather.", "index": 2},
]


def _cortex(message: dict[str, Any]) -> dict[str, Any]:
    """An answer shaped as Snowflake Cortex sends it (recorded by pydantic-ai's tests): an
    empty legacy `function_call`, an empty `finish_reason` and `id`, `tool_calls: null`."""
    return {
        "id": "",
        "model": "claude-sonnet-4-6",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "",
                "message": {"role": "assistant", "tool_calls": None, **EMPTY_LEGACY, **message},
            }
        ],
        "usage": {"prompt_tokens": 89, "completion_tokens": 14},
    }


@pytest.mark.parametrize(
    ("message", "stop", "calls", "reasoning"),
    [
        ({"content": "Mexico City"}, "end_turn", [], ""),
        (
            {
                "content": "Let me look.",
                "reasoning_details": DETAILS,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            "tool_use",
            [("toolu_1", "get_weather", {"city": "Oslo"})],
            "Check the weather.",
        ),
    ],
    ids=["text", "tool-call"],
)
async def test_zero_valued_fields_are_absent_ones_in_a_whole_answer(
    serve: Any, message: dict[str, Any], stop: str, calls: list[Any], reasoning: str
) -> None:
    """An all-empty `function_call` is no call, an empty `finish_reason` no reason (the stop is
    decided from the answer, as a stream's is), and reasoning sent only as `reasoning_details`
    is the answer's reasoning."""
    server = serve(lambda request: Reply.json(_cortex(message)))
    provider = OPENAI.make(server.url)
    try:
        response = await provider.chat(ASK)
    finally:
        await provider.aclose()
    assert [(c.id, c.name, c.parsed_arguments()) for c in response.tool_calls] == calls
    assert response.stop_reason == stop
    assert response.reasoning == reasoning
    assert response.refusal is None


async def test_zero_valued_fields_are_absent_ones_in_a_stream(serve: Any) -> None:
    def delta(d: dict[str, Any], finish: str | None = "") -> dict[str, Any]:
        return {"id": "", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

    def thinking(text: str) -> dict[str, Any]:
        detail = {"type": "reasoning.text", "text": text, "index": 0}
        return {"content": "", "reasoning_details": [detail], **EMPTY_LEGACY, "tool_calls": None}

    events = [
        delta(thinking("15 * 27")),
        delta(thinking(" = 405")),
        delta({"content": "405", **EMPTY_LEGACY}),
        delta({"content": ""}, "stop"),
    ]
    server = serve(lambda request: _sse(events, done=True))
    provider = OPENAI.make(server.url)
    try:
        response = await collect(provider.chat_stream(ASK))
    finally:
        await provider.aclose()
    assert (response.content, response.reasoning) == ("405", "15 * 27 = 405")
    assert response.tool_calls == []
    assert response.stop_reason == "end_turn"


async def test_groq_usage_in_x_groq_is_the_stream_s_usage(serve: Any) -> None:
    """Groq's streams (recorded by pydantic-ai) carried the usage only in the last chunk's
    `x_groq`, with no top-level `usage`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": "g",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }

    usage = {"prompt_tokens": 5003, "completion_tokens": 359, "total_tokens": 5362}
    events = [
        chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_1"}),
        chunk({"content": "Sunny."}),
        chunk({}, "stop", x_groq={"id": "req_1", "usage": usage}),
    ]
    server = serve(lambda request: _sse(events, done=True))
    provider = OPENAI.make(server.url)
    try:
        response = await collect(provider.chat_stream(ASK))
    finally:
        await provider.aclose()
    assert response.content == "Sunny."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5003, 359)


# -- Responses API: reasoning as raw `reasoning_text` content ----------------------------------

RAW_REASONING = {  # gpt-oss and DeepSeek's /responses (recorded by pydantic-ai): no summary
    "type": "reasoning",
    "id": "r1",
    "summary": [],
    "content": [{"type": "reasoning_text", "text": "We need the capital of France."}],
}
RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "status": "completed",
    "model": "gpt-oss-120b",
    "output": [
        RAW_REASONING,
        {
            "type": "message",
            "id": "m1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
        },
    ],
    "usage": {"input_tokens": 90, "output_tokens": 15},
}
RESPONSE_EVENTS = [
    {"type": "response.output_item.added", "output_index": 0, "item": {**RAW_REASONING, "content": []}},
    {"type": "response.reasoning_text.delta", "output_index": 0, "delta": "We need the capital of France."},
    {"type": "response.output_item.done", "output_index": 0, "item": RAW_REASONING},
    {"type": "response.output_text.delta", "output_index": 1, "delta": "Paris."},
    {"type": "response.output_item.done", "output_index": 1, "item": RESPONSE["output"][1]},
    {"type": "response.completed", "response": RESPONSE},
]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_reasoning_text_content_is_the_reasoning(serve: Any, stream: bool) -> None:
    """A reasoning item with no summary carries its text as `reasoning_text` content: the whole
    answer keeps it, as the stream's `response.reasoning_text.delta` events do."""
    events = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in RESPONSE_EVENTS]
    server = serve(lambda request: Reply.sse(events) if stream else Reply.json(RESPONSE))
    token = Secret(chatgpt_access_token(3600, 1), source="env:TEST", kind="oauth")
    settings = ProviderSettings(
        id="openai-oauth", name="ChatGPT", base_url=server.url, api_key=token,
        options={"stream": stream},
    )  # fmt: skip
    provider = ChatGPTProvider(settings)
    request = ChatRequest(model="gpt-oss-120b", messages=[Message.user("capital?")])
    try:
        response = await (
            collect(provider.chat_stream(request)) if stream else provider.chat(request)
        )
    finally:
        await provider.aclose()
    assert (response.reasoning, response.content) == ("We need the capital of France.", "Paris.")


# -- Bedrock: tools AWS already ran -----------------------------------------------------------

SERVER_USE = {
    "toolUseId": "tooluse_srv",
    "name": "nova_code_interpreter",
    "type": "server_tool_use",
    "input": {"code": "sum([1, 2])"},
}
SERVER_RESULT = {
    "toolUseId": "tooluse_srv",
    "type": "nova_code_interpreter_result",
    "status": "success",
    "content": [{"text": '{"stdOut":"3","stdErr":"","exitCode":0,"isError":false}'}],
}


async def test_bedrock_server_tools_are_not_client_calls(serve: Any) -> None:
    whole = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"toolUse": SERVER_USE},
                    {"toolResult": SERVER_RESULT},
                    {"text": "The sum is 3."},
                ],
            }
        },
        "stopReason": "end_turn",
        "usage": {"inputTokens": 30, "outputTokens": 9},
    }
    mixed = json.loads(json.dumps(whole))
    mixed["output"]["message"]["content"].append(
        {"toolUse": {"toolUseId": "tooluse_mine", "name": "lookup", "input": {"q": 1}}}
    )
    mixed["stopReason"] = "tool_use"
    only_server = json.loads(json.dumps(whole))
    only_server["stopReason"] = "tool_use"
    replies = [Reply.json(whole), Reply.json(mixed), Reply.json(only_server)]
    server = serve(lambda request: replies.pop(0))
    provider = BEDROCK.make(server.url)
    try:
        plain = await provider.chat(ASK)
        both = await provider.chat(ASK)
        server_only = await provider.chat(ASK)
    finally:
        await provider.aclose()
    assert plain.tool_calls == [] and plain.content == "The sum is 3."
    assert plain.stop_reason == "end_turn"
    assert [c.id for c in both.tool_calls] == ["tooluse_mine"] and both.stop_reason == "tool_use"
    assert server_only.tool_calls == [] and server_only.stop_reason == "end_turn"


def _stream_events(stop: str, client_call: bool) -> list[dict[str, Any]]:
    start = {k: v for k, v in SERVER_USE.items() if k != "input"}
    events: list[dict[str, Any]] = [
        {"kind": "messageStart", "data": {"role": "assistant"}},
        {
            "kind": "contentBlockStart",
            "data": {"contentBlockIndex": 0, "start": {"toolUse": start}},
        },
        {
            "kind": "contentBlockDelta",
            "data": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"code": "1+2"}'}}},
        },
        {"kind": "contentBlockStop", "data": {"contentBlockIndex": 0}},
        {
            "kind": "contentBlockStart",
            "data": {"contentBlockIndex": 1, "start": {"toolResult": {"toolUseId": "tooluse_srv"}}},
        },
        {
            "kind": "contentBlockDelta",
            "data": {"contentBlockIndex": 1, "delta": {"toolResult": [{"text": "3"}]}},
        },
        {"kind": "contentBlockStop", "data": {"contentBlockIndex": 1}},
        {"kind": "contentBlockDelta", "data": {"contentBlockIndex": 2, "delta": {"text": "3."}}},
    ]
    if client_call:
        events += [
            {
                "kind": "contentBlockStart",
                "data": {
                    "contentBlockIndex": 3,
                    "start": {"toolUse": {"toolUseId": "tooluse_mine", "name": "lookup"}},
                },
            },
            {
                "kind": "contentBlockDelta",
                "data": {"contentBlockIndex": 3, "delta": {"toolUse": {"input": '{"q": 1}'}}},
            },
        ]
    return [
        *events,
        {"kind": "messageStop", "data": {"stopReason": stop}},
        {"kind": "metadata", "data": {"usage": {"inputTokens": 30, "outputTokens": 9}}},
    ]


async def test_bedrock_stream_server_tools_are_not_client_calls(serve: Any) -> None:
    replies = [
        _eventstream(_stream_events("tool_use", client_call=False)),
        _eventstream(_stream_events("tool_use", client_call=True)),
    ]
    server = serve(lambda request: replies.pop(0))
    provider = BEDROCK.make(server.url)
    try:
        server_only = await collect(provider.chat_stream(ASK))
        both = await collect(provider.chat_stream(ASK))
    finally:
        await provider.aclose()
    assert server_only.tool_calls == [] and server_only.content == "3."
    assert server_only.stop_reason == "end_turn"
    assert [(c.id, c.name, c.arguments) for c in both.tool_calls] == [
        ("tooluse_mine", "lookup", '{"q": 1}')
    ]
    assert both.stop_reason == "tool_use"


# -- Anthropic: compaction bills every iteration ---------------------------------------------

ITERATED = {
    "input_tokens": 23000,
    "output_tokens": 1000,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "iterations": [
        {
            "type": "compaction",
            "input_tokens": 180000,
            "output_tokens": 3500,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 0,
        },
        {
            "type": "message",
            "input_tokens": 23000,
            "output_tokens": 1000,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 50,
        },
    ],
}


async def _anthropic_usages(serve: Any, usage: dict[str, Any]) -> list[TokenUsage]:
    """The usage Anthropic's provider reads from `usage`, in a whole answer and in a stream."""
    events = [dict(e) for e in ANTHROPIC.events]
    events[-2] = {**events[-2], "usage": usage}  # message_delta carries the final usage
    replies = [Reply.json({**ANTHROPIC.answer, "usage": usage}), _sse(events)]
    server = serve(lambda request: replies.pop(0))
    provider = ANTHROPIC.make(server.url)
    try:
        chat = await provider.chat(ASK)
        streamed = await collect(provider.chat_stream(ASK))
    finally:
        await provider.aclose()
    return [chat.usage, streamed.usage]


async def test_anthropic_bills_compaction_iterations(serve: Any) -> None:
    for usage in await _anthropic_usages(serve, ITERATED):
        assert (usage.input_tokens, usage.output_tokens) == (203000, 4500)
        assert (usage.cache_read_tokens, usage.cache_write_tokens) == (100, 50)


async def test_anthropic_advisor_passes_are_not_the_model_s_usage(serve: Any) -> None:
    """The advisor tool runs another model inside the call and lists its pass among the
    iterations (recorded by pydantic-ai): billed at that model's rates, it is not this model's
    usage, which the top level states (the sum of this model's own passes)."""
    usage = {
        "input_tokens": 2390, "output_tokens": 121,
        "iterations": [
            {"type": "message", "input_tokens": 1128, "output_tokens": 110},
            {"type": "advisor_message", "model": "claude-opus-4-8", "input_tokens": 2518,
             "output_tokens": 22},
            {"type": "message", "input_tokens": 1262, "output_tokens": 11},
        ],
    }  # fmt: skip
    for tokens in await _anthropic_usages(serve, usage):
        assert (tokens.input_tokens, tokens.output_tokens) == (2390, 121)


# -- embeddings: their tokens and cost reach the ledger ----------------------------------------


def _embed_answer(provider: str, request: Recorded) -> Reply:
    if provider == "openai":
        return Reply.json(
            {
                "data": [{"index": 0, "embedding": [0.1, 0.2]}, {"index": 1, "embedding": [0.3]}],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            }
        )
    if provider == "ollama":
        return Reply.json({"embeddings": [[0.1, 0.2], [0.3]], "prompt_eval_count": 8})
    if provider == "google":
        return Reply.json(
            {
                "embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3]}],
                "usageMetadata": {"promptTokenCount": 8},
            }
        )
    text = request.json()["inputText"]  # bedrock titan: one call per text
    vector = [0.1, 0.2] if text == "a" else [0.3]
    return Reply.json({"embedding": vector, "inputTextTokenCount": 3 if text == "a" else 5})


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "text-embedding-3-small"),
        ("ollama", "nomic-embed-text"),
        ("google", "gemini-embedding-001"),
        ("bedrock", "amazon.titan-embed-text-v2:0"),
    ],
)
async def test_embedding_usage_and_cost_are_recorded(
    serve: Any, monkeypatch: pytest.MonkeyPatch, provider: str, model: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-embeddings")
    monkeypatch.setenv("GOOGLE_API_KEY", "google-test-key")
    server = serve(lambda request: _embed_answer(provider, request))
    ref = f"{provider}/{model}"
    config = make_config(
        {provider: server.url},
        models={"embedder": ref},
        pricing={ref: {"input": 2.0, "output": 0.0}},
    )
    router = make_router(config, FakeClock())
    try:
        vectors = await router.embed(["a", "b"])
        rows = router.ledger.calls() if router.ledger else []
    finally:
        await router.aclose()
    assert vectors == [[0.1, 0.2], [0.3]]
    assert [(r["operation"], r["outcome"], r["input_tokens"]) for r in rows] == [("embed", "ok", 8)]
    assert rows[0]["cost_usd"] == pytest.approx(8 * 2.0 / 1_000_000)
