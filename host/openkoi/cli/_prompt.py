"""`openkoi run` (the default command): a one-shot prompt streamed to the terminal."""

from __future__ import annotations

import os
import sys

import anyio
import click

from openkoi._errors import ConfigError

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


@click.command("run")
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", help="provider/model for every role, e.g. openai/gpt-5.2")
@click.option("-s", "--system", help="a system prompt")
@click.option("--max-tokens", type=click.IntRange(min=1), help="limit the answer's length")
@click.option("--temperature", type=click.FloatRange(min=0), help="sampling temperature")
def run(
    prompt: tuple[str, ...],
    model: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
) -> None:
    """Send PROMPT to a model and stream the answer.

    Example: openkoi --model groq/llama-3.3-70b-versatile "Explain SSE in one line"
    """
    from openkoi._config import ConfigFile
    from openkoi._defaults import default_model_ref
    from openkoi._registry import ProviderRegistry
    from openkoi._types import ChatRequest, Message

    text = _read_prompt(prompt)
    config = ConfigFile().config
    registry = ProviderRegistry(config)
    ref = model or os.environ.get("OPENKOI_MODEL") or config.models.executor
    ref = ref or default_model_ref(registry)
    if not ref:
        raise ConfigError(NO_PROVIDER)
    provider, model_id = registry.resolve(ref)
    request = ChatRequest(
        model=model_id,
        system=system,
        messages=[Message.user(text)],
        max_tokens=max_tokens,
        temperature=temperature,
    )

    async def stream() -> None:
        out = sys.stdout
        try:
            async for chunk in provider.chat_stream(request):
                if chunk.delta:
                    out.write(chunk.delta)
                    out.flush()
        finally:
            out.write("\n")
            out.flush()
            await registry.aclose()

    anyio.run(stream)
