"""Foundation benchmark: import cost, chat overhead vs bare httpx, streaming vs bare httpx-sse,
and a request with a 5 MB image attachment (built and sent) vs the same bytes with bare httpx.

Run: uv run python bench/bench_core.py [--runs 300] [--chunks 5000] [--attachment-runs 20]
Targets: import <= 0.15 s; chat overhead ratio <= 1.15; streaming >= 0.7 of bare httpx-sse;
attachment overhead ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
import httpx
from _harness import ServerProcess, bare_sse_deltas, median, row
from openkoi import Attachment, ChatRequest, Message
from openkoi._provider import ProviderSettings
from openkoi._secrets import Secret
from openkoi_providers.openai_compat import OpenAICompatibleProvider

CHAT_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there, this is a short answer."},
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 0},
    },
}


def sse_body(chunks: int) -> bytes:
    parts = []
    for i in range(chunks):
        data = {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "gpt-bench",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
        parts.append(f"data: {json.dumps(data)}\n\n")
    parts.append(
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":'
        + str(chunks)
        + "}}\n\n"
    )
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def measure_import(runs: int) -> None:
    # VmHWM is the peak RSS of this process image alone (it starts afresh at exec).
    report = (
        ";print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    )

    def one(code: str) -> tuple[float, int]:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code + report], capture_output=True, text=True, check=True
        )
        return time.perf_counter() - start, int(out.stdout.split()[-1])

    print("(a) import cost, fresh interpreter each run")
    results = {}
    for label, code in (
        ("python -c pass", "pass"),
        ("import httpx", "import httpx"),
        ("import openkoi", "import openkoi"),
    ):
        samples = [one(code) for _ in range(runs)]
        wall = median([s[0] for s in samples])
        rss = median([float(s[1]) for s in samples]) / 1024
        results[label] = wall
        row(label, f"{wall * 1000:.1f} ms", f"peak RSS {rss:.1f} MiB")
    added = results["import openkoi"] - results["python -c pass"]
    row("import openkoi (total wall)", f"{results['import openkoi']:.3f} s", "target <= 0.15 s")
    row("import openkoi (over bare interpreter)", f"{added * 1000:.1f} ms")


async def interleaved(
    bare: Callable[[], Awaitable[None]],
    koi: Callable[[], Awaitable[None]],
    runs: int,
    *,
    warmup: int,
) -> tuple[list[float], list[float]]:
    """Seconds per call of each, after warming both up; interleaved so drift hits both."""
    for _ in range(warmup):
        await bare()
        await koi()
    bare_t, koi_t = [], []
    for _ in range(runs):
        t = time.perf_counter()
        await bare()
        bare_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        await koi()
        koi_t.append(time.perf_counter() - t)
    return bare_t, koi_t


async def measure_chat(url: str, runs: int) -> None:
    provider = OpenAICompatibleProvider(
        ProviderSettings(
            id="openai", name="OpenAI", base_url=url + "/v1", api_key=Secret("sk-bench")
        )
    )
    request = ChatRequest(model="gpt-bench", messages=[Message.user("Say hello")], max_tokens=64)
    body = provider._body(request, stream=False)
    bare = httpx.AsyncClient(base_url=url + "/v1")
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}

    async def bare_call() -> None:
        response = await bare.post("/chat/completions", content=json.dumps(body), headers=headers)
        json.loads(response.text)["choices"][0]["message"]["content"]

    async def koi_call() -> None:
        await provider.chat(request)

    bare_t, koi_t = await interleaved(bare_call, koi_call, runs, warmup=30)
    await bare.aclose()
    await provider.aclose()
    print(f"(b) non-streaming chat, {runs} interleaved calls each")
    row("bare httpx.AsyncClient POST + json", f"{median(bare_t) * 1e6:.0f} us", "median")
    row("openkoi provider.chat()", f"{median(koi_t) * 1e6:.0f} us", "median")
    row("overhead ratio", f"{median(koi_t) / median(bare_t):.3f}", "target <= 1.15")


async def measure_stream(url: str, chunks: int, rounds: int) -> None:
    provider = OpenAICompatibleProvider(
        ProviderSettings(
            id="openai", name="OpenAI", base_url=url + "/v1", api_key=Secret("sk-bench")
        )
    )
    request = ChatRequest(model="gpt-bench", messages=[Message.user("Stream please")])
    body = provider._body(request, stream=True)
    bare = httpx.AsyncClient(base_url=url + "/v1")

    async def bare_stream() -> int:
        return await bare_sse_deltas(bare, json.dumps(body))

    async def koi_stream() -> int:
        count = 0
        async for chunk in provider.chat_stream(request):
            if chunk.delta:
                count += 1
        return count

    await bare_stream()
    await koi_stream()
    bare_rates, koi_rates = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        n = await bare_stream()
        bare_rates.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        n = await koi_stream()
        koi_rates.append(n / (time.perf_counter() - t))
        assert n == chunks, n
    await bare.aclose()
    await provider.aclose()
    print(f"(c) streaming {chunks} SSE chunks, {rounds} interleaved rounds each")
    row("bare httpx-sse + json.loads", f"{median(bare_rates):,.0f} chunks/s", "median")
    row("openkoi provider.chat_stream()", f"{median(koi_rates):,.0f} chunks/s", "median")
    row(
        "streaming ratio (openkoi / bare)",
        f"{median(koi_rates) / median(bare_rates):.3f}",
        "target >= 0.7",
    )


async def measure_attachment(url: str, runs: int, size: int = 5 * 1024 * 1024) -> None:
    """Build and send a request with one PNG of `size` bytes: openkoi (Attachment, Message,
    provider.chat: base64, JSON, POST, parse) against bare httpx doing the same encoding."""
    image = b"\x89PNG\r\n\x1a\n" + random.Random(0).randbytes(size - 8)
    provider = OpenAICompatibleProvider(
        ProviderSettings(
            id="openai", name="OpenAI", base_url=url + "/v1", api_key=Secret("sk-bench")
        )
    )
    bare = httpx.AsyncClient(base_url=url + "/v1")
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}

    async def bare_call() -> None:
        data_url = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
        body = {
            "model": "gpt-bench",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
        }
        response = await bare.post("/chat/completions", content=json.dumps(body), headers=headers)
        json.loads(response.text)["choices"][0]["message"]["content"]

    async def koi_call() -> None:
        message = Message.user("What is this?", [Attachment.of(image)])
        await provider.chat(ChatRequest(model="gpt-bench", messages=[message]))

    bare_t, koi_t = await interleaved(bare_call, koi_call, runs, warmup=3)
    await bare.aclose()
    await provider.aclose()
    print(f"(d) a {size // (1024 * 1024)} MB image attachment, built and sent, {runs} calls each")
    row("bare httpx: base64 + json + POST", f"{median(bare_t) * 1e3:.1f} ms", "median")
    row("openkoi Attachment + provider.chat()", f"{median(koi_t) * 1e3:.1f} ms", "median")
    row("attachment overhead ratio", f"{median(koi_t) / median(bare_t):.3f}", "target <= 1.15")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--import-runs", type=int, default=15)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--attachment-runs", type=int, default=20)
    args = parser.parse_args()
    print(f"openkoi foundation benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    measure_import(args.import_runs)
    with ServerProcess(json.dumps(CHAT_RESPONSE).encode(), sse_body(args.chunks)) as server:
        anyio.run(measure_chat, server.url, args.runs)
        anyio.run(measure_stream, server.url, args.chunks, args.rounds)
        anyio.run(measure_attachment, server.url, args.attachment_runs)


if __name__ == "__main__":
    main()
