"""AWS Bedrock Runtime: Converse, ConverseStream and embeddings through InvokeModel.

Requests are signed with SigV4 by botocore (the optional `bedrock` extra, imported only when a
Bedrock provider is built) and sent with openkoi's own httpx client. Credentials come from the
standard AWS chain (environment, shared config and credentials profiles, SSO, container and
instance metadata); a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`) is sent as a Bearer token
instead. The binary `application/vnd.amazon.eventstream` answer of ConverseStream is decoded
by `_eventstream` as bytes arrive. Tools AWS runs itself (`toolUse.type =
"server_tool_use"`, e.g. Nova's code interpreter) and their results are not tool calls for the
caller, whole or streamed.

Mapping names (the same in every vendor module): `_map_messages`, `_map_tools` going out;
`_parse_response`, `_parse_stream_event`, `_map_usage`, `_STOP_REASONS` coming back.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from openkoi._errors import (
    AuthenticationError,
    ConfigError,
    ContextOverflowError,
    CredentialsMissingError,
    InvalidRequestError,
    MalformedResponseError,
    OpenKoiError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    UnsupportedError,
    redact,
)
from openkoi._features import (
    check_attachments,
    chosen_tool,
    effort_of,
    refuse_serial_tools,
    thinking_budget,
)
from openkoi._http import error_from_response, error_json, parse_retry_after
from openkoi._json import loads_utf8
from openkoi._provider import HTTPProvider, ProviderSettings, frames
from openkoi._structured import SCHEMA_TOOL, as_forced_tool, from_forced_tool
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

from openkoi_providers._aws import (
    AwsCredentials,
    _import_botocore,
    aws_credential,
    model_path,
    resolve_model_id,
    resolve_region,
)
from openkoi_providers._claude import (
    MIN_THINKING_BUDGET,
    adaptive_only,
    check_thinking,
    thinking_max_tokens,
)
from openkoi_providers._eventstream import EventStreamDecoder

if TYPE_CHECKING:
    from botocore.credentials import Credentials

EVENT_STREAM = "application/vnd.amazon.eventstream"
SIGNING_NAME = "bedrock"

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "model_context_window_exceeded": "max_tokens",
}

# The AWS error code (x-amzn-ErrorType, `__type`, or a stream's :exception-type) decides the class.
_ERROR_CODES: dict[str, type[ProviderError]] = {
    "ThrottlingException": RateLimitedError,
    "TooManyRequestsException": RateLimitedError,
    "ServiceQuotaExceededException": RateLimitedError,
    "ModelNotReadyException": OverloadedError,
    "ServiceUnavailableException": OverloadedError,
    "InternalServerException": ServerError,
    "InternalFailure": ServerError,
    "ModelStreamErrorException": ServerError,
    "ModelErrorException": ServerError,
    "ModelTimeoutException": ProviderTimeoutError,
    "AccessDeniedException": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "UnrecognizedClientException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "IncompleteSignatureException": AuthenticationError,
    "IncompleteSignature": AuthenticationError,
    "MissingAuthenticationTokenException": AuthenticationError,
    "InvalidClientTokenId": AuthenticationError,
    "SignatureDoesNotMatch": AuthenticationError,
    "ValidationException": InvalidRequestError,
    "ResourceNotFoundException": InvalidRequestError,
    "ConflictException": InvalidRequestError,
}

# Bedrock has no code for "the prompt does not fit": a ValidationException whose message is one
# of these known phrasings (from Bedrock's Anthropic, Meta, Amazon and Mantle-served models).
_CONTEXT_OVERFLOW_PHRASES = (
    "input is too long for requested model",
    "prompt is too long",
    "input length and `max_tokens` exceed context limit",
    "too many total text bytes",
    "maximum context length",
)

KNOWN_MODELS = (
    "anthropic.claude-sonnet-4-20250514",
    "anthropic.claude-3-5-haiku-20241022",
    "amazon.nova-pro-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
)
PROTOCOL = "bedrock-converse"  # the NativeTurn protocol: a Converse message's content blocks
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_VIDEO_FORMATS = {
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
}
# A tool result with no content still needs a non-blank block: Converse rejects blank text.
_NO_OUTPUT = "(no output)"
_COHERE_BATCH = 96  # Cohere on Bedrock embeds at most this many texts per call
_TITAN_CONCURRENCY = 8  # Titan embeds one text per call: this many calls at once


# -- going out ---------------------------------------------------------------------------------


def _map_messages(request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages). Consecutive turns of one role merge: Bedrock wants them
    alternating, and tool results travel as a user turn."""
    texts = [request.system, *(m.text for m in request.messages if m.role == "system")]
    system = [{"text": text} for text in texts if text and text.strip()]
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [
            block
            for block in _content_blocks(message, claude="anthropic." in request.model)
            if not _blank(block)
        ]
        if not blocks:
            continue  # Converse rejects an empty turn: its neighbours merge instead
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return system, messages


def _blank(block: Mapping[str, Any]) -> bool:
    """A text block of nothing or only whitespace, which Converse rejects as blank."""
    text = block.get("text")
    return isinstance(text, str) and not text.strip()


def _document_name(attachment: Attachment, index: int) -> str:
    """Bedrock allows ASCII letters and digits, single spaces, hyphens, parentheses and
    brackets (it rejects `résumé`): accents are taken off, anything else becomes a space."""
    stem = unicodedata.normalize("NFKD", (attachment.name or "").rsplit(".", 1)[0])
    cleaned = "".join(
        c if (c.isascii() and c.isalnum()) or c in "-()[]" else " "
        for c in stem
        if not unicodedata.combining(c)
    )
    return " ".join(cleaned.split())[:200].rstrip() or f"document {index + 1}"


def _map_part(part: TextPart | Attachment, index: int = 0) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    source: dict[str, Any] = (
        {"s3Location": {"uri": part.url}} if part.url is not None else {"bytes": part.base64}
    )
    if part.kind == "image":
        return {"image": {"format": _IMAGE_FORMATS[part.media_type], "source": source}}
    if part.kind == "video":
        return {"video": {"format": _VIDEO_FORMATS[part.media_type], "source": source}}
    return {
        "document": {
            "format": _DOCUMENT_FORMATS[part.media_type],
            "name": _document_name(part, index),
            "source": source,
        }
    }


def _map_parts(parts: list[TextPart | Attachment]) -> list[dict[str, Any]]:
    return [_map_part(p, i) for i, p in enumerate(parts) if not isinstance(p, TextPart) or p.text]


def _content_blocks(message: Message, *, claude: bool = False) -> list[dict[str, Any]]:
    """A message's blocks; a failed tool's result says so where the model takes a `status`
    (Claude: Converse documents it for Anthropic's models only)."""
    if message.role == "tool":
        content = (
            _map_parts(message.content)
            if isinstance(message.content, list)
            else [{"text": message.content or ""}]
        )
        content = [block for block in content if not _blank(block)] or [{"text": _NO_OUTPUT}]
        result = {"toolUseId": message.tool_call_id or "", "content": content}
        if message.is_error and claude:
            result["status"] = "error"
        return [{"toolResult": result}]
    native = message.native
    if message.role == "assistant" and native is not None and native.protocol == PROTOCOL:
        return [dict(block) for block in native.blocks]  # reasoning signatures as received
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, list):
        blocks.extend(_map_parts(message.content))
    elif message.content:
        blocks.append({"text": message.content})
    for call in message.tool_calls:
        # Bedrock takes the input as a JSON object; bad JSON text raises InvalidToolArgumentsError.
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.parsed_arguments()}}
        )
    return blocks


def _map_tools(tools: list[ToolDef]) -> dict[str, Any]:
    specs = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
        if tool.description:
            spec["description"] = tool.description
        specs.append({"toolSpec": spec})
    return {"tools": specs}


def _merge(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` last; an object merges into the object it meets (e.g. inferenceConfig.topP)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def _check_attachments(request: ChatRequest, provider: str) -> None:
    check_attachments(
        request.messages, provider, ("image", "document", "video"), roles=("user", "tool")
    )
    for message in request.messages:
        for part in message.attachments:
            known = {"image": _IMAGE_FORMATS, "video": _VIDEO_FORMATS}.get(
                part.kind, _DOCUMENT_FORMATS
            )
            if part.media_type not in known:
                raise UnsupportedError(
                    f"Bedrock Converse takes {part.kind}s as {', '.join(sorted(known.values()))},"
                    f" not {part.media_type}",
                    provider=provider,
                )


def _map_tool_choice(request: ChatRequest, provider: str) -> dict[str, Any] | None:
    refuse_serial_tools(request, provider, "Bedrock Converse")
    name = chosen_tool(request, provider)
    if request.tool_choice is None:
        return None
    if request.tool_choice == "none":
        raise UnsupportedError(
            "Bedrock Converse cannot forbid tool calls (no tool_choice 'none'); leave the tools "
            "out instead",
            provider=provider,
        )
    if name is not None:
        return {"tool": {"name": name}}
    return {"any": {}} if request.tool_choice == "required" else {"auto": {}}


def _reasoning_fields(request: ChatRequest, provider: str) -> dict[str, Any]:
    """Reasoning goes in `additionalModelRequestFields`, in the model family's own words."""
    reasoning = request.reasoning
    if reasoning is None:
        return {}
    model = request.model
    if _claude_thinks(request):
        return _claude_thinking(request, reasoning, provider)
    if "openai." in model:
        return {"reasoning_effort": effort_of(reasoning)}
    if "amazon.nova-2" in model or "amazon.nova-premier" in model:
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort_of(reasoning)}}
    raise UnsupportedError(
        f"openkoi does not know how {model} on Bedrock takes a reasoning setting; pass it in "
        "`extra` as additionalModelRequestFields",
        provider=provider,
    )


def _claude_thinks(request: ChatRequest) -> bool:
    """Only Claude on Bedrock takes Anthropic's `thinking`, and with it Anthropic's rules."""
    return request.reasoning is not None and "anthropic." in request.model


def _claude_name(model: str) -> str:
    """`us.anthropic.claude-opus-4-7` -> `claude-opus-4-7`: the name Anthropic's rules know."""
    return model.split("anthropic.", 1)[-1]


def _max_tokens(request: ChatRequest) -> int | None:
    """The request's max_tokens; for Claude thinking with none set, what the Anthropic provider
    sends (room for the budget and an answer, within the model's output limit), as Bedrock's
    own default may not exceed the budget."""
    reasoning = request.reasoning
    if request.max_tokens is not None or reasoning is None or not _claude_thinks(request):
        return request.max_tokens
    budget = max(MIN_THINKING_BUDGET, thinking_budget(reasoning))
    return thinking_max_tokens(_claude_name(request.model), budget)


def _claude_thinking(
    request: ChatRequest, reasoning: ReasoningEffort | int, provider: str
) -> dict[str, Any]:
    """Claude's `thinking` fields by the Anthropic provider's own rules, refused before sending
    where it refuses them: a temperature but 1, a forced tool call, a max_tokens not above the
    budget."""
    check_thinking(request, provider)
    if adaptive_only(_claude_name(request.model)):  # the model sets its budget, led by effort
        return {"thinking": {"type": "adaptive"}, "output_config": {"effort": effort_of(reasoning)}}
    budget = max(MIN_THINKING_BUDGET, thinking_budget(reasoning))
    max_tokens = _max_tokens(request)
    if max_tokens is not None and max_tokens <= budget:
        raise InvalidRequestError(
            f"max_tokens ({max_tokens}) must exceed the thinking budget ({budget})",
            provider=provider,
        )
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


def _shaped(request: ChatRequest, provider: str) -> ChatRequest:
    """The schema as a forced tool call (Converse has no structured output here); Claude with
    thinking cannot be forced to call a tool, so that pair is refused, as the Anthropic
    provider refuses it."""
    if request.output_schema is not None and _claude_thinks(request):
        raise UnsupportedError(
            f"{request.model} on Bedrock takes a schema only as a forced tool call, which "
            "Anthropic does not allow with thinking on; drop `reasoning` or the schema",
            provider=provider,
        )
    return as_forced_tool(request, provider)


def _converse_body(request: ChatRequest, provider: str = "bedrock") -> dict[str, Any]:
    _check_attachments(request, provider)
    system, messages = _map_messages(request)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    max_tokens = _max_tokens(request)
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        body["inferenceConfig"] = inference
    if request.tools:
        body["toolConfig"] = _map_tools(request.tools)
        choice = _map_tool_choice(request, provider)
        if choice is not None:
            body["toolConfig"]["toolChoice"] = choice
    elif request.tool_choice not in (None, "auto", "none"):
        chosen_tool(request, provider)  # raises: the choice names a tool the request lacks
    fields = _reasoning_fields(request, provider)
    if fields:
        body["additionalModelRequestFields"] = fields
    return _merge(body, request.extra)


# -- coming back -------------------------------------------------------------------------------


def _map_usage(usage: Any) -> TokenUsage | None:
    """Bedrock's `inputTokens` already excludes cached tokens, like openkoi's `input_tokens`."""
    if not isinstance(usage, dict):
        return None
    return TokenUsage(
        input_tokens=int(usage.get("inputTokens") or 0),
        output_tokens=int(usage.get("outputTokens") or 0),
        cache_read_tokens=int(usage.get("cacheReadInputTokens") or 0),
        cache_write_tokens=int(usage.get("cacheWriteInputTokens") or 0),
    )


def _map_stop_reason(reason: Any) -> StopReason | None:
    if not isinstance(reason, str):
        return None
    return _STOP_REASONS.get(reason, "other")


def _error_class(code: str | None, message: str) -> type[ProviderError] | None:
    if not code:
        return None
    name = code[0].upper() + code[1:]  # stream exceptions spell it throttlingException
    cls = _ERROR_CODES.get(name)
    if cls is InvalidRequestError and name == "ValidationException":
        lowered = message.lower()
        if any(phrase in lowered for phrase in _CONTEXT_OVERFLOW_PHRASES):
            return ContextOverflowError
    return cls


def _aws_error(
    code: str | None,
    message: str,
    *,
    provider: str,
    status: int | None,
    retry_after: float | None = None,
    secrets: Sequence[str] = (),
) -> ProviderError | None:
    """The error class an AWS error code names, or None; `secrets` are scrubbed from the message
    and the code (a server may echo a credential in either)."""
    cls = _error_class(code, message)
    if cls is None:
        return None
    return cls(
        redact(message, secrets),
        provider=provider,
        status=status,
        code=redact(code, secrets) if code else code,
        retry_after=retry_after,
    )


def _stream_failure(
    code: str, message: str, provider: str, state: _StreamState, secrets: Sequence[str]
) -> ProviderError:
    """An exception or error message of a stream: the class its code names, else a server
    fault; scrubbed of `secrets`, carrying the usage so far."""
    error = _aws_error(code, message, provider=provider, status=None, secrets=secrets)
    if error is None:
        error = ServerError(
            redact(message, secrets), provider=provider, code=redact(code, secrets) or None
        )
    error.partial_usage = state.usage
    return error


def _error_code(headers: Mapping[str, str], body: Any) -> str | None:
    """`x-amzn-ErrorType: ValidationException:http://…` or `__type: ns#ExpiredTokenException`."""
    header = headers.get("x-amzn-errortype") or ""
    if header:
        return header.split(":", 1)[0].strip() or None
    if isinstance(body, dict):
        raw = body.get("__type") or body.get("code") or body.get("Code")
        if isinstance(raw, str) and raw:
            return raw.rsplit("#", 1)[-1].split(":", 1)[0]
    return None


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("message", "Message", "errorMessage"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _parse_response(data: Any, provider: str, secrets: Sequence[str] = ()) -> ChatResponse:
    if not isinstance(data, dict):
        raise MalformedResponseError("expected a JSON object", provider=provider)
    output = data.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict):
        said = _error_message(data)
        error = _aws_error(
            _error_code({}, data),
            said or "the answer has no output",
            provider=provider,
            status=200,
            secrets=secrets,
        )
        raise error or MalformedResponseError(
            "the answer has no output message" + (f": {redact(said, secrets)}" if said else ""),
            provider=provider,
            status=200,
        )
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            if _server_side(use):
                continue
            calls.append(
                ToolCall(
                    id=str(use.get("toolUseId") or ""),
                    name=str(use.get("name") or ""),
                    arguments=json.dumps(use.get("input") or {}, ensure_ascii=False),
                )
            )
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
    stop = _map_stop_reason(data.get("stopReason")) or ("tool_use" if calls else "end_turn")
    if stop == "tool_use" and not calls:
        stop = "end_turn"  # only tools AWS already ran: nothing is left for the caller to run
    return ChatResponse(
        content="".join(texts),
        reasoning="".join(reasoning),
        tool_calls=calls,
        usage=_map_usage(data.get("usage")) or TokenUsage(),
        stop_reason=stop,
        native=_native([b for b in message.get("content") or () if isinstance(b, dict)]),
    )


def _native(blocks: list[dict[str, Any]]) -> NativeTurn | None:
    """Kept when the turn reasoned: its reasoningContent (and signature) must go back."""
    if any("reasoningContent" in b for b in blocks):
        return NativeTurn(protocol=PROTOCOL, blocks=blocks)
    return None


def _server_side(use: Mapping[str, Any]) -> bool:
    """A tool AWS runs itself (Nova's code interpreter, web grounding): its call and its result
    are in the answer for the record; the caller must not run it again."""
    return use.get("type") == "server_tool_use"


@dataclass
class _StreamState:
    stopped: bool = False  # messageStop seen
    measured: bool = False  # metadata seen: the last event, with the usage
    usage: TokenUsage | None = None
    server_blocks: set[int] = field(default_factory=set)  # content blocks of server-side tools
    client_calls: bool = False  # a tool call the caller has to run was streamed
    # The content blocks as they build up, to send the turn back as Bedrock wrote it.
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    pieces: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    # With a schema sent as a forced tool, that tool's input streams as the answer's text.
    schema_tool: bool = False
    as_text: set[int] = field(default_factory=set)
    # The text pieces of the block the last text delta was in: a run of deltas appends here.
    text_index: int | None = None
    text: list[str] = field(default_factory=list)

    def grow(self, index: int, key: str, piece: str) -> None:
        self.pieces.setdefault((index, key), []).append(piece)

    def text_of(self, index: int) -> list[str]:
        """The text pieces of block `index`, remembered as the block deltas go to next."""
        self.text_index, self.text = index, self.pieces.setdefault((index, "text"), [])
        return self.text

    def native(self) -> NativeTurn | None:
        out: list[dict[str, Any]] = []
        indexes = sorted({i for i, _ in self.pieces} | set(self.blocks))
        for index in indexes:
            if index in self.server_blocks:
                continue
            joined = {key: "".join(p) for (i, key), p in self.pieces.items() if i == index}
            start = self.blocks.get(index)
            if start is not None:  # a tool call
                raw = joined.get("input", "")
                try:
                    tool_input = json.loads(raw) if raw else {}
                except (ValueError, RecursionError):
                    return None
                out.append({"toolUse": {**start, "input": tool_input}})
            elif "redacted" in joined:
                out.append({"reasoningContent": {"redactedContent": joined["redacted"]}})
            elif "reasoning" in joined or "signature" in joined:
                text = {"text": joined.get("reasoning", "")}
                if "signature" in joined:
                    text["signature"] = joined["signature"]
                out.append({"reasoningContent": {"reasoningText": text}})
            elif "text" in joined:
                out.append({"text": joined["text"]})
        return _native(out)


def _parse_stream_event(
    kind: Any,
    event: Any,
    headers: Mapping[str, Any],
    payload: bytes,
    provider: str,
    state: _StreamState,
    secrets: Sequence[str] = (),
) -> ChatChunk | None:
    """One event-stream message (`kind` and `event` are its `:message-type` and `:event-type`
    headers) to a neutral chunk; exceptions raise (scrubbed of `secrets`); unknown events are
    None."""
    if kind != "event":
        _raise_stream_failure(kind, headers, payload, provider, state, secrets)
        return None
    try:
        data = loads_utf8(payload) if payload else {}  # event payloads are UTF-8 JSON
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the parser
        raise MalformedResponseError(f"the {event} event is not JSON", provider=provider) from None
    if type(data) is not dict:
        return None
    raw_index = data.get("contentBlockIndex")
    index = raw_index if isinstance(raw_index, int) else 0
    if event == "contentBlockDelta":
        delta = data.get("delta")
        if type(delta) is not dict or index in state.server_blocks:
            return None
        text = delta.get("text")
        if text and type(text) is str:  # the common event: checked first
            (state.text if index == state.text_index else state.text_of(index)).append(text)
            return text_chunk(text)
        if isinstance(delta.get("toolUse"), dict):
            fragment = str(delta["toolUse"].get("input") or "")
            state.grow(index, "input", fragment)
            if index in state.as_text:
                return text_chunk(fragment) if fragment else None
            return ChatChunk(tool_calls=[ToolCallDelta(index=index, arguments=fragment)])
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            if isinstance(reasoning.get("signature"), str):
                state.grow(index, "signature", reasoning["signature"])
            if isinstance(reasoning.get("redactedContent"), str):
                state.grow(index, "redacted", reasoning["redactedContent"])
            if isinstance(reasoning.get("text"), str):
                state.grow(index, "reasoning", reasoning["text"])
                return ChatChunk(reasoning_delta=reasoning["text"]) if reasoning["text"] else None
        return None
    if event == "contentBlockStart":
        start = data.get("start")
        use = start.get("toolUse") if type(start) is dict else None
        if isinstance(use, dict):
            if _server_side(use):
                state.server_blocks.add(index)
                return None
            state.blocks[index] = {"toolUseId": use.get("toolUseId"), "name": use.get("name")}
            if state.schema_tool and use.get("name") == SCHEMA_TOOL:
                state.as_text.add(index)
                return None
            state.client_calls = True
            return ChatChunk(
                tool_calls=[
                    ToolCallDelta(
                        index=index,
                        id=str(use.get("toolUseId") or ""),
                        name=str(use.get("name") or ""),
                    )
                ]
            )
        return None
    if event == "messageStop":
        state.stopped = True
        stop = _map_stop_reason(data.get("stopReason")) or "end_turn"
        if stop == "tool_use" and not state.client_calls:
            stop = "end_turn"
        native = None if state.as_text else state.native()
        return ChatChunk(stop_reason=stop, native=native)
    if event == "metadata":
        state.measured = True
        usage = _map_usage(data.get("usage"))
        if usage is None:
            return None
        state.usage = usage
        return ChatChunk(usage=usage)
    return None  # messageStart, contentBlockStop, and events added after this was written


def _raise_stream_failure(
    kind: Any,
    headers: Mapping[str, Any],
    payload: bytes,
    provider: str,
    state: _StreamState,
    secrets: Sequence[str] = (),
) -> None:
    """Raise the typed error an `exception` or `error` message reports; other kinds of message
    than these and `event` are ignored."""
    if kind == "exception":
        name = str(headers.get(":exception-type") or "")
        raise _stream_exception(name, payload, provider, state, secrets)
    if kind == "error":
        code = str(headers.get(":error-code") or "")
        message = str(headers.get(":error-message") or "the stream reported an error")
        raise _stream_failure(code, message, provider, state, secrets)


def _stream_exception(
    name: str,
    payload: bytes,
    provider: str,
    state: _StreamState,
    secrets: Sequence[str] = (),
) -> ProviderError:
    try:
        body = json.loads(payload) if payload else {}
    except (ValueError, RecursionError):  # not JSON (or UTF-8), or nested past the parser
        body = {}
    message = _error_message(body) or f"the stream reported {name or 'an exception'}"
    return _stream_failure(name, message, provider, state, secrets)


# -- the provider ------------------------------------------------------------------------------


class BedrockProvider(HTTPProvider):
    """Converse / ConverseStream over httpx, signed per request. `options` from config:

    - `region`: overrides AWS_REGION / AWS_DEFAULT_REGION / the profile's region
    - `profile`: the AWS profile to take credentials and region from
    - `embedding_input_type`: Cohere's `input_type` (default `search_document`)
    """

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.AsyncClient | None = None,
        *,
        region: str,
        credentials: AwsCredentials | None = None,
    ) -> None:
        super().__init__(settings, client)
        self.region = region
        self._static = credentials
        self._chain: Credentials | None = None

    def __repr__(self) -> str:
        return f"BedrockProvider(region={self.region!r}, base_url={self.settings.base_url!r})"

    # -- credentials and signing -----------------------------------------------------------

    def _bearer(self) -> str | None:
        key = self.settings.api_key
        if self._static is None and key is not None and key.kind == "api-key":
            return key.reveal()
        return None

    def _secrets(self) -> tuple[str, ...]:
        found = [self._bearer(), self._static.secret_key if self._static else None]
        if self._static and self._static.token:
            found.append(self._static.token)
        return tuple(s for s in found if s)

    async def _credentials(self) -> Any:
        """Frozen credentials for one request; the chain is resolved off the event loop because
        botocore may read files or call a metadata endpoint."""
        from botocore.credentials import Credentials

        if self._static is not None:
            return Credentials(self._static.access_key, self._static.secret_key, self._static.token)
        import anyio

        if self._chain is None:
            self._chain = await anyio.to_thread.run_sync(self._load_chain)
        chain: Any = self._chain
        needs_refresh = getattr(chain, "refresh_needed", None)
        if callable(needs_refresh) and needs_refresh():
            return await anyio.to_thread.run_sync(chain.get_frozen_credentials)
        return chain.get_frozen_credentials()

    def _load_chain(self) -> Credentials:
        import botocore.exceptions
        import botocore.session

        profile = self.settings.options.get("profile")
        try:
            found = botocore.session.Session(profile=profile).get_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise CredentialsMissingError(
                f"AWS Bedrock could not load AWS credentials ({type(exc).__name__}): "
                "check the AWS profile, or run `aws sso login`",
                provider=self.id,
            ) from None
        if found is None:
            raise CredentialsMissingError(
                "AWS Bedrock needs AWS credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, set AWS_BEARER_TOKEN_BEDROCK, or configure a profile "
                "(`aws configure`, `aws sso login`)",
                provider=self.id,
            )
        return found

    def _url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + path

    async def _signed(self, path: str, body: Mapping[str, Any], accept: str) -> dict[str, str]:
        """Headers for POSTing `body` to `path`: what `_post_json`/`_open_stream` send is
        byte-for-byte the body signed here (the same dict, encoded by the same `_encode`, which
        also refuses a body that is not JSON before any credential is loaded)."""
        data = self._encode(body).encode()
        headers = {"content-type": "application/json", "accept": accept}
        bearer = self._bearer()
        if bearer is not None:
            return {**headers, "authorization": f"Bearer {bearer}"}
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = await self._credentials()
        request = AWSRequest(method="POST", url=self._url(path), data=data, headers=headers)
        SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(request)
        return {name.lower(): str(value) for name, value in request.headers.items()}

    # -- errors ---------------------------------------------------------------------------

    def _error(self, response: httpx.Response, body_text: str) -> ProviderError:
        body = error_json(body_text)
        code = _error_code(response.headers, body)
        message = _error_message(body) or ""
        error = _aws_error(
            code,
            message or f"{code} (HTTP {response.status_code})",
            provider=self.id,
            status=response.status_code,
            retry_after=parse_retry_after(response.headers),
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

    # -- chat -----------------------------------------------------------------------------

    def _model_id(self, request: ChatRequest) -> str:
        return resolve_model_id(request.model, self.region)

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        path = model_path(self._model_id(request), "converse")
        shaped = _shaped(request, self.id)
        body = _converse_body(shaped, self.id)
        headers = await self._signed(path, body, "application/json")
        data = await self._post_json(path, body, headers=headers)
        response = _parse_response(data, self.id, self._secrets())
        response.model = request.model
        return from_forced_tool(response) if shaped is not request else response

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        path = model_path(self._model_id(request), "converse-stream")
        shaped = _shaped(request, self.id)
        body = _converse_body(shaped, self.id)
        headers = await self._signed(path, body, EVENT_STREAM)
        decoder = EventStreamDecoder(self.id)
        state = _StreamState(schema_tool=shaped is not request)
        secrets = self._secrets()
        kind: Any = None
        event: Any = None
        seen: Mapping[str, Any] | None = None
        async with self._open_stream(path, body, headers=headers, expect=EVENT_STREAM) as response:
            async for message_headers, payload in frames(response, decoder.feed):
                if message_headers is not seen:  # a run of deltas shares one parsed header block
                    seen = message_headers
                    kind, event = seen.get(":message-type"), seen.get(":event-type")
                chunk = _parse_stream_event(
                    kind, event, message_headers, payload, self.id, state, secrets
                )
                if chunk is not None:
                    yield chunk
        if decoder.pending:
            raise MalformedResponseError(
                f"the stream ended inside an event ({decoder.pending} bytes of it arrived)",
                provider=self.id,
                partial_usage=state.usage,
            )
        if not state.stopped or not state.measured:
            # metadata always ends a stream: one cut before it would report no usage as final
            missing = "messageStop" if not state.stopped else "metadata (its usage)"
            raise MalformedResponseError(
                f"the stream ended before its {missing} event",
                provider=self.id,
                partial_usage=state.usage,
            )

    # -- embeddings -----------------------------------------------------------------------

    async def _invoke(self, model_id: str, body: Mapping[str, Any]) -> Any:
        path = model_path(model_id, "invoke")
        headers = await self._signed(path, body, "application/json")
        return await self._post_json(path, body, headers=headers)

    async def _embed(self, texts: list[str], model: str | None) -> Embeddings:
        if not model:
            return await super()._embed(texts, model)
        base = (
            model.split(".", 1)[1]
            if model.split(".", 1)[0] in ("us", "eu", "apac", "global")
            else model
        )
        if base.startswith("cohere.embed"):
            return await self._embed_cohere(texts, model)
        if base.startswith("amazon.titan-embed"):
            return await self._embed_titan(texts, model)
        raise UnsupportedError(
            f"openkoi embeds on Bedrock with amazon.titan-embed-* or cohere.embed-* models, "
            f"not {model!r}",
            provider=self.id,
        )

    async def _embed_titan(self, texts: list[str], model: str) -> Embeddings:
        """One InvokeModel per text; each answer counts its `inputTextTokenCount`."""
        import anyio

        results: list[list[float]] = [[] for _ in texts]
        counts: list[int | None] = [None for _ in texts]
        limiter = anyio.Semaphore(_TITAN_CONCURRENCY)

        async def one(i: int, text: str) -> None:
            async with limiter:
                data = await self._invoke(model, {"inputText": text})
            vector = data.get("embedding") if isinstance(data, dict) else None
            results[i] = _floats(vector, self.id)
            count = data.get("inputTextTokenCount")
            counts[i] = count if isinstance(count, int) and count >= 0 else None

        try:
            async with anyio.create_task_group() as group:
                for i, text in enumerate(texts):
                    group.start_soon(one, i, text)
        except BaseExceptionGroup as failures:
            raise _first_error(failures) from None
        known = [c for c in counts if c is not None]
        usage = TokenUsage(input_tokens=sum(known)) if len(known) == len(counts) else None
        return Embeddings(results, usage)

    async def _embed_cohere(self, texts: list[str], model: str) -> Embeddings:
        input_type = self.settings.options.get("embedding_input_type", "search_document")
        vectors: list[list[float]] = []
        for start in range(0, len(texts), _COHERE_BATCH):
            batch = texts[start : start + _COHERE_BATCH]
            data = await self._invoke(model, {"texts": batch, "input_type": input_type})
            found = data.get("embeddings") if isinstance(data, dict) else None
            if isinstance(found, dict):  # embedding_types form: {"float": [[...], ...]}
                found = found.get("float")
            if not isinstance(found, list) or len(found) != len(batch):
                raise MalformedResponseError(
                    f"expected {len(batch)} embeddings in the answer", provider=self.id
                )
            vectors.extend(_floats(v, self.id) for v in found)
        return Embeddings(vectors)  # Cohere's answer on Bedrock carries no token count

    async def _models(self) -> list[ModelInfo]:
        found = [ModelInfo(id=m, name=m) for m in KNOWN_MODELS]
        if self.settings.embedding_model:
            found.append(
                ModelInfo(
                    id=self.settings.embedding_model,
                    name=self.settings.embedding_model,
                    supports_tools=False,
                    supports_streaming=False,
                    supports_embeddings=True,
                )
            )
        return found


def _floats(vector: Any, provider: str) -> list[float]:
    if not isinstance(vector, list) or not vector:
        raise MalformedResponseError("the answer has no embedding", provider=provider)
    try:
        return [float(x) for x in vector]
    except (TypeError, ValueError):
        raise MalformedResponseError(
            "an embedding is not a list of numbers", provider=provider
        ) from None


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if isinstance(exc, OpenKoiError):
            return exc
    return group


def _endpoint(settings: ProviderSettings, region: str) -> str:
    url = (settings.base_url or os.environ.get("AWS_ENDPOINT_URL", "")).strip().rstrip("/")
    if not url:
        return f"https://bedrock-runtime.{region}.amazonaws.com"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"the Bedrock endpoint must be an http(s) URL, not {url!r}")
    return url


def create(
    settings: ProviderSettings,
    *,
    region: str | None = None,
    credentials: AwsCredentials | None = None,
) -> BedrockProvider:
    """Build a provider; botocore is needed unless a Bedrock API key is the credential."""
    key = settings.api_key
    if credentials is not None or key is None or key.kind != "api-key":
        _import_botocore()
    region = region or resolve_region(settings.options, settings.options.get("profile"))
    return BedrockProvider(
        replace(settings, base_url=_endpoint(settings, region)),
        region=region,
        credentials=credentials,
    )


__all__ = [
    "KNOWN_MODELS",
    "AwsCredentials",
    "BedrockProvider",
    "aws_credential",
    "create",
    "model_path",
    "resolve_model_id",
    "resolve_region",
]
