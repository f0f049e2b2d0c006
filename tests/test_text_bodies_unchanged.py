"""A text-only request goes out byte for byte as it did before attachments, schemas, tool choice
and reasoning existed: the new fields cost nothing on the wire when unused.

The digests were taken from the bodies the providers sent before the neutral model grew; each
body is captured from a real socket, streamed and not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from _server import Recorded, Reply
from openkoi._provider import collect
from openkoi._types import ChatRequest, Message, ToolCall, ToolDef
from test_typed_failures import WIRES
from test_typed_failures import _aws_env as _aws_env  # fake AWS credentials, autouse

pytestmark = pytest.mark.anyio

RICH = ChatRequest(
    system="Be brief.",
    messages=[
        Message.system("Answer in English."),
        Message.user("What is the weather in Paris?"),
        Message.assistant(
            "Let me look.",
            [ToolCall(id="call_1", name="weather", arguments='{"city": "Paris"}')],
        ),
        Message.tool_result("call_1", "18 C and sunny", name="weather"),
        Message.user("And in Lyon?"),
    ],
    tools=[
        ToolDef(
            name="weather",
            description="The weather in a city",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
    ],
    max_tokens=300,
    temperature=0.2,
    stop=["END"],
)

GOLDEN: dict[tuple[str, bool], str] = {
    ("anthropic", False): "339f56e63a4d4351648ff1cb9f454d05a1bc39019df2bb05ce0e68b593060077",
    ("anthropic", True): "d8c55b8e9f09f1278e5b22cbd1a0dabd005cd3f5d02161c2a51f52e1b9afd4f1",
    ("bedrock", False): "16ff242f02117a94dd805d9cfa865599708f845c5cd293e3c7dd75d2a4430d43",
    ("bedrock", True): "16ff242f02117a94dd805d9cfa865599708f845c5cd293e3c7dd75d2a4430d43",
    # Gemini's tool schemas went from `parameters` (an OpenAPI subset) to `parametersJsonSchema`.
    ("google", False): "e5579322b066dd684d28d11edf863748688ca64b91a51656cbc68f510363014f",
    ("google", True): "e5579322b066dd684d28d11edf863748688ca64b91a51656cbc68f510363014f",
    ("ollama", False): "b6be36b7eac807c1fbd2ce046cb1464e873bd20211b977635670a941ff875260",
    ("ollama", True): "31b989b54100211700383a27487a5f9f4f0c18dec94c2ebc421f620c54844d2f",
    ("openai", False): "91cbf85482e9c2e882c1d01e04f05a4ff2c5cbb8a6ed5df419c2306bef9f5452",
    ("openai", True): "1eb3a048336303e75d4d778dad63031bff79a660eddbd623d676f398200524a5",
    ("openai-oauth", False): "852355fcf53b3fa34dc192e4b9d0df356268f0a7a471e3e21b6387e96b408714",
    ("openai-oauth", True): "a057491a2f3fbe1e328d0ca5013f0509794aab3990996d0fab43da3e5dd9eacf",
}


async def _body(name: str, stream: bool, serve: Any) -> bytes:
    wire = WIRES[name]
    seen: list[bytes] = []

    def handler(request: Recorded) -> Reply:
        seen.append(request.body)
        return wire.frame(wire.events) if stream else Reply.json(wire.answer)

    server = serve(handler)
    provider = wire.make(server.url)
    request = RICH.model_copy(update={"model": wire.model})
    if name == "openai-oauth":  # the Responses API has no stop sequences: refused, not dropped
        request = request.model_copy(update={"stop": None})
    try:
        if stream:
            await collect(provider.chat_stream(request))
        else:
            await provider.chat(request)
    finally:
        await provider.aclose()
    return seen[-1]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(WIRES))
async def test_a_text_only_body_is_unchanged(name: str, stream: bool, serve: Any) -> None:
    body = await _body(name, stream, serve)
    assert hashlib.sha256(body).hexdigest() == GOLDEN[name, stream], body.decode()
