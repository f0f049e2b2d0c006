"""Claude's thinking rules, wherever Claude is served: the Anthropic API and Bedrock send the same
model the same `thinking` and refuse the same requests, so both providers decide them here."""

from __future__ import annotations

import re

from openkoi._errors import UnsupportedError
from openkoi._types import ChatRequest

DEFAULT_MAX_TOKENS = 8192  # an answer's room when the caller sets no max_tokens
MIN_THINKING_BUDGET = 1024  # the least budget_tokens Anthropic takes

# Output limits of the models whose limit a thinking call's default `max_tokens` (budget plus
# DEFAULT_MAX_TOKENS) can pass: the API refuses a max_tokens above the model's.
_OUTPUT_LIMITS = (
    ("claude-opus-4-1", 32000),
    ("claude-opus-4-0", 32000),
    ("claude-opus-4-2025", 32000),
    ("claude-3-7-sonnet", 64000),
)

_MODEL_VERSION = re.compile(r"claude-([a-z]+)(?:-(\d+)(?:-(\d{1,2}))?)?(?:-|$)")
# Families named after 4.6 that think only adaptively (`claude-mythos-preview` included);
# numbered ones from 4.7 on do too.
_ADAPTIVE_FAMILIES = ("mythos", "fable")


def thinking_max_tokens(model: str, budget: int) -> int:
    """max_tokens for a thinking call that set none: room for the budget and an answer, within
    the model's output limit where it is known."""
    wanted = budget + DEFAULT_MAX_TOKENS
    limit = next((n for prefix, n in _OUTPUT_LIMITS if model.startswith(prefix)), None)
    return min(wanted, limit) if limit is not None else wanted


def adaptive_only(model: str) -> bool:
    """Whether the model takes only adaptive thinking (`thinking: {"type": "adaptive"}` and an
    effort): Opus 4.7 and later answer a fixed `budget_tokens` with a 400. `model` is the
    Anthropic name (`claude-opus-4-7`), without a Bedrock region or vendor prefix."""
    found = _MODEL_VERSION.match(model)
    if found is None:
        return False
    family = found.group(1)
    if family in _ADAPTIVE_FAMILIES:
        return True
    if found.group(2) is None:
        return False
    return (int(found.group(2)), int(found.group(3) or 0)) >= (4, 7)


def check_thinking(request: ChatRequest, provider: str) -> None:
    """What Anthropic refuses with thinking on, refused before anything is sent: a temperature
    other than 1, and a tool choice that forces a call."""
    if request.temperature is not None and request.temperature != 1:
        raise UnsupportedError(
            f"Anthropic takes no temperature but 1 with thinking on (got {request.temperature:g});"
            " drop `temperature` or `reasoning`",
            provider=provider,
        )
    if request.tool_choice not in (None, "auto", "none"):
        raise UnsupportedError(
            f"Anthropic does not allow tool_choice={request.tool_choice!r} (a forced call) with "
            "thinking on; use 'auto' or drop `reasoning`",
            provider=provider,
        )
