"""A WASM plugin as a `ModelProvider`: the fallback chain, usage accounting and the CLI cannot
tell it from a built-in provider. Errors the plugin reports arrive as the foundation's
`ProviderError` classes (see `_convert.PROVIDER_ERROR_CASES`); failures of the plugin itself as
`PluginError`s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from openkoi._attachments import fetch_for, has_url_attachments
from openkoi._deadline import CallTotal
from openkoi._errors import ProviderError
from openkoi._structured import parse_output
from openkoi._timeouts import Timeouts, resolve_timeouts
from openkoi._types import ChatChunk, ChatRequest, ChatResponse, ModelInfo, TokenUsage, text_chunk
from openkoi.plugins._convert import (
    adapt_to_legacy,
    embed_request_to_wit,
    embeddings_from_wit,
    model_from_wit,
    request_to_wit,
    response_from_wit,
)

if TYPE_CHECKING:
    from openkoi._provider import ProviderSettings
    from openkoi.plugins._runtime import PluginRuntime


class WasmProvider:
    def __init__(self, runtime: PluginRuntime, settings: ProviderSettings) -> None:
        self.runtime = runtime
        self.settings = settings

    @property
    def id(self) -> str:
        return self.runtime.id

    @property
    def name(self) -> str:
        return self.settings.name or self.runtime.plugin.manifest.name

    def __repr__(self) -> str:
        return f"WasmProvider(id={self.id!r}, digest={self.runtime.plugin.digest[:12]!r})"

    async def _default_model(self, embeddings: bool = False) -> str | None:
        configured = self.settings.embedding_model if embeddings else self.settings.default_model
        if configured:
            return configured
        info = await self.runtime.info()
        value = getattr(info, "embedding-model" if embeddings else "default-model", None)
        return str(value) if value else None

    async def _with_model(self, request: ChatRequest) -> ChatRequest:
        if request.model:
            return request
        model = await self._default_model()
        if not model:
            raise ProviderError(
                f"no model given and plugin {self.id} has no default model", provider=self.id
            )
        return request.model_copy(update={"model": model})

    @property
    def legacy(self) -> bool:
        """Whether the plugin speaks openkoi:provider 0.1.x (requests are adapted for it)."""
        return self.runtime.export_name.partition("@")[2].startswith("0.1.")

    async def _ready(self, request: ChatRequest) -> tuple[ChatRequest, Any]:
        """The request with a model, URL attachments fetched (a plugin reaches only the origins
        its manifest allows), adapted to the plugin's contract version, and as a WIT value."""
        request = await self._with_model(request)
        if has_url_attachments(request):
            request = await fetch_for(request, self.id, lambda attachment: False)
        if self.legacy:
            return request, request_to_wit(adapt_to_legacy(request, self.id), legacy=True)
        return request, request_to_wit(request)

    def _total(self, timeouts: Timeouts | None = None) -> CallTotal:
        """The call's total deadline, from now: the call's, the provider's, `[timeouts]`."""
        seconds = resolve_timeouts(timeouts, self.settings.timeouts).total
        return CallTotal.from_now(seconds, asyncio.get_running_loop())

    async def models(self) -> list[ModelInfo]:
        return await self.runtime.call(
            "models", convert=lambda value: [model_from_wit(m) for m in value], total=self._total()
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        total = self._total(request.timeouts)
        request, value = await self._ready(request)
        response = await self.runtime.call("chat", value, convert=response_from_wit, total=total)
        return parse_output(request, response)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield chunks; on failure, the error carries the usage seen so far."""
        total = self._total(request.timeouts)
        _, value = await self._ready(request)
        usage: TokenUsage | None = None  # the latest (usage is cumulative): all an error needs
        batches = self.runtime.stream(value, total)
        try:
            async for batch in batches:
                for event in batch:
                    if isinstance(event, str):  # a text delta: its chunk is made as it is read
                        yield text_chunk(event)
                        continue
                    if event.usage is not None:
                        usage = event.usage
                    yield event
        except ProviderError as exc:
            if exc.partial_usage is None and usage is not None:
                exc.partial_usage = usage
            raise
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def embed(self, texts: Sequence[str], model: str | None = None) -> list[list[float]]:
        if not texts:
            return []
        total = self._total()
        model = model or await self._default_model(embeddings=True) or ""
        vectors, _usage = await self.runtime.call(
            "embed",
            embed_request_to_wit(model, list(texts)),
            convert=embeddings_from_wit,
            total=total,
        )
        return vectors

    async def aclose(self) -> None:
        await self.runtime.aclose()
