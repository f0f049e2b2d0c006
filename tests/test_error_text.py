"""An error's message comes from a string field only, never from a Python repr of whatever a
server put under "message" or "error"; secrets are still scrubbed from what is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fault_providers import KEY, failure, make
from _server import Reply
from openkoi import MalformedResponseError, ProviderError, ServerError
from openkoi._http import extract_error

pytestmark = pytest.mark.anyio

NOT_TEXT = {"role": "assistant", "content": f"leaked {KEY}"}


def _no_repr(error: ProviderError) -> None:
    shown = str(error) + repr(error)
    assert "{'" not in shown and "['" not in shown
    assert KEY not in shown


def test_extract_error_reads_strings_only() -> None:
    assert extract_error({"message": NOT_TEXT}) == (None, None, None)
    assert extract_error({"error": {"message": ["a"], "code": {"x": 1}, "type": 3}}) == (
        None,
        None,
        "3",
    )
    assert extract_error({"error": {"message": "bad", "code": 429}}) == ("bad", "429", None)


async def test_ollama_whole_answer_where_a_stream_was_asked(serve: Any) -> None:
    """Ollama's non-streaming 200 answer has a dict under "message": not an error text."""
    answer = {"model": "m", "message": NOT_TEXT, "done": True, "done_reason": "stop"}
    server = serve(lambda _: Reply.json(answer))
    error = await failure(make("ollama", server.url), "stream")
    assert isinstance(error, MalformedResponseError)
    _no_repr(error)
    assert "stream" in error.message


async def test_ollama_error_that_is_not_text(serve: Any) -> None:
    server = serve(lambda _: Reply.json({"error": NOT_TEXT}))
    error = await failure(make("ollama", server.url), "chat")
    assert isinstance(error, ServerError)
    _no_repr(error)


async def test_openai_error_message_that_is_not_text(serve: Any) -> None:
    body = {"error": {"message": NOT_TEXT, "code": {"nested": KEY}, "type": ["x"]}}
    server = serve(lambda _: Reply.json(body, status=500))
    error = await failure(make("openai", server.url), "chat")
    assert isinstance(error, ServerError)
    _no_repr(error)
    assert error.code is None


async def test_anthropic_stream_error_message_that_is_not_text(serve: Any) -> None:
    event = {"type": "error", "error": {"type": {"x": 1}, "message": NOT_TEXT}}
    server = serve(lambda _: Reply.sse([f"event: error\ndata: {json.dumps(event)}\n\n"]))
    error = await failure(make("anthropic", server.url), "stream")
    _no_repr(error)
    assert "reported an error" in error.message


async def test_gemini_error_message_that_is_not_text(serve: Any) -> None:
    body = {"error": {"code": 500, "message": NOT_TEXT, "status": ["INTERNAL"]}}
    server = serve(lambda _: Reply.json(body, status=500))
    error = await failure(make("google", server.url), "chat")
    assert isinstance(error, ServerError)
    _no_repr(error)
