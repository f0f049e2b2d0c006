"""Cohere's v2 Chat API as an openkoi plugin.

Cohere speaks its own dialect: messages with `tool_plan`, content as a list of typed parts, and a
stream of named SSE events (`message-start`, `content-delta`, `tool-call-start`, `tool-call-delta`,
`message-end`, ...). This module maps them to openkoi's neutral types, with what
openkoi:provider 0.2.0 adds: images (`image_url` parts), a schema (`response_format`), tool
choice (`REQUIRED` / `NONE`) and a thinking budget; what Cohere cannot take is `Unsupported`.
"""

from openkoi_guest import (
    ChatResponse,
    Embeddings,
    MalformedResponse,
    ModelInfo,
    ModelName,
    Provider,
    ReasoningDelta,
    Stop,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Unsupported,
    Usage,
    UsageUpdate,
    config,
    http,
)

_EFFORT_BUDGETS = {"low": 2048, "medium": 8192, "high": 24576}

_STOP_REASONS = {
    "COMPLETE": "end_turn",
    "STOP_SEQUENCE": "stop_sequence",
    "MAX_TOKENS": "max_tokens",
    "TOOL_CALL": "tool_use",
    "ERROR": "error",
    "TIMEOUT": "error",
}


def _url(path):
    return (config("base_url") or "https://api.cohere.com").rstrip("/") + path


def _headers(accept="application/json"):
    return {
        "authorization": "Bearer " + http.secret("COHERE_API_KEY"),
        "accept": accept,
        "x-client-name": "openkoi",
    }


def _map_messages(request):
    messages = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for m in request.messages:
        if m.role == "tool":
            messages.append(
                {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content or ""}
            )
        elif m.role == "assistant" and m.tool_calls:
            out = {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments or "{}"},
                    }
                    for c in m.tool_calls
                ],
            }
            if m.content:
                out["tool_plan"] = m.content
            messages.append(out)
        elif m.parts:
            messages.append({"role": m.role, "content": [_map_part(p) for p in m.parts]})
        else:
            messages.append({"role": m.role, "content": m.content or ""})
    return messages


def _map_part(part):
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if part.kind != "image":
        raise Unsupported(f"Cohere takes images only, not {part.media_type}")
    return {"type": "image_url", "image_url": {"url": part.url or part.data_url()}}


def _map_choice(request):
    if request.parallel_tool_calls is False:
        raise Unsupported("Cohere has no switch for parallel tool calls")
    choice = request.tool_choice
    if choice in (None, "auto"):
        return None
    if choice in ("required", "none"):
        return choice.upper()
    raise Unsupported(f"Cohere cannot force one tool ({choice!r}); use 'required'")


def _map_tools(request):
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters or {"type": "object", "properties": {}},
            },
        }
        for t in request.tools
    ]


def _body(request, stream):
    body = {"model": request.model, "messages": _map_messages(request), "stream": stream}
    if request.tools:
        body["tools"] = _map_tools(request)
    if request.max_tokens:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop_sequences"] = request.stop
    choice = _map_choice(request)
    if choice is not None:
        body["tool_choice"] = choice
    if request.schema is not None:
        body["response_format"] = {"type": "json_object", "json_schema": request.schema}
    if request.reasoning_effort is not None:
        budget = request.reasoning_budget or _EFFORT_BUDGETS[request.reasoning_effort]
        body["thinking"] = {"type": "enabled", "token_budget": budget}
    body.update(request.extra)
    return body


def _map_usage(usage):
    usage = usage or {}
    tokens = usage.get("tokens") or usage.get("billed_units") or {}
    return Usage(int(tokens.get("input_tokens") or 0), int(tokens.get("output_tokens") or 0))


def _parse_response(data, model):
    message = data.get("message")
    if not isinstance(message, dict):
        raise MalformedResponse("Cohere's answer has no message")
    text, thinking = [], []
    for part in message.get("content") or []:
        if part.get("type") == "text":
            text.append(part.get("text") or "")
        elif part.get("type") == "thinking":
            thinking.append(part.get("thinking") or "")
    calls = [
        ToolCall(c.get("id") or "", c["function"]["name"], c["function"].get("arguments") or "{}")
        for c in message.get("tool_calls") or []
    ]
    return ChatResponse(
        content="".join(text) or ("" if calls else message.get("tool_plan") or ""),
        tool_calls=calls,
        usage=_map_usage(data.get("usage")),
        stop_reason=_STOP_REASONS.get(data.get("finish_reason"), "other"),
        model=model,
        reasoning="".join(thinking),
    )


def _parse_stream_event(event):
    """The neutral events for one Cohere SSE event."""
    data = event.json()
    kind = data.get("type") or event.event
    delta = data.get("delta") or {}
    message = delta.get("message") or {}
    if kind == "content-delta":
        content = message.get("content") or {}
        if content.get("text"):
            yield TextDelta(content["text"])
        if content.get("thinking"):
            yield ReasoningDelta(content["thinking"])
    elif kind == "tool-call-start":
        call = message.get("tool_calls") or {}
        function = call.get("function") or {}
        index = int(data.get("index") or 0)
        yield ToolCallStart(index, call.get("id") or "", function.get("name") or "")
        if function.get("arguments"):
            yield ToolCallDelta(index, function["arguments"])
    elif kind == "tool-call-delta":
        function = (message.get("tool_calls") or {}).get("function") or {}
        if function.get("arguments"):
            yield ToolCallDelta(int(data.get("index") or 0), function["arguments"])
    elif kind == "message-end":
        if delta.get("usage"):
            yield UsageUpdate(_map_usage(delta["usage"]))
        yield Stop(_STOP_REASONS.get(delta.get("finish_reason"), "other"))
    # message-start, content-start/-end, tool-plan-delta, tool-call-end, citation-*: no event


class Cohere(Provider):
    name = "Cohere"
    default_model = "command-a-03-2025"
    embedding_model = "embed-v4.0"

    def models(self):
        data = http.send("GET", _url("/v1/models?endpoint=chat"), headers=_headers())
        data = data.raise_for_status().json()
        return [
            ModelInfo(
                id=m["name"],
                name=m["name"],
                context_window=m.get("context_length"),
                tools="tools" in (m.get("features") or []),
                vision="vision" in (m.get("features") or []),
            )
            for m in data.get("models") or []
        ]

    def chat(self, request):
        response = http.send(
            "POST", _url("/v2/chat"), headers=_headers(), json=_body(request, False)
        )
        return _parse_response(response.raise_for_status().json(), request.model)

    def stream(self, request):
        yield ModelName(request.model)
        with http.stream(
            "POST",
            _url("/v2/chat"),
            headers=_headers("text/event-stream"),
            json=_body(request, True),
        ) as response:
            response.raise_for_status()
            for event in response.sse():
                yield from _parse_stream_event(event)

    def embed(self, model, inputs):
        body = {
            "model": model or self.embedding_model,
            "texts": inputs,
            "input_type": "search_document",
            "embedding_types": ["float"],
        }
        data = http.send("POST", _url("/v2/embed"), headers=_headers(), json=body)
        data = data.raise_for_status().json()
        vectors = (data.get("embeddings") or {}).get("float")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            raise MalformedResponse("Cohere's embed answer has no float embeddings")
        billed = (data.get("meta") or {}).get("billed_units") or {}
        return Embeddings(vectors, Usage(int(billed.get("input_tokens") or 0), 0))
