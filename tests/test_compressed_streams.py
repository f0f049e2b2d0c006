"""Compressed streams keep their deadlines: a read that decodes to tens of megabytes (a gzip
bomb of blank lines, comments or empty frames) is split in bounded pieces, so the call's clock
is asked between them and the call ends on time with modest memory. Real loopback servers
send the gzip bytes with `content-encoding: gzip`, in 16 KiB chunks."""

from __future__ import annotations

import gzip
import resource
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _server import LoopbackServer, Recorded, Reply, split_bytes
from openkoi._errors import ProviderError, ProviderTimeoutError
from openkoi._pieces import pieces
from openkoi._provider import HTTPProvider
from openkoi._timeouts import Timeouts
from protocols import anthropic, bedrock, gemini, ollama, openai  # one module per wire format

pytestmark = pytest.mark.anyio

Serve = Callable[[Callable[[Recorded], Reply]], LoopbackServer]
PROTOCOLS = [openai, anthropic, gemini, ollama, bedrock]
BOMB_MIB = 128  # decoded; about 130 KB on the wire


def _gzip_of_repeated(byte: bytes, mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    block = byte * (1 << 20)
    return b"".join([packer.compress(block) for _ in range(mib)] + [packer.flush()])


@pytest.fixture(scope="module")
def bombs() -> dict[bytes, bytes]:
    return {byte: _gzip_of_repeated(byte, BOMB_MIB) for byte in (b"\n", b"\0")}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("module", PROTOCOLS, ids=lambda m: m.__name__.split(".")[-1])
async def test_a_gzip_bomb_stream_ends_at_its_deadline(
    serve: Serve, bombs: dict[bytes, bytes], module: ModuleType
) -> None:
    """128 MiB of blank lines (zero bytes for the binary event stream) and no event: the
    first-token deadline ends the call, not the end of the bomb."""
    body = bombs[b"\0" if module is bedrock else b"\n"]
    server = serve(
        lambda r: Reply(
            headers={"content-type": module.CONTENT_TYPE, "content-encoding": "gzip"},
            chunks=split_bytes(body, 16 * 1024),
        )
    )
    provider = module.make_provider(server.url)
    assert isinstance(provider, HTTPProvider)
    provider.settings.timeouts = Timeouts(first_token=1.0, idle=1.0, total=3.0)
    before = _peak_rss_mib()
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as info, anyio.fail_after(20):
            async for _ in provider.chat_stream(module.make_request()):
                pass
    finally:
        await provider.aclose()
    elapsed = time.monotonic() - started
    if module is bedrock:  # zero bytes are a frame of length 0: refused at once
        assert not isinstance(info.value, ProviderTimeoutError)
    else:
        assert isinstance(info.value, ProviderTimeoutError)
        assert info.value.deadline == "first_token"
    assert elapsed < 1.0 + 1.5, elapsed
    assert _peak_rss_mib() - before < 300  # the decoded read, not the whole bomb


async def test_pieces_cut_long_reads_and_pass_short_ones_whole() -> None:
    async def reads() -> object:
        for item in ["ab", "x" * 10, "", "yz"]:
            yield item

    got = [piece async for piece in pieces(reads(), limit=4)]  # type: ignore[arg-type]
    assert got == ["ab", "xxxx", "xxxx", "xx", "", "yz"]
    assert "".join(got) == "ab" + "x" * 10 + "yz"


async def test_closing_the_pieces_closes_the_reads() -> None:
    closed = []

    async def reads() -> object:
        try:
            for _ in range(3):
                yield b"z" * 100
        finally:
            closed.append(True)

    stream = pieces(reads(), limit=10)  # type: ignore[arg-type]
    assert await anext(stream) == b"z" * 10
    await stream.aclose()
    assert closed == [True]


def test_the_bombs_are_what_they_say() -> None:
    body = _gzip_of_repeated(b"\n", 2)
    assert len(body) < 10_000 and gzip.decompress(body) == b"\n" * (2 << 20)
