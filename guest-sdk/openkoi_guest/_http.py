"""HTTP through the host: the plugin's only way to the network.

    response = http.send("POST", url, headers={"authorization": "Bearer {{secret:API_KEY}}"},
                         json=body)
    with http.stream("POST", url, headers=..., json=body) as response:
        for event in response.sse():
            ...

The host checks every request against the manifest's `network.allow` origins and replaces
`{{secret:NAME}}` placeholders in header values; the plugin never sees a secret. A refused or
failed request raises `HttpError` (its `http_kind` is the WIT `http-error` case).
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from openkoi_guest._errors import HttpError, MalformedResponse, error_for_status
from openkoi_guest._lines import SSEEvent, iter_lines, iter_ndjson, iter_sse, loads


def secret(name: str) -> str:
    """The placeholder the host replaces with the secret `name` (declared in the manifest)."""
    return "{{secret:" + name + "}}"


class _Body(Protocol):
    def next_chunk(self) -> str: ...

    def close(self) -> None: ...


class _Backend(Protocol):
    """What the SDK needs from the host; the generated bindings in a guest, a fake in tests."""

    def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: str | None
    ) -> tuple[int, list[tuple[str, str]], str]: ...

    def send_streaming(
        self, method: str, url: str, headers: list[tuple[str, str]], body: str | None
    ) -> tuple[int, list[tuple[str, str]], _Body]: ...


_backend: _Backend | None = None


def set_backend(backend: _Backend | None) -> None:
    """Replace the host (tests run provider code natively against a fake)."""
    global _backend
    _backend = backend


def _get_backend() -> _Backend:
    global _backend
    if _backend is None:
        from openkoi_guest._bindings import WitHttp

        _backend = WitHttp()
    return _backend


def _prepare(
    headers: Mapping[str, str] | None, body: str | None, json: Any
) -> tuple[list[tuple[str, str]], str | None]:
    pairs = [(k, v) for k, v in (headers or {}).items()]
    if json is not None:
        body = _json.dumps(json, separators=(",", ":"), ensure_ascii=False)
        if not any(k.lower() == "content-type" for k, _ in pairs):
            pairs.append(("content-type", "application/json"))
    return pairs, body


class Response:
    """A complete response. `headers` has lower-case names."""

    def __init__(self, status: int, headers: list[tuple[str, str]], text: str) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.text = text

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return loads(self.text)
        except ValueError as exc:
            raise MalformedResponse(
                f"expected JSON but got {'an empty body' if not self.text.strip() else 'text that is not JSON'}",
                status=self.status,
            ) from exc

    def raise_for_status(self) -> Response:
        """Raise the provider error for an error status (429 -> RateLimited, ...)."""
        if self.status >= 400:
            raise error_for_status(self.status, self.headers, self.text)
        return self


class StreamingResponse:
    """A response whose body is read as it arrives. Use it in a `with` block."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: _Body) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self._body: _Body | None = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def chunks(self) -> Iterator[str]:
        body = self._body
        if body is None:
            return
        while True:
            chunk = body.next_chunk()
            if not chunk:
                self.close()
                return
            yield chunk

    def read(self) -> str:
        return "".join(self.chunks())

    def lines(self) -> Iterator[str]:
        return iter_lines(self.chunks())

    def sse(self) -> Iterator[SSEEvent]:
        return iter_sse(self.chunks())

    def ndjson(self) -> Iterator[Any]:
        return iter_ndjson(self.chunks())

    def raise_for_status(self) -> StreamingResponse:
        if self.status >= 400:
            text = self.read()
            raise error_for_status(self.status, self.headers, text)
        return self

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def __enter__(self) -> StreamingResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    json: Any = None,
) -> Response:
    """Send a request and read the whole response. Raises `HttpError` if the host refused it."""
    pairs, text = _prepare(headers, body, json)
    status, head, payload = _get_backend().send(method.upper(), url, pairs, text)
    return Response(status, head, payload)


def stream(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    json: Any = None,
) -> StreamingResponse:
    """Send a request and return once the head has arrived; read the body as it streams."""
    pairs, text = _prepare(headers, body, json)
    status, head, handle = _get_backend().send_streaming(method.upper(), url, pairs, text)
    return StreamingResponse(status, head, handle)


__all__ = ["HttpError", "Response", "StreamingResponse", "secret", "send", "stream"]
