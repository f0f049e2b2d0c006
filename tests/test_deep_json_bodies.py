"""A body nested deeper than the JSON parser recurses (100,000 arrays) is a body that cannot be
parsed, no more: an error status still maps by its status (and Retry-After), and a 200 answer
is a `MalformedResponseError`, never an internal error."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _fault_providers import failure, make
from _server import LoopbackServer, Recorded, Reply
from openkoi._errors import (
    AuthenticationError,
    MalformedResponseError,
    RateLimitedError,
)
from openkoi._http import error_from_response, json_body

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"error": ' * 100_000 + "1" + "}" * 100_000
HTTP_FAMILIES = ("openai", "anthropic", "google", "bedrock", "ollama")


def test_an_unparseable_error_body_still_maps_by_status() -> None:
    from openkoi._http import error_json

    assert error_json(DEEP) is None and error_json(DEEP_OBJECT) is None
    error = error_from_response(429, {"retry-after": "30"}, DEEP, provider="p")
    assert isinstance(error, RateLimitedError) and error.retry_after == 30
    assert error.status == 429
    with pytest.raises(MalformedResponseError, match="nested deeper"):
        json_body(DEEP, provider="p", status=200)


@pytest.mark.parametrize("family", HTTP_FAMILIES)
@pytest.mark.parametrize("mode", ["chat", "stream"])
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
async def test_deep_error_body_keeps_its_status(
    serve: Serve, family: str, mode: str, body: str
) -> None:
    headers = {"content-type": "application/json"}
    refusing = serve(lambda r: Reply(status=401, body=body, headers=headers))
    limiting = serve(
        lambda r: Reply(status=429, body=body, headers={**headers, "retry-after": "30"})
    )
    refused = await failure(make(family, refusing.url), mode)
    assert type(refused) is AuthenticationError and refused.status == 401
    limited = await failure(make(family, limiting.url), mode)
    assert type(limited) is RateLimitedError
    assert limited.status == 429 and limited.retry_after == 30


@pytest.mark.parametrize(
    ("family", "mode"),
    [(f, "chat") for f in HTTP_FAMILIES]
    + [(f, "models") for f in HTTP_FAMILIES if f != "bedrock"],  # Bedrock's is a catalogue
)
async def test_deep_200_answer_is_malformed(serve: Serve, family: str, mode: str) -> None:
    server = serve(lambda r: Reply(body=DEEP, headers={"content-type": "application/json"}))
    error = await failure(make(family, server.url), mode)
    assert type(error) is MalformedResponseError


@pytest.mark.parametrize("family", ["openai", "anthropic", "google", "ollama"])
async def test_deep_stream_event_is_malformed(serve: Serve, family: str) -> None:
    if family == "ollama":
        reply = Reply(chunks=[DEEP + "\n"], headers={"content-type": "application/x-ndjson"})
    else:
        reply = Reply.sse([f"data: {DEEP}\n\n"])
    server = serve(lambda r: reply)
    error = await failure(make(family, server.url), "stream")
    assert type(error) is MalformedResponseError
