"""openkoi guest SDK: write an openkoi provider plugin in Python.

    from openkoi_guest import Provider, TextDelta, http

    class MyProvider(Provider):
        name = "My provider"
        default_model = "my-model"

        def stream(self, request):
            with http.stream("POST", "https://api.example.com/v1/chat",
                             headers={"authorization": "Bearer " + http.secret("MY_KEY")},
                             json={"model": request.model, ...}) as response:
                response.raise_for_status()
                for event in response.sse():
                    yield TextDelta(event.json()["text"])

Build it with `openkoi plugin build provider.py --manifest plugin.toml -o provider.wasm`.
The plugin runs sandboxed: HTTP goes through the host (`http`), settings come from `config()`.
"""

from __future__ import annotations

from openkoi_guest import _http as http
from openkoi_guest._errors import (
    AuthError,
    ContentPolicy,
    ContextOverflow,
    HttpError,
    InvalidRequest,
    MalformedResponse,
    NetworkError,
    Overloaded,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
    Unsupported,
    error_for_status,
)
from openkoi_guest._lines import SSEEvent, iter_lines, iter_ndjson, iter_sse
from openkoi_guest._provider import Provider
from openkoi_guest._types import (
    Attachment,
    ChatRequest,
    ChatResponse,
    Embeddings,
    Event,
    Message,
    ModelInfo,
    ModelName,
    Native,
    NativeTurn,
    Pricing,
    ReasoningDelta,
    Stop,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
    dumps,
)


def config(key: str, default: str | None = None) -> str | None:
    """A value the user set under `[plugins.<id>.config]` (only for keys the manifest declares)."""
    from openkoi_guest import _bindings

    value = _bindings.get_config(key)
    return default if value is None else value


def log(message: str, level: str = "info") -> None:
    """A line in the host's log (debug, info, warn, error)."""
    from openkoi_guest import _bindings

    _bindings.log(level, message)


__all__ = [
    "Attachment",
    "AuthError",
    "ChatRequest",
    "ChatResponse",
    "ContentPolicy",
    "ContextOverflow",
    "Embeddings",
    "Event",
    "HttpError",
    "InvalidRequest",
    "MalformedResponse",
    "Message",
    "ModelInfo",
    "ModelName",
    "Native",
    "NativeTurn",
    "NetworkError",
    "Overloaded",
    "Pricing",
    "Provider",
    "ProviderError",
    "RateLimited",
    "ReasoningDelta",
    "SSEEvent",
    "ServerError",
    "Stop",
    "TextDelta",
    "Timeout",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallStart",
    "Unsupported",
    "Usage",
    "UsageUpdate",
    "config",
    "dumps",
    "error_for_status",
    "http",
    "iter_lines",
    "iter_ndjson",
    "iter_sse",
    "log",
]
