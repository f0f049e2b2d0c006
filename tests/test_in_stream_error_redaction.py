"""An error reported inside a 200 answer (an SSE error event, a Bedrock exception or error frame,
a `response.failed` event, a 200 JSON error body) is scrubbed of the credential as an error
status's body is, and typed by its code as the HTTP status would have been.

Each server echoes the key, whole and as a cut prefix, in the error's message."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _fault_providers import KEY, assert_scrubbed, event_frame, failure, make
from _oauth_server import chatgpt_access_token
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import (
    AuthenticationError,
    ContextOverflowError,
    InvalidRequestError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    ServerError,
)
from openkoi._provider import HTTPProvider, ProviderSettings
from openkoi._secrets import Secret
from openkoi_providers import chatgpt

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
ECHO = f"Incorrect API key provided: {KEY}. Did you mean {KEY[:14]}...?"
OPENAI_ERROR = {
    "error": {"message": ECHO, "type": "invalid_request_error", "code": "invalid_api_key"}
}
EVENTS = "application/vnd.amazon.eventstream"


def sse(*events: Any) -> list[str]:
    return [e if isinstance(e, str) else f"data: {json.dumps(e)}\n\n" for e in events]


def text_delta() -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": "hi"}}]}


@pytest.mark.parametrize(
    "events",
    [
        sse(OPENAI_ERROR),
        sse(text_delta(), OPENAI_ERROR),
        sse(f"event: error\ndata: {json.dumps(OPENAI_ERROR['error'])}\n\n"),
    ],
    ids=["first", "mid-stream", "event-error"],
)
async def test_openai_stream_error_event_is_scrubbed_and_typed(
    serve: Serve, events: list[str]
) -> None:
    server = serve(lambda r: Reply.sse(events))
    error = await failure(make("openai", server.url))
    assert_scrubbed(error)
    assert "[REDACTED]" in error.message
    assert isinstance(error, AuthenticationError) and not error.transient
    assert error.status is None and error.code == "invalid_api_key"


async def test_openai_200_json_error_body_is_scrubbed_and_typed(serve: Serve) -> None:
    server = serve(lambda r: Reply.json(OPENAI_ERROR))
    error = await failure(make("openai", server.url), "chat")
    assert_scrubbed(error)
    assert isinstance(error, AuthenticationError)


@pytest.mark.parametrize(
    ("code", "etype", "expected"),
    [
        ("rate_limit_exceeded", "requests", RateLimitedError),
        ("insufficient_quota", "insufficient_quota", AuthenticationError),
        (None, "server_error", ServerError),
        (None, "overloaded_error", OverloadedError),
        ("context_length_exceeded", "invalid_request_error", ContextOverflowError),
        ("model_not_found", "invalid_request_error", InvalidRequestError),
        (None, "invalid_request_error", InvalidRequestError),
        (None, "authentication_error", AuthenticationError),
    ],
)
async def test_openai_in_stream_codes_map_as_their_statuses_would(
    serve: Serve, code: str | None, etype: str, expected: type[ProviderError]
) -> None:
    body = {"error": {"message": ECHO, "type": etype, "code": code}}
    server = serve(lambda r: Reply.sse(sse(text_delta(), body)))
    error = await failure(make("openai", server.url))
    assert type(error) is expected
    assert_scrubbed(error)


async def test_anthropic_stream_error_event_is_scrubbed(serve: Serve) -> None:
    event = {"type": "error", "error": {"type": "authentication_error", "message": ECHO}}
    server = serve(lambda r: Reply.sse([f"event: error\ndata: {json.dumps(event)}\n\n"]))
    error = await failure(make("anthropic", server.url))
    assert_scrubbed(error)
    assert isinstance(error, AuthenticationError)


async def test_gemini_stream_error_event_is_scrubbed(serve: Serve) -> None:
    event = {"error": {"code": 401, "message": ECHO, "status": "UNAUTHENTICATED"}}
    server = serve(lambda r: Reply.sse(sse(event)))
    error = await failure(make("google", server.url))
    assert_scrubbed(error)
    assert isinstance(error, AuthenticationError)


async def test_ollama_in_body_errors_are_scrubbed(serve: Serve) -> None:
    line = json.dumps({"error": ECHO}) + "\n"
    server = serve(
        lambda r: (
            Reply(chunks=[line], headers={"content-type": "application/x-ndjson"})
            if r.json().get("stream")
            else Reply.json({"error": ECHO})
        )
    )
    streamed = await failure(make("ollama", server.url))
    whole = await failure(make("ollama", server.url), "chat")
    for error in (streamed, whole):
        assert_scrubbed(error)
        assert isinstance(error, ServerError)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            event_frame(
                {
                    ":message-type": "exception",
                    ":exception-type": "validationException",
                    ":content-type": "application/json",
                },
                json.dumps({"message": ECHO}).encode(),
            ),
            InvalidRequestError,
        ),
        (
            event_frame(
                {
                    ":message-type": "exception",
                    ":exception-type": "throttlingException",
                    ":content-type": "application/json",
                },
                json.dumps({"message": ECHO}).encode(),
            ),
            RateLimitedError,
        ),
        (
            event_frame(
                {
                    ":message-type": "error",
                    ":error-code": "InternalFailure",
                    ":error-message": ECHO,
                }
            ),
            ServerError,
        ),
        (
            event_frame(
                {
                    ":message-type": "error",
                    ":error-code": f"Unknown{KEY}",
                    ":error-message": ECHO,
                }
            ),
            ServerError,
        ),
    ],
    ids=["exception", "throttling", "error", "error-code-echo"],
)
async def test_bedrock_stream_failures_are_scrubbed(
    serve: Serve, frame: bytes, expected: type[ProviderError]
) -> None:
    server = serve(lambda r: Reply(chunks=[frame], headers={"content-type": EVENTS}))
    error = await failure(make("bedrock", server.url))
    assert_scrubbed(error)
    assert type(error) is expected


async def test_bedrock_200_error_body_is_scrubbed(serve: Serve) -> None:
    server = serve(lambda r: Reply.json({"__type": "ValidationException", "message": ECHO}))
    error = await failure(make("bedrock", server.url), "chat")
    assert_scrubbed(error)
    assert isinstance(error, InvalidRequestError)
    server = serve(lambda r: Reply.json({"message": ECHO}))
    error = await failure(make("bedrock", server.url), "chat")
    assert_scrubbed(error)


def chatgpt_provider(url: str, token: str) -> HTTPProvider:
    return chatgpt.create(
        ProviderSettings(
            id="openai-oauth",
            name="ChatGPT",
            base_url=url,
            api_key=Secret(token, source="env:TEST"),
            default_model="gpt-5.2",
        )
    )


def chatgpt_failure(kind: str, said: dict[str, str]) -> dict[str, Any]:
    """A Responses stream's failure: a `response.failed` event or a bare `error` event."""
    if kind == "response.failed":
        return {"type": kind, "response": {"id": "r1", "status": "failed", "error": said}}
    return {"type": kind, "error": said}


@pytest.mark.parametrize("kind", ["response.failed", "error"])
async def test_chatgpt_failed_response_echoing_the_token_is_scrubbed(
    serve: Serve, kind: str
) -> None:
    token = chatgpt_access_token(3600, 1)
    said = {"code": "server_error", "message": f"token {token} rejected ({token[:20]}...)"}
    server = serve(lambda r: Reply.sse(sse(chatgpt_failure(kind, said))))
    error = await failure(chatgpt_provider(server.url, token))
    assert_scrubbed(error, token)
    assert isinstance(error, ServerError)


NAMELESS = {"message": f"something went wrong ({KEY})"}


@pytest.mark.parametrize(
    ("family", "reply"),
    [
        ("openai", Reply.sse(sse({"error": NAMELESS}))),
        ("openai", Reply.sse(sse(text_delta(), {"error": NAMELESS}))),
        ("openai", Reply.sse([f"event: error\ndata: {json.dumps(NAMELESS)}\n\n"])),
        ("openai", Reply.sse(sse({"error": "upstream failed"}))),
        ("anthropic", Reply.sse([f"event: error\ndata: {json.dumps({'error': NAMELESS})}\n\n"])),
        (
            "anthropic",
            Reply.sse(
                [
                    f"event: error\ndata: {json.dumps({'type': 'error', 'error': {'type': 'new_kind'}})}\n\n"
                ]
            ),
        ),
        ("google", Reply.sse(sse({"error": NAMELESS}))),
    ],
    ids=[
        "openai-first",
        "openai-mid",
        "openai-event",
        "openai-string",
        "anthropic",
        "anthropic-unknown-type",
        "google",
    ],
)
async def test_an_error_inside_a_200_answer_that_names_nothing_is_a_server_fault(
    serve: Serve, family: str, reply: Reply
) -> None:
    """The server took the request (200) and then failed without saying why: a fault of the
    server, so the chain may try another model (as Ollama's code-less errors are), not a
    permanent error that stops it."""
    server = serve(lambda r: reply)
    error = await failure(make(family, server.url))
    assert isinstance(error, ServerError) and error.transient
    assert error.status is None
    assert_scrubbed(error)


@pytest.mark.parametrize("kind", ["response.failed", "error"])
async def test_chatgpt_failure_that_names_nothing_is_a_server_fault(
    serve: Serve, kind: str
) -> None:
    token = chatgpt_access_token(3600, 1)
    server = serve(lambda r: Reply.sse(sse(chatgpt_failure(kind, {"message": "it broke"}))))
    error = await failure(chatgpt_provider(server.url, token))
    assert isinstance(error, ServerError) and error.transient
