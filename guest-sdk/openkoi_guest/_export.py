"""The glue componentize-py binds to the WIT export: a `Provider` class that forwards to the
plugin's own provider, and the `ChatStream` resource.

A build generates two tiny modules that import from here: the app module (`Provider`) and the
`provider` module (`ChatStream`), named as componentize-py expects for the `provider` export.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import wit_world
from componentize_py_types import Err
from wit_world.exports import provider as wit_provider
from wit_world.imports import types as T

from openkoi_guest import _bindings as B
from openkoi_guest import _lines
from openkoi_guest import _provider as P
from openkoi_guest import _types as S

_MAX_BATCH = 512
_impl: P.Provider | None = None
_factory: Any = None


def bind(module: Any) -> None:
    """Remember the plugin's provider: `module.PROVIDER` if set, else its one Provider subclass."""
    global _factory
    found = getattr(module, "PROVIDER", None)
    if found is None:
        classes = [
            v
            for v in vars(module).values()
            if isinstance(v, type)
            and issubclass(v, P.Provider)
            and v is not P.Provider
            and v.__module__ == module.__name__
        ]
        if len(classes) != 1:
            names = ", ".join(c.__name__ for c in classes) or "none"
            raise RuntimeError(
                f"{module.__name__} must define exactly one Provider subclass "
                f"(found {names}) or set PROVIDER"
            )
        found = classes[0]
    _factory = found


def _provider() -> P.Provider:
    global _impl
    if _impl is None:
        _impl = _factory() if isinstance(_factory, type) else _factory
    assert _impl is not None
    return _impl


# 0.2.1's `text-run`: one event for several text deltas, so a batch of them crosses to the host
# as one string (each event crossing costs both sides about as much as making it). Absent from
# bindings built against an older contract.
_TextRun: Any = getattr(T, "StreamEvent_TextRun", None)
_RUN_SEPARATOR = "\x1e"


def _add_texts(texts: list[str], out: list[T.StreamEvent]) -> None:
    if len(texts) > 1 and _TextRun is not None:
        joined = _RUN_SEPARATOR.join(texts)
        if joined.count(_RUN_SEPARATOR) == len(texts) - 1:  # no piece holds the separator
            out.append(_TextRun(joined))
            return
    out.extend(T.StreamEvent_Text(text) for text in texts)


class ChatStream(wit_provider.ChatStream):
    """Pulls events from the plugin's generator in batches: a batch ends when the next event
    would need another network read, so the host gets events as soon as they exist."""

    def __init__(self, events: Iterator[S.Event]) -> None:
        self._events: Iterator[S.Event] | None = events
        self._first: list[T.StreamEvent] | None = None

    def prime(self) -> None:
        self._first = self._batch()

    def _batch(self) -> list[T.StreamEvent]:
        events = self._events
        if events is None:
            return []
        out: list[T.StreamEvent] = []
        run: list[str] = []  # text deltas in a row, sent as one `text-run`
        count = 0
        text_delta, to_wit = S.TextDelta, B.event_to_wit
        try:
            for event in events:
                count += 1
                if type(event) is text_delta:
                    run.append(event.text)
                elif (value := to_wit(event)) is not None:
                    if run:
                        _add_texts(run, out)
                        run = []
                    out.append(value)
                if not _lines._buffered or count >= _MAX_BATCH:
                    break
            else:
                self._events = None
        except BaseException:
            self._events = None
            raise
        if run:
            _add_texts(run, out)
        return out

    def next(self) -> list[T.StreamEvent] | None:
        try:
            if self._first is not None:
                batch, self._first = self._first, None
            else:
                batch = self._batch()
        except Exception as exc:
            raise Err(B.error_to_wit(exc)) from None
        return batch or None


class Provider(wit_world.exports.Provider):
    def info(self) -> T.ProviderInfo:
        p = _provider()
        return T.ProviderInfo(p.name or type(p).__name__, p.default_model, p.embedding_model)

    def models(self) -> list[T.ModelInfo]:
        try:
            return [B.model_to_wit(m) for m in _provider().models()]
        except Exception as exc:
            raise Err(B.error_to_wit(exc)) from None

    def chat(self, request: T.ChatRequest) -> T.ChatResponse:
        try:
            return B.response_to_wit(_provider().chat(B.request_from_wit(request)))
        except Exception as exc:
            raise Err(B.error_to_wit(exc)) from None

    def stream_chat(self, request: T.ChatRequest) -> wit_provider.ChatStream:
        try:
            stream = ChatStream(iter(_provider().stream(B.request_from_wit(request))))
            stream.prime()
        except Exception as exc:
            raise Err(B.error_to_wit(exc)) from None
        return stream

    def embed(self, request: T.EmbedRequest) -> T.EmbedResponse:
        try:
            result = _provider().embed(request.model, list(request.inputs))
            return B.embeddings_to_wit(result)
        except Exception as exc:
            raise Err(B.error_to_wit(exc)) from None


# Everything imported so far lives as long as the instance: keep it out of every collection, so
# the collector a stream's JSON values set off scans only what the plugin made since.
gc.freeze()
