"""What every provider module checks or converts the same way before it maps a request:
attachment kinds a protocol takes, a reasoning setting as a budget or as an effort, and a
tool choice naming a tool the request defines."""

from __future__ import annotations

from collections.abc import Collection

from openkoi._errors import InvalidRequestError, UnsupportedError
from openkoi._types import Attachment, ChatRequest, Message, ReasoningEffort

# Thinking budgets (tokens) an effort stands for on vendors that take a budget.
EFFORT_BUDGETS: dict[str, int] = {"low": 2048, "medium": 8192, "high": 24576}


def thinking_budget(reasoning: ReasoningEffort | int) -> int:
    return reasoning if isinstance(reasoning, int) else EFFORT_BUDGETS[reasoning]


def effort_of(reasoning: ReasoningEffort | int) -> ReasoningEffort:
    """The effort level a budget comes closest to, for vendors that take only a level."""
    if not isinstance(reasoning, int):
        return reasoning
    if reasoning <= EFFORT_BUDGETS["low"]:
        return "low"
    return "medium" if reasoning <= EFFORT_BUDGETS["medium"] else "high"


def refuse_attachment(attachment: Attachment, provider: str, why: str = "") -> UnsupportedError:
    what = attachment.name or attachment.url or attachment.media_type
    return UnsupportedError(
        f"{provider} cannot take {attachment.kind} attachments ({attachment.media_type}: {what})"
        + (f"; {why}" if why else ""),
        provider=provider,
    )


def check_attachments(
    messages: Collection[Message],
    provider: str,
    kinds: Collection[str],
    *,
    media_types: Collection[str] | None = None,
    roles: Collection[str] = ("user",),
) -> None:
    """Refuse, before anything is sent, an attachment of a kind (or media type) not taken, or in
    a turn whose role cannot carry one."""
    for message in messages:
        if not isinstance(message.content, list):
            continue
        for attachment in message.attachments:
            if message.role not in roles:
                raise refuse_attachment(attachment, provider, f"not in a {message.role} turn")
            if attachment.kind not in kinds or (
                media_types is not None and attachment.media_type not in media_types
            ):
                raise refuse_attachment(attachment, provider)


def refuse_serial_tools(request: ChatRequest, provider: str, service: str) -> None:
    """For a service with no switch for parallel tool calls: asking it for one at a time is
    refused rather than ignored."""
    if request.parallel_tool_calls is False:
        raise UnsupportedError(
            f"{service} has no switch for parallel tool calls", provider=provider
        )


def chosen_tool(request: ChatRequest, provider: str) -> str | None:
    """The tool a `tool_choice` names (None for auto/none/required); it must be one of the
    request's tools."""
    choice = request.tool_choice
    if choice == "required" and not request.tools:
        raise InvalidRequestError("tool_choice='required' needs tools", provider=provider)
    if choice in (None, "auto", "none", "required"):
        return None
    if all(tool.name != choice for tool in request.tools):
        raise InvalidRequestError(
            f"tool_choice names {choice!r}, which is not among the request's tools",
            provider=provider,
        )
    return choice
