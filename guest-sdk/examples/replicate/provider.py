"""Replicate's asynchronous predictions API as an openkoi plugin.

A chat creates a prediction (`POST /models/{owner}/{name}/predictions`), then polls its `get`
URL until the status is terminal (succeeded, failed, canceled). A language model's output is a
list of text pieces that grows while the prediction runs, so streaming either follows the
prediction's SSE `stream` URL (`output`, `error` and `done` events) or, without one, polls and
yields each new piece as it appears.
"""

import time

from openkoi_guest import (
    ChatResponse,
    InvalidRequest,
    MalformedResponse,
    Provider,
    ProviderError,
    ServerError,
    Stop,
    TextDelta,
    Timeout,
    Unsupported,
    Usage,
    UsageUpdate,
    config,
    http,
)

_TERMINAL = ("succeeded", "failed", "canceled")


def _base():
    return (config("base_url") or "https://api.replicate.com/v1").rstrip("/")


def _headers(accept="application/json"):
    return {"authorization": "Bearer " + http.secret("REPLICATE_API_TOKEN"), "accept": accept}


def _prompt(request):
    """Replicate's language models take one prompt; earlier turns are written out in it."""
    turns = []
    for m in request.messages:
        if m.role == "user":
            turns.append(m.content or "")
        elif m.role == "assistant":
            turns.append("Assistant: " + (m.content or ""))
        elif m.role == "tool":
            turns.append("Tool result: " + (m.content or ""))
    return "\n\n".join(turns)


def _refuse_what_a_prompt_cannot_carry(request):
    """One prompt string holds text only: say so rather than drop the rest."""
    if any(m.attachments for m in request.messages):
        raise Unsupported("Replicate language models here take text only, not attachments")
    if request.schema is not None:
        raise Unsupported("Replicate language models have no structured output")
    if request.tool_choice not in (None, "auto", "none"):
        raise Unsupported("Replicate language models have no tools to choose")


def _input(request):
    _refuse_what_a_prompt_cannot_carry(request)
    data = {"prompt": _prompt(request)}
    if request.system:
        data["system_prompt"] = request.system
    if request.max_tokens:
        data["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        data["temperature"] = request.temperature
    if request.stop:
        data["stop_sequences"] = ",".join(request.stop)
    data.update(request.extra)
    return data


def _create(request, stream):
    if "/" not in request.model:
        raise InvalidRequest(f"a Replicate model is named owner/name, not {request.model!r}")
    url = f"{_base()}/models/{request.model}/predictions"
    body = {"input": _input(request), "stream": stream}
    return http.send("POST", url, headers=_headers(), json=body).raise_for_status().json()


def _poll(prediction):
    url = (prediction.get("urls") or {}).get("get")
    if not url:
        raise MalformedResponse("the prediction has no get URL to poll")
    return http.send("GET", url, headers=_headers()).raise_for_status().json()


def _wait():
    interval = int(config("poll_interval_ms") or "500")
    if interval > 0:
        time.sleep(interval / 1000)


def _text(output):
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(piece) for piece in output)
    raise MalformedResponse("the prediction's output is not text")


def _map_usage(prediction):
    metrics = prediction.get("metrics") or {}
    return Usage(
        int(metrics.get("input_token_count") or 0), int(metrics.get("output_token_count") or 0)
    )


def _failure(prediction):
    if prediction.get("status") == "canceled":
        return ProviderError("the prediction was canceled")
    return ServerError(f"the prediction failed: {prediction.get('error') or 'no reason given'}")


class Replicate(Provider):
    name = "Replicate"
    default_model = "meta/meta-llama-3-8b-instruct"

    def chat(self, request):
        prediction = _create(request, False)
        while prediction.get("status") not in _TERMINAL:
            _wait()
            prediction = _poll(prediction)
        if prediction["status"] != "succeeded":
            raise _failure(prediction)
        return ChatResponse(
            content=_text(prediction.get("output")),
            usage=_map_usage(prediction),
            stop_reason="end_turn",
            model=request.model,
        )

    def stream(self, request):
        prediction = _create(request, True)
        stream_url = (prediction.get("urls") or {}).get("stream")
        if stream_url and (config("use_stream") or "yes") == "yes":
            yield from self._follow(stream_url)
            prediction = _poll(prediction)
        else:
            sent = 0
            while True:
                text = _text(prediction.get("output"))
                if len(text) > sent:
                    yield TextDelta(text[sent:])
                    sent = len(text)
                if prediction.get("status") in _TERMINAL:
                    break
                _wait()
                prediction = _poll(prediction)
            if prediction["status"] != "succeeded":
                raise _failure(prediction)
        yield UsageUpdate(_map_usage(prediction))
        yield Stop("end_turn")

    def _follow(self, url):
        with http.stream("GET", url, headers=_headers("text/event-stream")) as response:
            response.raise_for_status()
            for event in response.sse():
                if event.event == "output":
                    if event.data:
                        yield TextDelta(event.data)
                elif event.event == "error":
                    raise ServerError(f"the prediction failed: {event.data}")
                elif event.event == "done":
                    if '"canceled"' in event.data:
                        raise ProviderError("the prediction was canceled")
                    return
        raise Timeout("the prediction's stream ended without a done event")
