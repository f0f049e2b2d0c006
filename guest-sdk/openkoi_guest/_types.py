"""The plugin's view of requests, responses and stream events: plain dataclasses.

They mirror the WIT `types` interface (and the host's own types) but are independent of the
generated bindings, so a provider module can be unit-tested with plain CPython.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal[
    "end_turn",
    "max_tokens",
    "tool_use",
    "stop_sequence",
    "content_filter",
    "refusal",
    "error",
    "other",
]
STOP_REASONS: tuple[str, ...] = (
    "end_turn",
    "max_tokens",
    "tool_use",
    "stop_sequence",
    "content_filter",
    "refusal",
    "error",
    "other",
)


@dataclass
class ToolCall:
    """A tool call the model made; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass
class Attachment:
    """A file for the model: `data` is base64 text (or `url` a link), `media_type` always set."""

    media_type: str
    data: str | None = None
    url: str | None = None
    name: str | None = None

    def bytes(self) -> bytes:
        return base64.b64decode(self.data or "")

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data or ''}"

    @property
    def kind(self) -> str:
        """image, audio, video, document (PDF and text) or file."""
        major = self.media_type.split("/", 1)[0]
        if major in ("image", "audio", "video"):
            return major
        return "document" if self.media_type == "application/pdf" or major == "text" else "file"


@dataclass
class NativeTurn:
    """An assistant turn in the service's own form (`blocks`, a list of JSON objects), sent
    back verbatim on the next request: set it on answers that carry state the other fields
    lose, such as thinking signatures."""

    protocol: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Message:
    """`content` is the text; `parts` the whole content in order (text strings and
    attachments) when it holds attachments, else empty; `native` what a previous answer of
    this provider set."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    parts: list[str | Attachment] = field(default_factory=list)
    native: NativeTurn | None = None

    @property
    def attachments(self) -> list[Attachment]:
        return [p for p in self.parts if isinstance(p, Attachment)]


@dataclass
class Tool:
    """A tool the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatRequest:
    model: str
    messages: list[Message] = field(default_factory=list)
    system: str | None = None
    tools: list[Tool] = field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None  # the answer's text must be JSON matching it
    tool_choice: str | None = None  # auto, none, required or a tool's name
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None  # low, medium or high
    reasoning_budget: int | None = None  # tokens, when the caller gave a budget


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass
class ChatResponse:
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: StopReason = "end_turn"
    model: str = ""
    reasoning: str = ""
    native: NativeTurn | None = None


# -- stream events -------------------------------------------------------------------------


@dataclass
class TextDelta:
    text: str


@dataclass
class ReasoningDelta:
    text: str


@dataclass
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass
class ToolCallDelta:
    index: int
    arguments: str


@dataclass
class UsageUpdate:
    """Usage so far, cumulative for the call."""

    usage: Usage


@dataclass
class Stop:
    reason: StopReason


@dataclass
class ModelName:
    model: str


@dataclass
class Native:
    """The whole turn in the service's own form, once, near the end of a stream."""

    turn: NativeTurn


Event = (
    TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | UsageUpdate
    | Stop
    | ModelName
    | Native
)


# -- models and embeddings -------------------------------------------------------------------


@dataclass
class Pricing:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass
class ModelInfo:
    id: str
    name: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None
    tools: bool = True
    streaming: bool = True
    vision: bool = False
    embeddings: bool = False
    reasoning: bool = False
    pricing: Pricing | None = None


@dataclass
class Embeddings:
    vectors: list[list[float]]
    usage: Usage = field(default_factory=Usage)


def events_from_response(response: ChatResponse) -> list[Event]:
    """The events a stream would have produced for a complete response."""
    events: list[Event] = []
    if response.model:
        events.append(ModelName(response.model))
    if response.reasoning:
        events.append(ReasoningDelta(response.reasoning))
    if response.content:
        events.append(TextDelta(response.content))
    for index, call in enumerate(response.tool_calls):
        events.append(ToolCallStart(index, call.id, call.name))
        events.append(ToolCallDelta(index, call.arguments))
    if response.native is not None:
        events.append(Native(response.native))
    events.append(UsageUpdate(response.usage))
    events.append(Stop(response.stop_reason))
    return events


def response_from_events(events: list[Event]) -> ChatResponse:
    """Assemble stream events into the response a non-streaming call would give."""
    out = ChatResponse()
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, ToolCall] = {}
    stop: StopReason | None = None
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            calls[event.index] = ToolCall(event.id, event.name, "")
        elif isinstance(event, ToolCallDelta):
            calls.setdefault(event.index, ToolCall("", "", "")).arguments += event.arguments
        elif isinstance(event, UsageUpdate):
            out.usage = event.usage
        elif isinstance(event, Stop):
            stop = event.reason
        elif isinstance(event, ModelName):
            out.model = event.model
        elif isinstance(event, Native):
            out.native = event.turn
    out.content = "".join(text)
    out.reasoning = "".join(reasoning)
    out.tool_calls = [calls[i] for i in sorted(calls)]
    for call in out.tool_calls:
        call.arguments = call.arguments or "{}"
    out.stop_reason = stop or ("tool_use" if out.tool_calls else "end_turn")
    return out


def dumps(value: Any) -> str:
    """Compact JSON, the way request bodies are sent."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
