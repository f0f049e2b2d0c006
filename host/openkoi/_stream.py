"""Assembling streamed chunks into one response, shared by every provider."""

from __future__ import annotations

from dataclasses import dataclass, field

from openkoi._types import ChatChunk, ChatResponse, NativeTurn, StopReason, TokenUsage, ToolCall


@dataclass
class _PartialToolCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAccumulator:
    """Feed it chunks; `response()` gives what a non-streaming call would have returned."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._tools: dict[int, _PartialToolCall] = {}
        self.usage: TokenUsage | None = None
        self.stop_reason: StopReason | None = None
        self.model: str = ""
        self.native: NativeTurn | None = None
        self.cost_usd: float | None = None
        self.chunks = 0

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        if chunk.delta:
            self._text.append(chunk.delta)
        if chunk.reasoning_delta:
            self._reasoning.append(chunk.reasoning_delta)
        if chunk.refusal_delta:
            self._refusal.append(chunk.refusal_delta)
        for delta in chunk.tool_calls:
            partial = self._tools.setdefault(delta.index, _PartialToolCall())
            if delta.id:
                partial.id = delta.id
            if delta.name:
                partial.name = delta.name
            if delta.arguments:
                partial.arguments.append(delta.arguments)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.stop_reason is not None:
            self.stop_reason = chunk.stop_reason
        if chunk.model:
            self.model = chunk.model
        if chunk.native is not None:
            self.native = chunk.native
        if chunk.cost_usd is not None:
            self.cost_usd = chunk.cost_usd

    def response(self) -> ChatResponse:
        tool_calls = [
            ToolCall(id=p.id, name=p.name, arguments="".join(p.arguments) or "{}")
            for _, p in sorted(self._tools.items())
        ]
        refusal = "".join(self._refusal) or None
        stop: StopReason = self.stop_reason or ("tool_use" if tool_calls else "end_turn")
        return ChatResponse(
            content="".join(self._text),
            reasoning="".join(self._reasoning),
            refusal=refusal,
            tool_calls=tool_calls,
            usage=self.usage or TokenUsage(),
            stop_reason=stop,
            model=self.model,
            native=self.native,
            cost_usd=self.cost_usd,
        )
