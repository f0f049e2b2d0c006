"""Anthropic Messages API: chat, SSE streaming with every event type, tools and prompt caching.

Going out, the neutral request becomes system blocks, alternating user/assistant turns (tool
results are `tool_result` blocks inside a user turn) and `tools`; up to four `cache_control`
breakpoints are placed on the system prompt, the tool definitions and the conversation so that
later turns read the cached prefix. Coming back, `usage.input_tokens` is Anthropic's uncached input,
and `cache_read_input_tokens` / `cache_creation_input_tokens` become cache read / write.

Settings `options` (config `[providers.anthropic]`):

- `prompt_caching` (default true): place the cache breakpoints described above
- `max_tokens`: the output limit sent when a request names none (Anthropic requires one)
- `betas`: extra `anthropic-beta` flags, a list or a comma-separated string
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from openkoi._errors import (
    ContextOverflowError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderError,
    UnsupportedError,
)
from openkoi._features import check_attachments, chosen_tool, effort_of, thinking_budget
from openkoi._http import classify, error_from_response, error_text, in_answer
from openkoi._provider import HTTPProvider, ProviderSettings, sse_json_events
from openkoi._structured import (
    SCHEMA_TOOL,
    as_forced_tool,
    from_forced_tool,
    schema_nodes,
    schema_of,
    strict_form,
)
from openkoi._types import (
    Attachment,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embeddings,
    Message,
    ModelInfo,
    NativeTurn,
    StopReason,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    ToolDef,
    text_chunk,
)

from openkoi_providers._claude import (
    DEFAULT_MAX_TOKENS,
    MIN_THINKING_BUDGET,
    adaptive_only,
    check_thinking,
    thinking_max_tokens,
)
from openkoi_providers._listing import MAX_PAGES, first_int, get_listing, listed_items

PROTOCOL = "anthropic"  # the NativeTurn protocol of Messages API content blocks
# Models before structured outputs: a schema goes to them as a forced tool call.
_NO_NATIVE_SCHEMA = (
    "claude-3",
    "claude-2",
    "claude-sonnet-4-0",
    "claude-sonnet-4-2025",
    "claude-opus-4-0",
    "claude-opus-4-2025",
    "claude-instant",
)
_DOCUMENT_TYPES = ("application/pdf", "text/plain")

API_VERSION = "2023-06-01"
OAUTH_BETA = "oauth-2025-04-20"
MAX_CACHE_BREAKPOINTS = 4  # Anthropic rejects a request with more
_EPHEMERAL = {"type": "ephemeral"}
# Older models whose output limit is below DEFAULT_MAX_TOKENS.
_SMALL_OUTPUT_PREFIXES = ("claude-3-haiku", "claude-3-opus", "claude-3-sonnet", "claude-2")

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
    "model_context_window_exceeded": "max_tokens",
    "pause_turn": "other",
}

# The HTTP status each error `type` is sent with; used to classify errors that arrive inside a
# 200 stream or body, where there is no status of their own.
_ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Anthropic has no error code for an over-long prompt: it is an `invalid_request_error` whose
# message starts with this documented, stable text.
_PROMPT_TOO_LONG = "prompt is too long"

_KNOWN_MODELS: tuple[tuple[str, str, int], ...] = (
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", 64000),
    ("claude-haiku-4-5", "Claude Haiku 4.5", 64000),
    ("claude-opus-4-1", "Claude Opus 4.1", 32000),
    ("claude-sonnet-4-0", "Claude Sonnet 4", 64000),
)


def _map_stop_reason(reason: str | None) -> StopReason | None:
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "other")


# -- going out ------------------------------------------------------------------------------


def _map_system(request: ChatRequest) -> list[dict[str, Any]]:
    """The system prompt and any `system` messages, as text blocks (Anthropic has no system role)."""
    texts = [request.system] if request.system else []
    texts += [m.text for m in request.messages if m.role == "system" and m.content]
    return [{"type": "text", "text": text} for text in texts if text]


def _tool_input(call: ToolCall) -> Any:
    """A tool call's arguments as the JSON object Anthropic wants back in the history."""
    parsed = call.parsed_arguments()  # raises InvalidToolArgumentsError for bad JSON
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _map_blocks(message: Message, provider: str) -> list[dict[str, Any]]:
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequestError(
                "a tool message needs the tool_call_id of the call it answers", provider=provider
            )
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": [_map_part(p) for p in message.content if _has_payload(p)]
            if isinstance(message.content, list)
            else message.content or "",
        }
        if message.is_error:
            result["is_error"] = True
        return [result]
    native = message.native
    if message.role == "assistant" and native is not None and native.protocol == PROTOCOL:
        # Thinking blocks, their signatures and server tool results go back as received; each
        # block is copied, so cache breakpoints placed on this body never touch the message.
        return [dict(block) for block in native.blocks]
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, list):
        blocks.extend(_map_part(part) for part in message.content if _has_payload(part))
    elif message.content:
        blocks.append({"type": "text", "text": message.content})
    if message.role == "assistant":
        for call in message.tool_calls:
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
            )
    return blocks


def _has_payload(part: TextPart | Attachment) -> bool:
    return not isinstance(part, TextPart) or bool(part.text)


def _map_part(part: TextPart | Attachment) -> dict[str, Any]:
    """A text part, or an image / document block, by URL when there is one, else base64."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    kind = "image" if part.kind == "image" else "document"
    if part.url is not None:
        return {"type": kind, "source": {"type": "url", "url": part.url}}
    if part.media_type == "text/plain":
        text = (part.data or b"").decode("utf-8", "replace")
        return {"type": kind, "source": {"type": "text", "media_type": "text/plain", "data": text}}
    return {
        "type": kind,
        "source": {"type": "base64", "media_type": part.media_type, "data": part.base64},
    }


def _map_messages(messages: Sequence[Message], provider: str = "anthropic") -> list[dict[str, Any]]:
    """Neutral messages to Anthropic turns: tool results become `tool_result` blocks in a user
    turn, and consecutive turns of one role (e.g. parallel tool results) merge into one."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue  # hoisted into the system blocks by _map_system
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _map_blocks(message, provider)
        if not blocks:
            continue  # Anthropic rejects empty turns and empty text blocks
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _map_tools(tools: Sequence[ToolDef]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        item: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
        if tool.description:
            item["description"] = tool.description
        out.append(item)
    return out


def _map_tool_choice(request: ChatRequest, provider: str) -> dict[str, Any] | None:
    """`tool_choice` as Anthropic's object; `parallel_tool_calls=False` rides on it."""
    name = chosen_tool(request, provider)
    choice = request.tool_choice
    if choice is None and request.parallel_tool_calls is not False:
        return None
    if name is not None:
        out: dict[str, Any] = {"type": "tool", "name": name}
    else:
        out = {"type": {"required": "any", "none": "none"}.get(choice or "auto", "auto")}
    if request.parallel_tool_calls is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# JSON-schema bounds Anthropic's constrained decoding refuses (a 400: "For 'integer' type,
# property 'minimum' is not supported"). They are left out of the schema sent and named in the
# field's description instead; the answer is still checked against the whole schema.
_UNSUPPORTED_BOUNDS = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "maxItems", "uniqueItems", "minProperties", "maxProperties",
)  # fmt: skip


def _constrained_form(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema as Anthropic's structured output takes it: every object closed, the bounds it
    refuses moved into descriptions (`minItems` only above 1). None when it cannot be said
    there: an object open to properties of its own (a map, `dict[str, X]`)."""
    result, _ = strict_form(schema)
    for node in schema_nodes(result):
        if node.get("additionalProperties", False) is not False:
            return None
        dropped = {key: node.pop(key) for key in _UNSUPPORTED_BOUNDS if key in node}
        if isinstance(node.get("minItems"), int) and node["minItems"] > 1:
            dropped["minItems"] = node.pop("minItems")
        if dropped:
            bounds = ", ".join(f"{key} {json.dumps(value)}" for key, value in dropped.items())
            said = node.get("description")
            node["description"] = f"{said} ({bounds})" if isinstance(said, str) else bounds
    return result


def _native_schema(model: str, options: Mapping[str, Any]) -> bool:
    mode = str(options.get("structured_output") or "").lower()
    if mode in ("native", "tool"):
        return mode == "native"
    return not model.startswith(_NO_NATIVE_SCHEMA)


def _count_cache_markers(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if "cache_control" in value else 0
        return own + sum(_count_cache_markers(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_cache_markers(v) for v in value)
    return 0


def _apply_cache_breakpoints(body: dict[str, Any], limit: int = MAX_CACHE_BREAKPOINTS) -> int:
    """Mark cache breakpoints, most valuable first, never exceeding `limit` in the whole body.

    Order: the end of the system prompt, the last tool definition, the final block of the last
    message (so the next turn reads everything sent now), and the end of the previous user turn
    (a read hit even when the newest turn adds many blocks). Breakpoints the caller put in
    `extra` count towards the limit. Returns the number of breakpoints in the body.
    """
    used = _count_cache_markers(
        {k: body.get(k) for k in ("system", "tools", "messages") if k in body}
    )
    candidates: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        body["system"] = system = [{"type": "text", "text": system}]
    if isinstance(system, list) and system and isinstance(system[-1], dict):
        candidates.append(system[-1])
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
        candidates.append(tools[-1])
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        turns = [m for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)]
        if turns and turns[-1]["content"]:
            candidates.append(turns[-1]["content"][-1])
        users = [t for t in turns[:-1] if t.get("role") == "user" and t["content"]]
        if users:
            candidates.append(users[-1]["content"][-1])
    for block in candidates:
        if used >= limit:
            break
        if isinstance(block, dict) and "cache_control" not in block:
            block["cache_control"] = dict(_EPHEMERAL)
            used += 1
    return used


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


def _default_max_tokens(model: str) -> int:
    return 4096 if model.startswith(_SMALL_OUTPUT_PREFIXES) else DEFAULT_MAX_TOKENS


# -- coming back ----------------------------------------------------------------------------


def _tokens(usage: Mapping[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
    )


def _map_usage(usage: Mapping[str, Any] | None) -> TokenUsage | None:
    """Anthropic's `input_tokens` already excludes cached tokens, as TokenUsage wants.

    With compaction the API samples more than once per request and lists each pass in
    `usage.iterations`; the top-level counts are the last pass only, and the bill is the sum of
    the iterations, so that sum is what is reported. An `advisor_message` pass is another model
    (the advisor tool's), billed at its own rates: it is not this model's usage.
    """
    if not usage:
        return None
    iterations = usage.get("iterations")
    if isinstance(iterations, list) and iterations:
        passes = [
            _tokens(item)
            for item in iterations
            if isinstance(item, dict) and item.get("type") != "advisor_message"
        ]
        if passes:
            return sum(passes[1:], passes[0])
    return _tokens(usage)


def _parse_response(data: Any, provider: str) -> ChatResponse:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise MalformedResponseError("response has no content list", provider=provider)
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text.append(str(block.get("text") or ""))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            raw = block.get("input")
            calls.append(
                ToolCall(
                    id=str(block.get("id") or f"toolu_{len(calls)}"),
                    name=str(block.get("name") or ""),
                    # A compatible server may send the input as JSON text: keep it as written, so
                    # bad JSON surfaces from parsed_arguments() instead of being re-quoted.
                    arguments=raw if isinstance(raw, str) else json.dumps(raw or {}),
                )
            )
        # server_tool_use / web_search_tool_result / redacted_thinking: run by Anthropic, not us
    stop = _map_stop_reason(data.get("stop_reason")) or ("tool_use" if calls else "end_turn")
    blocks = [b for b in data["content"] if isinstance(b, dict)]
    return ChatResponse(
        content="".join(text),
        reasoning="".join(reasoning),
        tool_calls=calls,
        usage=_map_usage(data.get("usage")) or TokenUsage(),
        stop_reason=stop,
        model=str(data.get("model") or ""),
        native=_native(blocks),
    )


def _native(blocks: list[dict[str, Any]]) -> NativeTurn | None:
    """Keep the blocks only when the plain fields cannot rebuild the turn (thinking, server
    tools, citations): a text-only or tool-only answer maps back the same from the neutral
    fields."""
    plain = all(
        b.get("type") == "tool_use" or (b.get("type") == "text" and set(b) <= {"type", "text"})
        for b in blocks
    )
    return None if plain else NativeTurn(protocol=PROTOCOL, blocks=blocks)


def _classify(
    status: int | None,
    *,
    provider: str,
    message: str,
    code: str | None = None,
    etype: str | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """Anthropic's error `type` decides the class; an in-stream error uses its type's status.

    Same signature as `openkoi._http.classify`, so `error_from_response` can call it directly.
    """
    etype = etype or code
    implied = status if status is not None else _ERROR_TYPE_STATUS.get(etype or "")
    if etype == "billing_error":
        implied = 403  # a billing problem will not recover by waiting or retrying: treat as auth
    error = classify(
        implied,
        provider=provider,
        message=message,
        etype=etype,
        retry_after=retry_after,
        secrets=secrets,
    )
    if (
        type(error) is InvalidRequestError
        and etype == "invalid_request_error"
        and error.message.lower().startswith(_PROMPT_TOO_LONG)
    ):
        error = ContextOverflowError(
            error.message, provider=provider, status=implied, code=etype, retry_after=retry_after
        )
    error.status = status
    return error


def _error_event(
    data: Mapping[str, Any], provider: str, usage: TokenUsage | None, secrets: Sequence[str]
) -> ProviderError:
    """An `error` event in a stream, or a `{"type": "error"}` body that came with a 200."""
    err = data.get("error")
    err = err if isinstance(err, dict) else {}
    error = _classify(
        None,
        provider=provider,
        message=error_text(err.get("message")) or "the response reported an error",
        etype=error_text(err.get("type")),
        secrets=secrets,
    )
    error.partial_usage = usage
    return in_answer(error)


@dataclass
class _StreamState:
    """What a stream has said so far: raw usage (message_start, then message_delta updates),
    which content blocks are client tool calls, and whether `message_stop` arrived."""

    usage: dict[str, Any] = field(default_factory=dict)
    tools: dict[int, int] = field(default_factory=dict)  # content block index -> tool ordinal
    done: bool = False
    # The content blocks as they build up (index -> block, and the pieces of its growing
    # fields), so the finished turn can be sent back as the API wrote it.
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    pieces: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    # With a schema sent as a forced tool, that tool's input streams as the answer's text.
    schema_tool: bool = False
    as_text: set[int] = field(default_factory=set)

    def current_usage(self) -> TokenUsage | None:
        return _map_usage(self.usage)

    def grow(self, index: int, key: str, piece: str) -> None:
        if index in self.blocks:
            self.pieces.setdefault((index, key), []).append(piece)

    def native(self) -> NativeTurn | None:
        blocks = []
        for index, block in sorted(self.blocks.items()):
            block = dict(block)
            for (owner, key), parts in self.pieces.items():
                if owner == index and key != "input":
                    block[key] = str(block.get(key) or "") + "".join(parts)
            if block.get("type") in ("tool_use", "server_tool_use"):
                raw = "".join(self.pieces.get((index, "input"), ()))
                try:
                    block["input"] = json.loads(raw) if raw else block.get("input") or {}
                except (ValueError, RecursionError):
                    return None  # the call's bad JSON surfaces from parsed_arguments()
            blocks.append(block)
        return _native(blocks)


def _parse_stream_event(
    data: Mapping[str, Any],
    state: _StreamState,
    provider: str,
    secrets: Sequence[str] = (),
) -> ChatChunk | None:
    """One SSE event to a neutral chunk; None for events with nothing to say (ping, stops,
    signatures, citations) and for event types this module does not know."""
    kind = data.get("type")
    if kind == "message_start":
        message = data.get("message") or {}
        state.usage = dict(message.get("usage") or {})
        return ChatChunk(usage=state.current_usage(), model=message.get("model"))
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        index = int(data.get("index", 0))
        if isinstance(block, dict):
            state.blocks[index] = dict(block)
        if (
            block.get("type") == "tool_use"
            and state.schema_tool
            and block.get("name") == SCHEMA_TOOL
        ):
            state.as_text.add(index)
            return None
        if block.get("type") == "tool_use":
            ordinal = state.tools[index] = len(state.tools)
            return ChatChunk(
                tool_calls=[
                    ToolCallDelta(index=ordinal, id=block.get("id"), name=block.get("name"))
                ]
            )
        if block.get("type") == "text" and block.get("text"):
            return ChatChunk(delta=str(block["text"]))
        return None
    if kind == "content_block_delta":
        delta = data.get("delta") or {}
        dtype = delta.get("type")
        index = int(data.get("index", 0))
        if dtype == "text_delta":
            text = delta.get("text")
            if text and isinstance(text, str):
                state.grow(index, "text", text)
                return text_chunk(text)
            return None
        if dtype == "thinking_delta" and delta.get("thinking"):
            state.grow(index, "thinking", str(delta["thinking"]))
            return ChatChunk(reasoning_delta=str(delta["thinking"]))
        if dtype == "signature_delta" and delta.get("signature"):
            state.grow(index, "signature", str(delta["signature"]))
            return None
        if dtype == "citations_delta" and isinstance(delta.get("citation"), dict):
            if index in state.blocks:
                state.blocks[index].setdefault("citations", []).append(delta["citation"])
            return None
        if dtype == "input_json_delta":
            slot = state.tools.get(index)
            fragment = str(delta.get("partial_json") or "")
            state.grow(index, "input", fragment)
            if index in state.as_text and fragment:
                return text_chunk(fragment)
            if slot is None or not fragment:  # a server tool's input, or an empty piece
                return None
            return ChatChunk(tool_calls=[ToolCallDelta(index=slot, arguments=fragment)])
        return None
    if kind == "message_delta":
        usage = data.get("usage") or {}
        state.usage.update({k: v for k, v in usage.items() if v is not None})
        stop = _map_stop_reason((data.get("delta") or {}).get("stop_reason"))
        if stop == "tool_use" and state.as_text and not state.tools:
            stop = "end_turn"  # the forced schema call was the answer, not a tool request
        return ChatChunk(usage=state.current_usage(), stop_reason=stop)
    if kind == "message_stop":
        state.done = True
        native = None if state.as_text else state.native()
        return ChatChunk(native=native) if native is not None else None
    if kind == "error":
        raise _error_event(data, provider, state.current_usage(), secrets)
    return None  # ping, content_block_stop, and anything Anthropic adds later


class AnthropicProvider(HTTPProvider):
    """The Messages API over httpx; see the module docstring for options."""

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        # The `anthropic-ratelimit-*` headers of the latest response (success or error) that
        # carried any, lower-cased: what the account may still send before it is throttled.
        self.last_rate_limits: dict[str, str] = {}
        if client is not None:
            client.event_hooks["response"].append(self._record_rate_limits)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"anthropic-version": API_VERSION, **self.settings.headers}
            self._client = self._new_client(headers)
            self._client.event_hooks["response"].append(self._record_rate_limits)
        return self._client

    async def _record_rate_limits(self, response: httpx.Response) -> None:
        limits = {
            k.lower(): v
            for k, v in response.headers.items()
            if k.lower().startswith("anthropic-ratelimit-")
        }
        if limits:
            self.last_rate_limits = limits

    @property
    def _messages_path(self) -> str:
        return "/messages" if self.settings.base_url.rstrip("/").endswith("/v1") else "/v1/messages"

    def _betas(self) -> list[str]:
        configured = self.settings.options.get("betas") or []
        if isinstance(configured, str):
            configured = configured.split(",")
        for name, value in self.settings.headers.items():
            if name.lower() == "anthropic-beta":
                configured = [*value.split(","), *configured]
        return [str(b).strip() for b in configured if str(b).strip()]

    def _auth_headers(self) -> dict[str, str]:
        key = self.settings.api_key
        betas = self._betas()
        headers: dict[str, str] = {}
        if key and key.kind == "oauth":
            headers["authorization"] = f"Bearer {key.reveal()}"
            betas.insert(0, OAUTH_BETA)
        elif key:
            headers["x-api-key"] = key.reveal()
        if betas:
            headers["anthropic-beta"] = ",".join(dict.fromkeys(betas))
        return headers

    def _error(self, response: httpx.Response, body_text: str) -> ProviderError:
        return error_from_response(
            response.status_code,
            response.headers,
            body_text,
            provider=self.id,
            secrets=self._secrets(),
            classifier=_classify,
        )

    def _fetches_itself(self, attachment: Attachment) -> bool:
        """Anthropic downloads image and PDF URLs itself; a text document goes inline."""
        return attachment.kind == "image" or attachment.media_type == "application/pdf"

    def _shaped(self, request: ChatRequest) -> ChatRequest:
        """The request with its schema as a forced tool where the model has no native form, or
        the schema cannot be said in it (`_constrained_form`)."""
        found = schema_of(request)
        if found is None:
            return request
        if _native_schema(request.model, self.settings.options):
            if _constrained_form(found[1]) is not None:
                return request
            why = "this schema (an object open to properties of its own) only"
        else:
            why = "a schema only"
        if request.reasoning is not None:
            raise UnsupportedError(
                f"{request.model} takes {why} as a forced tool call, which Anthropic does not "
                "allow with thinking on; drop `reasoning` or change the schema",
                provider=self.id,
            )
        return as_forced_tool(request, self.id)

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        options = self.settings.options
        check_attachments(request.messages, self.id, ("image", "document"), roles=("user", "tool"))
        for message in request.messages:
            for attachment in message.attachments:
                if attachment.kind == "document" and attachment.media_type not in _DOCUMENT_TYPES:
                    raise UnsupportedError(
                        f"Anthropic takes PDF and plain-text documents, not {attachment.media_type}",
                        provider=self.id,
                    )
        max_tokens = request.max_tokens or options.get("max_tokens")
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": int(max_tokens or _default_max_tokens(request.model)),
            "messages": _map_messages(request.messages, self.id),
        }
        system = _map_system(request)
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = _map_tools(request.tools)
        choice = _map_tool_choice(request, self.id)
        if choice is not None:
            body["tool_choice"] = choice
        output_config: dict[str, Any] = {}
        if request.reasoning is not None:
            check_thinking(request, self.id)
            budget = max(MIN_THINKING_BUDGET, thinking_budget(request.reasoning))
            if max_tokens is None:
                body["max_tokens"] = max(
                    body["max_tokens"], thinking_max_tokens(request.model, budget)
                )
            if adaptive_only(request.model):  # the model decides its budget, led by an effort
                body["thinking"] = {"type": "adaptive"}
                output_config["effort"] = effort_of(request.reasoning)
            elif int(body["max_tokens"]) <= budget:
                asked = thinking_budget(request.reasoning)
                least = f", Anthropic's least; {asked} was asked" if asked < budget else ""
                raise InvalidRequestError(
                    f"max_tokens ({body['max_tokens']}) must exceed the thinking budget "
                    f"({budget}{least})",
                    provider=self.id,
                )
            else:
                body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        found = schema_of(request)
        schema = _constrained_form(found[1]) if found is not None else None
        if schema is not None:  # else `_shaped` made it a forced tool
            output_config["format"] = {"type": "json_schema", "schema": schema}
        if output_config:
            body["output_config"] = output_config
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if stream:
            body["stream"] = True
        body.update(request.extra)
        if _flag(options.get("prompt_caching"), True):
            _apply_cache_breakpoints(body)
        return body

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        shaped = self._shaped(request)
        data = await self._post_json(self._messages_path, self._body(shaped, stream=False))
        if isinstance(data, dict) and data.get("type") == "error":
            raise _error_event(data, self.id, None, self._secrets())
        response = _parse_response(data, self.id)
        return from_forced_tool(response) if shaped is not request else response

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        shaped = self._shaped(request)
        body = self._body(shaped, stream=True)
        state = _StreamState(schema_tool=shaped is not request)
        secrets = self._secrets()
        async with self._open_stream(self._messages_path, body) as response:
            async for name, data in sse_json_events(response, self.id, state.current_usage):
                if name == "error" and data.get("type") != "error":
                    data = {"type": "error", "error": data.get("error", data)}
                chunk = _parse_stream_event(data, state, self.id, secrets)
                if chunk is not None:
                    yield chunk
                if state.done:
                    return
        raise MalformedResponseError(
            "the stream ended before its message_stop event",
            provider=self.id,
            partial_usage=state.current_usage(),
        )

    async def _embed(self, texts: list[str], model: str | None) -> Embeddings:
        raise UnsupportedError(
            "Anthropic offers no embeddings; use an embedding model from another provider "
            "(e.g. openai/text-embedding-3-small)",
            provider=self.id,
        )

    async def _models(self) -> list[ModelInfo]:
        """`GET /v1/models`, live, following `has_more` / `last_id` through the pages."""
        found: dict[str, ModelInfo] = {}
        params = {"limit": "1000"}
        for _ in range(MAX_PAGES):
            data = await get_listing(
                self.client,
                "/v1/models",
                provider=self.id,
                headers=self._auth_headers(),
                secrets=self._secrets(),
                on_error=self._error,
                params=params,
                clock=self._clock(),
            )
            for item in listed_items(data, "data", self.id):
                info = _model_info(item)
                found.setdefault(info.id, info)
            last = data.get("last_id")
            if (
                not data.get("has_more")
                or not isinstance(last, str)
                or last == params.get("after_id")
            ):
                break
            params["after_id"] = last
        return list(found.values())


def _model_info(item: Mapping[str, Any]) -> ModelInfo:
    mid = str(item["id"])
    known = {k: (name, out) for k, name, out in _KNOWN_MODELS}.get(mid)
    return ModelInfo(
        id=mid,
        name=str(item.get("display_name") or (known[0] if known else mid)),
        context_window=first_int(item, "max_input_tokens", "context_window"),
        max_output_tokens=first_int(item, "max_tokens", "max_output_tokens")
        or (known[1] if known else None),
    )


def create(settings: ProviderSettings) -> AnthropicProvider:
    return AnthropicProvider(settings)
