"""Values across the boundary: openkoi's neutral types to WIT values and back.

wasmtime-py represents a WIT record as a `Record` with kebab-case attributes, an enum as its
case name, flags as a set of names, and a variant whose cases share a Python class (all of
openkoi's are designed that way) as `Variant(tag, payload)`.
"""

from __future__ import annotations

import json
from typing import Any

from openkoi._errors import ERROR_KINDS, ProviderError, UnsupportedError
from openkoi._features import effort_of
from openkoi._structured import schema_of
from openkoi._types import (
    Attachment,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Message,
    ModelInfo,
    ModelPricing,
    NativeTurn,
    StopReason,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    text_chunk,
)

_STOP_REASONS: dict[str, StopReason] = {
    "end-turn": "end_turn",
    "max-tokens": "max_tokens",
    "tool-use": "tool_use",
    "stop-sequence": "stop_sequence",
    "content-filter": "content_filter",
    "refusal": "refusal",
    "error": "error",
    "other": "other",
}
# WIT provider-error case -> the foundation's error class (by its `kind`).
PROVIDER_ERROR_CASES: dict[str, type[ProviderError]] = {
    "rate-limited": ERROR_KINDS["rate-limited"],
    "overloaded": ERROR_KINDS["overloaded"],
    "server": ERROR_KINDS["server"],
    "timeout": ERROR_KINDS["timeout"],
    "network": ERROR_KINDS["network"],
    "malformed-response": ERROR_KINDS["malformed-response"],
    "auth": ERROR_KINDS["auth"],
    "invalid-request": ERROR_KINDS["invalid-request"],
    "context-overflow": ERROR_KINDS["context-overflow"],
    "content-policy": ERROR_KINDS["content-policy"],
    "unsupported": ERROR_KINDS["unsupported"],
    "other": ERROR_KINDS["other"],
}
MEMORY_CODE = "openkoi-memory-limit"  # what the guest SDK reports when Python runs out of memory


class BadValue(ValueError):
    """The guest returned a value that does not fit the contract."""


def record(**fields: Any) -> Any:
    from wasmtime.component import Record

    out = Record()
    for name, value in fields.items():
        setattr(out, name.replace("_", "-"), value)
    return out


def _get(value: Any, name: str) -> Any:
    try:
        return getattr(value, name)
    except AttributeError:
        raise BadValue(f"missing field {name!r}") from None


# -- to the guest -----------------------------------------------------------------------------


def _tool_call(call: ToolCall) -> Any:
    return record(id=call.id, name=call.name, arguments=call.arguments)


def _part(part: TextPart | Attachment) -> Any:
    """A `content-part`. Its cases lift to different Python classes (a string and a record), so
    wasmtime-py takes the payload itself and picks the case by its type."""
    if isinstance(part, TextPart):
        return part.text
    return record(
        media_type=part.media_type,
        data=part.base64 if part.data is not None else None,
        url=part.url,
        name=part.name,
    )


def _native(native: NativeTurn | None) -> Any:
    if native is None:
        return None
    return record(protocol=native.protocol, blocks=json.dumps(native.blocks))


def _message(m: Message, legacy: bool) -> Any:
    fields: dict[str, Any] = {
        "role": m.role,
        "content": m.text if isinstance(m.content, list) else m.content,
        "tool_calls": [_tool_call(c) for c in m.tool_calls],
        "tool_call_id": m.tool_call_id,
        "name": m.name,
    }
    if not legacy:
        parts = m.content if isinstance(m.content, list) and m.attachments else []
        fields["parts"] = [_part(p) for p in parts]
        fields["native"] = _native(m.native)
    return record(**fields)


def adapt_to_legacy(request: ChatRequest, provider: str) -> ChatRequest:
    """A request for a 0.1.0 plugin: what 0.1.0 can say the same way is rewritten (tool choice
    `none` leaves the tools out), what it cannot is refused before the plugin runs."""
    missing = [
        what
        for what, present in (
            ("attachments", any(m.attachments for m in request.messages)),
            ("a schema", request.output_schema is not None),
            ("reasoning settings", request.reasoning is not None),
            (
                f"tool_choice={request.tool_choice!r}",
                request.tool_choice not in (None, "auto", "none"),
            ),
            ("parallel_tool_calls=False", request.parallel_tool_calls is False),
        )
        if present
    ]
    if missing:
        raise UnsupportedError(
            f"plugin {provider} targets openkoi:provider@0.1.0, which cannot carry "
            f"{', '.join(missing)}; rebuild it against 0.2.0",
            provider=provider,
        )
    if request.tool_choice == "none":
        return request.model_copy(update={"tools": [], "tool_choice": None})
    return request


def request_to_wit(request: ChatRequest, legacy: bool = False) -> Any:
    """The request as the plugin's contract version spells it (`legacy`: 0.1.0, adapted first
    with `adapt_to_legacy`)."""
    fields: dict[str, Any] = {
        "model": request.model,
        "system": request.system,
        "messages": [_message(m, legacy) for m in request.messages],
        "tools": [
            record(name=t.name, description=t.description, parameters=json.dumps(t.parameters))
            for t in request.tools
        ],
        "max_tokens": request.max_tokens,
        "temperature": float(request.temperature) if request.temperature is not None else None,
        "stop": list(request.stop),
        "extra": json.dumps(request.extra) if request.extra else "",
    }
    if not legacy:
        found = schema_of(request)
        reasoning = request.reasoning
        fields.update(
            schema=json.dumps(found[1]) if found is not None else None,
            tool_choice=request.tool_choice,
            parallel_tool_calls=request.parallel_tool_calls,
            reasoning_effort=effort_of(reasoning) if reasoning is not None else None,
            reasoning_budget=reasoning if isinstance(reasoning, int) else None,
        )
    return record(**fields)


def embed_request_to_wit(model: str, inputs: list[str]) -> Any:
    return record(model=model, inputs=inputs)


# -- from the guest ---------------------------------------------------------------------------


def usage_from_wit(value: Any) -> TokenUsage:
    return TokenUsage(
        input_tokens=int(_get(value, "input-tokens")),
        output_tokens=int(_get(value, "output-tokens")),
        cache_read_tokens=int(_get(value, "cache-read-tokens")),
        cache_write_tokens=int(_get(value, "cache-write-tokens")),
    )


def _stop(value: Any) -> StopReason:
    return _STOP_REASONS.get(str(value), "other")


def response_from_wit(value: Any) -> ChatResponse:
    return ChatResponse(
        content=str(_get(value, "content")),
        tool_calls=[
            ToolCall(
                id=str(_get(c, "id")),
                name=str(_get(c, "name")),
                arguments=str(_get(c, "arguments")),
            )
            for c in _get(value, "tool-calls")
        ],
        usage=usage_from_wit(_get(value, "usage")),
        stop_reason=_stop(_get(value, "stop-reason")),
        model=str(_get(value, "model")),
        reasoning=str(_get(value, "reasoning")),
        native=native_from_wit(getattr(value, "native", None)),  # absent before 0.2.0
    )


def native_from_wit(value: Any) -> NativeTurn | None:
    if value is None:
        return None
    try:
        blocks = json.loads(str(_get(value, "blocks")))
    except json.JSONDecodeError as exc:
        raise BadValue(f"native-turn blocks are not JSON: {exc.msg}") from None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise BadValue("native-turn blocks must be a JSON array of objects")
    return NativeTurn(protocol=str(_get(value, "protocol")), blocks=blocks)


def chunk_from_wit(event: Any) -> ChatChunk:
    tag = getattr(event, "tag", None)
    payload = getattr(event, "payload", None)
    if tag == "text":
        return text_chunk(str(payload))
    if tag == "reasoning":
        return ChatChunk(reasoning_delta=str(payload))
    if tag == "tool-call-start":
        return ChatChunk(
            tool_calls=[
                ToolCallDelta(
                    index=int(_get(payload, "index")),
                    id=str(_get(payload, "id")),
                    name=str(_get(payload, "name")),
                )
            ]
        )
    if tag == "tool-call-delta":
        return ChatChunk(
            tool_calls=[
                ToolCallDelta(
                    index=int(_get(payload, "index")), arguments=str(_get(payload, "arguments"))
                )
            ]
        )
    if tag == "usage":
        return ChatChunk(usage=usage_from_wit(payload))
    if tag == "stop":
        return ChatChunk(stop_reason=_stop(payload))
    if tag == "model":
        return ChatChunk(model=str(payload))
    if tag == "native":
        return ChatChunk(native=native_from_wit(payload))
    raise BadValue(f"unknown stream event {tag!r}")


def model_from_wit(value: Any) -> ModelInfo:
    caps = {str(c) for c in _get(value, "capabilities")}
    pricing = _get(value, "pricing")
    return ModelInfo(
        id=str(_get(value, "id")),
        name=str(_get(value, "name")),
        context_window=_get(value, "context-window"),
        max_output_tokens=_get(value, "max-output-tokens"),
        supports_tools="tools" in caps,
        supports_streaming="streaming" in caps,
        supports_vision="vision" in caps,
        supports_embeddings="embeddings" in caps,
        supports_reasoning="reasoning" in caps,
        pricing=None
        if pricing is None
        else ModelPricing(
            input=float(_get(pricing, "input")),
            output=float(_get(pricing, "output")),
            cache_read=_get(pricing, "cache-read"),
            cache_write=_get(pricing, "cache-write"),
        ),
    )


def embeddings_from_wit(value: Any) -> tuple[list[list[float]], TokenUsage]:
    vectors = [[float(x) for x in v] for v in _get(value, "embeddings")]
    return vectors, usage_from_wit(_get(value, "usage"))


def is_error(value: Any) -> bool:
    """A `provider-error` as lifted by wasmtime-py (ok values are never `Variant`s here)."""
    from wasmtime.component import Variant

    return isinstance(value, Variant)


def error_info(value: Any) -> tuple[str, str, int | None, str | None, float | None]:
    """(case, message, status, code, retry-after) of a lifted `provider-error`."""
    tag = str(getattr(value, "tag", "other"))
    info = getattr(value, "payload", None)
    message = str(getattr(info, "message", "") or "the plugin reported an error")[:1000]
    status = getattr(info, "status", None)
    code = getattr(info, "code", None)
    retry_after = getattr(info, "retry-after", None)
    return tag, message, status, code, retry_after


def error_from_wit(value: Any, provider: str) -> ProviderError:
    tag, message, status, code, retry_after = error_info(value)
    cls = PROVIDER_ERROR_CASES.get(tag, ProviderError)
    return cls(message, provider=provider, status=status, code=code, retry_after=retry_after)
