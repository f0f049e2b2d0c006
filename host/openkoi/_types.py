"""The neutral types every provider maps to and from.

One message model for all vendors: a provider module translates these to its wire format
(`_map_messages`, `_map_tools`) and back (`_parse_response`, `_parse_stream_event`, `_map_usage`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openkoi._media import media_kind, sniff_media_type
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
    # defer_build: a model's validator is built when it is first used, not at import; a prompt
    # uses four of these models (their nested ones are built inside them), not fourteen.
    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True)


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


MediaKind = Literal["image", "document", "audio", "video", "file"]

# Bytes a path or a fetched URL may hold: the largest file any built-in provider takes inline.
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024


class TextPart(_Model):
    """Text inside a message whose content is a list of parts."""

    type: Literal["text"] = "text"
    text: str


class Attachment(_Model):
    """A file for the model: an image, a document (PDF, text), audio or video.

    Either `data` (the bytes) or `url`. `media_type` is sniffed from the bytes or the name when
    not given. Build one with `Attachment.of(path_or_url)`, `from_path`, `from_url` or
    `from_bytes`; a provider that cannot take its kind refuses it before sending anything.
    """

    type: Literal["attachment"] = "attachment"
    media_type: str = ""
    data: bytes | None = Field(default=None, repr=False)
    url: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Attachment:
        if (self.data is None) == (self.url is None):
            raise ValueError("an attachment holds either data or a url")
        if not self.media_type:
            self.media_type = sniff_media_type(self.data, self.name or self.url)
        return self

    @classmethod
    def of(cls, source: str | Path | bytes, media_type: str | None = None) -> Attachment:
        """A path, an http(s) URL, or bytes."""
        if isinstance(source, bytes):
            return cls.from_bytes(source, media_type)
        text = str(source)
        if text.startswith(("http://", "https://", "gs://")):
            return cls.from_url(text, media_type)
        return cls.from_path(source, media_type)

    @classmethod
    def from_bytes(
        cls, data: bytes, media_type: str | None = None, name: str | None = None
    ) -> Attachment:
        return cls(data=data, media_type=media_type or "", name=name)

    @classmethod
    def from_url(cls, url: str, media_type: str | None = None) -> Attachment:
        return cls(url=url, media_type=media_type or "")

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> Attachment:
        """Read a file now (so a later change to it cannot change what was asked)."""
        from openkoi._errors import InvalidRequestError

        file = Path(path)
        try:
            with file.open("rb") as handle:
                data = handle.read(MAX_ATTACHMENT_BYTES + 1)
        except OSError as exc:
            raise InvalidRequestError(
                f"cannot read attachment {file}: {exc.strerror or exc}"
            ) from None
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise InvalidRequestError(
                f"attachment {file} is larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB"
            )
        return cls(data=data, media_type=media_type or "", name=file.name)

    @property
    def kind(self) -> MediaKind:
        return media_kind(self.media_type)

    @cached_property
    def base64(self) -> str:
        """The data as base64 text, encoded once however often the request is mapped."""
        return base64.b64encode(self.data or b"").decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.base64}"


Part = Annotated[TextPart | Attachment, Field(discriminator="type")]


class NativeTurn(_Model):
    """An assistant turn as the provider wrote it, kept so the next request can send it back
    exactly: thinking blocks and their signatures, Gemini thought signatures, Bedrock reasoning
    signatures, Responses reasoning items. `protocol` names the wire format (`anthropic`,
    `gemini`, `bedrock-converse`, `openai-responses`); a provider of another protocol ignores it
    and maps the neutral fields instead."""

    protocol: str
    blocks: list[dict[str, Any]] = Field(default_factory=list)


class Message(_Model):
    """One turn of a conversation.

    `content` is text, or a list of parts (text and attachments). A `tool` message carries a
    tool result: `content` is the result text, `tool_call_id` names the call it answers and
    `is_error` says the tool failed (Anthropic `is_error`, Bedrock's Claude `status: "error"`,
    Gemini's `error` key; elsewhere the text says so). An
    `assistant` message may carry `tool_calls`, and `native`: the provider's own form of the
    turn, which that provider gets back verbatim.
    """

    role: Role
    content: str | list[Part] | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    native: NativeTurn | None = None
    is_error: bool = False

    @property
    def text(self) -> str:
        """The text of the content, parts joined; attachments say nothing here."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "".join(p.text for p in content if isinstance(p, TextPart))

    @property
    def attachments(self) -> list[Attachment]:
        content = self.content
        if isinstance(content, list):
            return [p for p in content if isinstance(p, Attachment)]
        return []

    @classmethod
    def user(cls, text: str, attachments: list[Attachment] | None = None) -> Message:
        """A user turn; attachments go before the text, where vision models read them best."""
        if attachments:
            parts: list[TextPart | Attachment] = list(attachments)
            if text:
                parts.append(TextPart(text=text))
            return cls(role="user", content=parts)
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
    def tool_result(
        cls, tool_call_id: str, text: str, name: str | None = None, *, is_error: bool = False
    ) -> Message:
        return cls(
            role="tool", content=text, tool_call_id=tool_call_id, name=name, is_error=is_error
        )


class ToolDef(_Model):
    """A tool the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


ReasoningEffort = Literal["low", "medium", "high"]


class ChatRequest(_Model):
    """What the caller asks for. `model` is the provider's own model id (no `provider/` prefix).

    `schema` (a JSON schema dict or a pydantic model class) asks for JSON output matching it;
    `tool_choice` is `auto`, `none`, `required` or a tool's name; `reasoning` is an effort
    (`low`, `medium`, `high`) or a thinking budget in tokens. `extra` holds provider-specific
    request fields; they are merged into the wire body last.
    `timeouts` overrides the provider's deadlines for this call only (fields left unset keep
    the provider's).
    """

    # No NaN or infinity in any float field: JSON cannot carry them, so no request may hold one.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    model: str = ""
    system: str | None = None
    messages: list[Message] = Field(default_factory=list)
    tools: list[ToolDef] = Field(default_factory=list)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    stop: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    timeouts: Timeouts | None = None
    output_schema: dict[str, Any] | type[BaseModel] | None = Field(default=None, alias="schema")
    tool_choice: str | None = Field(default=None, min_length=1)
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningEffort | Annotated[int, Field(gt=0)] | None = None


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
    """One answer. `message` is the assistant turn to append to the conversation; `parsed` the
    validated output when the request had a schema; `cost_usd` the call's price (None: unknown).
    """

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    stop_reason: StopReason = "end_turn"
    model: str = ""
    reasoning: str = ""
    refusal: str | None = None
    native: NativeTurn | None = None
    parsed: Any = None
    cost_usd: float | None = None

    @property
    def message(self) -> Message:
        """The turn to send back next time, with everything the provider needs to see again."""
        return Message(
            role="assistant",
            content=self.content or None,
            tool_calls=list(self.tool_calls),
            native=self.native,
        )


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
    native: NativeTurn | None = None
    cost_usd: float | None = None


_new_instance = object.__new__
_set_slot = object.__setattr__
# A chunk's fields as validation leaves them for `ChatChunk(delta=...)`, in their order;
# `delta` and the list that every chunk needs its own of are replaced for each chunk.
_TEXT_CHUNK_FIELDS = dict(ChatChunk(delta="").__dict__)


def text_chunk(text: str) -> ChatChunk:
    """`ChatChunk(delta=text)` for a `text` the caller has checked is a `str`: the common
    streamed chunk, built on the hot path of every stream as `model_construct` builds a model
    (ChatChunk has no validators, private attributes or post-init to skip), at a fifth less
    than validating it."""
    chunk: ChatChunk = _new_instance(ChatChunk)
    fields = _TEXT_CHUNK_FIELDS.copy()
    fields["delta"] = text
    fields["tool_calls"] = []
    _set_slot(chunk, "__dict__", fields)
    _set_slot(chunk, "__pydantic_fields_set__", {"delta"})
    _set_slot(chunk, "__pydantic_extra__", None)
    _set_slot(chunk, "__pydantic_private__", None)
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
