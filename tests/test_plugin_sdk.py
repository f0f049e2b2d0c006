"""The guest SDK's pure parts, run natively: splitters, errors, event assembly, and the HTTP
helpers against a fake host backend. (Inside a guest they run the same code under wasm.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "guest-sdk"))

import openkoi_guest as sdk
from openkoi_guest import _lines


def _cut(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_lines_survive_any_chunk_boundary(size: int) -> None:
    text = "alpha\r\nbeta\n\ngamma\rdelta\r\n\r\nlast"
    assert list(sdk.iter_lines(_cut(text, size))) == [
        "alpha",
        "beta",
        "",
        "gamma",
        "delta",
        "",
        "last",
    ]


@pytest.mark.parametrize("size", [1, 5, 13, 1000])
def test_sse_events_with_comments_multiline_data_and_ids(size: int) -> None:
    text = (
        ": keep-alive\n\n"
        'event: content-delta\ndata: {"a":1}\n\n'
        "data: line one\ndata: line two\nid: 7\n\n"
        "retry: 100\n\n"
        "data: [DONE]\n\n"
    )
    events = list(sdk.iter_sse(_cut(text, size)))
    assert [(e.event, e.data, e.id) for e in events] == [
        ("content-delta", '{"a":1}', None),
        ("message", "line one\nline two", "7"),
        ("message", "[DONE]", "7"),
    ]
    assert events[0].json() == {"a": 1}


@pytest.mark.parametrize(
    "text",
    [
        '{"a":[1,2.5,"x"]}',
        ' {"a":1}',
        '{"a":1} ',
        "null",
        '"s"',
        "",
        "nul",
        '{"a":}',
        "1 2",
        '{"a":1}{}',
        "\ufeff{}",
        '{"a":"\\ud800"}',
        "NaN",
        "[1,]",
    ],
)
def test_the_fast_json_path_gives_what_json_loads_gives(text: str) -> None:
    """`SSEEvent.json` calls the decoder's scanner directly: the same value or the same error."""
    import json

    def outcome(loads: Any) -> object:
        try:
            return ("ok", repr(loads(text)))
        except ValueError as exc:
            return ("error", type(exc), str(exc))

    assert outcome(_lines.loads) == outcome(json.loads)
    assert outcome(lambda t: sdk.SSEEvent("message", t).json()) == outcome(json.loads)


def test_ndjson_and_the_buffered_count() -> None:
    assert list(sdk.iter_ndjson(['{"a":', '1}\n\n{"b"', ":2}\n"])) == [{"a": 1}, {"b": 2}]
    stream = sdk.iter_lines(["one\ntwo\nthr", "ee\n"])
    assert next(stream) == "one"
    assert _lines.buffered() == 1  # "two" is read and waiting; no network needed for it
    assert next(stream) == "two"
    assert _lines.buffered() == 0  # the next line needs another chunk
    stream.close()
    assert _lines.buffered() == 0


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "retry_after"),
    [
        (429, '{"message":"slow down"}', {"retry-after": "3"}, sdk.RateLimited, 3.0),
        (429, "{}", {"retry-after-ms": "1500"}, sdk.RateLimited, 1.5),
        (503, "", {}, sdk.Overloaded, None),
        (401, '{"error":{"message":"bad key","type":"auth"}}', {}, sdk.AuthError, None),
        (500, "<html>oops</html>", {}, sdk.ServerError, None),
        (400, '{"error":{"code":"context_length_exceeded"}}', {}, sdk.ContextOverflow, None),
        (404, "not here", {}, sdk.InvalidRequest, None),
    ],
)
def test_error_for_status(
    status: int, body: str, headers: dict[str, str], cls: type, retry_after: float | None
) -> None:
    error = sdk.error_for_status(status, headers, body)
    assert type(error) is cls
    assert error.status == status and error.retry_after == retry_after
    assert error.message


def test_events_and_responses_convert_both_ways() -> None:
    response = sdk.ChatResponse(
        content="hi",
        tool_calls=[sdk.ToolCall("c1", "lookup", '{"q":1}')],
        usage=sdk.Usage(3, 4),
        stop_reason="tool_use",
        model="m",
        reasoning="because",
    )
    assert sdk._types.response_from_events(sdk._types.events_from_response(response)) == response


class _FakeBody:
    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks
        self.closed = False

    def next_chunk(self) -> str:
        return self.chunks.pop(0) if self.chunks else ""

    def close(self) -> None:
        self.closed = True


class _FakeHost:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list[tuple[str, str]], str | None]] = []
        self.body = _FakeBody(['data: {"t":"a"}\n\ndata: {"t', '":"b"}\n\n'])

    def send(self, method: str, url: str, headers: Any, body: str | None) -> Any:
        self.sent.append((method, url, headers, body))
        if url.endswith("/missing"):
            return 404, [("Content-Type", "application/json")], '{"message":"no such model"}'
        return 200, [("Content-Type", "application/json")], '{"ok":true}'

    def send_streaming(self, method: str, url: str, headers: Any, body: str | None) -> Any:
        self.sent.append((method, url, headers, body))
        return 200, [("Content-Type", "text/event-stream")], self.body


@pytest.fixture
def host() -> Iterator[_FakeHost]:
    fake = _FakeHost()
    sdk.http.set_backend(fake)
    yield fake
    sdk.http.set_backend(None)


def test_http_helpers_against_a_fake_host(host: _FakeHost) -> None:
    response = sdk.http.send(
        "post", "https://api.example.com/x", headers={"x-a": "1"}, json={"k": "é"}
    )
    assert response.ok and response.json() == {"ok": True}
    assert response.headers == {"content-type": "application/json"}
    assert host.sent[0] == (
        "POST",
        "https://api.example.com/x",
        [("x-a", "1"), ("content-type", "application/json")],
        '{"k":"é"}',
    )
    with pytest.raises(sdk.InvalidRequest, match="no such model"):
        sdk.http.send("GET", "https://api.example.com/missing").raise_for_status()
    assert sdk.http.secret("API_KEY") == "{{secret:API_KEY}}"

    with sdk.http.stream("POST", "https://api.example.com/s", json={}) as streamed:
        assert [e.json()["t"] for e in streamed.sse()] == ["a", "b"]
    assert host.body.closed


def test_a_provider_needs_chat_or_stream() -> None:
    class Nothing(sdk.Provider):
        pass

    with pytest.raises(sdk.Unsupported, match="neither chat nor stream"):
        Nothing().chat(sdk.ChatRequest(model="m"))

    class Streams(sdk.Provider):
        def stream(self, request: sdk.ChatRequest) -> Iterator[sdk.Event]:
            yield sdk.TextDelta("a")
            yield sdk.TextDelta("b")
            yield sdk.Stop("max_tokens")

    answer = Streams().chat(sdk.ChatRequest(model="m"))
    assert (answer.content, answer.stop_reason) == ("ab", "max_tokens")
    with pytest.raises(sdk.Unsupported, match="embeddings"):
        Streams().embed("m", ["x"])
