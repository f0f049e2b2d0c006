"""What Bedrock Converse is sent, checked on a real loopback server that verifies SigV4: no blank
text block (Converse rejects one as "blank"), Claude's thinking under the Anthropic provider's
rules (a refused combination is a typed error before anything is sent), and document names of
the ASCII characters Bedrock allows."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from _server import Reply
from openkoi import (
    Attachment,
    ChatRequest,
    InvalidRequestError,
    Message,
    OpenKoiError,
    ToolCall,
    ToolDef,
    UnsupportedError,
)
from openkoi._provider import collect
from openkoi._types import NativeTurn, TextPart
from test_bedrock import _aws_env as _aws_env  # fake AWS credentials, autouse
from test_bedrock import _provider, signed, start, stream_reply, text_stream

pytestmark = pytest.mark.anyio

CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
ANSWER = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 3, "outputTokens": 1},
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PDF = b"%PDF-1.4\n" + b"x" * 40
RUN = ToolDef(name="run")


async def _sent(serve: Any, request: ChatRequest, stream: bool = False) -> Any:
    """The body Converse(Stream) got, or the typed error raised before any request was made."""
    handler = signed(lambda r: stream_reply(text_stream("ok")) if stream else Reply.json(ANSWER))
    server = start(serve, handler)
    provider = _provider(server.url)
    try:
        if stream:
            await collect(provider.chat_stream(request))
        else:
            await provider.chat(request)
    except OpenKoiError as exc:
        assert server.requests == [], "refused only after sending"
        return exc
    finally:
        await provider.aclose()
    assert handler.failures == []  # type: ignore[attr-defined]
    return server.requests[-1].json()


def _blank_texts(value: Any) -> list[Any]:
    """Every text block in the body whose text is empty or only whitespace."""
    if isinstance(value, list):
        return [b for item in value for b in _blank_texts(item)]
    if not isinstance(value, dict):
        return []
    own = [value] if isinstance(value.get("text"), str) and not value["text"].strip() else []
    return own + [b for item in value.values() for b in _blank_texts(item)]


# -- no blank text blocks ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_an_empty_tool_output_and_an_empty_turn_send_no_blank_text(
    serve: Any, stream: bool
) -> None:
    body = await _sent(
        serve,
        ChatRequest(
            model=CLAUDE,
            tools=[RUN],
            messages=[
                Message.user("run it"),
                Message.assistant(None, [ToolCall(id="t1", name="run")]),
                Message.tool_result("t1", ""),
                Message.assistant(""),
                Message.user("and now?"),
            ],
        ),
        stream,
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "run it"}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "run", "input": {}}}],
        },
        {  # the empty assistant turn is gone; the user turns around it are one, as alternated
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "(no output)"}]}},
                {"text": "and now?"},
            ],
        },
    ]


async def test_whitespace_only_text_is_dropped_wherever_it_is(serve: Any) -> None:
    reasoning = {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "sig"}}}
    call = {"toolUse": {"toolUseId": "t1", "name": "run", "input": {}}}
    body = await _sent(
        serve,
        ChatRequest(
            model=CLAUDE,
            system="  ",
            tools=[RUN],
            messages=[
                Message(role="system", content="\n"),
                Message(
                    role="user", content=[TextPart(text=" \n"), Attachment.of(PNG, "image/png")]
                ),
                Message(
                    role="assistant",
                    content="",
                    tool_calls=[ToolCall(id="t1", name="run")],
                    native=NativeTurn(
                        protocol="bedrock-converse", blocks=[reasoning, {"text": "  "}, call]
                    ),
                ),
                Message(role="tool", tool_call_id="t1", content=[TextPart(text="\t")]),
                Message.user("   "),
            ],
        ),
    )
    assert _blank_texts(body) == []
    assert "system" not in body
    assert body["messages"][0]["content"] == [
        {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}}
    ]
    assert body["messages"][1] == {"role": "assistant", "content": [reasoning, call]}
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "(no output)"}]}}],
    }
    assert len(body["messages"]) == 3


# -- Claude's thinking, by the Anthropic provider's rules --------------------------------------


def _claude(**fields: Any) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", CLAUDE), messages=[Message.user("x")], **fields)


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("fields", "error", "says"),
    [
        ({"output_schema": SCHEMA}, UnsupportedError, "schema only as a forced tool call"),
        ({"tools": [RUN], "tool_choice": "required"}, UnsupportedError, "'required'"),
        ({"tools": [RUN], "tool_choice": "run"}, UnsupportedError, "'run'"),
        ({"temperature": 0.2}, UnsupportedError, "temperature"),
        ({"reasoning": "medium", "max_tokens": 4000}, InvalidRequestError, r"budget \(8192\)"),
        (
            {"reasoning": 40000, "model": "anthropic.claude-opus-4-1-20250805-v1:0"},
            InvalidRequestError,
            r"max_tokens \(32000\)",
        ),
    ],
)
async def test_claude_thinking_refuses_what_anthropic_rejects(
    serve: Any, stream: bool, fields: dict[str, Any], error: type[Exception], says: str
) -> None:
    found = await _sent(serve, _claude(**{"reasoning": "low", **fields}), stream)
    assert isinstance(found, error), found
    assert re.search(says, str(found)), found


async def test_claude_thinking_leaves_room_for_the_answer(serve: Any) -> None:
    high = await _sent(serve, _claude(reasoning="high"))
    assert high["inferenceConfig"] == {"maxTokens": 24576 + 8192}
    assert high["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 24576}
    }
    opus = await _sent(
        serve, _claude(reasoning="high", model="anthropic.claude-opus-4-1-20250805-v1:0")
    )
    assert opus["inferenceConfig"] == {"maxTokens": 32000}  # the model's output limit
    mine = await _sent(serve, _claude(reasoning="low", max_tokens=3000, temperature=1))
    assert mine["inferenceConfig"] == {"maxTokens": 3000, "temperature": 1}


async def test_claude_thinking_allows_tools_it_may_skip(serve: Any) -> None:
    body = await _sent(serve, _claude(reasoning="low", tools=[RUN], tool_choice="auto"))
    assert body["toolConfig"]["toolChoice"] == {"auto": {}}
    assert body["inferenceConfig"] == {"maxTokens": 2048 + 8192}


async def test_adaptive_only_claude_gets_an_effort_not_a_budget(serve: Any) -> None:
    for model in ("us.anthropic.claude-opus-4-7", "anthropic.claude-mythos-5"):
        body = await _sent(serve, _claude(reasoning="medium", model=model))
        assert body["additionalModelRequestFields"] == {
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "medium"},
        }, model


async def test_only_claude_takes_the_thinking_rules(serve: Any) -> None:
    """The same request refused for Claude goes out unchanged for Nova, which thinks its way."""
    fields = {"reasoning": "low", "temperature": 0.2, "tools": [RUN], "tool_choice": "required"}
    assert isinstance(await _sent(serve, _claude(**fields)), UnsupportedError)
    nova = await _sent(serve, _claude(model="amazon.nova-2-lite-v1:0", **fields))
    assert nova["inferenceConfig"] == {"temperature": 0.2}
    assert nova["toolConfig"]["toolChoice"] == {"any": {}}
    assert nova["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}
    }


# -- document names ----------------------------------------------------------------------------


async def test_document_names_are_the_ascii_bedrock_allows(serve: Any) -> None:
    names = [
        "Q3 résumé_2024.pdf",
        "分析レポート.pdf",
        "Report -  Final [v2].pdf",
        "テスト\u3000資料.pdf",
    ]
    parts: list[TextPart | Attachment] = [TextPart(text="read these")]
    parts += [Attachment.from_bytes(PDF, "application/pdf", name=n) for n in names]
    body = await _sent(
        serve, ChatRequest(model=CLAUDE, messages=[Message(role="user", content=parts)])
    )
    sent = [b["document"]["name"] for b in body["messages"][0]["content"] if "document" in b]
    assert sent == ["Q3 resume 2024", "document 3", "Report - Final [v2]", "document 5"]
