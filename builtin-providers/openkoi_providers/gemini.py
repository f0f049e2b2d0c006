"""Google Gemini (Generative Language API): generateContent, streaming, tools and embeddings.

The key travels in the `x-goog-api-key` header, never in a URL, so no URL, log line or error
message can carry it. Going out: `systemInstruction`, `contents` with `user`/`model` turns,
`functionDeclarations` with JSON Schema parameters, and tool results as `functionResponse` parts
named after the call they answer; before Gemini 3, which refuses tools with a JSON response, a
schema next to tools goes as a forced tool call. Coming back: `functionCall` parts get a
generated unique id (Gemini gives none), their `thoughtSignature` is remembered by that id and
sent back with the call in later turns, and `usageMetadata` maps to usage with cached tokens
split out of the prompt count.

Settings `options` (config `[providers.google]`):

- `api_version` (default `v1beta`): the path prefix, unless the base URL already ends in one
- `embedding_dimensions`: `outputDimensionality` for embeddings
- `embedding_task_type`: `taskType` for embeddings (e.g. RETRIEVAL_DOCUMENT)
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from openkoi._body import read_timed
from openkoi._errors import (
    AuthenticationError,
    ContentPolicyError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderError,
)
from openkoi._features import (
    check_attachments,
    chosen_tool,
    refuse_serial_tools,
    thinking_budget,
)
from openkoi._http import (
    classify,
    error_from_response,
    error_json,
    error_text,
    in_answer,
    json_body,
    parse_retry_after,
)
from openkoi._provider import HTTPProvider, ProviderSettings, sse_json_events
from openkoi._structured import (
    SCHEMA_TOOL,
    as_forced_tool,
    from_forced_tool,
    schema_nodes,
    schema_of,
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
    ReasoningEffort,
    StopReason,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    ToolDef,
    text_chunk,
)

_STOP_REASONS: dict[str, StopReason] = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "LANGUAGE": "other",
    "OTHER": "other",
    "FINISH_REASON_UNSPECIFIED": "other",
}

# Keys an object schema may have and still take no arguments (then no schema is sent).
_NO_ARGUMENT_KEYS = frozenset(
    {"type", "properties", "required", "additionalProperties", "title", "description", "$schema"}
)
# The thinking budgets (tokens) each Gemini 2.5 model takes; one outside is a 400. A longer
# prefix comes first. https://ai.google.dev/gemini-api/docs/thinking#set-budget
_BUDGET_RANGES = (
    ("gemini-2.5-flash-lite", 512, 24576),
    ("gemini-2.5-flash", 1, 24576),  # 0 (thinking off) is in range too; a request never asks it
    ("gemini-2.5-pro", 128, 32768),  # cannot be turned off
)
_GENERATION = re.compile(r"gemini-(\d+)")
# Gemini 3 refuses a replayed function call without a signature; this value is Google's
# documented stand-in for history whose signature is not known (e.g. from another model).
_SKIP_SIGNATURE = "skip_thought_signature_validator"
PROTOCOL = "gemini"  # the NativeTurn protocol: a model turn's `parts`, as Gemini wrote them
# URLs Gemini reads itself (Cloud Storage, its Files API, YouTube); the host fetches the rest.
_OWN_URLS = (
    "gs://",
    "https://generativelanguage.googleapis.com/",
    "https://www.youtube.com/",
    "https://youtu.be/",
)
_MAX_REMEMBERED_SIGNATURES = 2048
_MAX_MODEL_PAGES = 20
_API_VERSION_SUFFIX = re.compile(r"/v1(alpha|beta)?\d*$")


def _map_stop_reason(reason: str | None) -> StopReason | None:
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "other")


def new_call_id() -> str:
    """Gemini's function calls carry no id; every call gets one that is unique."""
    return f"call_{uuid.uuid4().hex[:24]}"


# -- going out ------------------------------------------------------------------------------


def _map_system(request: ChatRequest) -> dict[str, Any] | None:
    texts = [request.system] if request.system else []
    texts += [m.text for m in request.messages if m.role == "system" and m.text]
    if not texts:
        return None
    return {"parts": [{"text": text} for text in texts]}


def _tool_names(messages: Sequence[Message]) -> dict[str, str]:
    """tool call id -> function name, from the assistant turns (functionResponse needs the name)."""
    return {call.id: call.name for m in messages if m.role == "assistant" for call in m.tool_calls}


def _function_response(message: Message, names: Mapping[str, str], provider: str) -> dict[str, Any]:
    name = names.get(message.tool_call_id or "") or message.name
    if not name:
        raise InvalidRequestError(
            f"tool result {message.tool_call_id!r} answers no tool call in the conversation "
            "(Gemini needs the function name: give the message a name)",
            provider=provider,
        )
    text = message.text
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser: plain text
        parsed = None
    # Gemini wants an object; "output" and "error" are its documented keys for a plain result.
    if message.is_error:
        response = {"error": parsed if parsed is not None else text}
    else:
        response = parsed if isinstance(parsed, dict) else {"output": text}
    return {"functionResponse": {"name": name, "response": response}}


def _map_messages(
    messages: Sequence[Message],
    signatures: Mapping[str, str] | None = None,
    *,
    provider: str = "google",
    stand_in_signature: bool = False,
) -> list[dict[str, Any]]:
    """Neutral messages to `contents`. Consecutive turns of one role merge, so the results of
    parallel calls travel together as one user turn, as Gemini requires."""
    signatures = signatures or {}
    names = _tool_names(messages)
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue  # in systemInstruction
        parts: list[dict[str, Any]] = []
        if message.role == "tool":
            parts.append(_function_response(message, names, provider))
        elif (
            message.role == "assistant"
            and message.native is not None
            and message.native.protocol == PROTOCOL
        ):
            parts.extend(dict(part) for part in message.native.blocks)  # signatures and all
        else:
            if isinstance(message.content, list):
                parts.extend(_map_part(p) for p in message.content if _has_payload(p))
            elif message.content:
                parts.append({"text": message.content})
            for i, call in enumerate(message.tool_calls if message.role == "assistant" else ()):
                args = call.parsed_arguments()  # raises InvalidToolArgumentsError for bad JSON
                part: dict[str, Any] = {
                    "functionCall": {
                        "name": call.name,
                        "args": args if isinstance(args, dict) else {"value": args},
                    }
                }
                signature = signatures.get(call.id)
                if signature is None and stand_in_signature and i == 0:
                    signature = _SKIP_SIGNATURE
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
        if not parts:
            continue
        role = "model" if message.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _has_payload(part: TextPart | Attachment) -> bool:
    return not isinstance(part, TextPart) or bool(part.text)


def _map_part(part: TextPart | Attachment) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.url is not None:
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}
    return {"inlineData": {"mimeType": part.media_type, "data": part.base64}}


def _native(parts: Sequence[Mapping[str, Any]]) -> NativeTurn | None:
    """The turn's parts, kept when they hold what the neutral fields lose: thought signatures
    and thought parts."""
    if any("thoughtSignature" in p or p.get("thought") for p in parts):
        return NativeTurn(protocol=PROTOCOL, blocks=[dict(p) for p in parts])
    return None


def _raw_parts(candidate: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts or () if isinstance(p, dict)]


def _map_tool_config(request: ChatRequest, provider: str) -> dict[str, Any] | None:
    refuse_serial_tools(request, provider, "Gemini")
    name = chosen_tool(request, provider)
    if request.tool_choice is None:
        return None
    mode = {"none": "NONE", "required": "ANY", "auto": "AUTO"}.get(request.tool_choice, "ANY")
    config: dict[str, Any] = {"mode": mode}
    if name is not None:
        config["allowedFunctionNames"] = [name]
    return {"functionCallingConfig": config}


def _generation(model: str) -> int | None:
    """The major version in a model name (`gemini-2.5-pro` -> 2); None for other names."""
    found = _GENERATION.match(model.removeprefix("models/"))
    return int(found.group(1)) if found else None


def _thinking_level(model: str, reasoning: ReasoningEffort) -> str:
    """The level Gemini 3 documents for an effort: every model takes low, medium and high but
    Gemini 3 Pro, which has no medium; its high is the nearer (and its default)."""
    if reasoning == "medium" and model.removeprefix("models/").startswith("gemini-3-pro"):
        return "high"
    return reasoning


def _budget(model: str, budget: int) -> int:
    """The budget moved into the range the model takes, which a 2.5 model enforces with a 400;
    a model not listed gets the budget as given."""
    bare = model.removeprefix("models/")
    for prefix, least, most in _BUDGET_RANGES:
        if bare.startswith(prefix):
            return min(max(budget, least), most)
    return budget


def _thinking_config(request: ChatRequest, provider: str) -> dict[str, Any] | None:
    """Gemini 3 takes a thinking level, 2.5 a token budget; thoughts are asked for either way,
    so reasoning streams as reasoning text. The budget counts toward maxOutputTokens, so a
    limit it would fill is refused, as the Anthropic provider does."""
    reasoning = request.reasoning
    if reasoning is None:
        return None
    config: dict[str, Any] = {"includeThoughts": True}
    if (_generation(request.model) or 0) >= 3 and not isinstance(reasoning, int):
        config["thinkingLevel"] = _thinking_level(request.model, reasoning)
        return config
    budget = _budget(request.model, thinking_budget(reasoning))
    if request.max_tokens is not None and request.max_tokens <= budget:
        raise InvalidRequestError(
            f"max_tokens ({request.max_tokens}) must exceed the thinking budget ({budget})",
            provider=provider,
        )
    config["thinkingBudget"] = budget
    return config


def _takes_no_arguments(schema: Mapping[str, Any]) -> bool:
    """An object schema with no properties and no room for others: such a tool goes without a
    schema, the form Gemini documents for a function with no parameters."""
    return (
        schema.get("type") == "object"
        and not schema.get("properties")
        and schema.get("additionalProperties", False) is False
        and set(schema) <= _NO_ARGUMENT_KEYS
    )


def _json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema as given, for `parametersJsonSchema` (full JSON Schema, where `parameters`
    is the OpenAPI subset that rejects `$ref`, `const`, type lists...), less `$schema`: only a
    dialect name, which Gemini's JSON Schema support does not list and has been seen to refuse."""
    out = copy.deepcopy(dict(schema))
    for node in schema_nodes(out):
        node.pop("$schema", None)
    return out


def _map_tools(tools: Sequence[ToolDef]) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools:
        item: dict[str, Any] = {"name": tool.name}
        if tool.description:
            item["description"] = tool.description
        if not _takes_no_arguments(tool.parameters):
            item["parametersJsonSchema"] = _json_schema(tool.parameters)
        declarations.append(item)
    return [{"functionDeclarations": declarations}]


# -- coming back ----------------------------------------------------------------------------


def _map_usage(meta: Mapping[str, Any] | None) -> TokenUsage | None:
    """Input excludes cached tokens (Gemini's promptTokenCount includes them); output counts
    thinking tokens, which Gemini bills as output."""
    if not meta:
        return None
    cached = int(meta.get("cachedContentTokenCount") or 0)
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    return TokenUsage(
        input_tokens=max(0, prompt - cached),
        output_tokens=int(meta.get("candidatesTokenCount") or 0)
        + int(meta.get("thoughtsTokenCount") or 0),
        cache_read_tokens=cached,
    )


def _google_error(
    status: int | None,
    body: Any,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError | None:
    """The `{"error": {"code", "message", "status", "details"}}` shape; None if it is not that."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # a JSON-array stream that failed carries the error as its only element
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    message = error_text(err.get("message")) or "the request failed"
    rpc_status = error_text(err.get("status"))
    if status is None and isinstance(err.get("code"), int):
        status = int(err["code"])
    reason = None
    retry_after = parse_retry_after(headers or {})
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        reason = reason or error_text(detail.get("reason"))
        delay = detail.get("retryDelay")
        if retry_after is None and isinstance(delay, str) and delay.endswith("s"):
            with contextlib.suppress(ValueError):
                retry_after = float(delay[:-1])
    secrets = tuple(secrets)
    error = classify(
        status,
        provider=provider,
        message=message,
        code=reason,
        etype=rpc_status,
        retry_after=retry_after,
        secrets=secrets,
    )
    if (reason and reason.startswith("API_KEY")) or rpc_status in (
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    ):
        error = AuthenticationError(
            error.message,
            provider=provider,
            status=status,
            code=str(reason or rpc_status),
            retry_after=retry_after,
        )
    return error


def _candidate(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def _blocked(data: Mapping[str, Any], provider: str) -> ContentPolicyError | None:
    """A prompt Gemini refused outright: `promptFeedback.blockReason` and no candidates."""
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not reason or _candidate(data) is not None:
        return None
    return ContentPolicyError(
        f"Gemini blocked the prompt ({reason})",
        provider=provider,
        code=str(reason),
        partial_usage=_map_usage(data.get("usageMetadata")),
    )


@dataclass
class _Parts:
    text: str
    reasoning: str
    calls: list[tuple[ToolCall, str | None]]  # with each call's thoughtSignature


def _read_parts(candidate: Mapping[str, Any]) -> _Parts:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[tuple[ToolCall, str | None]] = []
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    for part in parts or ():
        if not isinstance(part, dict):
            continue
        call = part.get("functionCall")
        if isinstance(call, dict):
            tool_call = ToolCall(
                id=str(call.get("id") or new_call_id()),
                name=str(call.get("name") or ""),
                arguments=json.dumps(call.get("args") or {}),
            )
            calls.append((tool_call, part.get("thoughtSignature")))
        elif isinstance(part.get("text"), str):
            (reasoning if part.get("thought") else text).append(part["text"])
    return _Parts("".join(text), "".join(reasoning), calls)


def _stop_for(candidate: Mapping[str, Any], has_calls: bool) -> StopReason | None:
    stop = _map_stop_reason(candidate.get("finishReason"))
    # Gemini says STOP when it wants function results; the neutral model says tool_use.
    return "tool_use" if stop == "end_turn" and has_calls else stop


def _parse_response(
    data: Any, provider: str, remember: dict[str, str] | None = None
) -> ChatResponse:
    if not isinstance(data, dict):
        raise MalformedResponseError("response is not a JSON object", provider=provider)
    blocked = _blocked(data, provider)
    if blocked is not None:
        raise blocked
    candidate = _candidate(data)
    if candidate is None:
        raise MalformedResponseError("response has no candidates", provider=provider)
    parts = _read_parts(candidate)
    if remember is not None:
        remember.update({call.id: sig for call, sig in parts.calls if sig})
    calls = [call for call, _ in parts.calls]
    return ChatResponse(
        content=parts.text,
        reasoning=parts.reasoning,
        tool_calls=calls,
        usage=_map_usage(data.get("usageMetadata")) or TokenUsage(),
        stop_reason=_stop_for(candidate, bool(calls)) or ("tool_use" if calls else "end_turn"),
        model=str(data.get("modelVersion") or ""),
        native=_native(_raw_parts(candidate)),
    )


@dataclass
class _StreamState:
    """What a stream has said so far. The raw usageMetadata is kept and mapped only when a chunk
    or an error needs it: most events are a text piece with usage that the next event replaces."""

    tool_count: int = 0
    finished: bool = False
    meta: Mapping[str, Any] | None = None
    parts: list[Mapping[str, Any]] = field(default_factory=list)  # every part, in order
    # With a schema sent as a forced tool, that tool's call streams as the answer's text.
    schema_tool: bool = False
    answered: bool = False

    @property
    def usage(self) -> TokenUsage | None:
        return _map_usage(self.meta)


def _plain_text(data: Mapping[str, Any]) -> str | None:
    """The text of an event that is one candidate with one plain text part and nothing else."""
    candidates = data.get("candidates")
    if not candidates or len(candidates) != 1 or "promptFeedback" in data:
        return None
    candidate = candidates[0]
    if "finishReason" in candidate:
        return None
    content = candidate.get("content")
    parts = content.get("parts") if content else None
    if not parts or len(parts) != 1:
        return None
    part = parts[0]
    text = part.get("text")
    return text if len(part) == 1 and isinstance(text, str) and text else None


def _plain_part(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The one part of an event `_plain_text` accepted."""
    part: Mapping[str, Any] = data["candidates"][0]["content"]["parts"][0]
    return part


def _parse_stream_event(
    data: Mapping[str, Any],
    state: _StreamState,
    provider: str,
    remember: dict[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> ChatChunk | None:
    """One GenerateContentResponse of a stream to a neutral chunk. Usage is cumulative; it rides
    on every chunk but the plain text pieces, and always on the last one."""
    meta = data.get("usageMetadata")
    text = _plain_text(data)
    if text is not None:  # the hot path: most events are exactly this
        state.meta = meta or state.meta
        state.parts.append(_plain_part(data))
        return text_chunk(text)
    if "error" in data:
        error = _google_error(None, data, provider=provider, secrets=secrets) or ProviderError(
            "the stream reported an error", provider=provider
        )
        error.partial_usage = state.usage
        raise in_answer(error)
    state.meta = meta or state.meta
    blocked = _blocked(data, provider)
    if blocked is not None:
        blocked.partial_usage = blocked.partial_usage or state.usage
        raise blocked
    candidate = _candidate(data)
    if candidate is None:
        return ChatChunk(usage=state.usage) if state.usage else None
    parts = _read_parts(candidate)
    state.parts.extend(_raw_parts(candidate))
    deltas = []
    text = parts.text
    for call, signature in parts.calls:
        if state.schema_tool and call.name == SCHEMA_TOOL:
            text += call.arguments
            state.answered = True
            continue
        if remember is not None and signature:
            remember[call.id] = signature
        deltas.append(
            ToolCallDelta(
                index=state.tool_count, id=call.id, name=call.name, arguments=call.arguments
            )
        )
        state.tool_count += 1
    stop = _stop_for(candidate, state.tool_count > 0)
    if stop is not None:
        state.finished = True
    # The turn of a forced schema call is not sent back: that call gets no result.
    native = _native(state.parts) if stop is not None and not state.answered else None
    return ChatChunk(
        delta=text,
        reasoning_delta=parts.reasoning,
        tool_calls=deltas,
        usage=state.usage,
        stop_reason=stop,
        model=data.get("modelVersion"),
        native=native,
    )


class _Signatures(OrderedDict[str, str]):
    """Thought signatures by tool call id, bounded: the oldest are forgotten first."""

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > _MAX_REMEMBERED_SIGNATURES:
            self.popitem(last=False)


class GeminiProvider(HTTPProvider):
    """The Generative Language API over httpx; see the module docstring for options."""

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self._signatures: dict[str, str] = _Signatures()

    def _auth_headers(self) -> dict[str, str]:
        key = self.settings.api_key
        if not key:
            return {}
        if key.kind == "oauth":
            return {"authorization": f"Bearer {key.reveal()}"}
        return {"x-goog-api-key": key.reveal()}

    def _prefix(self) -> str:
        path = urlsplit(self.settings.base_url).path.rstrip("/")
        if _API_VERSION_SUFFIX.search(path):
            return ""
        return "/" + str(self.settings.options.get("api_version") or "v1beta").strip("/")

    def _model_path(self, model: str) -> str:
        if model.startswith("tunedModels/"):
            return f"{self._prefix()}/{quote(model, safe='/-._~')}"
        model = model.removeprefix("models/")
        return f"{self._prefix()}/models/{quote(model, safe='-._~')}"

    def _error(self, response: httpx.Response, body_text: str) -> ProviderError:
        error = _google_error(
            response.status_code,
            error_json(body_text),
            provider=self.id,
            headers=response.headers,
            secrets=self._secrets(),
        )
        if error is not None:
            return error
        return error_from_response(
            response.status_code,
            response.headers,
            body_text,
            provider=self.id,
            secrets=self._secrets(),
        )

    def _fetches_itself(self, attachment: Attachment) -> bool:
        return (attachment.url or "").startswith(_OWN_URLS)

    def _shaped(self, request: ChatRequest) -> ChatRequest:
        """The request with its schema as a forced tool where the model refuses function
        calling with a JSON response (before Gemini 3), so tools and a schema still work."""
        generation = _generation(request.model)
        if generation is None or generation >= 3 or not request.tools:
            return request
        return as_forced_tool(request, self.id)  # unchanged when there is no schema

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        check_attachments(request.messages, self.id, ("image", "document", "audio", "video"))
        body: dict[str, Any] = {
            "contents": _map_messages(
                request.messages,
                self._signatures,
                provider=self.id,
                stand_in_signature=request.model.removeprefix("models/").startswith("gemini-3"),
            )
        }
        system = _map_system(request)
        if system:
            body["systemInstruction"] = system
        if request.tools:
            body["tools"] = _map_tools(request.tools)
        tool_config = _map_tool_config(request, self.id)
        if tool_config is not None:
            body["toolConfig"] = tool_config
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.stop:
            config["stopSequences"] = list(request.stop)
        found = schema_of(request)
        if found is not None:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = found[1]
        thinking = _thinking_config(request, self.id)
        if thinking is not None:
            config["thinkingConfig"] = thinking
        if config:
            body["generationConfig"] = config
        body.update(request.extra)
        return body

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        path = f"{self._model_path(request.model)}:generateContent"
        shaped = self._shaped(request)
        data = await self._post_json(path, self._body(shaped))
        error = _google_error(None, data, provider=self.id, secrets=self._secrets())
        if error is not None:  # an error body that came with a 200
            raise error
        response = _parse_response(data, self.id, self._signatures)
        return from_forced_tool(response) if shaped is not request else response

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        path = f"{self._model_path(request.model)}:streamGenerateContent?alt=sse"
        shaped = self._shaped(request)
        state = _StreamState(schema_tool=shaped is not request)
        secrets = self._secrets()
        expect = ("text/event-stream", "application/json")  # SSE, or the whole JSON array
        async with self._open_stream(path, self._body(shaped), expect=expect) as response:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == "application/json":
                events = self._json_array_events(response, state)
            else:
                events = self._sse_events(response, state)
            try:
                async for data in events:
                    chunk = _parse_stream_event(data, state, self.id, self._signatures, secrets)
                    if chunk is not None:
                        yield chunk
            except ProviderError as exc:  # e.g. the connection dropped mid-stream
                if exc.partial_usage is None:
                    exc.partial_usage = state.usage
                raise
        if not state.finished:
            raise MalformedResponseError(
                "the stream ended before a finishReason",
                provider=self.id,
                partial_usage=state.usage,
            )

    async def _sse_events(
        self, response: httpx.Response, state: _StreamState
    ) -> AsyncIterator[Mapping[str, Any]]:
        async for _, data in sse_json_events(response, self.id, lambda: state.usage):
            yield data

    async def _json_array_events(
        self, response: httpx.Response, state: _StreamState
    ) -> AsyncIterator[Mapping[str, Any]]:
        """`streamGenerateContent` without `alt=sse` (e.g. a proxy dropped the query): one JSON
        array of responses, read whole under the call's clock, as a whole answer is (the
        headers were its first event; `idle` bounds the rest of the body)."""
        raw = await read_timed(response, self.settings.max_response_bytes, provider=self.id)
        text = raw.decode("utf-8", "replace")
        data = json_body(text, provider=self.id, status=response.status_code)
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                yield item

    async def _embed(self, texts: list[str], model: str | None) -> Embeddings:
        if not model:
            return await super()._embed(texts, model)
        model = model.removeprefix("models/")
        request: dict[str, Any] = {"model": f"models/{model}"}
        options = self.settings.options
        if options.get("embedding_dimensions"):
            request["outputDimensionality"] = int(options["embedding_dimensions"])
        if options.get("embedding_task_type"):
            request["taskType"] = str(options["embedding_task_type"])
        body = {"requests": [{**request, "content": {"parts": [{"text": t}]}} for t in texts]}
        data = await self._post_json(f"{self._model_path(model)}:batchEmbedContents", body)
        error = _google_error(None, data, provider=self.id, secrets=self._secrets())
        if error is not None:
            raise error
        items = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            raise MalformedResponseError(
                f"expected {len(texts)} embeddings in the response", provider=self.id
            )
        try:
            vectors = [[float(x) for x in item["values"]] for item in items]
        except (KeyError, TypeError, ValueError):
            raise MalformedResponseError(
                "an embedding in the response has no list of numbers", provider=self.id
            ) from None
        meta = data.get("usageMetadata")  # absent from most answers: then the cost is unknown
        return Embeddings(vectors, _map_usage(meta) if isinstance(meta, dict) else None)

    async def _models(self) -> list[ModelInfo]:
        """Every model the key can use, following `nextPageToken` through the listing."""
        found: list[ModelInfo] = []
        params: dict[str, str] = {"pageSize": "1000"}
        for _ in range(_MAX_MODEL_PAGES):
            data = await self._get_json(f"{self._prefix()}/models", params)
            for item in (data.get("models") if isinstance(data, dict) else None) or ():
                if isinstance(item, dict) and item.get("name"):
                    found.append(_model_info(item))
            token = data.get("nextPageToken") if isinstance(data, dict) else None
            if not token or token == params.get("pageToken"):
                break
            params["pageToken"] = str(token)
        return found


def _model_info(item: Mapping[str, Any]) -> ModelInfo:
    methods = set(item.get("supportedGenerationMethods") or ())
    generates = bool(methods & {"generateContent", "streamGenerateContent"})
    return ModelInfo(
        id=str(item["name"]).removeprefix("models/"),
        name=str(item.get("displayName") or item["name"]),
        context_window=item.get("inputTokenLimit"),
        max_output_tokens=item.get("outputTokenLimit"),
        supports_tools=generates,
        supports_streaming=generates,
        supports_embeddings=bool(methods & {"embedContent", "batchEmbedContents"}),
        supports_reasoning=bool(item.get("thinking")),
    )


def create(settings: ProviderSettings) -> GeminiProvider:
    return GeminiProvider(settings)
