"""ChatGPT (Plus/Pro) through the Responses-style API the subscription uses.

The credential is the access token saved by `openkoi connect chatgpt` (or the Codex CLI's). It
is refreshed through the store before it expires and once on a 401; the account id comes from
the token's `https://api.openai.com/auth` claim. Requests stream by default (the subscription
endpoint only streams); `options.stream = false` posts a plain Responses request instead.

Mapping names (the same in every vendor module): `_map_messages`, `_map_tools` going out;
`_parse_response`, `_parse_stream_event`, `_map_usage`, `_STOP_REASONS` coming back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from openkoi._errors import (
    AuthenticationError,
    CredentialsMissingError,
    MalformedResponseError,
    ProviderError,
    UnsupportedError,
)
from openkoi._features import check_attachments, chosen_tool, effort_of
from openkoi._http import classify, error_from_response, extract_error, in_answer
from openkoi._provider import HTTPProvider, ProviderSettings, collect, sse_json_events
from openkoi._structured import schema_of, strict_form
from openkoi._types import (
    Attachment,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Message,
    NativeTurn,
    StopReason,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    ToolDef,
)
from openkoi.credentials import _chatgpt_oauth, _jwt
from openkoi.credentials._discovery import STORE_SOURCE
from openkoi.credentials._endpoints import ChatGPTEndpoints
from openkoi.credentials._store import AuthStore

PROTOCOL = "openai-responses"  # the NativeTurn protocol: a response's output items
STORE_KEY = "openai-oauth"
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
SUBSCRIPTION_HOST = "chatgpt.com"  # the subscription's backend, narrower than the Responses API

_STOP_REASONS: dict[str, StopReason] = {
    "completed": "end_turn",
    "max_output_tokens": "max_tokens",
    "content_filter": "content_filter",
    "failed": "error",
}
# Error codes in `response.failed` events that carry no HTTP status of their own.
_NOT_OURS = "sign in with that tool again, or run `openkoi connect chatgpt`"
_CODE_STATUS = {"server_error": 500, "rate_limit_exceeded": 429, "invalid_prompt": 400}


# -- going out -------------------------------------------------------------------------------


def _map_message(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or "",
                "output": _tool_output(message),
            }
        ]
    if message.role == "assistant":
        if message.native is not None and message.native.protocol == PROTOCOL:
            return [dict(item) for item in message.native.blocks]  # reasoning items and all
        items: list[dict[str, Any]] = []
        if message.content:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": message.text}],
                }
            )
        items.extend(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
            for call in message.tool_calls
        )
        return items
    role = "developer" if message.role == "system" else "user"
    if isinstance(message.content, list):
        content = [_map_part(p) for p in message.content if _has_payload(p)]
    else:
        content = [{"type": "input_text", "text": message.content or ""}]
    return [{"type": "message", "role": role, "content": content}]


def _tool_output(message: Message) -> str | list[dict[str, Any]]:
    """A tool result as `function_call_output.output` takes it: text as one string, parts with
    an attachment among them as `input_*` items."""
    if not isinstance(message.content, list):
        return message.content or ""
    if all(isinstance(part, TextPart) for part in message.content):
        return message.text
    return [_map_part(part) for part in message.content if _has_payload(part)]


def _has_payload(part: TextPart | Attachment) -> bool:
    return not isinstance(part, TextPart) or bool(part.text)


def _map_part(part: TextPart | Attachment) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if part.kind == "image":
        return {"type": "input_image", "image_url": part.url or part.data_url()}
    if part.url is not None:
        return {"type": "input_file", "file_url": part.url}
    return {
        "type": "input_file",
        "filename": part.name or "attachment",
        "file_data": part.data_url(),
    }


def _native(items: list[dict[str, Any]]) -> NativeTurn | None:
    """The output items, kept when the model reasoned and every reasoning item can go back: only
    with its encrypted content (nothing is stored server-side, `store: false`, for an id to point
    at). Without it the turn is sent from its neutral fields: an item that followed a reasoning
    item and is sent back without it is refused ("provided without its required 'reasoning'
    item")."""
    reasoning = [item for item in items if item.get("type") == "reasoning"]
    if not reasoning or not all(item.get("encrypted_content") for item in reasoning):
        return None
    return NativeTurn(protocol=PROTOCOL, blocks=items)


def _map_tool_choice(request: ChatRequest, provider: str) -> str | dict[str, Any]:
    name = chosen_tool(request, provider)
    if name is not None:
        return {"type": "function", "name": name}
    return request.tool_choice or "auto"


def _text_format(request: ChatRequest) -> dict[str, Any] | None:
    found = schema_of(request)
    if found is None:
        return None
    name, schema = found
    strict_schema, strict = strict_form(schema)
    return {
        "format": {
            "type": "json_schema",
            "name": name,
            "schema": strict_schema if strict else schema,
            "strict": strict,
        }
    }


def _map_messages(request: ChatRequest) -> list[dict[str, Any]]:
    return [item for message in request.messages for item in _map_message(message)]


def _map_tools(tools: list[ToolDef]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": False,
        }
        for tool in tools
    ]


# -- coming back -----------------------------------------------------------------------------


def _map_usage(usage: Mapping[str, Any] | None) -> TokenUsage | None:
    """`input_tokens` counts uncached input: the Responses API's input_tokens includes cached."""
    if not usage:
        return None
    details = usage.get("input_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    return TokenUsage(
        input_tokens=max(0, int(usage.get("input_tokens") or 0) - cached),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_tokens=cached,
    )


def _stop_reason(response: Mapping[str, Any], has_tool_calls: bool) -> StopReason:
    status = str(response.get("status") or "completed")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _STOP_REASONS.get(str(reason), "other")
    if status == "completed" and has_tool_calls:
        return "tool_use"
    return _STOP_REASONS.get(status, "other")


def _response_error(
    error: Any,
    provider: str,
    usage: TokenUsage | None = None,
    secrets: Sequence[str] = (),
) -> ProviderError:
    """The typed error of a failed response; `secrets` (the OAuth token) are scrubbed from it,
    since a server may echo the token in its message."""
    message, code, etype = extract_error({"error": error})
    failure = classify(
        _CODE_STATUS.get(code or ""),
        provider=provider,
        message=message or "the response failed",
        code=code,
        etype=etype,
        secrets=secrets,
    )
    failure.partial_usage = usage
    return in_answer(failure)


def _reasoning_text(item: Mapping[str, Any]) -> str:
    """A reasoning item's readable text: its summary, else its raw `reasoning_text` content
    (gpt-oss and DeepSeek's Responses endpoint send only that), as a stream's deltas carry."""
    summary = [p.get("text") for p in item.get("summary") or () if isinstance(p, dict)]
    text = "".join(t for t in summary if isinstance(t, str))
    if text:
        return text
    content = item.get("content") or ()
    return "".join(
        p["text"]
        for p in content
        if isinstance(p, dict)
        and p.get("type") == "reasoning_text"
        and isinstance(p.get("text"), str)
    )


def _parse_response(data: Any, provider: str, secrets: Sequence[str] = ()) -> ChatResponse:
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        if isinstance(data, dict) and data.get("error"):
            raise _response_error(data["error"], provider, secrets=secrets)
        raise MalformedResponseError("response has no output list", provider=provider)
    if data.get("status") == "failed" and data.get("error"):
        raise _response_error(data["error"], provider, _map_usage(data.get("usage")), secrets)
    text: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls: list[ToolCall] = []
    for item in data["output"]:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif kind == "function_call":
            calls.append(
                ToolCall(
                    id=item.get("call_id") or item.get("id") or f"call_{len(calls)}",
                    name=item.get("name") or "",
                    arguments=item.get("arguments") or "{}",
                )
            )
        elif kind == "reasoning":
            reasoning.append(_reasoning_text(item))
    stop = _stop_reason(data, bool(calls))
    if refusal and stop == "end_turn":
        stop = "refusal"
    return ChatResponse(
        content="".join(text),
        reasoning="".join(reasoning),
        refusal="".join(refusal) or None,
        tool_calls=calls,
        usage=_map_usage(data.get("usage")) or TokenUsage(),
        stop_reason=stop,
        model=data.get("model") or "",
        native=_native([i for i in data["output"] if isinstance(i, dict)]),
    )


@dataclass
class _StreamState:
    """Output items arrive by `output_index`; tool calls get dense indexes of their own."""

    tools: dict[int, int] = field(default_factory=dict)
    with_arguments: set[int] = field(default_factory=set)
    finished: bool = False
    refused: bool = False  # a refusal delta arrived: the end is a refusal, as in a whole answer
    items: dict[int, dict[str, Any]] = field(default_factory=dict)  # finished output items

    def tool_index(self, output_index: int) -> int:
        return self.tools.setdefault(output_index, len(self.tools))


def _parse_stream_event(
    data: Mapping[str, Any], provider: str, state: _StreamState, secrets: Sequence[str] = ()
) -> ChatChunk | None:
    """One Responses stream event to a neutral chunk; None when it carries nothing. `secrets`
    are scrubbed from a failure it reports."""
    kind = data.get("type")
    if kind == "response.output_text.delta":
        return ChatChunk(delta=data.get("delta") or "") if data.get("delta") else None
    if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        return ChatChunk(reasoning_delta=data.get("delta") or "") if data.get("delta") else None
    if kind == "response.refusal.delta":
        if not data.get("delta"):
            return None
        state.refused = True
        return ChatChunk(refusal_delta=data["delta"])
    output_index = int(data.get("output_index") or 0)
    if kind in ("response.output_item.added", "response.output_item.done"):
        item = data.get("item") or {}
        if kind == "response.output_item.done" and isinstance(item, dict):
            state.items[output_index] = item
        if item.get("type") != "function_call":
            return None
        index = state.tool_index(output_index)
        if kind == "response.output_item.added":
            arguments = item.get("arguments") or ""
            if arguments:
                state.with_arguments.add(index)
            return ChatChunk(
                tool_calls=[
                    ToolCallDelta(
                        index=index,
                        id=item.get("call_id") or item.get("id"),
                        name=item.get("name"),
                        arguments=arguments,
                    )
                ]
            )
        if index in state.with_arguments or not item.get("arguments"):
            return None  # the deltas already carried the arguments
        state.with_arguments.add(index)
        return ChatChunk(tool_calls=[ToolCallDelta(index=index, arguments=item["arguments"])])
    if kind == "response.function_call_arguments.delta":
        index = state.tool_index(output_index)
        if not data.get("delta"):
            return None
        state.with_arguments.add(index)
        return ChatChunk(tool_calls=[ToolCallDelta(index=index, arguments=data["delta"])])
    if kind in ("response.completed", "response.incomplete"):
        state.finished = True
        response = data.get("response") or {}
        items = [state.items[i] for i in sorted(state.items)]
        stop = _stop_reason(response, bool(state.tools))
        if state.refused and stop == "end_turn":
            stop = "refusal"
        return ChatChunk(
            usage=_map_usage(response.get("usage")) or TokenUsage(),
            stop_reason=stop,
            model=response.get("model"),
            native=_native(items),
        )
    if kind == "response.failed":
        response = data.get("response") or {}
        raise _response_error(
            response.get("error") or {}, provider, _map_usage(response.get("usage")), secrets
        )
    if kind == "error":
        raise _response_error(data.get("error") or data, provider, secrets=secrets)
    return None


# -- the provider ----------------------------------------------------------------------------


class ChatGPTProvider(HTTPProvider):
    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.AsyncClient | None = None,
        store: AuthStore | None = None,
    ) -> None:
        super().__init__(settings, client)
        self._store = store
        self._token: str | None = None
        self._account: str | None = None
        self._expires_at: float | None = None
        self._session_id = str(uuid.uuid4())
        self._lock = anyio.Lock()

    async def _ensure_token(self, failed: str | None = None) -> None:
        """A usable access token; `failed` names one the API just refused."""
        async with self._lock:
            if self._token is not None and self._token != failed and not self._stale():
                return
            key = self.settings.api_key
            if key is None:
                raise CredentialsMissingError(
                    "ChatGPT is not connected; run `openkoi connect chatgpt`", provider=self.id
                )
            if not self._refreshable():  # another tool's sign-in: used, never refreshed
                if key.expires_at is not None and key.expires_at <= time.time():
                    raise AuthenticationError(
                        f"the ChatGPT token from {key.source.split(':', 1)[-1]} has expired; "
                        f"{_NOT_OURS}",
                        provider=self.id,
                        status=401,
                    )
                self._token = key.reveal()
                self._account = _jwt.chatgpt_account_id(self._token)
                self._expires_at = key.expires_at
                return
            store = self._store or AuthStore()

            def fresh(entry: dict[str, Any]) -> bool:
                return _chatgpt_oauth.is_fresh(entry) and entry.get("access") != failed

            async def renew(entry: dict[str, Any]) -> dict[str, Any]:
                async with httpx.AsyncClient(timeout=30.0) as client:
                    return await _chatgpt_oauth.refresh(client, ChatGPTEndpoints.from_env(), entry)

            entry = await store.refresh(STORE_KEY, fresh, renew)
            self._token = str(entry["access"])
            self._account = entry.get("account_id") or _jwt.chatgpt_account_id(self._token)
            expires = entry.get("expires_at")
            self._expires_at = float(expires) if isinstance(expires, int | float) else None

    def _refreshable(self) -> bool:
        key = self.settings.api_key
        return key is not None and key.source == STORE_SOURCE

    def _refused(self, error: AuthenticationError) -> AuthenticationError:
        """The API refused a token that openkoi cannot refresh: say what to do."""
        error.message += f"; {_NOT_OURS}"
        return error

    def _stale(self) -> bool:
        return (
            self._expires_at is not None
            and self._expires_at - _chatgpt_oauth.REFRESH_MARGIN <= time.time()
            and (self.settings.api_key is not None and self.settings.api_key.source == STORE_SOURCE)
        )

    def _fetches_itself(self, attachment: Attachment) -> bool:
        return attachment.kind == "image"  # input_image takes a URL; files go inline

    def _auth_headers(self) -> dict[str, str]:
        headers = {
            "authorization": f"Bearer {self._token or ''}",
            "openai-beta": "responses=experimental",
            "originator": "openkoi",
            "session_id": self._session_id,
        }
        if self._account:
            headers["chatgpt-account-id"] = self._account
        return headers

    def _secrets(self) -> tuple[str, ...]:
        return (*super()._secrets(), *((self._token,) if self._token else ()))

    def _error(self, response: httpx.Response, body_text: str) -> ProviderError:
        error = error_from_response(
            response.status_code,
            response.headers,
            body_text,
            provider=self.id,
            secrets=self._secrets(),
        )
        if error.retry_after is None:  # a usage limit says when it resets
            try:
                data = json.loads(body_text)
                resets = data["error"]["resets_in_seconds"]
                error.retry_after = float(resets)
            except (ValueError, KeyError, TypeError, RecursionError):  # any body maps by status
                pass
        return error

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "instructions": request.system or DEFAULT_INSTRUCTIONS,
            "input": _map_messages(request),
            "tools": _map_tools(request.tools),
            "tool_choice": _map_tool_choice(request, self.id),
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "store": False,
            "stream": stream,
        }
        check_attachments(
            request.messages, self.id, ("image", "document", "file"), roles=("user", "tool")
        )
        if request.reasoning is not None:
            body["reasoning"] = {"effort": effort_of(request.reasoning), "summary": "auto"}
            body["include"] = ["reasoning.encrypted_content"]
        text_format = _text_format(request)
        if text_format is not None:
            body["text"] = text_format
        self._check_settings(request)
        if request.max_tokens is not None:
            body["max_output_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        body.update(request.extra)
        return body

    def _check_settings(self, request: ChatRequest) -> None:
        """What this API cannot take, refused before sending: stop sequences (the Responses API
        has none) and, on the ChatGPT subscription's backend, `max_tokens` and `temperature`
        (it answers "Unsupported parameter" with a 400)."""
        reasons = ["the Responses API takes no stop sequences"] if request.stop else []
        if httpx.URL(self.settings.base_url).host == SUBSCRIPTION_HOST:
            fields = [
                name
                for name, value in (
                    ("max_tokens", request.max_tokens),
                    ("temperature", request.temperature),
                )
                if value is not None
            ]
            if fields:
                reasons.append(f"the ChatGPT subscription takes no {' or '.join(fields)}")
        if reasons:
            raise UnsupportedError(
                f"{'; '.join(reasons)}: drop them or use another provider", provider=self.id
            )

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        if self.settings.options.get("stream", True):
            return await collect(self._stream(request))
        await self._ensure_token()
        try:
            data = await self._post_json("/responses", self._body(request, stream=False))
        except AuthenticationError as exc:
            if exc.status != 401:
                raise
            if not self._refreshable():
                raise self._refused(exc) from None
            await self._ensure_token(failed=self._token)
            data = await self._post_json("/responses", self._body(request, stream=False))
        return _parse_response(data, self.id, self._secrets())

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self._ensure_token()
        try:
            async for chunk in self._stream_once(request):
                yield chunk
            return
        except _RefusedBeforeStart as refused:
            if not self._refreshable():
                raise self._refused(refused.error) from None
        await self._ensure_token(failed=self._token)
        async for chunk in self._stream_once(request, retry=False):
            yield chunk

    async def _stream_once(
        self, request: ChatRequest, *, retry: bool = True
    ) -> AsyncIterator[ChatChunk]:
        started = False
        try:
            async with self._open_stream(
                "/responses", self._body(request, stream=True)
            ) as response:
                state = _StreamState()
                secrets = self._secrets()
                async for name, data in sse_json_events(response, self.id):
                    data.setdefault("type", name)
                    chunk = _parse_stream_event(data, self.id, state, secrets)
                    if chunk is not None:
                        started = True
                        yield chunk
                    if state.finished:
                        break
                if not state.finished:
                    raise MalformedResponseError(
                        "the stream ended before its response.completed event", provider=self.id
                    )
        except AuthenticationError as exc:
            if retry and exc.status == 401 and not started:
                raise _RefusedBeforeStart(exc) from None
            raise


class _RefusedBeforeStart(Exception):
    """The API refused the token before anything streamed: refresh and try once more."""

    def __init__(self, error: AuthenticationError) -> None:
        super().__init__(error.message)
        self.error = error


def create(settings: ProviderSettings) -> ChatGPTProvider:
    return ChatGPTProvider(settings)
