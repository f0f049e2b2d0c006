"""Conversions between the SDK's dataclasses and the bindings componentize-py generates from the
WIT. Imported only inside a guest, where the `wit_world` package exists.

Written for openkoi:provider 0.2.x and readable against 0.1.0 bindings too (fields 0.1.0 lacks
are read with defaults and not written), so the SDK builds plugins for any of them."""

from __future__ import annotations

import json
from typing import Any

from componentize_py_types import Err
from wit_world.imports import host as wit_host
from wit_world.imports import http as wit_http
from wit_world.imports import types as T

from openkoi_guest import _types as S
from openkoi_guest._errors import HttpError, ProviderError

_ROLES = {
    T.Role.SYSTEM: "system",
    T.Role.USER: "user",
    T.Role.ASSISTANT: "assistant",
    T.Role.TOOL: "tool",
}
_STOPS = {name: getattr(T.StopReason, name.upper()) for name in S.STOP_REASONS}
_HTTP_ERRORS: dict[type, str] = {
    wit_http.HttpError_Denied: "denied",
    wit_http.HttpError_Timeout: "timeout",
    wit_http.HttpError_Connect: "connect",
    wit_http.HttpError_TooLarge: "too-large",
    wit_http.HttpError_InvalidRequest: "invalid-request",
    wit_http.HttpError_Limit: "limit",
    wit_http.HttpError_Other: "other",
}
_PROVIDER_ERRORS: dict[str, Any] = {
    "rate-limited": T.ProviderError_RateLimited,
    "overloaded": T.ProviderError_Overloaded,
    "server": T.ProviderError_Server,
    "timeout": T.ProviderError_Timeout,
    "network": T.ProviderError_Network,
    "malformed-response": T.ProviderError_MalformedResponse,
    "auth": T.ProviderError_Auth,
    "invalid-request": T.ProviderError_InvalidRequest,
    "context-overflow": T.ProviderError_ContextOverflow,
    "content-policy": T.ProviderError_ContentPolicy,
    "unsupported": T.ProviderError_Unsupported,
    "other": T.ProviderError_Other,
}


def _http_error(err: Err[Any]) -> HttpError:
    value = err.value
    return HttpError(_HTTP_ERRORS.get(type(value), "other"), str(getattr(value, "value", value)))


class _WitBody:
    def __init__(self, body: wit_http.BodyStream) -> None:
        self._body: wit_http.BodyStream | None = body

    def next_chunk(self) -> str:
        if self._body is None:
            return ""
        try:
            return self._body.next_chunk()
        except Err as err:
            raise _http_error(err) from None

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.__exit__(None, None, None)


class WitHttp:
    """The SDK's HTTP backend inside a guest: the host's `http` import."""

    def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: str | None
    ) -> tuple[int, list[tuple[str, str]], str]:
        try:
            r = wit_http.send(wit_http.Request(method, url, headers, body))
        except Err as err:
            raise _http_error(err) from None
        return r.status, r.headers, r.body

    def send_streaming(
        self, method: str, url: str, headers: list[tuple[str, str]], body: str | None
    ) -> tuple[int, list[tuple[str, str]], _WitBody]:
        try:
            r = wit_http.send_streaming(wit_http.Request(method, url, headers, body))
        except Err as err:
            raise _http_error(err) from None
        return r.status, r.headers, _WitBody(r.body)


def get_config(key: str) -> str | None:
    return wit_host.get_config(key)


def log(level: str, message: str) -> None:
    wit_host.log(getattr(wit_host.LogLevel, level.upper(), wit_host.LogLevel.INFO), message)


# -- requests in ------------------------------------------------------------------------------


def _part_from_wit(p: Any) -> str | S.Attachment:
    value = getattr(p, "value", p)
    if isinstance(value, str):
        return value
    return S.Attachment(value.media_type, value.data, value.url, value.name)


def _native_from_wit(n: Any) -> S.NativeTurn | None:
    if n is None:
        return None
    return S.NativeTurn(n.protocol, json.loads(n.blocks) if n.blocks else [])


def _message_from_wit(m: Any) -> S.Message:
    return S.Message(
        role=_ROLES[m.role],  # type: ignore[arg-type]
        content=m.content,
        tool_calls=[S.ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls],
        tool_call_id=m.tool_call_id,
        name=m.name,
        parts=[_part_from_wit(p) for p in getattr(m, "parts", None) or ()],
        native=_native_from_wit(getattr(m, "native", None)),
    )


def request_from_wit(r: T.ChatRequest) -> S.ChatRequest:
    schema = getattr(r, "schema", None)
    return S.ChatRequest(
        model=r.model,
        system=r.system,
        messages=[_message_from_wit(m) for m in r.messages],
        schema=json.loads(schema) if schema else None,
        tool_choice=getattr(r, "tool_choice", None),
        parallel_tool_calls=getattr(r, "parallel_tool_calls", None),
        reasoning_effort=getattr(r, "reasoning_effort", None),
        reasoning_budget=getattr(r, "reasoning_budget", None),
        tools=[
            S.Tool(t.name, t.description, json.loads(t.parameters) if t.parameters else {})
            for t in r.tools
        ],
        max_tokens=r.max_tokens,
        temperature=r.temperature,
        stop=list(r.stop),
        extra=json.loads(r.extra) if r.extra else {},
    )


# -- answers out ------------------------------------------------------------------------------


def usage_to_wit(u: S.Usage) -> T.TokenUsage:
    return T.TokenUsage(
        int(u.input_tokens or 0),
        int(u.output_tokens or 0),
        int(u.cache_read_tokens or 0),
        int(u.cache_write_tokens or 0),
    )


def _stop(reason: str) -> T.StopReason:
    return _STOPS.get(reason, T.StopReason.OTHER)


_HAS_NATIVE = "native" in getattr(T.ChatResponse, "__dataclass_fields__", {})


def _native_to_wit(n: S.NativeTurn) -> Any:
    return T.NativeTurn(n.protocol, json.dumps(n.blocks, separators=(",", ":")))


def response_to_wit(r: S.ChatResponse) -> T.ChatResponse:
    fields: dict[str, Any] = {
        "content": r.content,
        "tool_calls": [T.ToolCall(c.id, c.name, c.arguments or "{}") for c in r.tool_calls],
        "usage": usage_to_wit(r.usage),
        "stop_reason": _stop(r.stop_reason),
        "model": r.model,
        "reasoning": r.reasoning,
    }
    if _HAS_NATIVE:  # a 0.1.0 plugin has nowhere to put it
        fields["native"] = _native_to_wit(r.native) if r.native is not None else None
    return T.ChatResponse(**fields)


def event_to_wit(e: S.Event) -> T.StreamEvent | None:
    if isinstance(e, S.TextDelta):
        return T.StreamEvent_Text(e.text)
    if isinstance(e, S.ReasoningDelta):
        return T.StreamEvent_Reasoning(e.text)
    if isinstance(e, S.ToolCallStart):
        return T.StreamEvent_ToolCallStart(T.ToolCallStart(e.index, e.id, e.name))
    if isinstance(e, S.ToolCallDelta):
        return T.StreamEvent_ToolCallDelta(T.ToolCallDelta(e.index, e.arguments))
    if isinstance(e, S.UsageUpdate):
        return T.StreamEvent_Usage(usage_to_wit(e.usage))
    if isinstance(e, S.Stop):
        return T.StreamEvent_Stop(_stop(e.reason))
    if isinstance(e, S.ModelName):
        return T.StreamEvent_Model(e.model)
    if isinstance(e, S.Native):
        native_event = getattr(T, "StreamEvent_Native", None)
        if native_event is None:  # 0.1.0 cannot carry the turn; the rest of the stream can
            return None
        return native_event(_native_to_wit(e.turn))
    raise TypeError(f"not a stream event: {type(e).__name__}")


def model_to_wit(m: S.ModelInfo) -> T.ModelInfo:
    caps = T.Capabilities(0)
    for flag, on in (
        (T.Capabilities.TOOLS, m.tools),
        (T.Capabilities.STREAMING, m.streaming),
        (T.Capabilities.VISION, m.vision),
        (T.Capabilities.EMBEDDINGS, m.embeddings),
        (T.Capabilities.REASONING, m.reasoning),
    ):
        if on:
            caps |= flag
    pricing = None
    if m.pricing is not None:
        p = m.pricing
        pricing = T.ModelPricing(float(p.input), float(p.output), p.cache_read, p.cache_write)
    return T.ModelInfo(m.id, m.name or m.id, m.context_window, m.max_output_tokens, caps, pricing)


def embeddings_to_wit(e: S.Embeddings) -> T.EmbedResponse:
    return T.EmbedResponse([[float(x) for x in v] for v in e.vectors], usage_to_wit(e.usage))


def error_to_wit(exc: BaseException) -> Any:
    if isinstance(exc, ProviderError):
        info = T.ErrorInfo(exc.message, exc.status, exc.code, exc.retry_after)
        return _PROVIDER_ERRORS.get(exc.kind, T.ProviderError_Other)(info)
    if isinstance(exc, MemoryError):  # the host's memory limit: the host names it
        info = T.ErrorInfo("the plugin ran out of memory", None, "openkoi-memory-limit", None)
        return T.ProviderError_Other(info)
    message = f"plugin failed: {type(exc).__name__}: {exc}"[:500]
    return T.ProviderError_Other(T.ErrorInfo(message, None, None, None))
