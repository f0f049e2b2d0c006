"""The provider interface: what every provider, built-in or WASM plugin, looks like to callers.

A provider implements `ModelProvider`. Built-in HTTP providers subclass `HTTPProvider`, which
supplies the shared client, the error mapping and the stream bookkeeping (partial usage on
failure, closing the upstream response), so a vendor module only maps wire formats.

Whatever a server sends, only an `OpenKoiError` leaves a built-in provider: `typed_failures`
guards every public call, so a vendor mapping that meets a shape it did not expect (a list where
it wanted a string, a missing key) gives a `MalformedResponseError` and the chain moves on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx
from pydantic import ValidationError

from openkoi._attachments import fetch_for, has_url_attachments
from openkoi._body import (
    MAX_RESPONSE_BYTES,
    finish,
    forget_reader,
    hold_reader,
    read_answer,
    read_start,
)
from openkoi._deadline import CallClock, clock_of, paced_batches
from openkoi._errors import (
    InvalidRequestError,
    MalformedResponseError,
    OpenKoiError,
    ProviderError,
    UnsupportedError,
    redact,
)
from openkoi._http import _short, error_from_response, json_body, map_transport_errors
from openkoi._json import loads
from openkoi._log_scrub import keep_out_of_logs
from openkoi._pieces import pieces
from openkoi._secrets import Secret
from openkoi._sse import LineSplitter, SSEItem, SSESplitter
from openkoi._stream import StreamAccumulator
from openkoi._structured import parse_output
from openkoi._timeouts import Deadlines, Timeouts, resolve_timeouts
from openkoi._transport import (
    DEFAULT_IDLE_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS,
    httpx_timeout,
    new_client,
)
from openkoi._types import (
    Attachment,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embeddings,
    ModelInfo,
    TokenUsage,
)

# What a mapping raises when the data is not the shape it was written for (json errors and
# pydantic's ValidationError are ValueErrors; RecursionError comes from absurdly deep JSON).
_SHAPE_ERRORS = (
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        return f"{where}: {first['msg']}, got {_short(repr(first.get('input')), 80)}"
    if isinstance(exc, KeyError) and exc.args:
        return f"missing {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def typed_error(exc: Exception, provider: str, secrets: Iterable[str | None] = ()) -> ProviderError:
    """The `OpenKoiError` an unexpected exception from a mapping stands for: a shape it did not
    expect is a (transient) `MalformedResponseError` with a short scrubbed excerpt; any other
    bug a `ProviderError`."""
    if isinstance(exc, _SHAPE_ERRORS):
        excerpt = redact(_short(_describe(exc), 160), secrets)
        return MalformedResponseError(
            f"the answer has an unexpected shape ({type(exc).__name__}: {excerpt})",
            provider=provider,
        )
    excerpt = redact(_short(str(exc), 160), secrets)
    return ProviderError(
        f"the provider failed unexpectedly ({type(exc).__name__}: {excerpt})",
        provider=provider,
    )


@contextmanager
def typed_failures(provider: str, secrets: Iterable[str | None] = ()) -> Iterator[None]:
    """Let only `OpenKoiError`s out (see `typed_error`); the call's secrets stay out of the
    HTTP stack's log lines too (`_log_scrub`)."""
    secrets = tuple(secrets)
    keep_out_of_logs(secrets)
    try:
        yield
    except OpenKoiError:
        raise
    except _SHAPE_ERRORS as exc:
        raise typed_error(exc, provider, secrets) from None
    except Exception as exc:
        raise typed_error(exc, provider, secrets) from exc


@runtime_checkable
class EmbedsWithUsage(Protocol):
    """A provider whose embeddings also say what they cost; the router records that usage."""

    async def embed_with_usage(
        self, texts: Sequence[str], model: str | None = None
    ) -> Embeddings: ...


# The deadlines of the provider call in progress and when its total ends (a loop time), for
# the requests it makes. Set by `chat`/`chat_stream` around their own awaits only, so vendor
# modules get per-call deadlines without passing them through every helper.
_CALL: ContextVar[tuple[Deadlines, float] | None] = ContextVar("openkoi_call", default=None)


@runtime_checkable
class ModelProvider(Protocol):
    """The one interface. `chat_stream` is an async generator: `aclose()` it to cancel."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    async def models(self) -> list[ModelInfo]: ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def embed(self, texts: Sequence[str], model: str | None = None) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


@dataclass
class ProviderSettings:
    """Everything a provider instance needs, resolved from config, environment and credentials."""

    id: str
    name: str
    base_url: str
    api_key: Secret | None = None
    default_model: str | None = None
    embedding_model: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    # Deadlines for every call (a call's `ChatRequest.timeouts` wins); unset fields: defaults.
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_connections: int = DEFAULT_IDLE_CONNECTIONS  # kept open for the next call
    max_response_bytes: int = MAX_RESPONSE_BYTES  # a whole answer's decoded body (`_body`)
    proxy: str | None = None  # None: the environment's proxy; "": direct
    ca_bundle: str | None = None


class HTTPProvider:
    """Base for providers that speak HTTP with one shared `httpx.AsyncClient`.

    Subclasses implement `_chat(request)` and `_stream(request)` (an async generator of chunks)
    and, where the service has them, `_embed` and `models`.
    """

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def id(self) -> str:
        return self.settings.id

    @property
    def name(self) -> str:
        return self.settings.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, base_url={self.settings.base_url!r})"

    # -- the interface -------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        with typed_failures(self.id, self._secrets()):
            return await self._models()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        token = _CALL.set(self._call_deadlines(request.timeouts))
        try:
            with typed_failures(self.id, self._secrets()):
                request = self._with_model(request)
                if has_url_attachments(request):
                    request = await self._prepared(request)
                response = await self._chat(request)
                if request.output_schema is None:
                    return response
                return parse_output(request, response)
        finally:
            _CALL.reset(token)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield chunks; on failure, the error carries the usage seen so far."""
        usage: TokenUsage | None = None
        call = self._call_deadlines(request.timeouts)
        chunks: AsyncIterator[ChatChunk] | None = None
        try:
            # The requests are made before the first chunk (a vendor may retry once there):
            # the call's deadlines are visible to them then, and never across our own yield.
            token = _CALL.set(call)
            try:
                with typed_failures(self.id, self._secrets()):
                    ready = self._with_model(request)
                    if has_url_attachments(ready):
                        ready = await self._prepared(ready)
                    chunks = self._stream(ready)
                    first = await anext(chunks)
            except StopAsyncIteration:
                return
            finally:
                _CALL.reset(token)
            usage = first.usage
            yield first
            while True:
                # A plain try per chunk: a context manager per chunk costs more than the chunk.
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except OpenKoiError:
                    raise
                except Exception as exc:
                    cause = None if isinstance(exc, _SHAPE_ERRORS) else exc
                    raise typed_error(exc, self.id, self._secrets()) from cause
                if chunk.usage is not None:
                    usage = chunk.usage
                yield chunk
        except ProviderError as exc:
            if exc.partial_usage is None and usage is not None:
                exc.partial_usage = usage
            raise
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def embed(self, texts: Sequence[str], model: str | None = None) -> list[list[float]]:
        return (await self.embed_with_usage(texts, model)).vectors

    async def embed_with_usage(self, texts: Sequence[str], model: str | None = None) -> Embeddings:
        """`embed`, plus the tokens the service billed (what the router records)."""
        if not texts:
            return Embeddings([])
        with typed_failures(self.id, self._secrets()):
            return await self._embed(list(texts), model or self.settings.embedding_model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- for subclasses -------------------------------------------------------------------

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def _models(self) -> list[ModelInfo]:
        default = self.settings.default_model
        return [ModelInfo(id=default, name=default)] if default else []

    async def _embed(self, texts: list[str], model: str | None) -> Embeddings:
        raise UnsupportedError(f"{self.name} does not offer embeddings", provider=self.id)

    def _auth_headers(self) -> dict[str, str]:
        """Headers carrying the credential; kept out of the client so they never get logged."""
        return {}

    def _fetches_itself(self, attachment: Attachment) -> bool:
        """Whether the service downloads this URL attachment itself; the host fetches the rest."""
        return False

    async def _prepared(self, request: ChatRequest) -> ChatRequest:
        """The request with the URL attachments this service cannot read fetched into bytes."""
        return await fetch_for(request, self.id, self._fetches_itself)

    def _secrets(self) -> tuple[str, ...]:
        key = self.settings.api_key
        return (key.reveal(),) if key else ()

    def _error(self, response: httpx.Response, body_text: str) -> ProviderError:
        """Map an error response; vendors override to read their own error shapes."""
        return error_from_response(
            response.status_code,
            response.headers,
            body_text,
            provider=self.id,
            secrets=self._secrets(),
        )

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._new_client(self.settings.headers)
        return self._client

    def _new_client(self, headers: Mapping[str, str]) -> httpx.AsyncClient:
        s = self.settings
        return new_client(
            s.base_url,
            headers,
            deadlines=resolve_timeouts(s.timeouts),
            max_connections=s.max_connections,
            idle_connections=s.idle_connections,
            proxy=s.proxy,
            ca_bundle=s.ca_bundle,
        )

    # -- deadlines --------------------------------------------------------------------------

    def _call_deadlines(self, timeouts: Timeouts | None) -> tuple[Deadlines, float]:
        deadlines = resolve_timeouts(timeouts, self.settings.timeouts)
        return deadlines, anyio.current_time() + deadlines.total

    def _clock(self) -> CallClock:
        """The clock of one request: the call's deadlines when inside a call, else the
        provider's."""
        call = _CALL.get()
        if call is None:
            return CallClock(resolve_timeouts(self.settings.timeouts), self.id)
        return CallClock(call[0], self.id, total_at=call[1])

    def _build(
        self,
        method: str,
        path: str,
        clock: CallClock,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        all_headers = {**self._auth_headers(), **(headers or {})}
        if body is not None:
            all_headers = {"content-type": "application/json", **all_headers}
        return self.client.build_request(
            method,
            path,
            content=self._encode(body) if body is not None else None,
            headers=all_headers,
            params=params,
            timeout=httpx_timeout(clock.deadlines),
            extensions=clock.extensions(),
        )

    async def _send_for_json(self, request: httpx.Request, clock: CallClock) -> Any:
        """Send, read the whole body within the deadlines, and parse it (or map the error)."""
        secrets = self._secrets()
        try:
            with map_transport_errors(self.id, secrets):
                response = await clock.wait(self.client.send(request, stream=True))
            try:
                clock.event()  # the headers: the answer has begun
                with map_transport_errors(self.id, secrets, receiving=True):
                    raw = await clock.wait(
                        read_answer(response, self.settings.max_response_bytes, provider=self.id)
                    )
                    text = raw.decode(response.encoding or "utf-8", "replace")
            finally:
                await response.aclose()
        finally:
            clock.close()
        if response.status_code >= 400:
            raise self._error(response, text)
        return json_body(text, provider=self.id, status=response.status_code)

    def _encode(self, body: Mapping[str, Any]) -> str:
        """The request as strict JSON. A value JSON cannot hold (from `extra`, a schema, a tool's
        parameters) is the caller's error, found before anything is sent: NaN and infinity
        included, which `json.dumps` would otherwise write as the non-JSON `NaN`/`Infinity`."""
        try:
            return json.dumps(body, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidRequestError(
                f"the request cannot be sent as JSON ({_short(str(exc), 160)})", provider=self.id
            ) from None

    def _with_model(self, request: ChatRequest) -> ChatRequest:
        if request.model:
            return request
        if not self.settings.default_model:
            raise ProviderError(
                f"no model given and {self.name} has no default model", provider=self.id
            )
        return request.model_copy(update={"model": self.settings.default_model})

    async def _post_json(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> Any:
        """POST a JSON body; return the parsed JSON answer or raise the mapped error."""
        clock = self._clock()
        with map_transport_errors(self.id, self._secrets()):
            request = self._build("POST", path, clock, body=body, headers=headers)
        return await self._send_for_json(request, clock)

    async def _get_json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET `path`; return the parsed JSON answer or raise the mapped error."""
        clock = self._clock()
        with map_transport_errors(self.id, self._secrets()):
            request = self._build("GET", path, clock, params=params, headers=headers)
        return await self._send_for_json(request, clock)

    @asynccontextmanager
    async def _open_stream(
        self,
        path: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        *,
        expect: str | tuple[str, ...] = "text/event-stream",
    ) -> AsyncIterator[httpx.Response]:
        """Open a streaming POST; the response is closed when the block exits, however it exits.

        Error statuses are read and mapped before anything is yielded. A 200 whose content type is
        not `expect` (an HTML page from a proxy, a JSON error body) is mapped too. `expect` may
        name several acceptable types; the first is sent as `accept`.
        """
        accepted = (expect,) if isinstance(expect, str) else expect
        accepted = tuple(t for t in accepted if t)
        secrets = self._secrets()
        clock = self._clock()
        try:
            with map_transport_errors(self.id, secrets):
                request = self._build(
                    "POST",
                    path,
                    clock,
                    body=body,
                    headers={**({"accept": accepted[0]} if accepted else {}), **(headers or {})},
                )
                response = await clock.wait(self.client.send(request, stream=True))
            try:
                content_type = response.headers.get("content-type", "")
                wrong_type = (
                    accepted and content_type and not any(t in content_type for t in accepted)
                )
                if response.status_code >= 400 or wrong_type:
                    with map_transport_errors(self.id, secrets, receiving=True):
                        raw = await clock.wait(read_start(response))
                    error = self._error(response, raw.decode("utf-8", "replace"))
                    if response.status_code < 400 and type(error) is ProviderError:
                        error = MalformedResponseError(
                            f"expected a {accepted[0]} stream but got {content_type.split(';')[0]}",
                            provider=self.id,
                            status=response.status_code,
                        )
                    raise error
                with map_transport_errors(self.id, secrets, receiving=True):
                    yield response
                await finish(response)  # only after the last event: the connection is reused
            finally:
                await forget_reader(response)
                await response.aclose()
        finally:
            clock.close()


def sse_events(response: httpx.Response) -> AsyncIterator[SSEItem]:
    """The server-sent events of a stream opened by `_open_stream`, each within its deadline
    (a comment or a partial event is not an event); a plain message event is its data string
    alone (see `SSEItem`)."""
    clock = clock_of(response)
    splitter = SSESplitter(clock.provider if clock is not None else "")
    reads = pieces(response.aiter_text())
    return hold_reader(response, paced_batches(reads, splitter.feed, clock, splitter.flush), reads)


def ndjson_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The non-blank lines of an NDJSON stream, each within its deadline."""
    clock = clock_of(response)
    splitter = LineSplitter(clock.provider if clock is not None else "")

    def nonblank(lines: list[str]) -> list[str]:
        return [line for line in lines if line.strip()]

    reads = pieces(response.aiter_text())
    batches = paced_batches(
        reads,
        lambda text: nonblank(splitter.lines(text)),
        clock,
        lambda: nonblank(splitter.flush()),
    )
    return hold_reader(response, batches, reads)


def frames(response: httpx.Response, feed: Callable[[bytes], list[Any]]) -> AsyncIterator[Any]:
    """Frames of a binary stream: `feed(bytes)` returns the frames those bytes complete; each
    frame is an event, within its deadline."""
    reads = pieces(response.aiter_bytes())
    return hold_reader(response, paced_batches(reads, feed, clock_of(response)), reads)


async def sse_json_events(
    response: httpx.Response,
    provider: str,
    partial_usage: Callable[[], TokenUsage | None] = lambda: None,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, JSON object) for each server-sent event of `response`.

    Empty events, `[DONE]` and JSON values that are not objects are skipped; an event that is not
    JSON is a `MalformedResponseError` carrying the usage the stream had reported so far.
    """
    async for item in sse_events(response):
        name, payload = ("message", item) if isinstance(item, str) else item[:2]
        if not payload or payload == "[DONE]":
            continue
        try:
            data = loads(payload)
        except json.JSONDecodeError:
            raise MalformedResponseError(
                f"the stream sent a {name} event that is not JSON",
                provider=provider,
                partial_usage=partial_usage(),
            ) from None
        if isinstance(data, dict):
            yield name, data


async def collect(
    chunks: AsyncIterator[ChatChunk], request: ChatRequest | None = None
) -> ChatResponse:
    """Drain a stream into the response a non-streaming call would give; with the request, the
    output is checked against its schema into `parsed`, as `chat` does."""
    acc = StreamAccumulator()
    async for chunk in chunks:
        acc.add(chunk)
    response = acc.response()
    return parse_output(request, response) if request is not None else response
