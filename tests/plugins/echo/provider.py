"""An echo guest for the contract-version tests: it answers with what the request carried, so a
test can see what reached the plugin, and marks its answers with a native turn. Model "pieces"
streams the texts of the message's JSON list as text deltas, all from one (pretend) read."""

import json

from openkoi_guest import (
    ChatResponse,
    Native,
    NativeTurn,
    Provider,
    Stop,
    TextDelta,
    Usage,
    UsageUpdate,
    iter_sse,
)


def _seen(request):
    last = request.messages[-1]
    previous = [m for m in request.messages if m.role == "assistant"]
    return {
        "text": last.content,
        "parts": [
            p if isinstance(p, str) else [p.media_type, len(p.bytes()), p.url] for p in last.parts
        ],
        "tools": [t.name for t in request.tools],
        "schema": request.schema,
        "tool_choice": request.tool_choice,
        "parallel_tool_calls": request.parallel_tool_calls,
        "reasoning": [request.reasoning_effort, request.reasoning_budget],
        "native_back": previous[-1].native.blocks if previous and previous[-1].native else None,
    }


class Echo(Provider):
    name = "Echo"
    default_model = "echo-1"

    def chat(self, request):
        return ChatResponse(
            content=json.dumps(_seen(request)),
            usage=Usage(input_tokens=3, output_tokens=4),
            model=request.model,
            native=NativeTurn("echo", [{"type": "thought", "signature": "sig-1"}]),
        )

    def stream(self, request):
        if request.model == "pieces":  # the message's JSON list of texts, as one network read
            pieces = json.loads(request.messages[-1].content)
            feed = "".join(f"data: {json.dumps(p)}\n\n" for p in pieces)
            for event in iter_sse([feed]):
                yield TextDelta(json.loads(event.data))
            yield Stop("end_turn")
            return
        yield TextDelta(json.dumps(_seen(request)))
        yield Native(NativeTurn("echo", [{"type": "thought", "signature": "sig-2"}]))
        yield UsageUpdate(Usage(input_tokens=3, output_tokens=4))
        yield Stop("end_turn")
