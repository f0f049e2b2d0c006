"""Building plugin components for tests, once: builds are cached on disk by a digest of every
input (source, manifest, guest SDK, WIT, build glue), and compiled components share one
wasmtime cache, so a suite run compiles each component at most once (and a rerun not at all)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "guest-sdk" / "examples"
HOSTILE = Path(__file__).resolve().parent / "plugins" / "hostile"
ECHO = Path(__file__).resolve().parent / "plugins" / "echo"
# The contract as 0.1.0 and 0.2.0 plugins were built against it, to build one and prove it still
# loads.
WIT_0_1 = Path(__file__).resolve().parent / "plugins" / "wit-0.1.0"
WIT_0_2_0 = Path(__file__).resolve().parent / "plugins" / "wit-0.2.0"
CACHE = Path(
    os.environ.get("OPENKOI_TEST_PLUGIN_CACHE")
    or Path(tempfile.gettempdir()) / f"openkoi-test-plugins-{os.getuid()}"
)
WASM_CACHE = CACHE / "compiled"


def built(source: Path, manifest: Path | None = None) -> Path:
    """The component for `source` (and its plugin.toml), built if no cached build matches."""
    from filelock import FileLock
    from openkoi.plugins import _build

    manifest = manifest or source.parent / "plugin.toml"
    h = hashlib.sha256(_build.inputs_digest(source, manifest).encode())
    h.update(Path(_build.__file__).read_bytes())
    out = CACHE / f"{source.parent.name}-{h.hexdigest()[:20]}.wasm"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock", timeout=600):
        if not out.exists():
            _build.build_plugin(source, manifest, out)
    return out


def cohere() -> Path:
    return built(EXAMPLES / "cohere" / "provider.py")


def replicate() -> Path:
    return built(EXAMPLES / "replicate" / "provider.py")


def hostile() -> Path:
    return built(HOSTILE / "provider.py")


async def attack(provider: Any, name: str, text: str = "") -> str:
    """The hostile guest's answer to the attack `name` (its requested model)."""
    from openkoi._types import ChatRequest, Message

    response = await provider.chat(ChatRequest(model=name, messages=[Message.user(text)]))
    return str(response.content)


def echo(*, legacy: bool = False, wit: str | None = None) -> Path:
    """The echo plugin for openkoi:provider 0.2.1, or built against an older contract: `wit`
    "0.2.0", or (`legacy`) 0.1.0."""
    wit = "0.1.0" if legacy else wit
    if wit is None:
        return built(ECHO / "provider.py")
    older = {"0.1.0": (WIT_0_1, "plugin-0.1.toml"), "0.2.0": (WIT_0_2_0, "plugin-0.2.0.toml")}
    wit_dir, manifest = older[wit]
    saved = os.environ.get("OPENKOI_WIT_DIR")
    os.environ["OPENKOI_WIT_DIR"] = str(wit_dir)
    try:
        return built(ECHO / "provider.py", ECHO / manifest)
    finally:
        if saved is None:
            del os.environ["OPENKOI_WIT_DIR"]
        else:
            os.environ["OPENKOI_WIT_DIR"] = saved


# -- a fake Cohere v2 API, for the example plugin ---------------------------------------------

COHERE_KEY = "co-test-key-0123456789"

COHERE_STREAM = [
    'event: message-start\ndata: {"id":"m1","type":"message-start","delta":{"message":'
    '{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}\n\n',
    'event: content-start\ndata: {"type":"content-start","index":0,"delta":{"message":'
    '{"content":{"type":"text","text":""}}}}\n\n',
    'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":{"message":'
    '{"content":{"text":"Hello"}}}}\n\n',
    'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":{"message":'
    '{"content":{"text":" from"}}}}\n\n',
    'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":{"message":'
    '{"content":{"text":" Cohere"}}}}\n\n',
    'event: content-end\ndata: {"type":"content-end","index":0}\n\n',
    'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"COMPLETE",'
    '"usage":{"billed_units":{"input_tokens":5,"output_tokens":3},'
    '"tokens":{"input_tokens":12,"output_tokens":3}}}}\n\n',
]

COHERE_TOOL_STREAM = [
    'event: message-start\ndata: {"id":"m2","type":"message-start","delta":{"message":'
    '{"role":"assistant"}}}\n\n',
    'event: tool-plan-delta\ndata: {"type":"tool-plan-delta","delta":{"message":'
    '{"tool_plan":"I will look it up"}}}\n\n',
    'event: tool-call-start\ndata: {"type":"tool-call-start","index":0,"delta":{"message":'
    '{"tool_calls":{"id":"call_1","type":"function","function":{"name":"get_weather",'
    '"arguments":""}}}}}\n\n',
    'event: tool-call-delta\ndata: {"type":"tool-call-delta","index":0,"delta":{"message":'
    '{"tool_calls":{"function":{"arguments":"{\\"city\\":"}}}}}\n\n',
    'event: tool-call-delta\ndata: {"type":"tool-call-delta","index":0,"delta":{"message":'
    '{"tool_calls":{"function":{"arguments":"\\"Paris\\"}"}}}}}\n\n',
    'event: tool-call-end\ndata: {"type":"tool-call-end","index":0}\n\n',
    'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"TOOL_CALL",'
    '"usage":{"tokens":{"input_tokens":30,"output_tokens":9}}}}\n\n',
]


def cohere_handler(request: Any) -> Any:
    from _server import Reply

    if request.headers.get("authorization") != f"Bearer {COHERE_KEY}":
        return Reply.json({"message": "invalid api token"}, status=401)
    if request.path == "/v1/models":
        return Reply.json(
            {
                "models": [
                    {"name": "command-a-03-2025", "context_length": 256000, "features": ["tools"]},
                    {"name": "command-r7b", "context_length": 128000, "features": []},
                ]
            }
        )
    body = request.json()
    if request.path == "/v2/embed":
        return Reply.json(
            {
                "embeddings": {
                    "float": [[0.5, -0.25, float(i)] for i, _ in enumerate(body["texts"])]
                },
                "meta": {"billed_units": {"input_tokens": 7}},
            }
        )
    if body["model"] == "busy":
        return Reply.json(
            {"message": "trial key rate limit exceeded"}, status=429, headers={"retry-after": "7"}
        )
    if body.get("stream"):
        events = COHERE_TOOL_STREAM if body.get("tools") else COHERE_STREAM
        data = "".join(events).encode()
        # cut the stream at awkward places: mid-line, mid-event, mid-UTF-8
        from _server import split_bytes

        return Reply.sse(split_bytes(data, 37))
    if body.get("tools"):
        return Reply.json(
            {
                "id": "c1",
                "finish_reason": "TOOL_CALL",
                "message": {
                    "role": "assistant",
                    "tool_plan": "I will look it up",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "usage": {"tokens": {"input_tokens": 30, "output_tokens": 9}},
            }
        )
    return Reply.json(
        {
            "id": "c0",
            "finish_reason": "COMPLETE",
            "message": {
                "role": "assistant",
                "content": [{"type": "text", "text": "Hello from Cohere"}],
            },
            "usage": {
                "billed_units": {"input_tokens": 5, "output_tokens": 4},
                "tokens": {"input_tokens": 12, "output_tokens": 4},
            },
        }
    )


@contextlib.asynccontextmanager
async def cohere_provider(
    serve: Callable[..., Any], **settings: Any
) -> AsyncIterator[tuple[Any, Any]]:
    """The Cohere example plugin, pointed at a fake Cohere on 127.0.0.1 (user-granted)."""
    from openkoi.plugins._loader import load_plugin_file

    server = serve(cohere_handler)  # the caller sets COHERE_API_KEY = COHERE_KEY
    provider = load_plugin_file(
        cohere(),
        {
            "config": {"base_url": server.url},
            "network": {"extend": [server.url]},
            **settings,
        },
    )
    try:
        yield provider, server
    finally:
        await provider.aclose()


async def drip_sse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    interval: float,
    count: int,
    sent: Callable[[], None] | None = None,
) -> bool:
    """Answer one request with a chunked SSE stream of `data: <i>` events, one per `interval`
    (calling `sent` after each); True when the client hung up before the last."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    try:
        for i in range(count):
            data = f"data: {i}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            if sent is not None:
                sent()
            await asyncio.sleep(interval)
    except (ConnectionError, OSError):
        return True
    finally:
        writer.close()
    return False
