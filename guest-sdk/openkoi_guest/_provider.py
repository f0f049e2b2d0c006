"""The base class a plugin's provider subclasses.

Override `chat` or `stream` (or both); each has a default built from the other. `stream` is a
generator of events, which is the natural way to parse a streamed body:

    class Echo(Provider):
        name = "Echo"
        default_model = "echo-1"

        def stream(self, request):
            with http.stream("POST", URL, json=body) as response:
                response.raise_for_status()
                for event in response.sse():
                    yield TextDelta(event.json()["text"])
"""

from __future__ import annotations

from collections.abc import Iterator

from openkoi_guest._errors import Unsupported
from openkoi_guest._types import (
    ChatRequest,
    ChatResponse,
    Embeddings,
    Event,
    ModelInfo,
    events_from_response,
    response_from_events,
)


class Provider:
    name: str = ""
    default_model: str | None = None
    embedding_model: str | None = None

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.default_model, self.default_model)] if self.default_model else []

    def chat(self, request: ChatRequest) -> ChatResponse:
        if type(self).stream is Provider.stream:
            raise Unsupported(f"{type(self).__name__} implements neither chat nor stream")
        return response_from_events(list(self.stream(request)))

    def stream(self, request: ChatRequest) -> Iterator[Event]:
        if type(self).chat is Provider.chat:
            raise Unsupported(f"{type(self).__name__} implements neither chat nor stream")
        yield from events_from_response(self.chat(request))

    def embed(self, model: str, inputs: list[str]) -> Embeddings:
        raise Unsupported(f"{self.name or type(self).__name__} does not offer embeddings")
