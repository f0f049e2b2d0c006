"""Every gemini case of the shared corpus, served from a real socket in small chunks.

Responses must parse to what the recording says (text, thoughts, function calls, usage with cached
tokens, finish reasons, typed errors, embeddings, the paged model list); recorded requests, read
back into neutral types, must go out as the same generateContent body, with the key in the
`x-goog-api-key` header and never in the URL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _corpus import Case, corpus_params, load_case
from _server import Recorded, Reply
from openkoi import (
    AuthenticationError,
    ChatRequest,
    ChatResponse,
    InvalidRequestError,
    Message,
    ProviderError,
    ToolCall,
    ToolDef,
)
from openkoi._provider import ProviderSettings, collect
from openkoi._secrets import Secret
from openkoi_providers.gemini import GeminiProvider

pytestmark = pytest.mark.anyio

KEY = "AIzaSyTEST-gemini-key-0123456789"

ERRORS: dict[str, type[ProviderError]] = {
    "error_400_api_key_invalid": AuthenticationError,
    "error_404_model_not_found": InvalidRequestError,
    "error_404_model_not_found_sse": InvalidRequestError,
}


def _is_stream(case: Case) -> bool:
    return case.request["path"].endswith(":streamGenerateContent")


def _replay(case: Case, chunk_size: int = 41) -> Any:
    def handler(request: Recorded) -> Reply:
        assert request.headers["x-goog-api-key"] == KEY
        assert KEY not in request.target
        assert "key" not in request.query
        assert (request.method, request.path) == (case.request["method"], case.request["path"])
        if _is_stream(case):
            assert request.query == {"alt": "sse"}  # the JSON-array cases are answered as recorded
        return case.reply(chunk_size, chunked=case.is_stream or _is_stream(case))

    return handler


def _provider(url: str, **options: Any) -> GeminiProvider:
    return GeminiProvider(
        ProviderSettings(
            id="google",
            name="Google Gemini",
            base_url=url,
            api_key=Secret(KEY),
            default_model="gemini-2.5-pro",
            embedding_model="gemini-embedding-001",
            options=options,
        )
    )


# -- the recorded request, read back into neutral types ------------------------------------


def _model_of(case: Case) -> str:
    return case.request["path"].split("/models/", 1)[1].split(":", 1)[0]


def neutral_request(case: Case) -> ChatRequest:
    """A generateContent body as the neutral request that should produce it."""
    body = case.request["body"] or {}
    extra = {
        k: v
        for k, v in body.items()
        if k not in ("contents", "systemInstruction", "tools", "generationConfig")
    }
    config = body.get("generationConfig") or {}
    neutral_config = {"maxOutputTokens", "temperature", "stopSequences"}
    if set(config) - neutral_config:
        extra["generationConfig"] = config
        config = {}
    tools = [
        ToolDef(
            name=d["name"],
            description=d.get("description") or "",
            parameters=d.get("parameters") or {"type": "object", "properties": {}},
        )
        for group in body.get("tools", [])
        for d in group.get("functionDeclarations", [])
    ]
    messages: list[Message] = []
    pending: list[ToolCall] = []
    for n, content in enumerate(body.get("contents", [])):
        parts = content["parts"]
        if content.get("role") == "model":
            calls = [
                ToolCall(
                    id=f"call_{n}_{i}",
                    name=p["functionCall"]["name"],
                    arguments=json.dumps(p["functionCall"].get("args", {})),
                )
                for i, p in enumerate(parts)
                if "functionCall" in p
            ]
            text = "".join(p.get("text", "") for p in parts) or None
            messages.append(Message.assistant(text, calls))
            pending += calls
            continue
        for part in parts:
            if "functionResponse" in part:
                response = part["functionResponse"]
                call = next(c for c in pending if c.name == response["name"])
                pending.remove(call)
                result = response["response"]
                text = result["output"] if set(result) == {"output"} else json.dumps(result)
                messages.append(Message.tool_result(call.id, text))
            else:
                messages.append(Message.user(part["text"]))
    system = body.get("systemInstruction")
    return ChatRequest(
        model=_model_of(case),
        system="".join(p["text"] for p in system["parts"]) if system else None,
        messages=messages,
        tools=tools,
        max_tokens=config.get("maxOutputTokens"),
        temperature=config.get("temperature"),
        stop=config.get("stopSequences", []),
        extra=extra,
    )


def normalized(body: dict[str, Any]) -> dict[str, Any]:
    """Compare bodies by meaning: signatures, the systemInstruction role, null descriptions
    and an empty generationConfig say nothing."""
    out = json.loads(json.dumps(body))
    for content in out.get("contents", []):
        for part in content["parts"]:
            part.pop("thoughtSignature", None)
    if "systemInstruction" in out:
        out["systemInstruction"].pop("role", None)
    for group in out.get("tools", []):
        for decl in group.get("functionDeclarations", []):
            if not decl.get("description"):
                decl.pop("description", None)
            if "parameters" in decl:  # recorded with the OpenAPI subset; openkoi sends JSON Schema
                decl["parametersJsonSchema"] = decl.pop("parameters")
            params = decl.get("parametersJsonSchema")
            if (
                params is not None
                and not params.get("properties")
                and params.get("type")
                in (
                    "object",
                    "OBJECT",
                )
            ):
                del decl["parametersJsonSchema"]
    if out.get("generationConfig") == {}:
        del out["generationConfig"]
    return out


# -- what the recorded response says -------------------------------------------------------


def _recorded_responses(case: Case) -> list[dict[str, Any]]:
    if case.content_type.startswith("text/event-stream"):
        text = case.body.decode()
        return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    data = case.json()
    return data if isinstance(data, list) else [data]


def expected(case: Case) -> dict[str, Any]:
    text, thoughts, calls, usage, stop = [], [], [], {}, None
    for data in _recorded_responses(case):
        usage = data.get("usageMetadata") or usage
        for part in data["candidates"][0]["content"].get("parts", []):
            if "functionCall" in part:
                calls.append(part["functionCall"])
            elif part.get("thought"):
                thoughts.append(part["text"])
            elif "text" in part:
                text.append(part["text"])
        stop = data["candidates"][0].get("finishReason") or stop
    return {
        "text": "".join(text),
        "reasoning": "".join(thoughts),
        "calls": calls,
        "usage": usage,
        "stop": stop,
    }


def _check(response: ChatResponse, want: dict[str, Any]) -> None:
    assert response.content == want["text"]
    assert response.reasoning == want["reasoning"]
    assert [(c.name, c.parsed_arguments()) for c in response.tool_calls] == [
        (c["name"], c.get("args", {})) for c in want["calls"]
    ]
    ids = [c.id for c in response.tool_calls]
    assert all(ids) and len(set(ids)) == len(ids)
    usage = want["usage"]
    cached = usage.get("cachedContentTokenCount", 0)
    assert response.usage.cache_read_tokens == cached
    assert response.usage.input_tokens == usage["promptTokenCount"] - cached
    assert response.usage.output_tokens == usage.get("candidatesTokenCount", 0) + usage.get(
        "thoughtsTokenCount", 0
    )
    wanted_stop = {"STOP": "tool_use" if want["calls"] else "end_turn", "MAX_TOKENS": "max_tokens"}
    assert response.stop_reason == wanted_stop[want["stop"]]


@pytest.mark.parametrize("name", corpus_params("gemini"))
async def test_gemini_case(name: str, serve: Any) -> None:
    case = load_case("gemini", name)
    server = serve(_replay(case))
    provider = _provider(server.url, embedding_dimensions=768)
    try:
        if name in ERRORS:
            request = ChatRequest(model=_model_of(case), messages=[Message.user("hi")])
            with pytest.raises(ERRORS[name]) as info:
                if _is_stream(case):
                    await collect(provider.chat_stream(request))
                else:
                    await provider.chat(request)
            error = info.value
            assert error.status == case.status
            assert error.message == case.json()["error"]["message"]
            assert not error.transient
            assert KEY not in repr(error) + str(error)
            return
        if name == "models_list":
            await _check_models(case, provider, server)
            return
        if "embed" in case.request["path"]:
            await _check_embeddings(case, provider, server)
            return
        request = neutral_request(case)
        if _is_stream(case):
            response = await collect(provider.chat_stream(request))
        else:
            response = await provider.chat(request)
        _check(response, expected(case))
    finally:
        await provider.aclose()
    assert server.errors == []
    if case.request["body"]:
        assert normalized(server.requests[0].json()) == normalized(case.request["body"])


async def _check_embeddings(case: Case, provider: GeminiProvider, server: Any) -> None:
    texts = [r["content"]["parts"][0]["text"] for r in case.request["body"]["requests"]]
    model = _model_of(case)
    vectors = await provider.embed(texts, model=model)
    recorded = case.json()["embeddings"]
    assert len(vectors) == len(texts) == len(recorded)
    for got, item in zip(vectors, recorded, strict=True):
        assert got == pytest.approx(item["values"])
        assert len(got) == 768
    assert server.requests[0].json() == case.request["body"]


async def _check_models(case: Case, provider: GeminiProvider, server: Any) -> None:
    """The recorded page names a next page; a second page (served here) ends the listing."""
    token = case.json()["nextPageToken"]
    extra = {"name": "models/page-two-model", "supportedGenerationMethods": ["embedContent"]}

    def handler(request: Recorded) -> Reply:
        assert request.headers["x-goog-api-key"] == KEY
        if request.query.get("pageToken") == token:
            return Reply.json({"models": [extra]})
        assert "pageToken" not in request.query
        return Reply(status=200, body=case.body, headers=case.response_headers())

    server.handler = handler
    models = await provider.models()
    recorded = case.json()["models"]
    assert [m.id for m in models] == [m["name"].removeprefix("models/") for m in recorded] + [
        "page-two-model"
    ]
    flash = next(m for m in models if m.id == "gemini-2.5-flash")
    assert (flash.context_window, flash.max_output_tokens) == (1048576, 65536)
    assert flash.supports_reasoning and flash.supports_tools
    assert models[-1].supports_embeddings and not models[-1].supports_tools
    assert len(server.requests) == 2


async def test_corpus_specifics(serve: Any) -> None:
    """Facts about particular recordings, spelled out so a regression names itself."""
    checks = {
        "parallel_function_calls_stream_sse": lambda r: (
            len(r.tool_calls) == 2 and r.stop_reason == "tool_use"
        ),
        "cached_content_token_count": lambda r: (
            r.usage.cache_read_tokens == 3055 and r.usage.input_tokens == 3797 - 3055
        ),
        "max_tokens": lambda r: r.stop_reason == "max_tokens",
        "thinking_stream_sse": lambda r: r.content == "3" and "Prime" in r.reasoning,
        "stream_json_array": lambda r: r.content and r.reasoning,
        "function_call_single": lambda r: (
            r.tool_calls[0].name == "get_weather"
            and r.tool_calls[0].parsed_arguments() == {"location": "San Francisco"}
        ),
    }
    for name, check in checks.items():
        case = load_case("gemini", name)
        server = serve(_replay(case))
        provider = _provider(server.url)
        try:
            request = neutral_request(case)
            if _is_stream(case):
                response = await collect(provider.chat_stream(request))
            else:
                response = await provider.chat(request)
            assert check(response), name
        finally:
            await provider.aclose()


async def test_thought_signature_goes_back_with_its_call(serve: Any) -> None:
    """The signature Gemini put on a function call returns with that call in the next turn."""
    first = load_case("gemini", "parallel_function_calls")
    followup = load_case("gemini", "function_response_followup")
    replies = iter([first, followup])

    def handler(request: Recorded) -> Reply:
        case = next(replies)
        return Reply(status=200, body=case.body, headers=case.response_headers())

    server = serve(handler)
    provider = _provider(server.url)
    try:
        request = ChatRequest(model="gemini-2.5-flash", messages=[Message.user("secrets?")])
        response = await provider.chat(request)
        history = [
            *request.messages,
            Message.assistant(response.content or None, response.tool_calls),
            *(Message.tool_result(c.id, f"secret {i}") for i, c in enumerate(response.tool_calls)),
        ]
        await provider.chat(request.model_copy(update={"messages": history}))
    finally:
        await provider.aclose()
    sent = server.requests[1].json()["contents"]
    recorded_signature = first.json()["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert [c["role"] for c in sent] == ["user", "model", "user"]
    assert sent[1]["parts"][0]["thoughtSignature"] == recorded_signature
    assert "thoughtSignature" not in sent[1]["parts"][1]
    assert [p["functionResponse"]["name"] for p in sent[2]["parts"]] == [
        "secret_retrieval_tool",
        "secret_retrieval_tool",
    ]
    assert sent[2]["parts"][0]["functionResponse"]["response"] == {"output": "secret 0"}
