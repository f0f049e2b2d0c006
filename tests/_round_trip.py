"""Two turns of a conversation against one loopback server: the first answer as the test gives
it, its `response.message` appended with a follow-up, and the second request's body returned.
The second turn is sent by a fresh provider, so nothing an instance remembers can help it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _server import Recorded, Reply
from openkoi import ChatRequest, Message
from openkoi._provider import collect


async def second_body(
    serve: Callable[..., Any],
    make: Callable[[str], Any],
    first: Reply,
    final: dict[str, Any],
    request: ChatRequest,
    follow_up: Callable[[Message], list[Message]],
    *,
    stream: bool,
    make_second: Callable[[str], Any] | None = None,
) -> tuple[Message, list[dict[str, Any]]]:
    """(the first answer's message, the JSON bodies of both requests). `make_second` builds
    the second turn's provider when it must differ (a stream-only option turned off)."""
    bodies: list[dict[str, Any]] = []

    def handler(recorded: Recorded) -> Reply:
        bodies.append(recorded.json())
        return first if len(bodies) == 1 else Reply.json(final)

    server = serve(handler)
    provider = make(server.url)
    try:
        response = await (
            collect(provider.chat_stream(request)) if stream else provider.chat(request)
        )
    finally:
        await provider.aclose()
    turn = response.message
    again = (make_second or make)(server.url)
    try:
        messages = [*request.messages, turn, *follow_up(turn)]
        answer = await again.chat(request.model_copy(update={"messages": messages}))
    finally:
        await again.aclose()
    assert answer.content == "Done.", answer
    return turn, bodies


def results_or(text: str, reply: str) -> Callable[[Message], list[Message]]:
    """A follow-up: a result for each tool call the turn made, else a user message."""

    def follow(turn: Message) -> list[Message]:
        return [Message.tool_result(c.id, reply) for c in turn.tool_calls] or [Message.user(text)]

    return follow
