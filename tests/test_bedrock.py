"""AWS Bedrock against a real loopback server that checks every SigV4 signature with botocore
and answers ConverseStream with real event-stream framing: the shared corpus, the project's
own bad-input fixtures, credentials and region, embeddings, and the CLI."""

from __future__ import annotations

import datetime
import hmac
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from _corpus import Case, corpus_params, load_case
from _fault_providers import event_frame
from _server import Recorded, Reply, split_bytes
from openkoi import (
    AuthenticationError,
    ChatRequest,
    ConfigError,
    ContextOverflowError,
    CredentialsMissingError,
    InvalidRequestError,
    InvalidToolArgumentsError,
    MalformedResponseError,
    Message,
    OverloadedError,
    ProviderError,
    ProviderRegistry,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    ToolCall,
    ToolDef,
    UnsupportedError,
)
from openkoi._provider import ProviderSettings, collect
from openkoi_providers import bedrock
from openkoi_providers.bedrock import (
    AwsCredentials,
    BedrockProvider,
    aws_credential,
    create,
    resolve_model_id,
    resolve_region,
)

pytestmark = pytest.mark.anyio

ACCESS_KEY = "AKIDOPENKOITEST00001"
SECRET_KEY = "openkoi/test/secret+key/0123456789abcdefXYZ"
SESSION_TOKEN = "openkoi-session-token-for-tests-0123456789"
REGION = "us-west-2"
EVENT_STREAM = {"content-type": "application/vnd.amazon.eventstream"}


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fixed fake credentials in the environment; no metadata endpoint, no real AWS files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for var in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
        monkeypatch.delenv(var, raising=False)


# -- the server side: SigV4 verification and event-stream framing ------------------------------

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def verify_sigv4(
    request: Recorded,
    port: int,
    *,
    secret: str = SECRET_KEY,
    region: str = REGION,
    token: str | None = None,
) -> None:
    """Recompute the signature with botocore from what the server received; raise if it differs."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _AUTH.fullmatch(request.headers.get("authorization", ""))
    assert match, f"no SigV4 authorization header: {request.headers.get('authorization')!r}"
    assert match["key"] == ACCESS_KEY
    assert (match["region"], match["service"]) == (region, "bedrock")
    signed = match["signed"].split(";")
    for needed in ("host", "x-amz-date", "content-type"):
        assert needed in signed, f"{needed} is not signed"
    if token is not None:
        assert "x-amz-security-token" in signed
        assert request.headers["x-amz-security-token"] == token
    stamp = request.headers["x-amz-date"]
    assert stamp.startswith(match["date"])
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) < 300
    aws = AWSRequest(
        method=request.method,
        url=f"http://127.0.0.1:{port}{request.target}",
        data=request.body,
        headers={name: request.headers[name] for name in signed},
    )
    aws.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(ACCESS_KEY, secret, token), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    assert hmac.compare_digest(expected, match["signature"]), "signature mismatch"


def signed(
    answer: Callable[[Recorded], Reply], *, token: str | None = None
) -> Callable[[Recorded], Reply]:
    """A handler that answers like AWS: a bad signature gets a 403 InvalidSignatureException."""
    holder: dict[str, int] = {}

    def handler(request: Recorded) -> Reply:
        try:
            verify_sigv4(request, holder["port"], token=token)
        except AssertionError as exc:
            handler.failures.append(str(exc))  # type: ignore[attr-defined]
            return Reply.json(
                {"message": f"signature check failed: {exc}"},
                status=403,
                headers={"x-amzn-ErrorType": "InvalidSignatureException:http://internal/"},
            )
        return answer(request)

    handler.failures = []  # type: ignore[attr-defined]
    handler.holder = holder  # type: ignore[attr-defined]
    return handler


def start(serve: Any, handler: Callable[[Recorded], Reply]) -> Any:
    server = serve(handler)
    holder = getattr(handler, "holder", None)
    if holder is not None:
        holder["port"] = server.port
    return server


def event(kind: str, data: dict[str, Any]) -> bytes:
    return event_frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(data).encode(),
    )


def exception(kind: str, message: str) -> bytes:
    return event_frame(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


def text_stream(
    *texts: str, usage: dict[str, int] | None = None, stop: str = "end_turn"
) -> list[bytes]:
    parts = [event("messageStart", {"role": "assistant"})]
    parts += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in texts
    ]
    parts += [
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": stop}),
        event(
            "metadata",
            {"usage": usage or {"inputTokens": 9, "outputTokens": 4}, "metrics": {"latencyMs": 1}},
        ),
    ]
    return parts


def stream_reply(parts: list[bytes], size: int = 13, **kwargs: Any) -> Reply:
    return Reply(chunks=split_bytes(b"".join(parts), size), headers=EVENT_STREAM, **kwargs)


def _provider(url: str, **settings: Any) -> BedrockProvider:
    return create(
        ProviderSettings(
            id="bedrock",
            name="AWS Bedrock",
            base_url=url,
            default_model="anthropic.claude-sonnet-4-20250514",
            embedding_model="amazon.titan-embed-text-v2:0",
            **settings,
        )
    )


def _ask(text: str = "hi", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        model=kwargs.pop("model", "amazon.nova-pro-v1:0"), messages=[Message.user(text)], **kwargs
    )


# -- the verifier and the encoder are themselves right -----------------------------------------


def test_verifier_rejects_tampering() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "http://127.0.0.1:8123/model/amazon.nova-pro-v1%3A0/converse"
    aws = AWSRequest(
        method="POST", url=url, data=b'{"a": 1}', headers={"content-type": "application/json"}
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", REGION).add_auth(aws)
    headers = {k.lower(): v for k, v in aws.headers.items()} | {"host": "127.0.0.1:8123"}
    target = "/model/amazon.nova-pro-v1%3A0/converse"
    good = Recorded("POST", target, headers, b'{"a": 1}')
    verify_sigv4(good, 8123)
    with pytest.raises(AssertionError, match="mismatch"):
        verify_sigv4(Recorded("POST", target, headers, b'{"a": 2}'), 8123)
    with pytest.raises(AssertionError, match="mismatch"):
        verify_sigv4(good, 8123, secret="another-secret")
    with pytest.raises(AssertionError, match="mismatch"):
        verify_sigv4(Recorded("POST", target.replace("%3A", ":"), headers, b'{"a": 1}'), 8123)


def test_encoder_output_reads_back_with_botocore() -> None:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(text_stream("a", "b")))
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert json.loads(messages[1].payload)["delta"]["text"] == "a"


# -- the corpus --------------------------------------------------------------------------------


def _neutral_request(body: dict[str, Any], model: str) -> ChatRequest | None:
    """The neutral request whose Converse body is the recorded one; None where the recording
    uses content the neutral model cannot express (guardrail blocks)."""
    extra: dict[str, Any] = {}
    system = body.get("system")
    system_text = None
    if system is not None:
        if len(system) == 1 and set(system[0]) == {"text"}:
            system_text = system[0]["text"]
        else:
            extra["system"] = system
    messages = []
    for raw in body["messages"]:
        if len(raw["content"]) != 1 or set(raw["content"][0]) != {"text"}:
            return None
        messages.append(Message(role=raw["role"], content=raw["content"][0]["text"]))
    inference = dict(body.get("inferenceConfig") or {})
    max_tokens = inference.pop("maxTokens", None)
    temperature = inference.pop("temperature", None)
    stop = inference.get("stopSequences") or []
    if stop:
        inference.pop("stopSequences")
    if inference or ("inferenceConfig" in body and max_tokens is None and temperature is None):
        extra["inferenceConfig"] = inference
    tools = [
        ToolDef(
            name=t["toolSpec"]["name"],
            description=t["toolSpec"].get("description", ""),
            parameters=t["toolSpec"]["inputSchema"]["json"],
        )
        for t in (body.get("toolConfig") or {}).get("tools", [])
    ]
    for key, value in body.items():
        if key not in ("system", "messages", "inferenceConfig", "toolConfig"):
            extra[key] = value
    return ChatRequest(
        model=model,
        system=system_text,
        messages=messages,
        tools=tools,
        max_tokens=max_tokens,
        temperature=temperature,
        stop=stop,
        extra=extra,
    )


def _replay(case: Case) -> Callable[[Recorded], Reply]:
    def answer(request: Recorded) -> Reply:
        assert request.target == case.request["path"]
        # 37-byte pieces: boundaries fall inside preludes, headers, payloads and CRCs.
        return case.reply(37)

    return signed(answer)


def _expected_stream(case: Case) -> dict[str, Any]:
    """A naive reading of the recorded event stream."""
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(case.body)
    text, reasoning, tools, stop, usage = [], [], {}, None, None
    for message in buffer:
        data = json.loads(message.payload)
        kind = message.headers[":event-type"]
        delta = data.get("delta", {})
        if kind == "contentBlockStart":
            use = data["start"]["toolUse"]
            tools[data["contentBlockIndex"]] = [use["toolUseId"], use["name"], ""]
        elif "text" in delta:
            text.append(delta["text"])
        elif "toolUse" in delta:
            tools[data["contentBlockIndex"]][2] += delta["toolUse"]["input"]
        elif "reasoningContent" in delta:
            reasoning.append(delta["reasoningContent"].get("text", ""))
        elif kind == "messageStop":
            stop = data["stopReason"]
        elif kind == "metadata":
            usage = data["usage"]
    return {
        "text": "".join(text),
        "reasoning": "".join(reasoning),
        "tools": tools,
        "stop": stop,
        "usage": usage,
    }


def _expected_json(case: Case) -> dict[str, Any]:
    data = case.json()
    blocks = data["output"]["message"]["content"]
    tools = {
        i: [b["toolUse"]["toolUseId"], b["toolUse"]["name"], json.dumps(b["toolUse"]["input"])]
        for i, b in enumerate(blocks)
        if "toolUse" in b
    }
    text = "".join(b.get("text", "") for b in blocks)
    return {
        "text": text,
        "reasoning": "",
        "tools": tools,
        "stop": data["stopReason"],
        "usage": data["usage"],
    }


CORPUS_ERRORS: dict[str, tuple[type[ProviderError], str]] = {
    "error_400_validation": (InvalidRequestError, "ValidationException"),
    "error_400_validation_stream": (InvalidRequestError, "ValidationException"),
    "error_403_expired_token": (AuthenticationError, "ExpiredTokenException"),
}
STOPS = {"end_turn": "end_turn", "tool_use": "tool_use", "guardrail_intervened": "content_filter"}


@pytest.mark.parametrize("name", corpus_params("bedrock"))
async def test_bedrock_case(name: str, serve: Any) -> None:
    case = load_case("bedrock", name)
    handler = _replay(case)
    server = start(serve, handler)
    provider = _provider(server.url)
    model = unquote(case.request["path"].split("/")[2])
    request = _neutral_request(case.request["body"], model)
    streaming = case.request["path"].endswith("/converse-stream")
    try:
        if name in CORPUS_ERRORS:
            cls, code = CORPUS_ERRORS[name]
            with pytest.raises(cls) as info:
                if streaming:
                    await collect(provider.chat_stream(request or _ask(model=model)))
                else:
                    await provider.chat(request or _ask(model=model))
            assert (info.value.status, info.value.code) == (case.status, code)
            assert info.value.message == case.json()["message"]
            assert SECRET_KEY not in str(info.value) + repr(info.value)
            return
        if streaming:
            response = await collect(provider.chat_stream(request or _ask(model=model)))
            want = _expected_stream(case)
        else:
            response = await provider.chat(request or _ask(model=model))
            want = _expected_json(case)
    finally:
        await provider.aclose()
    assert handler.failures == []  # type: ignore[attr-defined]
    assert server.requests[0].target == case.request["path"]  # the model id encoded the same way
    if request is not None:
        assert server.requests[0].json() == case.request["body"]
    assert response.content == want["text"]
    assert response.reasoning == want["reasoning"]
    assert [(c.id, c.name, c.parsed_arguments()) for c in response.tool_calls] == [
        (i, n, json.loads(a or "{}")) for _, (i, n, a) in sorted(want["tools"].items())
    ]
    assert response.stop_reason == STOPS[want["stop"]]
    usage = want["usage"]
    assert response.usage.input_tokens == usage["inputTokens"]
    assert response.usage.output_tokens == usage["outputTokens"]
    assert response.usage.cache_read_tokens == usage.get("cacheReadInputTokens", 0)
    assert response.usage.cache_write_tokens == usage.get("cacheWriteInputTokens", 0)


async def test_corpus_specifics(serve: Any) -> None:
    """Facts about particular recordings, spelled out so a regression names itself."""
    checks: dict[str, Callable[[Any], bool]] = {
        "converse_cache_write": lambda r: r.usage.cache_write_tokens > 0,
        "converse_cache_read": lambda r: r.usage.cache_read_tokens == 1028,
        "converse_stream_cache_read": lambda r: r.usage.cache_read_tokens > 0,
        "converse_guardrail_trace": lambda r: r.stop_reason == "content_filter",
        "converse_stream_tool_use_nova": lambda r: (
            [c.parsed_arguments()["location"] for c in r.tool_calls] == ["Seattle", "San Francisco"]
        ),
        "converse_stream_reasoning": lambda r: r.reasoning.startswith("The user has greeted me"),
        "converse_tool_use": lambda r: (
            r.stop_reason == "tool_use" and r.tool_calls[0].name == "fetch_concept"
        ),
    }
    for name, check in checks.items():
        case = load_case("bedrock", name)
        server = start(serve, _replay(case))
        provider = _provider(server.url)
        model = unquote(case.request["path"].split("/")[2])
        request = _neutral_request(case.request["body"], model) or _ask(model=model)
        try:
            if case.request["path"].endswith("-stream"):
                response = await collect(provider.chat_stream(request))
            else:
                response = await provider.chat(request)
        finally:
            await provider.aclose()
        assert check(response), name


# -- requests going out ------------------------------------------------------------------------


async def test_request_mapping_and_session_token(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    handler = signed(lambda r: stream_reply(text_stream("ok")), token=SESSION_TOKEN)
    server = start(serve, handler)
    provider = _provider(server.url)
    request = ChatRequest(
        model="amazon.nova-pro-v1:0",
        system="be brief",
        messages=[
            Message.user("weather in two places?"),
            Message.assistant(
                "checking",
                [
                    ToolCall(id="t1", name="weather", arguments='{"city": "Oslo"}'),
                    ToolCall(id="t2", name="weather", arguments='{"city": "Rome"}'),
                ],
            ),
            Message.tool_result("t1", "snow"),
            Message.tool_result("t2", "sun"),
        ],
        tools=[ToolDef(name="weather", description="look it up"), ToolDef(name="bare")],
        max_tokens=64,
        temperature=0.3,
        stop=["END"],
        extra={"inferenceConfig": {"topP": 0.9}, "additionalModelRequestFields": {"top_k": 5}},
    )
    try:
        response = await collect(provider.chat_stream(request))
    finally:
        await provider.aclose()
    assert handler.failures == []  # type: ignore[attr-defined]
    assert response.content == "ok"
    sent = server.requests[0]
    assert sent.target == "/model/amazon.nova-pro-v1%3A0/converse-stream"
    assert sent.headers["accept"] == "application/vnd.amazon.eventstream"
    assert sent.json() == {
        "system": [{"text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"text": "weather in two places?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "checking"},
                    {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Oslo"}}},
                    {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "snow"}]}},
                    {"toolResult": {"toolUseId": "t2", "content": [{"text": "sun"}]}},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 64,
            "temperature": 0.3,
            "stopSequences": ["END"],
            "topP": 0.9,
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "look it up",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                    }
                },
                {
                    "toolSpec": {
                        "name": "bare",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                    }
                },
            ]
        },
        "additionalModelRequestFields": {"top_k": 5},
    }


@pytest.mark.parametrize(
    ("model", "region", "model_id"),
    [
        (
            "anthropic.claude-sonnet-4-20250514",
            "us-west-2",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
        ),
        (
            "anthropic.claude-3-5-haiku-20241022",
            "us-east-1",
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        ),
        (
            "anthropic.claude-sonnet-4-20250514",
            "eu-west-1",
            "eu.anthropic.claude-sonnet-4-20250514-v1:0",
        ),
        (
            "anthropic.claude-sonnet-4-20250514",
            "ap-northeast-1",
            "apac.anthropic.claude-sonnet-4-20250514-v1:0",
        ),
        ("meta.llama3-3-70b-instruct-v1:0", "us-east-2", "us.meta.llama3-3-70b-instruct-v1:0"),
        ("amazon.nova-pro-v1:0", "us-east-1", "amazon.nova-pro-v1:0"),
        (
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "us-east-1",
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x",
            "us-east-1",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x",
        ),
    ],
)
def test_model_ids(model: str, region: str, model_id: str) -> None:
    assert resolve_model_id(model, region) == model_id


@pytest.mark.parametrize("model", bedrock.KNOWN_MODELS)
async def test_spec_model_ids_reach_the_server_encoded(serve: Any, model: str) -> None:
    handler = signed(lambda r: stream_reply(text_stream("ok")))
    server = start(serve, handler)
    provider = _provider(server.url)
    try:
        response = await collect(provider.chat_stream(_ask(model=model)))
    finally:
        await provider.aclose()
    assert response.content == "ok" and handler.failures == []  # type: ignore[attr-defined]
    wanted = resolve_model_id(model, REGION).replace(":", "%3A")
    assert server.requests[0].target == f"/model/{wanted}/converse-stream"


async def test_base_url_with_a_path_prefix_is_signed_as_sent(serve: Any) -> None:
    handler = signed(
        lambda r: Reply(
            status=200,
            body=load_case("bedrock", "converse_text").body,
            headers={"content-type": "application/json"},
        )
    )
    server = start(serve, handler)
    provider = _provider(server.url + "/proxy/bedrock")
    try:
        response = await provider.chat(_ask())
    finally:
        await provider.aclose()
    assert handler.failures == []  # type: ignore[attr-defined]
    assert server.requests[0].target == "/proxy/bedrock/model/amazon.nova-pro-v1%3A0/converse"
    assert response.usage.input_tokens == 52


async def test_bad_outgoing_tool_arguments_are_surfaced(serve: Any) -> None:
    server = start(serve, signed(lambda r: stream_reply(text_stream("x"))))
    provider = _provider(server.url)
    bad = Message.assistant(None, [ToolCall(id="t", name="f", arguments="{nope")])
    try:
        with pytest.raises(InvalidToolArgumentsError):
            await provider.chat(ChatRequest(model="m", messages=[Message.user("x"), bad]))
    finally:
        await provider.aclose()
    assert server.requests == []


# -- the project's own bad-input fixtures ------------------------------------------------------


async def _fails(serve: Any, reply: Reply) -> tuple[ProviderError, list[Any]]:
    server = start(serve, signed(lambda r: reply))
    provider = _provider(server.url)
    seen: list[Any] = []
    try:
        with pytest.raises(ProviderError) as info:
            async for chunk in provider.chat_stream(_ask()):
                seen.append(chunk)
    finally:
        await provider.aclose()
    return info.value, seen


async def test_stream_cut_mid_event(serve: Any) -> None:
    body = b"".join(text_stream("Hel", "lo", "!"))
    third = body.index(b"!") - 40  # inside the third delta's message
    error, seen = await _fails(
        serve, Reply(chunks=[body[:third], body[third:]], cut_after=1, headers=EVENT_STREAM)
    )
    assert isinstance(error, MalformedResponseError) and error.transient
    assert "".join(c.delta for c in seen) == "Hello"
    assert error.partial_usage is None  # Bedrock sends usage last; none had arrived


async def test_stream_ending_inside_an_event(serve: Any) -> None:
    body = b"".join(text_stream("Hel", "lo"))
    error, seen = await _fails(
        serve, Reply(chunks=split_bytes(body[:-7], 10), headers=EVENT_STREAM)
    )
    assert isinstance(error, MalformedResponseError)
    assert "inside an event" in error.message
    # The metadata event was the one cut, so no usage; the stop had arrived.
    assert seen[-1].stop_reason == "end_turn"


async def test_partial_usage_survives_a_later_cut(serve: Any) -> None:
    parts = text_stream(
        "Hi", usage={"inputTokens": 11, "outputTokens": 2, "cacheReadInputTokens": 5}
    )
    trailing = event("somethingNew", {"x": 1})
    error, _ = await _fails(serve, Reply(chunks=[*parts, trailing[:9]], headers=EVENT_STREAM))
    assert isinstance(error, MalformedResponseError)
    assert error.partial_usage is not None
    assert (error.partial_usage.input_tokens, error.partial_usage.cache_read_tokens) == (11, 5)


async def test_stream_ending_before_message_stop(serve: Any) -> None:
    parts = text_stream("Hi")[:2]
    error, seen = await _fails(serve, stream_reply(parts))
    assert isinstance(error, MalformedResponseError) and "messageStop" in error.message
    assert [c.delta for c in seen] == ["Hi"]


async def test_stream_ending_after_message_stop_but_before_its_usage(serve: Any) -> None:
    """`metadata` (the usage) always ends a ConverseStream: a stream cut just before it is cut,
    not an answer that used no tokens (pydantic-ai's recordings, cut there, read as 0/0)."""
    parts = text_stream("Hi")[:-1]
    error, seen = await _fails(serve, stream_reply(parts))
    assert isinstance(error, MalformedResponseError) and "metadata" in error.message
    assert error.partial_usage is None
    assert [c.delta for c in seen if c.delta] == ["Hi"] and seen[-1].stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("throttlingException", RateLimitedError),
        ("serviceUnavailableException", OverloadedError),
        ("modelNotReadyException", OverloadedError),
        ("validationException", InvalidRequestError),
        ("modelStreamErrorException", ServerError),
        ("internalServerException", ServerError),
        ("modelTimeoutException", ProviderTimeoutError),
        ("brandNewException", ServerError),
    ],
)
async def test_exception_event_inside_a_200_stream(
    serve: Any, kind: str, cls: type[ProviderError]
) -> None:
    parts = [*text_stream("partial")[:2], exception(kind, f"{kind} happened")]
    error, seen = await _fails(serve, stream_reply(parts, size=7))
    assert type(error) is cls
    assert error.code == kind and error.message == f"{kind} happened"
    assert [c.delta for c in seen] == ["partial"]
    assert error.transient == (cls is not InvalidRequestError)


async def test_error_message_type_inside_a_stream(serve: Any) -> None:
    bad = event_frame(
        {
            ":message-type": "error",
            ":error-code": "ThrottlingException",
            ":error-message": "slow down",
        },
        b"",
    )
    error, _ = await _fails(serve, stream_reply([text_stream()[0], bad]))
    assert isinstance(error, RateLimitedError) and error.message == "slow down"


async def test_corrupt_frame_is_malformed(serve: Any) -> None:
    parts = text_stream("ok")
    broken = bytearray(parts[1])
    broken[-1] ^= 0xFF  # the message CRC no longer matches
    error, _ = await _fails(serve, stream_reply([parts[0], bytes(broken), *parts[2:]]))
    assert isinstance(error, MalformedResponseError) and "corrupt" in error.message


async def test_200_with_an_error_body(serve: Any) -> None:
    body = {
        "__type": "com.amazon.coral.availability#ThrottlingException",
        "message": "Too many requests",
    }
    server = start(serve, signed(lambda r: Reply.json(body)))
    provider = _provider(server.url)
    try:
        with pytest.raises(RateLimitedError) as info:
            await provider.chat(_ask())
        assert (info.value.status, info.value.code) == (200, "ThrottlingException")
        with pytest.raises(RateLimitedError):  # where an event stream was expected
            await collect(provider.chat_stream(_ask()))
    finally:
        await provider.aclose()
    server = start(serve, signed(lambda r: Reply.json({"message": "something odd"})))
    provider = _provider(server.url)
    try:
        with pytest.raises(MalformedResponseError, match="something odd"):
            await provider.chat(_ask())
        with pytest.raises(MalformedResponseError):
            await collect(provider.chat_stream(_ask()))
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("status", "cls"),
    [(200, MalformedResponseError), (502, ServerError), (403, AuthenticationError)],
)
async def test_html_from_a_proxy(serve: Any, status: int, cls: type[ProviderError]) -> None:
    html = "<!DOCTYPE html><html><body><h1>Gateway</h1></body></html>"
    reply = Reply(status=status, body=html, headers={"content-type": "text/html"})
    error, _ = await _fails(serve, reply)
    assert type(error) is cls and "HTML" in error.message
    server = start(serve, signed(lambda r: reply))
    provider = _provider(server.url)
    try:
        with pytest.raises(cls):
            await provider.chat(_ask())
    finally:
        await provider.aclose()


async def test_unknown_events_are_ignored(serve: Any) -> None:
    parts = text_stream("a", "b")
    odd = [
        event("somethingNew", {"contentBlockIndex": 0, "whatever": True}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"citation": {"x": 1}}}),
        event_frame({":message-type": "mystery"}, b"\x00\x01"),
    ]
    server = start(serve, signed(lambda r: stream_reply([parts[0], *odd, *parts[1:]], size=5)))
    provider = _provider(server.url)
    try:
        response = await collect(provider.chat_stream(_ask()))
    finally:
        await provider.aclose()
    assert response.content == "ab" and response.usage.output_tokens == 4


async def test_events_with_fields_of_the_wrong_type_are_ignored(serve: Any) -> None:
    # A server (or a proxy) sending a field as another JSON type than the API's: the event
    # carries nothing readable, and the stream goes on.
    parts = text_stream("a", "b")
    odd = [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": "text"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": ["text"]}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": 7}}),
        event("contentBlockDelta", {"contentBlockIndex": "0", "delta": {"text": "c"}}),
        event("contentBlockStart", {"contentBlockIndex": 1, "start": "toolUse"}),
        event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": [1]}}),
        event_frame({":event-type": "contentBlockDelta", ":message-type": "event"}, b"[1, 2]"),
    ]
    server = start(serve, signed(lambda r: stream_reply([parts[0], *odd, *parts[1:]], size=7)))
    provider = _provider(server.url)
    try:
        response = await collect(provider.chat_stream(_ask()))
    finally:
        await provider.aclose()
    # A block index that is not a number counts as block 0, as Converse numbers a lone block.
    assert response.content == "cab" and response.tool_calls == []


async def test_tool_calls_in_a_stream_and_bad_arguments(serve: Any) -> None:
    parts = [
        event("messageStart", {"role": "assistant"}),
        event(
            "contentBlockStart",
            {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tu1", "name": "good"}}},
        ),
        event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"q": '}}}
        ),
        event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"x"}'}}}
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event(
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu2", "name": "bad"}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"q": oops'}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2}}),
    ]
    server = start(serve, signed(lambda r: stream_reply(parts, size=11)))
    provider = _provider(server.url)
    try:
        response = await collect(provider.chat_stream(_ask()))
    finally:
        await provider.aclose()
    good, bad = response.tool_calls
    assert (good.id, good.name, good.parsed_arguments()) == ("tu1", "good", {"q": "x"})
    assert (bad.id, bad.name, bad.arguments) == ("tu2", "bad", '{"q": oops')
    with pytest.raises(InvalidToolArgumentsError):
        bad.parsed_arguments()
    assert response.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("code", "message", "cls"),
    [
        ("ThrottlingException", "Too many requests", RateLimitedError),
        ("ServiceUnavailableException", "try later", OverloadedError),
        ("ModelNotReadyException", "warming up", OverloadedError),
        ("AccessDeniedException", "no access to this model", AuthenticationError),
        ("UnrecognizedClientException", "bad key", AuthenticationError),
        ("ValidationException", "The provided model identifier is invalid.", InvalidRequestError),
        ("ValidationException", "Input is too long for requested model.", ContextOverflowError),
        (
            "ValidationException",
            "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum",
            ContextOverflowError,
        ),
        ("ResourceNotFoundException", "no such model", InvalidRequestError),
        ("ModelTimeoutException", "too slow", ProviderTimeoutError),
        ("InternalServerException", "oops", ServerError),
    ],
)
@pytest.mark.parametrize("where", ["header", "body"])
async def test_error_codes(
    serve: Any, code: str, message: str, cls: type[ProviderError], where: str
) -> None:
    status = {
        "ThrottlingException": 429,
        "ServiceUnavailableException": 503,
        "ModelNotReadyException": 429,
    }.get(code, 400)
    if where == "header":
        reply = Reply.json(
            {"message": message},
            status=status,
            headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/"},
        )
    else:
        reply = Reply.json(
            {"__type": f"com.amazonaws.bedrock#{code}", "Message": message}, status=status
        )
    server = start(serve, signed(lambda r: reply))
    provider = _provider(server.url)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.chat(_ask())
    finally:
        await provider.aclose()
    assert type(info.value) is cls
    assert (info.value.code, info.value.message, info.value.status) == (code, message, status)


# -- credentials and region --------------------------------------------------------------------


def test_aws_credential_from_env_files_and_bearer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = aws_credential()
    assert found is not None and found.kind == "aws" and found.source == "env:AWS_ACCESS_KEY_ID"
    assert SECRET_KEY not in repr(found)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert aws_credential() is None
    assert not ProviderRegistry().is_configured("bedrock")

    (tmp_path / "aws-credentials").write_text(
        "[work]\naws_access_key_id = AKIA\naws_secret_access_key = s\n"
    )
    assert aws_credential() is None  # the default profile has nothing
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert aws_credential() == aws_credential() and aws_credential().source == "aws:profile work"  # type: ignore[union-attr]

    monkeypatch.setenv("AWS_PROFILE", "sso")
    (tmp_path / "aws-config").write_text("[profile sso]\nsso_session = corp\nregion = eu-west-1\n")
    assert aws_credential().source == "aws:profile sso"  # type: ignore[union-attr]
    assert ProviderRegistry().is_configured("bedrock")

    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123456")
    token = aws_credential()
    assert (
        token is not None and token.kind == "api-key" and token.reveal() == "bedrock-api-key-123456"
    )


def test_discovery_neither_imports_botocore_nor_calls_the_network() -> None:
    code = (
        "import socket, sys\n"
        "socket.socket.connect = lambda *a: sys.exit('network call')\n"
        "from openkoi import ProviderRegistry\n"
        "registry = ProviderRegistry()\n"
        "print(registry.is_configured('bedrock'), 'botocore' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_region_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_region() == REGION
    assert resolve_region({"region": "ca-central-1"}) == "ca-central-1"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert resolve_region() == "eu-north-1"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert resolve_region() == "us-east-1"
    (tmp_path / "aws-config").write_text("[profile dev]\nregion = ap-southeast-2\n")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    assert resolve_region() == "ap-southeast-2"
    provider = create(ProviderSettings(id="bedrock", name="AWS Bedrock", base_url=""))
    assert provider.settings.base_url == "https://bedrock-runtime.ap-southeast-2.amazonaws.com"
    assert SECRET_KEY not in repr(provider)


async def test_missing_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = _provider("http://127.0.0.1:9")
    try:
        with pytest.raises(CredentialsMissingError, match="AWS_ACCESS_KEY_ID"):
            await provider.chat(_ask())
    finally:
        await provider.aclose()


def test_missing_botocore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(ConfigError, match=r"pip install 'openkoi\[bedrock\]'"):
        _provider("http://127.0.0.1:9")


async def test_explicit_credentials_and_bearer_token(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    handler = signed(lambda r: stream_reply(text_stream("signed")))
    server = start(serve, handler)
    provider = create(
        ProviderSettings(id="bedrock", name="AWS Bedrock", base_url=server.url),
        region=REGION,
        credentials=AwsCredentials(ACCESS_KEY, SECRET_KEY),
    )
    try:
        assert (await collect(provider.chat_stream(_ask()))).content == "signed"
    finally:
        await provider.aclose()
    assert handler.failures == []  # type: ignore[attr-defined]

    bearer = serve(lambda r: stream_reply(text_stream("bearer")))
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123456")
    monkeypatch.setenv("BEDROCK_BASE_URL", bearer.url)
    registry = ProviderRegistry()
    try:
        provider_any, model = registry.resolve("bedrock/amazon.nova-pro-v1:0")
        assert (await collect(provider_any.chat_stream(_ask(model=model)))).content == "bearer"
    finally:
        await registry.aclose()
    sent = bearer.requests[0].headers
    assert sent["authorization"] == "Bearer bedrock-api-key-123456" and "x-amz-date" not in sent


# -- embeddings --------------------------------------------------------------------------------


async def test_titan_embeddings_one_call_per_text(serve: Any) -> None:
    def answer(request: Recorded) -> Reply:
        text = request.json()["inputText"]
        return Reply.json(
            {"embedding": [float(len(text)), 0.5], "inputTextTokenCount": 1}, headers={}
        )

    handler = signed(answer)
    server = start(serve, handler)
    provider = _provider(server.url)
    texts = ["a", "bb", "ccc", "dddd", "eeeee", "f" * 6, "g" * 7, "h" * 8, "i" * 9, "j" * 10]
    try:
        vectors = await provider.embed(texts)
    finally:
        await provider.aclose()
    assert handler.failures == []  # type: ignore[attr-defined]
    assert vectors == [[float(len(t)), 0.5] for t in texts]
    assert {r.target for r in server.requests} == {"/model/amazon.titan-embed-text-v2%3A0/invoke"}
    assert sorted(r.json()["inputText"] for r in server.requests) == sorted(texts)


async def test_titan_failure_is_the_typed_error(serve: Any) -> None:
    reply = Reply.json(
        {"message": "slow"}, status=429, headers={"x-amzn-ErrorType": "ThrottlingException"}
    )
    server = start(serve, signed(lambda r: reply))
    provider = _provider(server.url)
    try:
        with pytest.raises(RateLimitedError):
            await provider.embed(["a", "b", "c"])
    finally:
        await provider.aclose()


@pytest.mark.parametrize("shape", ["list", "typed"])
async def test_cohere_embeddings_in_batches(serve: Any, shape: str) -> None:
    def answer(request: Recorded) -> Reply:
        texts = request.json()["texts"]
        vectors = [[float(len(t))] for t in texts]
        return Reply.json(
            {"embeddings": vectors if shape == "list" else {"float": vectors}, "id": "x"}
        )

    handler = signed(answer)
    server = start(serve, handler)
    provider = _provider(server.url, options={"embedding_input_type": "search_query"})
    texts = [f"t{'x' * i}" for i in range(100)]
    try:
        vectors = await provider.embed(texts, model="cohere.embed-english-v3")
        with pytest.raises(UnsupportedError):
            await provider.embed(["a"], model="mystery.embedder")
    finally:
        await provider.aclose()
    assert vectors == [[float(len(t))] for t in texts]
    assert [len(r.json()["texts"]) for r in server.requests] == [96, 4]
    assert server.requests[0].json()["input_type"] == "search_query"
    assert server.requests[0].target == "/model/cohere.embed-english-v3/invoke"


# -- the CLI -----------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_cli_streams_from_bedrock(serve: Any) -> None:
    handler = signed(lambda r: stream_reply(text_stream("Hello", " from", " Bedrock")))
    server = start(serve, handler)
    result = _cli(
        "--model",
        "bedrock/anthropic.claude-sonnet-4-20250514",
        "say hi",
        env={"BEDROCK_BASE_URL": server.url},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from Bedrock\n"
    assert handler.failures == []  # type: ignore[attr-defined]
    assert (
        server.requests[0].target
        == "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream"
    )
    assert server.requests[0].json()["messages"] == [
        {"role": "user", "content": [{"text": "say hi"}]}
    ]


def test_cli_bedrock_error_is_one_line_without_secrets(serve: Any) -> None:
    reply = Reply.json(
        {"message": "The security token included in the request is expired"},
        status=403,
        headers={"x-amzn-ErrorType": "ExpiredTokenException:http://internal/"},
    )
    server = start(serve, signed(lambda r: reply))
    result = _cli(
        "--model", "bedrock/amazon.nova-pro-v1:0", "hi", env={"BEDROCK_BASE_URL": server.url}
    )
    assert result.returncode == 1
    assert "expired" in result.stderr and "Traceback" not in result.stderr
    assert SECRET_KEY not in result.stderr + result.stdout
