"""The neutral types every provider maps to and from.

One message model for all vendors: a provider module translates these to its wire format
(`_map_messages`, `_map_tools`) and back (`_parse_response`, `_parse_stream_event`, `_map_usage`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openkoi._timeouts import Timeouts

Role = Literal["system", "user", "assistant", "tool"]

StopReason = Literal[
    "end_turn",  # the model finished its answer
    "max_tokens",  # the output limit was hit
    "tool_use",  # the model wants tool results
    "stop_sequence",  # one of `stop` matched
    "content_filter",  # the provider withheld or cut the answer
    "refusal",  # the model declined to answer
    "error",  # the provider reported an error inside a successful response
    "other",  # anything the provider invents that has no neutral meaning
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ToolCall(_Model):
    """A tool call the model made. `arguments` is the raw JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> Any:
        """The arguments as JSON; raises `InvalidToolArgumentsError` when the model wrote bad JSON."""
        from openkoi._errors import InvalidToolArgumentsError

        try:
            return json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidToolArgumentsError(
                f"tool call {self.id!r} ({self.name}) has arguments that are not valid JSON: {exc.msg}",
                tool_call_id=self.id,
            ) from exc


class Message(_Model):
    """One turn of a conversation.

    A `tool` message carries a tool result: `content` is the result text and `tool_call_id`
    names the call it answers. An `assistant` message may carry `tool_calls`.
    """

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", content=text)

    @classmethod
    def assistant(
        cls, text: str | None = None, tool_calls: list[ToolCall] | None = None
    ) -> Message:
        return cls(role="assistant", content=text, tool_calls=tool_calls or [])

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role="system", content=text)

    @classmethod
    def tool_result(cls, tool_call_id: str, text: str, name: str | None = None) -> Message:
        return cls(role="tool", content=text, tool_call_id=tool_call_id, name=name)


class ToolDef(_Model):
    """A tool the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ChatRequest(_Model):
    """What the caller asks for. `model` is the provider's own model id (no `provider/` prefix).

    `extra` holds provider-specific request fields; they are merged into the wire body last.
    `timeouts` overrides the provider's deadlines for this call only (fields left unset keep
    the provider's).
    """

    model: str = ""
    system: str | None = None
    messages: list[Message] = Field(default_factory=list)
    tools: list[ToolDef] = Field(default_factory=list)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    stop: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    timeouts: Timeouts | None = None


class TokenUsage(_Model):
    """Tokens one call consumed. Cache fields are zero where a provider has no prompt cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResponse(_Model):
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    stop_reason: StopReason = "end_turn"
    model: str = ""
    reasoning: str = ""
    refusal: str | None = None


class ToolCallDelta(_Model):
    """A piece of a streamed tool call. `index` keeps parallel calls apart; `id` and `name`
    arrive with the first piece, `arguments` is a fragment of the JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatChunk(_Model):
    """One streamed event. Usage, when present, is cumulative for the call so far."""

    delta: str = ""
    reasoning_delta: str = ""
    refusal_delta: str = ""
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    usage: TokenUsage | None = None
    stop_reason: StopReason | None = None
    model: str | None = None


_validate_chunk = ChatChunk.__pydantic_validator__.validate_python


def text_chunk(text: str) -> ChatChunk:
    """The common streamed chunk, a text delta alone: built on the hot path of every stream."""
    chunk: ChatChunk = _validate_chunk({"delta": text})
    return chunk


@dataclass(frozen=True)
class Embeddings:
    """Vectors and the tokens the call was billed for (`usage` None when the service says
    nothing). A plain dataclass: validating thousands of floats through pydantic would cost more
    than the call."""

    vectors: list[list[float]]
    usage: TokenUsage | None = None


class ModelPricing(_Model):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class ModelInfo(_Model):
    id: str
    name: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports_tools: bool = True
    supports_streaming: bool = True
    supports_vision: bool = False
    supports_embeddings: bool = False
    supports_reasoning: bool = False
    pricing: ModelPricing | None = None
