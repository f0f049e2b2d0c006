"""`openkoi run` (the default command): its options, parsed and checked by click, then handed to
`openkoi.cli._ask`. The plain prompt skips click altogether (`openkoi.cli._fast`)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from openkoi.cli._ask import Ask, ask
from openkoi.cli._typos import refuse_command_typos

if TYPE_CHECKING:
    from openkoi._types import ReasoningEffort


def _read_prompt(words: tuple[str, ...]) -> str:
    if words:
        return " ".join(words)
    if not sys.stdin.isatty():
        text = sys.stdin.read().strip()
        if text:
            return text
    raise click.UsageError('give a prompt: openkoi "your question" (or pipe it on stdin)')


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses `nan` and `inf`, which FloatRange lets through (`nan`
    compares false with every bound) and which no request can carry."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _finite(text: str) -> float:
    """A JSON number of `-o`; Python's JSON reader takes `NaN`, `Infinity` and `1e999`, which
    no request can be sent with."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`-o key=value` pairs as request fields; a value that reads as JSON is taken as JSON."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="-o")
        try:
            out[key.strip()] = json.loads(value, parse_float=_finite, parse_constant=_finite)
        except json.JSONDecodeError:
            out[key.strip()] = value
        except ValueError:
            raise click.BadParameter(
                f"{pair!r}: not a number a request can carry (NaN, Infinity, 1e999)",
                param_hint="-o",
            ) from None
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
    if value.isascii() and value.isdigit() and len(value) <= 18 and int(value) > 0:
        return int(value)
    raise click.BadParameter(
        f"{value!r}: give low, medium, high or a token budget", param_hint="--reasoning"
    )


@click.command("run")
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", help="provider/model for executor, evaluator and planner")
@click.option("--executor", metavar="PROVIDER/MODEL", help="the model that answers")
@click.option("--evaluator", metavar="PROVIDER/MODEL", help="the model that judges answers")
@click.option("--planner", metavar="PROVIDER/MODEL", help="the model that plans")
@click.option("--embedder", metavar="PROVIDER/MODEL", help="the embeddings model")
@click.option("-s", "--system", help="a system prompt")
@click.option("--max-tokens", type=click.IntRange(min=1), help="limit the answer's length")
@click.option("--temperature", type=FiniteFloat(min=0), help="sampling temperature")
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
    from openkoi._types import Attachment

    refuse_command_typos(prompt)
    extra, output_schema, effort = _options(option), _schema(schema), _reasoning(reasoning)
    attachments = [Attachment.of(item) for item in attach]
    asked = Ask(
        text=_read_prompt(prompt),
        model=model,
        roles={
            "executor": executor,
            "evaluator": evaluator,
            "planner": planner,
            "embedder": embedder,
        },
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        attachments=attachments,
        extra=extra,
        schema=output_schema,
        reasoning=effort,
        as_json=as_json,
    )
    ask(asked)
