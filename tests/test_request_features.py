"""Attachments, schemas, tool choice and reasoning on the wire of every built-in provider.

Each request goes to a real loopback server, and the body is checked against the shape the
vendor's API reference documents. What a protocol cannot take is an UnsupportedError raised
before anything is sent (the server sees no request).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from _server import Recorded, Reply
from openkoi import (
    Attachment,
    ChatRequest,
    InvalidRequestError,
    Message,
    NetworkError,
    OutputValidationError,
    TextPart,
    ToolCall,
    ToolDef,
    UnsupportedError,
)
from openkoi._provider import collect
from test_typed_failures import WIRES
from test_typed_failures import _aws_env as _aws_env  # fake AWS credentials, autouse

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
PNG64 = base64.b64encode(PNG).decode()
PDF = b"%PDF-1.4\n" + b"x" * 50
PDF64 = base64.b64encode(PDF).decode()
WAV = b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 40
WAV64 = base64.b64encode(WAV).decode()
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
    "required": ["city", "temp"],
}
STRICT = {**SCHEMA, "additionalProperties": False}
TOOLS = [ToolDef(name="weather", parameters={"type": "object", "properties": {}})]


async def _sent(name: str, request: ChatRequest, serve: Any, stream: bool = False) -> Any:
    """The JSON body the provider sent for `request`, or the error it raised first."""
    wire = WIRES[name]
    seen: list[Recorded] = []

    def handler(recorded: Recorded) -> Reply:
        seen.append(recorded)
        return wire.frame(wire.events) if stream else Reply.json(wire.answer)

    server = serve(handler)
    provider = wire.make(server.url)
    request = request.model_copy(update={"model": request.model or wire.model})
    try:
        if stream:
            await collect(provider.chat_stream(request))
        else:
            await provider.chat(request)
    except UnsupportedError as exc:
        assert not seen, "refused only after sending"
        return exc
    except OutputValidationError:
        pass  # the canned answer is no JSON: the request is what is checked here
    finally:
        await provider.aclose()
    return seen[-1].json()


def _ask(*attachments: Attachment, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=[Message.user("What is this?", list(attachments))], **fields)


# -- attachments ----------------------------------------------------------------------------


async def test_openai_text_files_go_as_text(serve: Any) -> None:
    """Chat Completions' `file` part takes PDFs only (a text file is a 400): a text, JSON or
    CSV file goes as a text part that names it; a PDF stays a file."""
    body = await _sent(
        "openai",
        _ask(
            Attachment.from_bytes(b"buy milk\n", name="notes.txt"),
            Attachment.from_bytes(b'{"a": 1}', name="data.json"),
            Attachment.from_bytes(PDF, name="report.pdf"),
        ),
        serve,
    )
    notes, data, pdf = [
        p for p in body["messages"][0]["content"] if p.get("text") != "What is this?"
    ]
    assert notes == {
        "type": "text",
        "text": "--- notes.txt (text/plain) ---\nbuy milk\n\n--- end of notes.txt ---",
    }
    assert data == {
        "type": "text",
        "text": '--- data.json (application/json) ---\n{"a": 1}\n--- end of data.json ---',
    }
    assert pdf["type"] == "file" and pdf["file"]["filename"] == "report.pdf"


async def test_openai_parts(serve: Any) -> None:
    body = await _sent(
        "openai",
        _ask(
            Attachment.of(PNG),
            Attachment.from_bytes(PDF, name="report.pdf"),
            Attachment.of(WAV),
            Attachment.from_url("https://example.com/cat.jpg"),
        ),
        serve,
    )
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG64}"}},
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF64}"},
        },
        {"type": "input_audio", "input_audio": {"data": WAV64, "format": "wav"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is this?"},
    ]


async def test_responses_parts(serve: Any) -> None:
    body = await _sent(
        "openai-oauth",
        _ask(Attachment.of(PNG), Attachment.from_bytes(PDF, name="r.pdf")),
        serve,
        stream=True,
    )
    assert body["input"][0]["content"] == [
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG64}"},
        {
            "type": "input_file",
            "filename": "r.pdf",
            "file_data": f"data:application/pdf;base64,{PDF64}",
        },
        {"type": "input_text", "text": "What is this?"},
    ]


async def test_anthropic_parts(serve: Any) -> None:
    body = await _sent(
        "anthropic",
        _ask(Attachment.of(PNG), Attachment.of(PDF), Attachment.from_url("https://x.test/a.pdf")),
        serve,
    )
    content = body["messages"][0]["content"]
    assert content[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG64},
    }
    assert content[1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF64},
    }
    assert content[2] == {
        "type": "document",
        "source": {"type": "url", "url": "https://x.test/a.pdf"},
    }
    assert content[3]["type"] == "text"


async def test_gemini_parts(serve: Any) -> None:
    body = await _sent(
        "google",
        _ask(Attachment.of(PNG), Attachment.of(WAV), Attachment.from_url("gs://bucket/v.mp4")),
        serve,
    )
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG64}},
        {"inlineData": {"mimeType": "audio/wav", "data": WAV64}},
        {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://bucket/v.mp4"}},
        {"text": "What is this?"},
    ]


async def test_bedrock_parts(serve: Any) -> None:
    body = await _sent(
        "bedrock", _ask(Attachment.of(PNG), Attachment.from_bytes(PDF, name="Q3 report.pdf")), serve
    )
    assert body["messages"][0]["content"] == [
        {"image": {"format": "png", "source": {"bytes": PNG64}}},
        {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": PDF64}}},
        {"text": "What is this?"},
    ]


async def test_ollama_images(serve: Any) -> None:
    body = await _sent("ollama", _ask(Attachment.of(PNG)), serve)
    assert body["messages"][0] == {"role": "user", "content": "What is this?", "images": [PNG64]}


@pytest.mark.parametrize(
    ("name", "attachment"),
    [
        ("anthropic", Attachment.of(WAV)),
        ("bedrock", Attachment.of(WAV)),
        ("ollama", Attachment.of(PDF)),
        ("openai-oauth", Attachment.of(WAV)),
        ("openai", Attachment.from_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 20)),  # video
        ("anthropic", Attachment.from_bytes(b"a,b\n1,2\n", "text/csv")),
    ],
)
async def test_a_part_a_provider_cannot_take_is_refused_before_sending(
    name: str, attachment: Attachment, serve: Any
) -> None:
    error = await _sent(name, _ask(attachment), serve)
    assert isinstance(error, UnsupportedError)
    assert attachment.media_type in str(error)


async def test_a_url_the_provider_cannot_fetch_is_fetched_by_the_host(serve: Any) -> None:
    files = serve(lambda r: Reply(body=PNG, headers={"content-type": "image/png"}))
    body = await _sent("bedrock", _ask(Attachment.of(f"{files.url}/photo.png")), serve)
    assert body["messages"][0]["content"][0] == {
        "image": {"format": "png", "source": {"bytes": PNG64}}
    }


async def test_a_fetched_url_over_the_limit_is_refused(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openkoi._attachments as attachments

    monkeypatch.setattr(attachments, "MAX_ATTACHMENT_BYTES", 100)
    files = serve(
        lambda r: Reply(chunks=[PNG[:60], PNG[60:]], headers={"content-type": "image/png"})
    )
    wire = WIRES["ollama"]
    provider = wire.make(files.url)
    try:
        with pytest.raises(InvalidRequestError, match="larger than"):
            await provider.chat(_ask(Attachment.of(f"{files.url}/big.png"), model=wire.model))
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "http://",
        "https:///photo.png",
        "http://exa mple.com/photo.png",
        "http://files.test:99999/photo.png",
        "https://[::1/photo.png",
        "ftp://files.test/photo.png",
    ],
)
@pytest.mark.parametrize("name", ["ollama", "openai", "anthropic"])
async def test_a_malformed_attachment_url_is_permanent(name: str, url: str, serve: Any) -> None:
    """Fetched by the host (Ollama) or by the service (OpenAI and Anthropic images), a URL
    that names no file is the caller's mistake: it names the attachment and is not sent."""
    wire = WIRES[name]
    server = serve(lambda r: Reply.json(wire.answer))
    provider = wire.make(server.url)
    try:
        with pytest.raises(InvalidRequestError) as info:
            await provider.chat(_ask(Attachment.from_url(url, "image/png"), model=wire.model))
    finally:
        await provider.aclose()
    assert not info.value.transient
    assert "attachment" in info.value.message and "not a URL" in info.value.message
    assert server.requests == []


async def test_an_attachment_server_status_is_named_and_classified(serve: Any) -> None:
    """A file the server does not have is permanent; a server that fails may recover."""
    files = serve(lambda r: Reply(status=404 if r.path.endswith("gone.png") else 503))
    wire = WIRES["ollama"]
    provider = wire.make(files.url)
    try:
        for path, kind in (("gone.png", InvalidRequestError), ("busy.png", NetworkError)):
            url = f"{files.url}/{path}?token=sig-secret"
            with pytest.raises(kind) as info:
                await provider.chat(_ask(Attachment.of(url), model=wire.model))
            assert info.value.transient is (kind is NetworkError)
            assert path in info.value.message and "sig-secret" not in info.value.message
    finally:
        await provider.aclose()


async def test_an_attachment_server_that_is_down_stays_transient(serve: Any) -> None:
    wire = WIRES["ollama"]
    provider = wire.make(serve(lambda r: Reply()).url)
    try:
        with pytest.raises(NetworkError) as info:
            await provider.chat(_ask(Attachment.of("http://127.0.0.1:9/photo.png"), model="m"))
    finally:
        await provider.aclose()
    assert info.value.transient
    assert info.value.message.startswith("attachment 'http://127.0.0.1:9/photo.png'")


def test_media_types_are_sniffed_and_paths_read(tmp_path: Any) -> None:
    photo = tmp_path / "photo.bin"
    photo.write_bytes(PNG)
    assert Attachment.of(photo).media_type == "image/png"
    assert Attachment.of(PDF).kind == "document"
    assert Attachment.of(WAV).media_type == "audio/wav"
    assert Attachment.from_url("https://x.test/song.mp3?x=1").media_type == "audio/mpeg"
    assert Attachment.of(b"plain words").media_type == "text/plain"
    with pytest.raises(InvalidRequestError, match="cannot read"):
        Attachment.of(tmp_path / "missing.png")


# -- structured output ------------------------------------------------------------------------


async def test_schema_shapes(serve: Any) -> None:
    openai = await _sent("openai", _ask(schema=SCHEMA), serve)
    assert openai["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": STRICT, "strict": True},
    }
    responses = await _sent("openai-oauth", _ask(schema=SCHEMA), serve, stream=True)
    assert responses["text"] == {
        "format": {"type": "json_schema", "name": "response", "schema": STRICT, "strict": True}
    }
    gemini = await _sent("google", _ask(schema=SCHEMA), serve)
    assert gemini["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    }
    ollama = await _sent("ollama", _ask(schema=SCHEMA), serve)
    assert ollama["format"] == SCHEMA
    anthropic = await _sent("anthropic", _ask(schema=SCHEMA, model="claude-sonnet-4-5"), serve)
    assert anthropic["output_config"] == {"format": {"type": "json_schema", "schema": STRICT}}
    old = await _sent("anthropic", _ask(schema=SCHEMA, model="claude-3-5-haiku-latest"), serve)
    assert old["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert old["tools"][-1]["input_schema"] == SCHEMA
    bedrock = await _sent("bedrock", _ask(schema=SCHEMA), serve)
    assert bedrock["toolConfig"]["toolChoice"] == {"tool": {"name": "structured_output"}}
    assert bedrock["toolConfig"]["tools"][-1]["toolSpec"]["inputSchema"] == {"json": SCHEMA}


async def test_a_schema_loose_for_strict_mode_is_sent_unstrict(serve: Any) -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    body = await _sent("openai", _ask(schema=loose), serve)
    assert body["response_format"]["json_schema"] == {
        "name": "response",
        "schema": loose,
        "strict": False,
    }


# -- tool choice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "choice", "parallel", "check"),
    [
        (
            "openai",
            "required",
            False,
            lambda b: (b["tool_choice"], b["parallel_tool_calls"]) == ("required", False),
        ),
        (
            "openai",
            "weather",
            None,
            lambda b: b["tool_choice"] == {"type": "function", "function": {"name": "weather"}},
        ),
        (
            "openai-oauth",
            "weather",
            False,
            lambda b: (
                (b["tool_choice"], b["parallel_tool_calls"])
                == ({"type": "function", "name": "weather"}, False)
            ),
        ),
        (
            "anthropic",
            "required",
            False,
            lambda b: b["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True},
        ),
        ("anthropic", "none", None, lambda b: b["tool_choice"] == {"type": "none"}),
        (
            "anthropic",
            None,
            False,
            lambda b: b["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True},
        ),
        (
            "google",
            "weather",
            None,
            lambda b: (
                b["toolConfig"]
                == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
            ),
        ),
        (
            "google",
            "none",
            None,
            lambda b: b["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}},
        ),
        ("bedrock", "required", None, lambda b: b["toolConfig"]["toolChoice"] == {"any": {}}),
        (
            "bedrock",
            "weather",
            None,
            lambda b: b["toolConfig"]["toolChoice"] == {"tool": {"name": "weather"}},
        ),
        ("ollama", "none", None, lambda b: "tools" not in b),
    ],
)
async def test_tool_choice_shapes(
    name: str, choice: str | None, parallel: bool | None, check: Any, serve: Any
) -> None:
    body = await _sent(
        name, _ask(tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel), serve
    )
    assert not isinstance(body, Exception), body
    assert check(body), body


@pytest.mark.parametrize(
    ("name", "choice", "parallel"),
    [
        ("bedrock", "none", None),
        ("bedrock", None, False),
        ("google", None, False),
        ("ollama", "required", None),
        ("ollama", "weather", None),
    ],
)
async def test_a_tool_choice_a_provider_cannot_honour_is_refused(
    name: str, choice: str | None, parallel: bool | None, serve: Any
) -> None:
    error = await _sent(
        name, _ask(tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel), serve
    )
    assert isinstance(error, UnsupportedError)


async def test_openai_sends_no_tool_settings_without_tools(serve: Any) -> None:
    """Chat Completions refuses tool_choice and parallel_tool_calls in a request with no tools
    (a 400); without tools they mean nothing, so they are left out, and a choice that needs
    tools is still the caller's error."""
    body = await _sent("openai", _ask(tool_choice="none", parallel_tool_calls=False), serve)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)
    with pytest.raises(InvalidRequestError, match="needs tools"):
        await _sent("openai", _ask(tool_choice="required"), serve)


async def test_a_tool_choice_naming_no_tool_is_a_request_error(serve: Any) -> None:
    with pytest.raises(InvalidRequestError, match="not among"):
        await _sent("openai", _ask(tools=TOOLS, tool_choice="nope"), serve)


# -- reasoning --------------------------------------------------------------------------------


async def test_reasoning_shapes(serve: Any) -> None:
    assert (await _sent("openai", _ask(reasoning="high"), serve))["reasoning_effort"] == "high"
    assert (await _sent("openai", _ask(reasoning=3000), serve))["reasoning_effort"] == "medium"
    responses = await _sent("openai-oauth", _ask(reasoning="low"), serve, stream=True)
    assert responses["reasoning"] == {"effort": "low", "summary": "auto"}
    anthropic = await _sent("anthropic", _ask(reasoning=5000), serve)
    assert anthropic["thinking"] == {"type": "enabled", "budget_tokens": 5000}
    assert anthropic["max_tokens"] > 5000
    gemini = await _sent("google", _ask(reasoning="medium", model="gemini-2.5-flash"), serve)
    assert gemini["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 8192,
    }
    gemini3 = await _sent("google", _ask(reasoning="high", model="gemini-3-pro-preview"), serve)
    assert gemini3["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingLevel": "high",
    }
    bedrock = await _sent(
        "bedrock",
        _ask(reasoning="low", model="us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        serve,
    )
    assert bedrock["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert isinstance(await _sent("bedrock", _ask(reasoning="low"), serve), UnsupportedError)
    assert (await _sent("ollama", _ask(reasoning="low"), serve))["think"] is True
    assert (await _sent("ollama", _ask(reasoning="low", model="gpt-oss:20b"), serve))[
        "think"
    ] == "low"


async def test_anthropic_refuses_a_budget_above_max_tokens(serve: Any) -> None:
    with pytest.raises(InvalidRequestError, match="thinking budget"):
        await _sent("anthropic", _ask(reasoning=5000, max_tokens=1000), serve)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"temperature": 0.2}, "temperature"),
        ({"tools": TOOLS, "tool_choice": "required"}, "forced call"),
        ({"tools": TOOLS, "tool_choice": "weather"}, "forced call"),
    ],
)
async def test_anthropic_refuses_what_thinking_does_not_allow_before_sending(
    serve: Any, fields: dict[str, Any], says: str
) -> None:
    """The API answers these with a 400; refused here, nothing is sent (`_sent` checks)."""
    error = await _sent("anthropic", _ask(reasoning="low", **fields), serve)
    assert isinstance(error, UnsupportedError) and says in error.message
    allowed = await _sent("anthropic", _ask(reasoning="low", temperature=1.0), serve)
    assert allowed["temperature"] == 1.0


@pytest.mark.parametrize(
    ("model", "thinking", "effort"),
    [
        ("claude-opus-4-7", {"type": "adaptive"}, "high"),
        ("claude-opus-5", {"type": "adaptive"}, "high"),
        ("claude-mythos-5", {"type": "adaptive"}, "high"),
        ("claude-mythos-preview", {"type": "adaptive"}, "high"),
        ("claude-sonnet-4-5-20250929", {"type": "enabled", "budget_tokens": 24576}, None),
        ("claude-opus-4-6", {"type": "enabled", "budget_tokens": 24576}, None),
        ("claude-3-7-sonnet-20250219", {"type": "enabled", "budget_tokens": 24576}, None),
    ],
)
async def test_anthropic_models_that_think_only_adaptively_get_an_effort(
    serve: Any, model: str, thinking: dict[str, Any], effort: str | None
) -> None:
    """Opus 4.7 and later refuse a fixed `budget_tokens` (a 400): they get adaptive thinking
    and the effort the reasoning setting stands for; older models keep the budget."""
    body = await _sent("anthropic", _ask(reasoning="high", model=model), serve)
    assert body["thinking"] == thinking
    assert body.get("output_config", {}).get("effort") == effort


@pytest.mark.parametrize(
    ("model", "max_tokens"),
    [("claude-opus-4-1", 32000), ("claude-opus-4-20250514", 32000), ("claude-sonnet-4-5", 32768)],
)
async def test_anthropic_thinking_max_tokens_stays_within_the_model_s_limit(
    serve: Any, model: str, max_tokens: int
) -> None:
    """With no max_tokens given, a thinking call asks for room for its budget and an answer,
    but never above the model's output limit, which the API would refuse."""
    body = await _sent("anthropic", _ask(reasoning="high", model=model), serve)
    assert body["max_tokens"] == max_tokens
    assert body["thinking"]["budget_tokens"] < body["max_tokens"]


# -- the Responses API (ChatGPT) ---------------------------------------------------------------


async def test_responses_tool_results_with_parts_are_sent(serve: Any) -> None:
    """A tool result given as parts is text when it is only text, `input_*` items with an
    attachment among them (it used to be unsendable: the parts went into the JSON as objects)."""

    def history(*parts: TextPart | Attachment) -> ChatRequest:
        call = ToolCall(id="call_1", name="weather", arguments="{}")
        return ChatRequest(
            tools=TOOLS,
            messages=[
                Message.user("weather?"),
                Message(role="assistant", content="", tool_calls=[call]),
                Message(role="tool", tool_call_id="call_1", content=list(parts)),
            ],
        )

    text = await _sent(
        "openai-oauth", history(TextPart(text="sunny, "), TextPart(text="20 C")), serve
    )
    with_image = await _sent(
        "openai-oauth", history(TextPart(text="map:"), Attachment.of(PNG)), serve
    )
    assert text["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": "sunny, 20 C",
    }
    output = with_image["input"][-1]["output"]
    assert [part["type"] for part in output] == ["input_text", "input_image"]
    assert output[1]["image_url"].startswith("data:image/png;base64,")


async def test_responses_settings_the_api_cannot_take_are_refused(serve: Any) -> None:
    """The Responses API has no stop sequences; the ChatGPT subscription's backend also answers
    max_output_tokens and temperature with a 400. Refused before anything is sent."""
    stop = await _sent("openai-oauth", _ask(stop=["END"]), serve)
    assert isinstance(stop, UnsupportedError) and "stop" in stop.message
    sent = await _sent("openai-oauth", _ask(max_tokens=50, temperature=0.5), serve)
    assert (sent["max_output_tokens"], sent["temperature"]) == (50, 0.5)  # another Responses URL
    provider = WIRES["openai-oauth"].make("https://chatgpt.com/backend-api/codex")
    try:
        for fields, named in (
            ({"max_tokens": 50}, "max_tokens"),
            ({"temperature": 0.5}, "temperature"),
        ):
            with pytest.raises(UnsupportedError, match=named):
                await provider.chat(_ask(model="gpt-5.2", **fields))
    finally:
        await provider.aclose()


# -- a tool that failed ------------------------------------------------------------------------


def _tool_history(result: Message, model: str = "") -> ChatRequest:
    call = ToolCall(id="call_1", name="weather", arguments="{}")
    return ChatRequest(
        model=model,
        tools=TOOLS,
        messages=[Message.user("weather?"), Message.assistant(None, [call]), result],
    )


async def test_a_failed_tool_s_result_says_so_where_the_vendor_has_a_field(serve: Any) -> None:
    failed = Message.tool_result("call_1", "the weather service is down", "weather", is_error=True)
    anthropic = await _sent("anthropic", _tool_history(failed), serve)
    gemini = await _sent("google", _tool_history(failed), serve)
    claude = await _sent(
        "bedrock", _tool_history(failed, "anthropic.claude-sonnet-4-20250514"), serve
    )
    nova = await _sent("bedrock", _tool_history(failed, "amazon.nova-pro-v1:0"), serve)
    openai = await _sent("openai", _tool_history(failed), serve)
    fine = await _sent("anthropic", _tool_history(Message.tool_result("call_1", "sunny")), serve)
    assert anthropic["messages"][-1]["content"][0]["is_error"] is True
    assert "is_error" not in fine["messages"][-1]["content"][0]
    assert gemini["contents"][-1]["parts"][0]["functionResponse"]["response"] == {
        "error": "the weather service is down"
    }
    assert claude["messages"][-1]["content"][0]["toolResult"]["status"] == "error"
    assert "status" not in nova["messages"][-1]["content"][0]["toolResult"]  # Claude's field only
    assert openai["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "the weather service is down",
    }
