"""Every call ends within its deadline plus a second, against servers that misbehave for real.

Faults, each from a loopback server: hang (accept, never answer), drip (one byte every 2 s),
stream forever, and a TLS port that never finishes its handshake (the connect deadline). Each
streaming protocol is driven the same way (SSE, NDJSON, AWS event stream), through the library,
the fallback chain and the CLI.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _routing_support import FakeClock, completion, delta, make_router, stream_answer
from _server import LoopbackServer, Recorded, Reply
from openkoi import _deadline
from openkoi._config import validate_config
from openkoi._errors import (
    LocalPoolTimeoutError,
    ProviderError,
    ProviderTimeoutError,
)
from openkoi._provider import HTTPProvider, ProviderSettings
from openkoi._secrets import Secret
from openkoi._timeouts import Timeouts
from openkoi._types import ChatChunk, ChatRequest, Message
from openkoi_providers.openai_compat import OpenAICompatibleProvider
from protocols import bedrock, gemini, ollama, openai  # bench/protocols: one module per wire format

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
SLACK = 1.0  # the bound: a deadline plus one second
PROTOCOLS = [openai, gemini, ollama, bedrock]
REQUEST = ChatRequest(messages=[Message.user("hi")])


def openai_provider(url: str, **timeouts: float) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings(
            id="openai",
            name="OpenAI",
            base_url=url,
            api_key=Secret("sk-test-0123456789"),
            default_model="m",
            timeouts=Timeouts(**timeouts),
        )
    )


def with_timeouts(module: ModuleType, url: str, **timeouts: float) -> HTTPProvider:
    provider = module.make_provider(url)
    assert isinstance(provider, HTTPProvider)
    provider.settings.timeouts = Timeouts(**timeouts)
    return provider


def event_boundary(module: ModuleType, body: bytes, events: int) -> int:
    """The byte offset just after the first `events` events of `body`."""
    if module is bedrock:
        offset = 0
        for _ in range(events):
            (length,) = struct.unpack(">I", body[offset : offset + 4])
            offset += length
        return offset
    separator = b"\n" if module is ollama else (b"\r\n\r\n" if module is gemini else b"\n\n")
    offset = 0
    for _ in range(events):
        offset = body.index(separator, offset) + len(separator)
    return offset


async def fails_within(
    chunks: AsyncIterator[ChatChunk], low: float, high: float
) -> tuple[ProviderError, list[ChatChunk], float]:
    """Consume `chunks` until it fails; the failure must come between `low` and `high` s."""
    got: list[ChatChunk] = []
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        with anyio.fail_after(high + 5):  # a hard stop so a broken deadline fails, not hangs
            async for chunk in chunks:
                got.append(chunk)
    elapsed = time.monotonic() - started
    assert low - 0.05 <= elapsed <= high, f"failed after {elapsed:.2f} s, not in [{low}, {high}]"
    return info.value, got, elapsed


# -- hang: accept, never answer -------------------------------------------------------------


@pytest.mark.parametrize("module", PROTOCOLS, ids=lambda m: m.__name__.split(".")[-1])
async def test_hung_server_hits_first_token(serve: Serve, module: ModuleType) -> None:
    server = serve(lambda r: Reply(delay=3600))
    provider = with_timeouts(module, server.url, first_token=1.0)
    try:
        error, got, _ = await fails_within(
            provider.chat_stream(module.make_request()), 1.0, 1.0 + SLACK
        )
    finally:
        await provider.aclose()
    assert isinstance(error, ProviderTimeoutError) and error.transient
    assert error.deadline == "first_token" and "first_token" in str(error)
    assert got == []


async def test_hung_server_non_streaming_chat(serve: Serve) -> None:
    server = serve(lambda r: Reply(delay=3600))
    provider = openai_provider(server.url, first_token=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderTimeoutError) as info:
            await provider.chat(REQUEST)
    finally:
        await provider.aclose()
    assert 0.95 <= time.monotonic() - started <= 1.0 + SLACK
    assert info.value.deadline == "first_token"


# -- drip: one byte every 2 s ---------------------------------------------------------------


@pytest.mark.parametrize("module", PROTOCOLS, ids=lambda m: m.__name__.split(".")[-1])
async def test_dripping_stream_hits_idle_per_event(serve: Serve, module: ModuleType) -> None:
    """Two whole events, then the rest one byte every 2 s: bytes keep coming, events do not."""
    body = module.stream_body(20)
    cut = event_boundary(module, body, 2)
    pieces = [body[:cut], *(body[i : i + 1] for i in range(cut, len(body)))]
    server = serve(
        lambda r: Reply(
            chunks=pieces, chunk_delay=2.0, headers={"content-type": module.CONTENT_TYPE}
        )
    )
    provider = with_timeouts(module, server.url, first_token=10.0, idle=2.5)
    try:
        error, got, _ = await fails_within(
            provider.chat_stream(module.make_request()), 2.5, 2.5 + SLACK
        )
    finally:
        await provider.aclose()
    assert isinstance(error, ProviderTimeoutError)
    assert error.deadline == "idle" and "idle" in str(error)
    assert got  # the first events made chunks before the drip


async def test_response_dripped_from_its_first_byte_hits_first_token(serve: Serve) -> None:
    server = serve(lambda r: Reply(body=json.dumps({"choices": []}), drip=2.0))
    provider = openai_provider(server.url, first_token=1.5)
    try:
        error, _, _ = await fails_within(provider.chat_stream(REQUEST), 1.5, 1.5 + SLACK)
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError) as info:
            await provider.chat(REQUEST)
        elapsed = time.monotonic() - started
    finally:
        await provider.aclose()
    assert isinstance(error, ProviderTimeoutError) and error.deadline == "first_token"
    assert info.value.deadline == "first_token" and elapsed <= 1.5 + SLACK


async def test_non_streaming_body_dripped_after_its_headers_hits_idle(serve: Serve) -> None:
    body = json.dumps({"choices": [{"message": {"content": "x" * 50}}]}).encode()
    pieces = [body[i : i + 1] for i in range(len(body))]
    server = serve(
        lambda r: Reply(
            chunks=pieces, chunk_delay=2.0, headers={"content-type": "application/json"}
        )
    )
    provider = openai_provider(server.url, first_token=10.0, idle=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderTimeoutError) as info:
            await provider.chat(REQUEST)
    finally:
        await provider.aclose()
    assert time.monotonic() - started <= 1.5 + SLACK
    assert info.value.deadline == "idle"


# -- a stream that never ends -----------------------------------------------------------------


def forever() -> Iterator[str]:
    for i in itertools.count():
        yield delta(f"w{i} ")


async def test_endless_stream_hits_total(serve: Serve) -> None:
    server = serve(lambda r: Reply.sse(forever(), chunk_delay=0.01))
    provider = openai_provider(server.url, total=2.0, idle=1.0)
    try:
        error, got, _ = await fails_within(provider.chat_stream(REQUEST), 2.0, 2.0 + SLACK)
    finally:
        await provider.aclose()
    assert isinstance(error, ProviderTimeoutError) and error.deadline == "total"
    assert "total" in str(error)
    assert len(got) > 20  # it was streaming all along


async def test_total_counts_a_slow_consumer_but_idle_does_not(serve: Serve) -> None:
    """Idle is the server's silence: a consumer that holds each chunk for longer than the idle
    deadline is not cut; total is the whole call, so it is."""
    words = [f"w{i} " for i in range(6)]
    server = serve(lambda r: stream_answer(words))
    provider = openai_provider(server.url, idle=0.3, total=30.0)
    text = []
    try:
        async for chunk in provider.chat_stream(REQUEST):
            text.append(chunk.delta)
            await anyio.sleep(0.5)
        slow = openai_provider(server.url, idle=30.0, total=1.2)
        with pytest.raises(ProviderTimeoutError) as info:
            async for _ in slow.chat_stream(REQUEST):
                await anyio.sleep(0.5)
        await slow.aclose()
    finally:
        await provider.aclose()
    assert "".join(text) == "".join(words)
    assert info.value.deadline == "total"


# -- per-call deadlines and the connect deadline ------------------------------------------------


async def test_a_call_s_own_timeouts_win_over_the_provider_s(serve: Serve) -> None:
    server = serve(lambda r: Reply(delay=3600))
    provider = openai_provider(server.url, first_token=30.0)
    request = REQUEST.model_copy(update={"timeouts": Timeouts(first_token=0.5)})
    try:
        error, _, _ = await fails_within(provider.chat_stream(request), 0.5, 0.5 + SLACK)
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            await provider.chat(request)
        assert time.monotonic() - started <= 0.5 + SLACK
    finally:
        await provider.aclose()
    assert isinstance(error, ProviderTimeoutError) and error.deadline == "first_token"


async def test_tls_handshake_that_never_ends_hits_connect() -> None:
    """The kernel accepts the TCP connection; nobody ever answers the TLS hello."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        provider = openai_provider(f"https://127.0.0.1:{port}", connect=1.0, first_token=30.0)
        try:
            error, _, _ = await fails_within(provider.chat_stream(REQUEST), 1.0, 1.0 + SLACK)
        finally:
            await provider.aclose()
    assert isinstance(error, ProviderTimeoutError) and error.transient
    assert error.deadline == "connect" and "connect" in str(error)


async def test_deadlines_also_hold_without_the_loop_timer(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The portable path (an anyio cancel scope per wait, for event loops other than asyncio)."""
    monkeypatch.setattr(_deadline, "USE_LOOP_TIMER", False)
    hung = serve(lambda r: Reply(delay=3600))
    body = openai.stream_body(20)
    cut = event_boundary(openai, body, 2)
    pieces = [body[:cut], *(body[i : i + 1] for i in range(cut, len(body)))]
    drip = serve(lambda r: Reply.sse(pieces, chunk_delay=2.0))
    first = openai_provider(hung.url, first_token=1.0)
    second = openai_provider(drip.url, idle=1.0)
    try:
        error, _, _ = await fails_within(first.chat_stream(REQUEST), 1.0, 1.0 + SLACK)
        assert isinstance(error, ProviderTimeoutError) and error.deadline == "first_token"
        error, got, _ = await fails_within(second.chat_stream(REQUEST), 1.0, 1.0 + SLACK)
        assert isinstance(error, ProviderTimeoutError) and error.deadline == "idle" and got
    finally:
        await first.aclose()
        await second.aclose()


async def test_waiting_for_a_local_connection_slot_is_not_the_provider_s_fault(
    serve: Serve,
) -> None:
    """One connection, held by a long stream: the second call never gets a slot. Its
    first_token clock never starts, and when total ends it says so, permanent and uncooled."""
    server = serve(lambda r: Reply.sse(forever(), chunk_delay=0.05))
    provider = openai_provider(server.url, first_token=0.3, total=1.5)
    provider.settings.max_connections = 1
    holder = provider.chat_stream(REQUEST)
    try:
        await anext(holder)
        started = time.monotonic()
        with pytest.raises(LocalPoolTimeoutError) as info:
            await provider.chat(REQUEST)
        elapsed = time.monotonic() - started
    finally:
        await holder.aclose()  # type: ignore[attr-defined]
        await provider.aclose()
    assert 1.0 <= elapsed <= 1.5 + SLACK  # not 0.3 s: first_token never started
    assert not info.value.transient
    assert "max_connections" in str(info.value)


# -- through the fallback chain -----------------------------------------------------------------


async def test_hung_primary_falls_back_within_its_first_token_deadline(serve: Serve) -> None:
    hung = serve(lambda r: Reply(delay=3600))
    backup = serve(
        lambda r: stream_answer(["from ", "backup"]) if r.json().get("stream") else completion("ok")
    )
    config = validate_config(
        {
            "providers": {
                "primary": {"base_url": hung.url, "timeouts": {"first_token": 1}},
                "backup": {"base_url": backup.url},
            },
            "models": {"executor": "primary/m1", "fallback": {"executor": ["backup/m2"]}},
        }
    )
    router = make_router(config, FakeClock())
    text = []
    started = time.monotonic()
    try:
        with anyio.fail_after(10):
            async for chunk in router.chat_stream("executor", REQUEST):
                text.append(chunk.delta)
        streamed = time.monotonic() - started
        started = time.monotonic()
        answer = await router.chat("executor", REQUEST)  # primary cooling: straight to backup
        skipped = time.monotonic() - started
    finally:
        await router.aclose()
    assert "".join(text) == "from backup"
    assert 1.0 <= streamed <= 1.0 + SLACK
    assert skipped < 0.5 and answer.content == "ok"


# -- through the CLI ----------------------------------------------------------------------------


def run_cli(args: list[str], home: Path, env: dict[str, str]) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "from openkoi.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home), "OPENKOI_HOME": str(home / ".openkoi"), **env},
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def healthy_run(serve: Serve, home: Path) -> float:
    """How long the same CLI run takes against a server that answers at once: the time that
    is not the call's (interpreter start, imports, config, ledger), subtracted from a fault's."""
    server = serve(lambda r: stream_answer(["ok"]))
    code, out, err, elapsed = run_cli(
        ["-m", "openai/m", "hi"],
        home,
        {"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": server.url},
    )
    assert code == 0 and out.strip() == "ok", err
    return elapsed


@pytest.mark.parametrize(
    ("fault", "timeouts", "bound", "deadline"),
    [
        ("hang", "first_token = 1", 1.0, "first_token"),
        ("drip", "first_token = 1", 1.0, "first_token"),
        ("idle", "idle = 1", 1.0, "idle"),
        ("forever", "total = 2", 2.0, "total"),
    ],
)
def test_cli_prompt_honours_config_deadlines(
    serve: Serve, _isolated_home: Path, fault: str, timeouts: str, bound: float, deadline: str
) -> None:
    replies = {
        "hang": Reply(delay=3600),
        "drip": Reply(body="{}", drip=2.0),
        "idle": Reply.sse([delta("a"), delta("b"), "data: {", *("x" * 30)], chunk_delay=2.0),
        "forever": Reply.sse(forever(), chunk_delay=0.01),
    }
    server = serve(lambda r: replies[fault])
    config = _isolated_home / ".openkoi" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[timeouts]\n{timeouts}\n")
    start = healthy_run(serve, _isolated_home)
    code, _, err, elapsed = run_cli(
        ["-m", "openai/m", "hi"],
        _isolated_home,
        {"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": server.url},
    )
    assert code == 1, err
    assert deadline in err and "Traceback" not in err
    assert elapsed - start <= bound + SLACK, f"{elapsed:.2f} s, a healthy run {start:.2f} s"


def test_cli_falls_back_from_a_hung_primary(serve: Serve, _isolated_home: Path) -> None:
    hung = serve(lambda r: Reply(delay=3600))
    backup = serve(lambda r: stream_answer(["from ", "backup"]))
    config = _isolated_home / ".openkoi" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"""
[models]
executor = "primary/m1"
[models.fallback]
executor = ["backup/m2"]
[providers.primary]
base_url = "{hung.url}"
api_key_env = "PRIMARY_KEY"
[providers.primary.timeouts]
first_token = 1
[providers.backup]
base_url = "{backup.url}"
api_key_env = "BACKUP_KEY"
"""
    )
    start = healthy_run(serve, _isolated_home)
    code, out, err, elapsed = run_cli(
        ["hi"], _isolated_home, {"PRIMARY_KEY": "k-primary-123", "BACKUP_KEY": "k-backup-123"}
    )
    assert code == 0, err
    assert out.strip() == "from backup"
    assert "first_token" in err  # the note says why the primary was skipped
    assert elapsed - start <= 1.0 + SLACK, f"{elapsed:.2f} s, a healthy run {start:.2f} s"
