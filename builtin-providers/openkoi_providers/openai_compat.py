"""OpenAI Chat Completions and embeddings, and every service that speaks the same protocol.

Dialects read as well: `content` as a list of typed parts (Mistral's reasoning models: thinking
parts are reasoning, text parts are text), and the legacy `function_call` (one call, given a
stable id derived from the response id).

Mapping names (the same in every vendor module): `_map_messages`, `_map_tools` going out;
`_parse_response`, `_parse_stream_event`, `_map_usage`, `_STOP_REASONS` coming back.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from openkoi._errors import MalformedResponseError, ProviderError
from openkoi._features import check_attachments, chosen_tool, effort_of, refuse_attachment
from openkoi._http import classify, extract_error, in_answer
from openkoi._json import loads
from openkoi._media import is_text_type
from openkoi._provider import HTTPProvider, ProviderSettings, sse_events
from openkoi._structured import schema_of, strict_form
from openkoi._types import (
    Attachment,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embeddings,
    Message,
    ModelInfo,
    ModelPricing,
    StopReason,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    ToolDef,
    text_chunk,
)

from openkoi_providers._listing import first_int, get_listing, listed_items

_STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
    "error": "error",
}


def _map_stop_reason(reason: str | None) -> StopReason | None:
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "other")


def _refusal_stop(chunk: ChatChunk, refused: bool) -> bool:
    """Whether the stream has refused so far, and mark its end as a refusal if so: OpenAI ends
    a refusal with finish_reason "stop", and the whole answer calls that a refusal too."""
    refused = refused or bool(chunk.refusal_delta)
    if refused and chunk.stop_reason == "end_turn":
        chunk.stop_reason = "refusal"
    return refused


def _map_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        out.append(_map_message(message))
    return out


_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


def _map_part(part: TextPart | Attachment, provider: str = "openai") -> dict[str, Any]:
    """A user content part: text, `image_url` (a URL or a data URL), `input_audio`, `file`."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if part.kind == "image":
        return {"type": "image_url", "image_url": {"url": part.url or part.data_url()}}
    if part.kind == "audio":
        audio_format = _AUDIO_FORMATS.get(part.media_type)
        if audio_format is None:
            raise refuse_attachment(part, provider, "Chat Completions takes wav and mp3 audio")
        return {"type": "input_audio", "input_audio": {"data": part.base64, "format": audio_format}}
    if is_text_type(part.media_type):  # a `file` part takes PDFs only (a 400 for text)
        return {"type": "text", "text": _inline_text(part)}
    return {
        "type": "file",
        "file": {"filename": part.name or "attachment", "file_data": part.data_url()},
    }


def _inline_text(part: Attachment) -> str:
    """A text file as a text part, between lines that name it, so the model tells it from the
    prompt around it."""
    name = part.name or "attachment"
    text = (part.data or b"").decode("utf-8", "replace")
    return f"--- {name} ({part.media_type}) ---\n{text}\n--- end of {name} ---"


def _content(message: Message) -> str | list[dict[str, Any]] | None:
    """Text stays a string; only a user turn sends a list of parts."""
    if not isinstance(message.content, list):
        return message.content
    if message.role != "user":
        return message.text
    return [_map_part(p) for p in message.content if not isinstance(p, TextPart) or p.text]


def _map_tool_choice(request: ChatRequest, provider: str) -> str | dict[str, Any] | None:
    name = chosen_tool(request, provider)
    if name is not None:
        return {"type": "function", "function": {"name": name}}
    return request.tool_choice


def _response_format(request: ChatRequest) -> dict[str, Any]:
    found = schema_of(request)
    assert found is not None  # called only for a request with a schema
    name, schema = found
    strict_schema, strict = strict_form(schema)
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "schema": strict_schema if strict else schema,
            "strict": strict,
        },
    }


def _map_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.text,
        }
    item: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.role == "assistant" and message.tool_calls:
        item["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    elif item["content"] is None:
        item["content"] = ""
    if message.name and message.role == "user":
        item["name"] = message.name
    return item


def _map_tools(tools: list[ToolDef]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


def _groq_usage(data: Mapping[str, Any]) -> Any:
    """Groq's streams carried the usage only as `x_groq.usage` of the last chunk (newer ones
    also send the standard top-level `usage`)."""
    extra = data.get("x_groq")
    return extra.get("usage") if isinstance(extra, dict) else None


def _map_usage(usage: Mapping[str, Any] | None) -> TokenUsage | None:
    """`input_tokens` counts uncached input: OpenAI's prompt_tokens includes cached tokens."""
    if not usage:
        return None
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int(details.get("cached_tokens") or 0)
    cache_write = int(details.get("cache_write_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return TokenUsage(
        input_tokens=max(0, prompt - cache_read - cache_write),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


# OpenRouter's `reasoning_details` kinds that carry readable text, and the field holding it
# (`reasoning.encrypted` holds only opaque data).
_REASONING_DETAIL_TEXT = {"reasoning.text": "text", "reasoning.summary": "summary"}


def _reasoning_of(message: Mapping[str, Any]) -> str:
    """A message's (or delta's) reasoning: `reasoning_content` (DeepSeek and most others),
    `reasoning` (OpenRouter, Groq, Ollama), else the text of OpenRouter's structured
    `reasoning_details`, which some gateways (Snowflake Cortex) send alone."""
    value = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(value, str) and value:
        return value
    details = message.get("reasoning_details")
    parts: list[str] = []
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        field = _REASONING_DETAIL_TEXT.get(str(detail.get("type")))
        text = detail.get(field) if field else None
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def _legacy_call(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A message's (or delta's) legacy `function_call`, unless it is the empty placeholder some
    servers (Snowflake Cortex) put on every message: `{"name": "", "arguments": ""}`."""
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and (legacy.get("name") or legacy.get("arguments")):
        return legacy
    return None


def _part_text(value: Any) -> str:
    """A thinking part's text: a string, or (Mistral) a list of `{"type": "text"}` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _split_content(content: Any) -> tuple[str, str]:
    """(text, reasoning) of a message's `content`: a string, or a list of typed parts as
    Mistral's reasoning models send, `[{"type": "thinking", "thinking": [...]},
    {"type": "text", "text": "..."}]`. Parts of other types (images, references) carry no text."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise TypeError(f"message content is a {type(content).__name__}, not text")
    text: list[str] = []
    reasoning: list[str] = []
    for part in content:
        if isinstance(part, str):
            text.append(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind == "thinking":
                reasoning.append(_part_text(part.get("thinking")))
            elif kind in ("text", None) and isinstance(part.get("text"), str):
                text.append(part["text"])
    return "".join(text), "".join(reasoning)


def _legacy_call_id(data: Mapping[str, Any]) -> str:
    """A legacy `function_call` has no id: derive one from the response id, so the streamed and
    the whole answer name the call alike and a tool result can refer to it."""
    response_id = data.get("id")
    return f"call_{response_id}" if isinstance(response_id, str) and response_id else "call_0"


def _parse_response(data: Any, provider: str) -> ChatResponse:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise MalformedResponseError("response has no choices", provider=provider)
    if not data["choices"]:
        raise MalformedResponseError("response has an empty choices list", provider=provider)
    choice = next((c for c in data["choices"] if c.get("index", 0) == 0), data["choices"][0])
    message = choice.get("message") or {}
    tool_calls = [
        ToolCall(
            id=call.get("id") or f"call_{i}",
            name=(call.get("function") or {}).get("name", ""),
            arguments=(call.get("function") or {}).get("arguments") or "{}",
        )
        for i, call in enumerate(message.get("tool_calls") or [])
    ]
    legacy = _legacy_call(message)
    if legacy is not None and not tool_calls:
        tool_calls.append(
            ToolCall(
                id=_legacy_call_id(data),
                name=legacy.get("name") or "",
                arguments=legacy.get("arguments") or "{}",
            )
        )
    refusal = message.get("refusal") or None
    # An empty finish_reason (Snowflake Cortex) says nothing: decided as a stream's would be.
    stop = _map_stop_reason(choice.get("finish_reason") or None) or (
        "tool_use" if tool_calls else "end_turn"
    )
    if refusal and stop == "end_turn":
        stop = "refusal"
    text, thinking = _split_content(message.get("content"))
    return ChatResponse(
        content=text,
        reasoning=_reasoning_of(message) or thinking,
        refusal=refusal,
        tool_calls=tool_calls,
        usage=_map_usage(data.get("usage")) or TokenUsage(),
        stop_reason=stop,
        model=data.get("model") or "",
    )


# What an error's code (else its type) implies, for an error with no HTTP status of its own:
# an in-stream error event, or an error body that came with a 200.
_CODE_STATUS = {
    "invalid_api_key": 401,
    "invalid_authentication": 401,
    "authentication_error": 401,
    "unauthorized": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "unsupported_country_region_territory": 403,
    "insufficient_quota": 429,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "server_is_overloaded": 503,
    "engine_overloaded": 503,
    "server_error": 500,
    "api_error": 500,
    "internal_error": 500,
    "model_not_found": 404,
    "not_found_error": 404,
    "invalid_request_error": 400,
}


def _stream_error(
    data: Mapping[str, Any], provider: str, secrets: Sequence[str] = ()
) -> ProviderError:
    """The typed error an error event (or a 200 error body) reports: a status the error names
    decides, else the one its code or type implies, as the HTTP status would have; the error
    keeps the status it really came with (none)."""
    message, code, etype = extract_error(data)
    status = None
    raw = data.get("error")
    if isinstance(raw, dict):
        for key in ("status_code", "code", "status"):
            value = raw.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                status = value
                break
    implied = status or _CODE_STATUS.get(code or "") or _CODE_STATUS.get(etype or "")
    error = classify(
        implied,
        provider=provider,
        message=message or "the stream reported an error",
        code=code,
        etype=etype,
        secrets=secrets,
    )
    error.status = status
    error.partial_usage = _map_usage(data.get("usage"))
    return in_answer(error)


def _parse_stream_event(
    data: Mapping[str, Any], provider: str, secrets: Sequence[str] = ()
) -> ChatChunk | None:
    """One `chat.completion.chunk` to a neutral chunk; None when it carries nothing. `secrets`
    are scrubbed from an error event (a server may echo the key in it).

    This runs once per streamed token, so it only builds the fields that are present.
    """
    if data.get("error"):
        raise _stream_error(data, provider, secrets)
    choices = data.get("choices")
    if choices and len(choices) == 1 and not data.get("usage"):
        # Fast path: most chunks are one choice carrying one text delta.
        choice = choices[0]
        delta = choice.get("delta")
        if delta and len(delta) == 1 and choice.get("finish_reason") is None:
            text = delta.get("content")
            if text and type(text) is str and choice.get("index", 0) == 0:
                return text_chunk(text)
    fields: dict[str, Any] = {}
    usage = data.get("usage") or _groq_usage(data)
    if usage:
        fields["usage"] = _map_usage(usage)
    for choice in data.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue  # n > 1: the neutral model follows the first choice
        delta = choice.get("delta")
        if delta:
            text = delta.get("content")
            thinking = ""
            if text is not None and type(text) is not str:
                text, thinking = _split_content(text)
            if text:
                fields["delta"] = text
            if len(delta) > 1 or not text:
                _parse_rare_delta_fields(delta, fields, data)
            if thinking and not fields.get("reasoning_delta"):
                fields["reasoning_delta"] = thinking
        reason = choice.get("finish_reason")
        if reason:  # an empty one (Snowflake Cortex) is none
            fields["stop_reason"] = _STOP_REASONS.get(reason, "other")
    if not fields:
        return None
    model = data.get("model")
    if model:
        fields["model"] = model
    return ChatChunk(**fields)


def _parse_rare_delta_fields(
    delta: Mapping[str, Any], fields: dict[str, Any], data: Mapping[str, Any]
) -> None:
    reasoning = _reasoning_of(delta)
    if reasoning:
        fields["reasoning_delta"] = reasoning
    refusal = delta.get("refusal")
    if refusal:
        fields["refusal_delta"] = refusal
    calls = delta.get("tool_calls")
    if calls:
        fields["tool_calls"] = [
            ToolCallDelta(
                index=int(call.get("index", 0)),
                id=call.get("id"),
                name=(call.get("function") or {}).get("name"),
                arguments=(call.get("function") or {}).get("arguments") or "",
            )
            for call in calls
        ]
    legacy = _legacy_call(delta)
    if legacy is not None and not calls:
        name = legacy.get("name")
        fields["tool_calls"] = [
            ToolCallDelta(
                index=0,
                id=_legacy_call_id(data) if name else None,
                name=name,
                arguments=legacy.get("arguments") or "",
            )
        ]


def _decode_embedding(value: Any) -> list[float]:
    if isinstance(value, str):
        floats = array("f")
        floats.frombytes(base64.b64decode(value))
        if sys.byteorder == "big":
            floats.byteswap()
        return floats.tolist()
    return [float(x) for x in value]


class OpenAICompatibleProvider(HTTPProvider):
    """Chat Completions over httpx. `options` from config:

    - `max_tokens_field`: `max_completion_tokens` (OpenAI) or `max_tokens` (most compatibles)
    - `include_usage`: ask for the usage chunk when streaming (default true)
    """

    def _auth_headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"authorization": f"Bearer {key.reveal()}"} if key else {}

    def _fetches_itself(self, attachment: Attachment) -> bool:
        return attachment.kind == "image"  # image_url takes an http(s) URL; the rest go inline

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        check_attachments(request.messages, self.id, ("image", "audio", "document", "file"))
        body: dict[str, Any] = {"model": request.model, "messages": _map_messages(request)}
        choice = _map_tool_choice(request, self.id)  # checked even with no tools to send
        if request.tools:  # the API refuses tool_choice and parallel_tool_calls without tools
            body["tools"] = _map_tools(request.tools)
            if choice is not None:
                body["tool_choice"] = choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.output_schema is not None:
            body["response_format"] = _response_format(request)
        if request.reasoning is not None:
            body["reasoning_effort"] = effort_of(request.reasoning)
        if request.max_tokens is not None:
            field = self.settings.options.get("max_tokens_field", "max_tokens")
            body[field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = request.stop
        if stream:
            body["stream"] = True
            if self.settings.options.get("include_usage", True):
                body["stream_options"] = {"include_usage": True}
        body.update(request.extra)
        return body

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        data = await self._post_json("/chat/completions", self._body(request, stream=False))
        if isinstance(data, dict) and data.get("error") and not data.get("choices"):
            raise _stream_error(data, self.id, self._secrets())
        return _parse_response(data, self.id)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = self._body(request, stream=True)
        provider = self.id
        secrets = self._secrets()
        parse = _parse_stream_event
        refused = False
        async with self._open_stream("/chat/completions", body) as response:
            async for item in sse_events(response):
                name, payload = ("message", item) if isinstance(item, str) else item[:2]
                if payload == "[DONE]":
                    return
                if not payload:
                    continue
                try:
                    data = loads(payload)
                except (ValueError, RecursionError):  # not JSON, or nested past the parser
                    raise MalformedResponseError(
                        "the stream sent an event that is not JSON", provider=provider
                    ) from None
                if type(data) is not dict:
                    continue
                if name == "error" and not data.get("error"):
                    data = {"error": data}
                chunk = parse(data, provider, secrets)
                if chunk is not None:
                    refused = _refusal_stop(chunk, refused)
                    yield chunk
        raise MalformedResponseError(
            "the stream ended before its final [DONE] event", provider=provider
        )

    async def _embed(self, texts: list[str], model: str | None) -> Embeddings:
        if not model:
            return await super()._embed(texts, model)
        encoding = self.settings.options.get("embedding_encoding", "float")
        data = await self._post_json(
            "/embeddings", {"model": model, "input": texts, "encoding_format": encoding}
        )
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            raise MalformedResponseError(
                f"expected {len(texts)} embeddings in the response", provider=self.id
            )
        ordered = sorted(items, key=lambda item: int(item.get("index", 0)))
        return Embeddings(
            [_decode_embedding(item.get("embedding")) for item in ordered],
            _map_usage(data.get("usage")),
        )

    async def _models(self) -> list[ModelInfo]:
        """`GET /models`, live. A server without that route (404, 405) offers what is configured."""
        try:
            data = await get_listing(
                self.client,
                "/models",
                provider=self.id,
                headers=self._auth_headers(),
                secrets=self._secrets(),
                on_error=self._error,
                clock=self._clock(),
            )
        except ProviderError as exc:
            if exc.status in (404, 405):
                return self._configured_models()
            raise
        found = {m.id: m for m in map(_model_info, listed_items(data, "data", self.id))}
        return sorted(found.values(), key=lambda m: m.id)

    def _configured_models(self) -> list[ModelInfo]:
        found = [ModelInfo(id=m, name=m) for m in (self.settings.default_model,) if m]
        if self.settings.embedding_model:
            found.append(_embedding_info(self.settings.embedding_model))
        return found


def _embedding_info(model: str) -> ModelInfo:
    return ModelInfo(
        id=model,
        name=model,
        supports_tools=False,
        supports_streaming=False,
        supports_embeddings=True,
    )


def _per_million(value: Any) -> float | None:
    """OpenRouter-style prices are USD per token, as strings."""
    try:
        rate = float(value) * 1_000_000
    except (TypeError, ValueError):
        return None
    return round(rate, 6) if math.isfinite(rate) and rate >= 0 else None


def _live_pricing(item: Mapping[str, Any]) -> ModelPricing | None:
    pricing = item.get("pricing")
    if not isinstance(pricing, dict):
        return None
    rates = _per_million(pricing.get("prompt")), _per_million(pricing.get("completion"))
    if rates[0] is None or rates[1] is None:
        return None
    return ModelPricing(input=rates[0], output=rates[1])


def _model_info(item: Mapping[str, Any]) -> ModelInfo:
    """One entry of `/models`: OpenAI lists ids only; Groq, Together, OpenRouter, vLLM and
    LiteLLM add context lengths (and OpenRouter prices) under their own names."""
    mid = str(item["id"])
    if "embed" in mid.lower():
        return _embedding_info(mid)
    top = item.get("top_provider")
    top = top if isinstance(top, dict) else {}
    return ModelInfo(
        id=mid,
        name=str(item.get("name") or item.get("display_name") or mid),
        context_window=first_int(
            item, "context_window", "context_length", "max_context_length", "max_model_len"
        )
        or first_int(top, "context_length"),
        max_output_tokens=first_int(item, "max_completion_tokens", "max_output_tokens")
        or first_int(top, "max_completion_tokens"),
        pricing=_live_pricing(item),
    )


def create(settings: ProviderSettings) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(settings)
