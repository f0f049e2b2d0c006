"""A one-shot prompt sent to the executor role and its answer written to stdout: the body of
`openkoi run`, after the arguments are parsed and checked.

Click-free, so the plain prompt (`openkoi -m provider/model "question"`) can run without click
(`openkoi.cli._fast`). The prompt goes through the router, so the fallback chain, cooldowns and
the usage ledger apply to it as to any library call.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from openkoi._errors import ConfigError, ModelRefError
from openkoi._timefmt import utc_moment
from openkoi.cli._gc import resume_collector
from openkoi.cli._out import OutputError, write_out
from openkoi.cli._out import note as _note
from openkoi.cli._sigint import first_interrupt_only
from openkoi.cli._warm import warm_chain

if TYPE_CHECKING:
    from openkoi._errors import CandidateFailure
    from openkoi._registry import ProviderRegistry
    from openkoi._types import Attachment, ChatRequest, ChatResponse, ReasoningEffort
    from openkoi.routing import Router

NO_PROVIDER = (
    "no provider is configured: set an API key such as ANTHROPIC_API_KEY or OPENAI_API_KEY, "
    "or run `openkoi connect`"
)
ROLE_OPTIONS = ("executor", "evaluator", "planner", "embedder")


@dataclass
class Ask:
    """What `openkoi run` was asked, checked: the text and every option that shapes the call."""

    text: str
    model: str | None = None
    roles: dict[str, str | None] = field(default_factory=dict)  # --executor and the others
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    attachments: list[Attachment] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None
    reasoning: ReasoningEffort | int | None = None
    as_json: bool = False


def _first_run_setup(registry: ProviderRegistry) -> str | None:
    """With nothing configured: the interactive provider picker in a terminal, else None."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    from openkoi.cli._init import first_run_picker

    return first_run_picker(registry)


def _describe(failure: CandidateFailure) -> str:
    text = f"{failure.ref}: {failure.error.message}"
    if failure.error.status:
        text += f" (HTTP {failure.error.status})"
    if failure.cooldown_until is not None:
        waiting = "room again at" if failure.error.kind == "budget" else "cooling until"
        text += f", {waiting} {utc_moment(failure.cooldown_until)}"
    return text


def _as_json(response: ChatResponse) -> str:
    data = {
        "text": response.content,
        "parsed": response.parsed,
        "reasoning": response.reasoning or None,
        "refusal": response.refusal,
        "tool_calls": [c.model_dump() for c in response.tool_calls],
        "stop_reason": response.stop_reason,
        "model": response.model,
        "usage": response.usage.model_dump(),
        "cost_usd": response.cost_usd,
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


def _refuse_empty_refs(asked: Ask) -> None:
    """`-m ""` is a bad model reference like `-m nope`, not "the default model" (the router
    reads an empty override as none given)."""
    given = {"--model": asked.model, **{f"--{r}": asked.roles.get(r) for r in ROLE_OPTIONS}}
    for option, value in given.items():
        if value is not None and not value.strip():
            from openkoi._registry import ProviderRegistry

            try:
                ProviderRegistry().parse_ref(value)
            except ModelRefError as exc:
                raise ModelRefError(f"{option}: {exc}", key=option) from None
            raise ModelRefError(f"{option}: a model reference is provider/model", key=option)


def ask(asked: Ask) -> None:
    """Send the prompt and print the answer: streamed, or whole for `--schema` / `--json`."""
    from openkoi._config import ConfigFile
    from openkoi._registry import ProviderRegistry
    from openkoi._types import ChatRequest, Message
    from openkoi.routing import Router

    _refuse_empty_refs(asked)
    config = ConfigFile().config
    failures: list[CandidateFailure] = []

    def build(chosen: str | None) -> Router:
        return Router.from_config(
            config,
            registry=ProviderRegistry(config),
            model=chosen,
            overrides={role: asked.roles.get(role) for role in ROLE_OPTIONS},
            on_fallback=failures.append,
            on_warning=lambda message: _note(f"warning: {message}"),
        )

    router = build(asked.model)
    if not router.roles["executor"].chain:
        resume_collector()  # the picker waits on a person
        chosen = _first_run_setup(ProviderRegistry(config))
        if not chosen:
            raise ConfigError(NO_PROVIDER)
        router = build(chosen)
    request = ChatRequest(  # its model classes' first use: start-up's, like the rest
        system=asked.system,
        messages=[Message.user(asked.text, asked.attachments)],
        max_tokens=asked.max_tokens,
        temperature=asked.temperature,
        extra=asked.extra,
        schema=asked.schema,
        reasoning=asked.reasoning,
    )
    resume_collector()  # start-up is over: a plugin's compile and the call run with it on
    warm_chain(
        router.registry, router.chain("executor")
    )  # a plugin's first compile, shown on stderr
    if asked.as_json or asked.schema is not None:
        anyio.run(_whole, router, request, asked.as_json)
    else:
        anyio.run(_stream, router, request, failures)


async def _whole(router: Router, request: ChatRequest, as_json: bool) -> None:
    """--schema / --json: the answer is printed once, complete and checked."""
    from openkoi._provider import collect

    with first_interrupt_only():
        try:
            async with contextlib.aclosing(router.chat_stream("executor", request)) as chunks:
                response = await collect(chunks, request)
        finally:
            await router.aclose()
    if as_json:
        write_out(_as_json(response) + "\n")
    else:
        write_out(json.dumps(response.parsed, ensure_ascii=False, indent=2) + "\n")


async def _stream(router: Router, request: ChatRequest, failures: list[CandidateFailure]) -> None:
    """The answer as it comes; a second Ctrl-C cannot cut the call's wind-down (its ledger
    row), and an answer cut short still ends its line, so the error that follows has its own."""
    started = False
    with first_interrupt_only():
        try:
            # aclosing: a reader that went away (BrokenPipeError) still closes the stream here,
            # not in a finalizer after the event loop is gone.
            async with contextlib.aclosing(router.chat_stream("executor", request)) as chunks:
                async for chunk in chunks:
                    if not started:
                        started = True
                        if failures:
                            _note(f"note: answered by {_answering(router, failures)}")
                    if chunk.delta:
                        write_out(chunk.delta)
        except BaseException:
            if started:
                with contextlib.suppress(BrokenPipeError, OutputError):
                    write_out("\n")
            raise
        else:
            if started:
                with contextlib.suppress(BrokenPipeError):
                    write_out("\n")
        finally:
            await router.aclose()


def _answering(router: Router, failures: list[CandidateFailure]) -> str:
    """The model that answered, and what was skipped on the way to it."""
    tried = {f.ref for f in failures}
    answering = next(r for r in router.chain("executor") if r not in tried)
    return f"{answering} ({'; '.join(_describe(f) for f in failures)})"
