"""`openkoi run` (the default command): a one-shot prompt streamed to the terminal.

The prompt goes to the executor role through the router, so the fallback chain, cooldowns and the
usage ledger apply to it as to any library call.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from openkoi._errors import ConfigError
from openkoi._timefmt import utc_moment
from openkoi.cli._gc import resume_collector
from openkoi.cli._out import note as _note
from openkoi.cli._typos import refuse_command_typos
from openkoi.cli._warm import warm_chain

if TYPE_CHECKING:
    from openkoi._errors import CandidateFailure
    from openkoi._types import ChatResponse, ReasoningEffort

NO_PROVIDER = (
    "no provider is configured: set an API key such as ANTHROPIC_API_KEY or OPENAI_API_KEY, "
    "or run `openkoi connect`"
)


def _read_prompt(words: tuple[str, ...]) -> str:
    if words:
        return " ".join(words)
    if not sys.stdin.isatty():
        text = sys.stdin.read().strip()
        if text:
            return text
    raise click.UsageError('give a prompt: openkoi "your question" (or pipe it on stdin)')


def _describe(failure: CandidateFailure) -> str:
    text = f"{failure.ref}: {failure.error.message}"
    if failure.error.status:
        text += f" (HTTP {failure.error.status})"
    if failure.cooldown_until is not None:
        waiting = "room again at" if failure.error.kind == "budget" else "cooling until"
        text += f", {waiting} {utc_moment(failure.cooldown_until)}"
    return text


def _options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`-o key=value` pairs as request fields; a value that reads as JSON is taken as JSON."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="-o")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _schema(text: str | None) -> dict[str, Any] | None:
    """`--schema`: JSON text, or the path of a file holding it."""
    if text is None:
        return None
    source = text
    if not text.lstrip().startswith("{"):
        try:
            source = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {text}: {exc.strerror or exc}", param_hint="--schema"
            ) from None
    try:
        schema = json.loads(source)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc.msg}", param_hint="--schema") from None
    if not isinstance(schema, dict):
        raise click.BadParameter("a JSON schema is an object", param_hint="--schema")
    return schema


def _reasoning(value: str | None) -> ReasoningEffort | int | None:
    if value is None:
        return None
    efforts: dict[str, ReasoningEffort] = {"low": "low", "medium": "medium", "high": "high"}
    if value in efforts:
        return efforts[value]
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise click.BadParameter(
        f"{value!r}: give low, medium, high or a token budget", param_hint="--reasoning"
    )


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


@click.command("run")
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", help="provider/model for executor, evaluator and planner")
@click.option("--executor", metavar="PROVIDER/MODEL", help="the model that answers")
@click.option("--evaluator", metavar="PROVIDER/MODEL", help="the model that judges answers")
@click.option("--planner", metavar="PROVIDER/MODEL", help="the model that plans")
@click.option("--embedder", metavar="PROVIDER/MODEL", help="the embeddings model")
@click.option("-s", "--system", help="a system prompt")
@click.option("--max-tokens", type=click.IntRange(min=1), help="limit the answer's length")
@click.option("--temperature", type=click.FloatRange(min=0), help="sampling temperature")
@click.option(
    "-a", "--attach", "attach", multiple=True, metavar="FILE_OR_URL", help="attach a file or URL"
)
@click.option("--schema", metavar="JSON_OR_FILE", help="answer as JSON matching this schema")
@click.option("--json", "as_json", is_flag=True, help="print the whole response as JSON")
@click.option("-o", "option", multiple=True, metavar="KEY=VALUE", help="a provider request field")
@click.option("--reasoning", metavar="low|medium|high|TOKENS", help="how much the model thinks")
def run(
    prompt: tuple[str, ...],
    model: str | None,
    executor: str | None,
    evaluator: str | None,
    planner: str | None,
    embedder: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    attach: tuple[str, ...],
    schema: str | None,
    as_json: bool,
    option: tuple[str, ...],
    reasoning: str | None,
) -> None:
    """Send PROMPT to the executor model and stream the answer.

    Example: openkoi --model groq/llama-3.3-70b-versatile "Explain SSE in one line"
    """
    from openkoi._config import ConfigFile
    from openkoi._provider import collect
    from openkoi._registry import ProviderRegistry
    from openkoi._types import Attachment, ChatRequest, Message
    from openkoi.routing import Router

    refuse_command_typos(prompt)
    extra, output_schema, effort = _options(option), _schema(schema), _reasoning(reasoning)
    attachments = [Attachment.of(item) for item in attach]
    text = _read_prompt(prompt)
    config = ConfigFile().config
    failures: list[CandidateFailure] = []

    def build(chosen: str | None) -> Router:
        return Router.from_config(
            config,
            registry=ProviderRegistry(config),
            model=chosen,
            overrides={
                "executor": executor,
                "evaluator": evaluator,
                "planner": planner,
                "embedder": embedder,
            },
            on_fallback=failures.append,
            on_warning=lambda message: _note(f"warning: {message}"),
        )

    router = build(model)
    if not router.roles["executor"].chain:
        from openkoi._defaults import first_run_setup

        resume_collector()  # the picker waits on a person
        chosen = first_run_setup(ProviderRegistry(config))  # the picker, in a terminal only
        if not chosen:
            raise ConfigError(NO_PROVIDER)
        router = build(chosen)
    resume_collector()  # start-up is over: a plugin's compile and the call run with it on
    warm_chain(
        router.registry, router.chain("executor")
    )  # a plugin's first compile, shown on stderr
    request = ChatRequest(
        system=system,
        messages=[Message.user(text, attachments)],
        max_tokens=max_tokens,
        temperature=temperature,
        extra=extra,
        schema=output_schema,
        reasoning=effort,
    )

    async def whole() -> None:
        """--schema / --json: the answer is printed once, complete and checked."""
        try:
            async with contextlib.aclosing(router.chat_stream("executor", request)) as chunks:
                response = await collect(chunks, request)
        finally:
            await router.aclose()
        if as_json:
            print(_as_json(response))
        else:
            print(json.dumps(response.parsed, ensure_ascii=False, indent=2))

    if as_json or output_schema is not None:
        anyio.run(whole)
        return

    async def stream() -> None:
        out = sys.stdout
        started = False
        try:
            # aclosing: a reader that went away (BrokenPipeError) still closes the stream here,
            # not in a finalizer after the event loop is gone.
            async with contextlib.aclosing(router.chat_stream("executor", request)) as chunks:
                async for chunk in chunks:
                    if not started:
                        started = True
                        if failures:
                            tried = {f.ref for f in failures}
                            answering = next(r for r in router.chain("executor") if r not in tried)
                            skipped = "; ".join(_describe(f) for f in failures)
                            _note(f"note: answered by {answering} ({skipped})")
                    if chunk.delta:
                        out.write(chunk.delta)
                        out.flush()
        finally:
            try:
                if started:
                    with contextlib.suppress(BrokenPipeError):
                        out.write("\n")
                        out.flush()
            finally:
                await router.aclose()

    anyio.run(stream)
