"""Ollama's native REST API: `/api/chat` (NDJSON streaming), `/api/embed`, `/api/tags`, a probe.

Ollama is the zero-key local path, so this module also answers "is a server there, and which
model should we use?" (`probe`, `pick_default_model`) without raising when nothing is running.

Mapping names (the same in every vendor module): `_map_messages`, `_map_tools` going out;
`_parse_response`, `_parse_stream_event`, `_map_usage`, `_STOP_REASONS` coming back.
"""

from __future__ import annotations

import ipaddress
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from openkoi._body import read_capped
from openkoi._errors import (
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    ProviderError,
    ServerError,
    UnsupportedError,
    redact,
)
from openkoi._features import check_attachments, effort_of
from openkoi._http import error_from_response, error_json, error_text
from openkoi._json import loads
from openkoi._provider import HTTPProvider, ProviderSettings, ndjson_lines
from openkoi._structured import schema_of
from openkoi._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embeddings,
    Message,
    ModelInfo,
    StopReason,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    ToolDef,
)

from openkoi_providers._listing import MAX_LISTING_BYTES

DEFAULT_PORT = 11434
DEFAULT_BASE_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
NDJSON = "application/x-ndjson"

# The spec's quality order for the default local model; matched on the name before `:tag`.
MODEL_PRIORITY: tuple[str, ...] = (
    "qwen2.5-coder",
    "codestral",
    "deepseek-coder-v2",
    "llama3.3",
    "llama3.1",
    "mistral",
    "gemma2",
)
PULL_HINT = "ollama pull llama3.3"

_STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "load": "other",
    "unload": "other",
}

# -- where the server is ---------------------------------------------------------------------


def normalize_host(value: str | None) -> str:
    """An `OLLAMA_HOST` spelling as a base URL, read the way the Ollama CLI reads it.

    `localhost:11434`, `0.0.0.0`, `http://host`, `[::1]:8080`, `https://x/prefix` all work:
    no scheme means http on port 11434, an explicit scheme without a port means its usual
    port, and an unspecified bind address (`0.0.0.0`, `::`) means this machine.
    """
    text = (value or "").strip()
    if not text:
        return DEFAULT_BASE_URL
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    else:
        scheme, rest, default_port = "http", text, DEFAULT_PORT
    hostport, _, path = rest.partition("/")
    host, port = _split_host_port(hostport, default_port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        host = "127.0.0.1" if address.version == 4 else "::1"
    if ":" in host:
        host = f"[{host}]"
    base = f"{scheme}://{host}:{port}"
    path = path.strip("/")
    return f"{base}/{path}" if path else base


def _split_host_port(hostport: str, default_port: int) -> tuple[str, int]:
    host, port_text = hostport, ""
    if hostport.startswith("["):  # [v6] or [v6]:port
        end = hostport.find("]")
        host = hostport[1:end] if end > 0 else hostport.strip("[]")
        rest = hostport[end + 1 :] if end > 0 else ""
        port_text = rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
    host = host or "127.0.0.1"
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = default_port
    if not 0 < port <= 65535:
        port = default_port
    return host, port


# -- probing and choosing a model ------------------------------------------------------------


@dataclass(frozen=True)
class OllamaProbe:
    """What a probe found: `reachable` means an Ollama server answered `/api/tags`."""

    base_url: str
    reachable: bool
    models: list[str] = field(default_factory=list)


async def probe(base_url: str | None = None, timeout: float = 0.5) -> OllamaProbe:
    """Ask the server which models it has, within `timeout` seconds; never raises for a server
    that is down, slow or not Ollama. `base_url` None means `OLLAMA_HOST` (or the default)."""
    import anyio

    url = normalize_host(base_url if base_url is not None else os.environ.get("OLLAMA_HOST"))
    try:
        with anyio.fail_after(timeout):
            async with (
                httpx.AsyncClient(
                    timeout=httpx.Timeout(timeout),
                    transport=httpx.AsyncHTTPTransport(retries=0),
                    follow_redirects=False,
                ) as client,
                client.stream("GET", f"{url}/api/tags") as response,
            ):
                payload = await read_capped(response, MAX_LISTING_BYTES, provider="ollama")
    except (TimeoutError, httpx.HTTPError, OSError, ValueError):
        return OllamaProbe(url, False, [])
    if response.status_code != 200:
        return OllamaProbe(url, False, [])
    try:
        names = _model_names(json.loads(payload))
    except (ValueError, RecursionError, MalformedResponseError):
        return OllamaProbe(url, False, [])
    return OllamaProbe(url, True, names)


def _family(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", 1)[0].lower()


def pick_default_model(models: list[str]) -> str | None:
    """The best installed model by the spec's priority list, else the first installed one."""
    for wanted in MODEL_PRIORITY:
        for name in models:
            if _family(name) == wanted:
                return name
    return models[0] if models else None


def _model_names(data: Any) -> list[str]:
    items = data.get("models") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MalformedResponseError("/api/tags answered without a models list", provider="ollama")
    names: list[str] = []
    for item in items:
        if isinstance(item, dict):
            name = item.get("name") or item.get("model")
            if isinstance(name, str) and name:
                names.append(name)
    return names


# -- going out -------------------------------------------------------------------------------


def _map_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    names: dict[str, str] = {}  # tool call id -> tool name, for tool results that omit it
    for message in request.messages:
        for call in message.tool_calls:
            names[call.id] = call.name
        out.append(_map_message(message, names))
    return out


def _map_message(message: Message, names: Mapping[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"role": message.role, "content": message.text}
    images = [a.base64 for a in message.attachments]
    if images:
        item["images"] = images  # base64, beside the text: Ollama's only kind of attachment
    if message.role == "tool":
        name = message.name or names.get(message.tool_call_id or "")
        if name:
            item["tool_name"] = name
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
    elif message.role == "assistant" and message.tool_calls:
        # Ollama takes arguments as a JSON object; bad JSON text raises InvalidToolArgumentsError.
        item["tool_calls"] = [
            {"id": call.id, "function": {"name": call.name, "arguments": call.parsed_arguments()}}
            for call in message.tool_calls
        ]
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


# -- coming back -----------------------------------------------------------------------------


def _map_usage(data: Mapping[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=int(data.get("prompt_eval_count") or 0),
        output_tokens=int(data.get("eval_count") or 0),
    )


def _map_stop_reason(reason: Any, *, called_tools: bool) -> StopReason:
    stop = _STOP_REASONS.get(reason, "other") if isinstance(reason, str) else "end_turn"
    return "tool_use" if called_tools and stop == "end_turn" else stop


def _arguments_text(value: Any) -> str:
    """Ollama sends arguments as an object; a string is kept as the model wrote it."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"


def _tool_calls(message: Mapping[str, Any]) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for raw in message.get("tool_calls") or ():
        if not isinstance(raw, dict):
            continue
        function = raw.get("function") or {}
        calls.append(
            ToolCall(
                id=str(raw.get("id") or _new_call_id()),
                name=str(function.get("name") or ""),
                arguments=_arguments_text(function.get("arguments")),
            )
        )
    return calls


def _texts(data: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
    """(text, thinking, message) from a `/api/chat` or `/api/generate` object."""
    message = data.get("message")
    if not isinstance(message, dict):
        message = {}
    text = message.get("content") or data.get("response") or ""
    thinking = message.get("thinking") or data.get("thinking") or ""
    return (
        (text if isinstance(text, str) else ""),
        (thinking if isinstance(thinking, str) else ""),
        message,
    )


def _in_body_error(
    data: Mapping[str, Any], provider: str, status: int | None, secrets: Sequence[str] = ()
) -> ProviderError:
    """Ollama's errors carry no code: an error inside a successful answer is a server fault.
    `secrets` are scrubbed from it, as from an error status's body."""
    text = error_text(data.get("error")) or "the server reported an error that is not text"
    return ServerError(redact(text, secrets), provider=provider, status=status)


def _error_body(body_text: str) -> bool:
    """Whether a body is Ollama's error shape, `{"error": "..."}`."""
    data = error_json(body_text)
    return isinstance(data, dict) and error_text(data.get("error")) is not None


def _parse_response(data: Any, provider: str, secrets: Sequence[str] = ()) -> ChatResponse:
    if not isinstance(data, dict):
        raise MalformedResponseError("expected a JSON object", provider=provider)
    if data.get("error"):
        raise _in_body_error(data, provider, 200, secrets)
    if "message" not in data and "response" not in data:
        raise MalformedResponseError("the answer has no message", provider=provider)
    text, thinking, message = _texts(data)
    calls = _tool_calls(message)
    return ChatResponse(
        content=text,
        reasoning=thinking,
        tool_calls=calls,
        usage=_map_usage(data),
        stop_reason=_map_stop_reason(data.get("done_reason"), called_tools=bool(calls)),
        model=str(data.get("model") or ""),
    )


@dataclass
class _StreamState:
    tool_calls: int = 0  # tool calls seen so far; each gets the next index
    done: bool = False


def _parse_stream_event(
    data: Mapping[str, Any], provider: str, state: _StreamState, secrets: Sequence[str] = ()
) -> ChatChunk | None:
    """One NDJSON line to a neutral chunk; None for lines that carry nothing we know."""
    if data.get("error"):
        raise _in_body_error(data, provider, None, secrets)
    text, thinking, message = _texts(data)
    deltas: list[ToolCallDelta] = []
    for call in _tool_calls(message):
        deltas.append(
            ToolCallDelta(
                index=state.tool_calls, id=call.id, name=call.name, arguments=call.arguments
            )
        )
        state.tool_calls += 1
    usage: TokenUsage | None = None
    stop: StopReason | None = None
    if data.get("done") is True:
        state.done = True
        usage = _map_usage(data)
        stop = _map_stop_reason(data.get("done_reason"), called_tools=state.tool_calls > 0)
    if not (text or thinking or deltas or stop):
        return None
    return ChatChunk(
        delta=text,
        reasoning_delta=thinking,
        tool_calls=deltas,
        usage=usage,
        stop_reason=stop,
        model=data.get("model") if isinstance(data.get("model"), str) else None,
    )


def _decode_line(line: str, provider: str) -> dict[str, Any]:
    try:
        data = loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser
        raise MalformedResponseError(
            "the stream sent a line that is not JSON", provider=provider
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError(
            "the stream sent a line that is not an object", provider=provider
        )
    return data


def _parse_embeddings(data: Any, count: int, provider: str) -> list[list[float]]:
    """`/api/embed` gives `embeddings` (a batch); the legacy `/api/embeddings` gives `embedding`."""
    if isinstance(data, dict) and isinstance(data.get("embeddings"), list):
        vectors = data["embeddings"]
    elif isinstance(data, dict) and isinstance(data.get("embedding"), list):
        vectors = [data["embedding"]]
    else:
        raise MalformedResponseError("the answer has no embeddings", provider=provider)
    if len(vectors) != count:
        raise MalformedResponseError(
            f"expected {count} embeddings, got {len(vectors)}", provider=provider
        )
    try:
        return [[float(x) for x in vector] for vector in vectors]
    except (TypeError, ValueError):
        raise MalformedResponseError(
            "an embedding is not a list of numbers", provider=provider
        ) from None


# -- the provider ----------------------------------------------------------------------------


class OllamaProvider(HTTPProvider):
    """A local (or remote) Ollama server. With no model named, the best installed one is used."""

    def _with_model(self, request: ChatRequest) -> ChatRequest:
        return request  # resolved asynchronously in `_resolve_model`: it may ask the server

    async def _resolve_model(self, request: ChatRequest) -> ChatRequest:
        if request.model:
            return request
        model = self.settings.default_model
        if not model:
            model = pick_default_model([m.id for m in await self.models()])
        if not model:
            raise InvalidRequestError(
                f"Ollama at {self.settings.base_url} has no models installed: run `{PULL_HINT}`",
                provider=self.id,
            )
        return request.model_copy(update={"model": model})

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """A refused connection means Ollama is not running: say how to start it."""
        try:
            yield
        except NetworkError as exc:
            if isinstance(exc.__context__, httpx.ConnectError):
                raise NetworkError(
                    f"could not reach Ollama at {self.settings.base_url}: start it with "
                    "`ollama serve`, or set OLLAMA_HOST to where it runs",
                    provider=self.id,
                ) from None
            raise

    def _error(self, response: httpx.Response, body_text: str) -> ProviderError:
        error = error_from_response(
            response.status_code,
            response.headers,
            body_text,
            provider=self.id,
            secrets=self._secrets(),
        )
        if response.status_code == 404:
            if not isinstance(error_json(body_text), dict):
                # Go's plain "404 page not found": this server lacks the endpoint (an old Ollama).
                error.code = "endpoint_not_found"
            elif "not found" in error.message and "ollama pull" not in error.message:
                error.message += " (pull it with `ollama pull <model>`)"
        elif response.status_code < 400 and type(error) is ProviderError and _error_body(body_text):
            # Ollama's in-body error; any other answer (a whole one where a stream was asked
            # for) stays a ProviderError, which `_open_stream` reports as the wrong content type.
            return ServerError(error.message, provider=self.id, status=response.status_code)
        return error

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        check_attachments(request.messages, self.id, ("image",))
        if request.parallel_tool_calls is False or request.tool_choice not in (
            None,
            "auto",
            "none",
        ):
            raise UnsupportedError(
                "Ollama cannot force or serialise tool calls (it takes no tool_choice or "
                "parallel_tool_calls)",
                provider=self.id,
            )
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _map_messages(request),
            "stream": stream,
        }
        if request.tools and request.tool_choice != "none":
            body["tools"] = _map_tools(request.tools)
        found = schema_of(request)
        if found is not None:
            body["format"] = found[1]
        if request.reasoning is not None:
            # gpt-oss takes a level; other thinking models only on or off
            gpt_oss = request.model.startswith("gpt-oss")
            body["think"] = effort_of(request.reasoning) if gpt_oss else True
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.stop:
            options["stop"] = list(request.stop)
        extra = dict(request.extra)
        extra_options = extra.pop("options", None)
        if isinstance(extra_options, dict):
            options.update(extra_options)
        if options:
            body["options"] = options
        body.update(extra)
        return body

    async def _get_json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        with self._reachable():
            return await super()._get_json(path, params, headers)

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        request = await self._resolve_model(request)
        with self._reachable():
            data = await self._post_json("/api/chat", self._body(request, stream=False))
        return _parse_response(data, self.id, self._secrets())

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        request = await self._resolve_model(request)
        async for chunk in self._ndjson("/api/chat", self._body(request, stream=True)):
            yield chunk

    async def _ndjson(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[ChatChunk]:
        state = _StreamState()
        secrets = self._secrets()
        with self._reachable():
            async with self._open_stream(path, body, expect=NDJSON) as response:
                async for line in ndjson_lines(response):
                    data = _decode_line(line, self.id)
                    chunk = _parse_stream_event(data, self.id, state, secrets)
                    if chunk is not None:
                        yield chunk
                    if state.done:
                        return
        raise MalformedResponseError(
            "the stream ended before its final done line", provider=self.id
        )

    # -- /api/generate: a raw completion, for callers that want Ollama's own prompt form -----

    def _generate_body(
        self, prompt: str, model: str, system: str | None, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "prompt": prompt, "stream": stream}
        if system:
            body["system"] = system
        return body

    async def generate(
        self, prompt: str, *, model: str | None = None, system: str | None = None
    ) -> ChatResponse:
        """`/api/generate` without a chat template's turns: one prompt, one answer."""
        request = await self._resolve_model(ChatRequest(model=model or ""))
        with self._reachable():
            data = await self._post_json(
                "/api/generate", self._generate_body(prompt, request.model, system, False)
            )
        return _parse_response(data, self.id, self._secrets())

    async def generate_stream(
        self, prompt: str, *, model: str | None = None, system: str | None = None
    ) -> AsyncIterator[ChatChunk]:
        request = await self._resolve_model(ChatRequest(model=model or ""))
        body = self._generate_body(prompt, request.model, system, True)
        async for chunk in self._ndjson("/api/generate", body):
            yield chunk

    # -- embeddings and models ---------------------------------------------------------------

    async def _embed(self, texts: list[str], model: str | None) -> Embeddings:
        if not model:
            raise InvalidRequestError(
                "name an Ollama embedding model, e.g. nomic-embed-text "
                "(pull it with `ollama pull nomic-embed-text`)",
                provider=self.id,
            )
        try:
            with self._reachable():
                data = await self._post_json("/api/embed", {"model": model, "input": texts})
        except InvalidRequestError as exc:
            if exc.code != "endpoint_not_found":
                raise
            return await self._embed_legacy(texts, model)
        count = data.get("prompt_eval_count") if isinstance(data, dict) else None
        usage = TokenUsage(input_tokens=count) if isinstance(count, int) and count >= 0 else None
        return Embeddings(_parse_embeddings(data, len(texts), self.id), usage)

    async def _embed_legacy(self, texts: list[str], model: str) -> Embeddings:
        """Servers older than `/api/embed` take one prompt per `/api/embeddings` call (and
        report no token counts)."""
        vectors: list[list[float]] = []
        for text in texts:
            data = await self._post_json("/api/embeddings", {"model": model, "prompt": text})
            vectors.extend(_parse_embeddings(data, 1, self.id))
        return Embeddings(vectors)

    async def _models(self) -> list[ModelInfo]:
        data = await self._get_json("/api/tags")
        infos: list[ModelInfo] = []
        details = {
            item.get("name") or item.get("model"): item.get("details") or {}
            for item in data.get("models", [])
            if isinstance(item, dict)
        }
        for name in _model_names(data):
            info = details.get(name) or {}
            family = str(info.get("family") or "") if isinstance(info, dict) else ""
            embeds = "bert" in family or "embed" in name.lower()
            infos.append(
                ModelInfo(
                    id=name,
                    name=name,
                    supports_embeddings=embeds,
                    supports_tools=not embeds,
                    supports_streaming=not embeds,
                )
            )
        return infos


def create(settings: ProviderSettings) -> OllamaProvider:
    return OllamaProvider(replace(settings, base_url=normalize_host(settings.base_url)))


__all__ = [
    "MODEL_PRIORITY",
    "OllamaProbe",
    "OllamaProvider",
    "create",
    "normalize_host",
    "pick_default_model",
    "probe",
]
