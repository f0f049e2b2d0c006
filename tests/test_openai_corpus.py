"""Every openai-chat and openai-embeddings case of the shared corpus, served from a real socket."""

from __future__ import annotations

import base64
import json
from array import array
from typing import Any

import pytest
from _corpus import Case, corpus_params, load_case
from _server import Recorded, Reply
from openkoi import (
    AuthenticationError,
    ChatRequest,
    InvalidRequestError,
    Message,
    ProviderError,
    RateLimitedError,
)
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.openai_compat import OpenAICompatibleProvider

pytestmark = pytest.mark.anyio

ERRORS: dict[str, type[ProviderError]] = {
    "error_400_unsupported_parameter": InvalidRequestError,
    "error_401_invalid_api_key": AuthenticationError,
    "error_404_model_not_found": InvalidRequestError,
    "compat_openrouter_error_429": RateLimitedError,
    "compat_groq_error_400_tool_use_failed": InvalidRequestError,
    "compat_groq_stream_error_event": InvalidRequestError,
    "compat_openrouter_stream_error_chunk": InvalidRequestError,
}


def _replay(case: Case, chunk_size: int = 61) -> Any:
    """Serve the recorded body; streams go out in small chunks that cut lines and UTF-8."""

    def handler(request: Recorded) -> Reply:
        assert request.path.endswith(case.request["path"].split("/v1", 1)[-1])
        assert request.headers["authorization"] == "Bearer sk-test-key-123456"
        return case.reply(chunk_size)

    return handler


def _provider(url: str, **options: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings(
            id="openai",
            name="OpenAI",
            base_url=url + "/v1",
            api_key=Secret("sk-test-key-123456"),
            default_model="gpt-4o",
            embedding_model="text-embedding-3-small",
            options=options,
        )
    )


def _request(case: Case) -> ChatRequest:
    return ChatRequest(model=case.request["body"]["model"], messages=[Message.user("hi")])


def _expected_stream(case: Case) -> dict[str, Any]:
    """A deliberately naive reading of the recorded SSE: what choice 0 said, and the usage."""
    text, refusal, usage = [], [], None
    tools: dict[int, dict[str, Any]] = {}
    for line in case.body.decode().splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line[6:])
        usage = data.get("usage") or usage
        for choice in data.get("choices", []):
            if choice["index"] != 0:
                continue
            delta = choice["delta"]
            text.append(delta.get("content") or "")
            refusal.append(delta.get("refusal") or "")
            for call in delta.get("tool_calls") or []:
                slot = tools.setdefault(call["index"], {"id": None, "name": None, "args": ""})
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] = call.get("function", {}).get("name") or slot["name"]
                slot["args"] += call.get("function", {}).get("arguments") or ""
    return {"text": "".join(text), "refusal": "".join(refusal), "tools": tools, "usage": usage}


@pytest.mark.parametrize("name", corpus_params("openai-chat"))
async def test_openai_chat_case(name: str, serve: Any) -> None:
    case = load_case("openai-chat", name)
    server = serve(_replay(case))
    provider = _provider(server.url)
    streaming = bool(case.request["body"].get("stream"))
    try:
        if name in ERRORS:
            with pytest.raises(ERRORS[name]) as info:
                if streaming:
                    await collect(provider.chat_stream(_request(case)))
                else:
                    await provider.chat(_request(case))
            assert info.value.status in (case.status, 400)
            assert "sk-test-key-123456" not in repr(info.value) + str(info.value)
            if name == "compat_openrouter_stream_error_chunk":
                assert info.value.partial_usage is not None
                assert info.value.partial_usage.input_tokens == 43
                assert info.value.partial_usage.output_tokens == 10
            if name == "compat_openrouter_error_429":
                assert info.value.transient
            return
        if streaming:
            response = await collect(provider.chat_stream(_request(case)))
            expected = _expected_stream(case)
            assert response.content == expected["text"]
            assert (response.refusal or "") == expected["refusal"]
            assert len(response.tool_calls) == len(expected["tools"])
            for call, (_, want) in zip(
                response.tool_calls, sorted(expected["tools"].items()), strict=True
            ):
                assert (call.id, call.name, call.arguments) == (
                    want["id"],
                    want["name"],
                    want["args"],
                )
                call.parsed_arguments()  # the recorded arguments are valid JSON
            raw_usage = expected["usage"]
        else:
            response = await provider.chat(_request(case))
            data = case.json()
            message = data["choices"][0]["message"]
            assert response.content == (message.get("content") or "")
            assert response.refusal == message.get("refusal")
            assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
                (c["id"], c["function"]["name"], c["function"]["arguments"])
                for c in message.get("tool_calls") or []
            ]
            raw_usage = data.get("usage")
        if raw_usage:
            details = raw_usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") or 0
            written = details.get("cache_write_tokens") or 0
            assert response.usage.cache_read_tokens == cached
            assert response.usage.cache_write_tokens == written
            assert response.usage.input_tokens == raw_usage["prompt_tokens"] - cached - written
            assert response.usage.output_tokens == raw_usage["completion_tokens"]
        else:
            assert response.usage.total_tokens == 0
    finally:
        await provider.aclose()


async def test_corpus_specifics(serve: Any) -> None:
    """Facts about particular recordings, spelled out so a regression names itself."""
    checks = {
        "parallel_tool_calls_stream_include_usage": lambda r: (
            len(r.tool_calls) == 2 and r.stop_reason == "tool_use"
        ),
        "finish_reason_length": lambda r: r.stop_reason == "max_tokens",
        "finish_reason_length_stream": lambda r: r.stop_reason == "max_tokens",
        "refusal": lambda r: r.stop_reason == "refusal" and bool(r.refusal),
        "cached_tokens_hit": lambda r: r.usage.cache_read_tokens > 0,
        "cache_write_tokens_explicit_breakpoint": lambda r: r.usage.cache_write_tokens > 0,
        "tool_call_single": lambda r: r.stop_reason == "tool_use" and len(r.tool_calls) == 1,
        "text_stream_n2_include_usage": lambda r: r.content and r.usage.output_tokens > 0,
    }
    for name, check in checks.items():
        case = load_case("openai-chat", name)
        server = serve(_replay(case))
        provider = _provider(server.url)
        try:
            if case.request["body"].get("stream"):
                response = await collect(provider.chat_stream(_request(case)))
            else:
                response = await provider.chat(_request(case))
            assert check(response), name
        finally:
            await provider.aclose()


def _decode_expected(value: Any) -> list[float]:
    if isinstance(value, str):
        floats = array("f")
        floats.frombytes(base64.b64decode(value))
        return floats.tolist()
    return [float(v) for v in value]


@pytest.mark.parametrize("name", corpus_params("openai-embeddings"))
async def test_openai_embeddings_case(name: str, serve: Any) -> None:
    case = load_case("openai-embeddings", name)
    server = serve(_replay(case))
    provider = _provider(server.url)
    inputs = case.request["body"]["input"]
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    try:
        if case.status >= 400:
            with pytest.raises(InvalidRequestError) as info:
                await provider.embed(texts, model=case.request["body"]["model"])
            assert info.value.status == case.status
            return
        vectors = await provider.embed(texts, model=case.request["body"]["model"])
        data = sorted(case.json()["data"], key=lambda item: item["index"])
        assert len(vectors) == len(texts) == len(data)
        for got, item in zip(vectors, data, strict=True):
            assert got == pytest.approx(_decode_expected(item["embedding"]), rel=1e-6)
            assert len(got) > 0
        sent = server.requests[0].json()
        assert sent["input"] == texts
    finally:
        await provider.aclose()
