"""Shared by the routing, fallback and status tests: OpenAI-compatible answers from loopback
servers, a config builder and a clock that tests move by hand."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from _server import Reply
from openkoi._config import Config, validate_config
from openkoi._registry import ProviderRegistry
from openkoi.routing import Router


class FakeClock:
    """Unix seconds that only move when a test (or the router's injected sleep) moves them."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def completion(text: str, prompt_tokens: int = 11, completion_tokens: int = 5) -> Reply:
    return Reply.json(
        {
            "id": "c1",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
    )


def event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def delta(text: str) -> str:
    return event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def usage_event(prompt_tokens: int, completion_tokens: int) -> str:
    return event(
        {
            "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
    )


def stream_answer(words: list[str], prompt_tokens: int = 11, completion_tokens: int = 5) -> Reply:
    events = [delta(w) for w in words]
    events.append(event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(usage_event(prompt_tokens, completion_tokens))
    events.append("data: [DONE]\n\n")
    return Reply.sse(events)


def error_reply(status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(
        {"error": {"message": f"failure {status}", "type": "test_error"}}, status, headers
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def make_config(
    providers: dict[str, str],
    *,
    models: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    fallback: dict[str, Any] | None = None,
) -> Config:
    """Custom OpenAI-compatible providers at the given base URLs (no key needed)."""
    return validate_config(
        {
            "providers": {name: {"base_url": url} for name, url in providers.items()},
            "models": models or {},
            "pricing": pricing or {},
            "fallback": fallback or {},
        }
    )


def make_router(config: Config, clock: FakeClock, **kwargs: Any) -> Router:
    registry = ProviderRegistry(config)
    kwargs.setdefault("on_warning", _fail_on_warning)
    return Router.from_config(config, registry=registry, clock=clock, sleep=clock.sleep, **kwargs)


def _fail_on_warning(message: str) -> None:
    raise AssertionError(f"unexpected router warning: {message}")


def config_toml(
    providers: dict[str, str],
    executor: str,
    fallbacks: list[str],
    pricing: dict[str, dict[str, float]] | None = None,
) -> str:
    lines = ["[models]", f'executor = "{executor}"', "", "[models.fallback]"]
    lines.append("executor = [" + ", ".join(f'"{f}"' for f in fallbacks) + "]")
    for name, url in providers.items():
        lines += ["", f"[providers.{name}]", f'base_url = "{url}"']
    for ref, fields in (pricing or {}).items():
        lines += ["", f'[pricing."{ref}"]'] + [f"{k} = {v}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def write_config(home: Path, text: str) -> Path:
    path = home / ".openkoi" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
