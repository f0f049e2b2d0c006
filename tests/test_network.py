"""Real networks: proxies from the environment and from config, private CAs, certificate
failures, and connections cut part-way. Every server and proxy is real, on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _proxy import LoopbackProxy
from _routing_support import FakeClock, delta, make_router, stream_answer
from _server import LoopbackServer, Recorded, Reply
from _tls import Authority, make_authority
from openkoi._config import validate_config
from openkoi._errors import (
    CertificateError,
    ConfigError,
    MalformedResponseError,
    NetworkError,
)
from openkoi._registry import ProviderRegistry
from openkoi._types import ChatRequest, Message

pytestmark = pytest.mark.anyio

REQUEST = ChatRequest(messages=[Message.user("hi")])
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_or_ca_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*PROXY_VARS, "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


@pytest.fixture
def proxy() -> Iterator[LoopbackProxy]:
    with LoopbackProxy() as running:
        yield running


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path / "ca")


def tls_server(authority: Authority, handler: Callable[[Recorded], Reply]) -> Iterator[Any]:
    server = LoopbackServer(handler, tls=authority.server).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def https(authority: Authority) -> Iterator[LoopbackServer]:
    yield from tls_server(authority, lambda r: stream_answer(["over ", "tls"]))


def registry(**entry: Any) -> ProviderRegistry:
    """A registry with one custom OpenAI-compatible provider, `gw`, configured by `entry`."""
    return ProviderRegistry(validate_config({"providers": {"gw": entry}}))


async def ask(reg: ProviderRegistry) -> str:
    provider = reg.get("gw")
    try:
        return "".join(
            [c.delta async for c in provider.chat_stream(REQUEST.model_copy(update={"model": "m"}))]
        )
    finally:
        await reg.aclose()


# -- proxies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_environment_proxy_carries_plain_http_and_no_proxy_bypasses_it(
    serve: Any, proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    server = serve(lambda r: stream_answer(["via ", "proxy"]))
    monkeypatch.setenv(var, proxy.url)
    assert await ask(registry(base_url=server.url)) == "via proxy"
    assert proxy.seen == [f"POST {server.url}/chat/completions"]

    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
    assert await ask(registry(base_url=server.url)) == "via proxy"
    assert len(proxy.seen) == 1  # the second call went straight to the server
    assert len(server.requests) == 2


async def test_https_proxy_tunnels_tls_with_connect(
    https: LoopbackServer,
    authority: Authority,
    proxy: LoopbackProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert await ask(registry(base_url=https.url, ca_bundle=str(authority.ca_pem))) == "over tls"
    assert proxy.seen == [f"CONNECT 127.0.0.1:{https.port}"]


async def test_a_provider_s_own_proxy_wins_and_empty_means_direct(
    serve: Any, proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(lambda r: stream_answer(["ok"]))
    assert await ask(registry(base_url=server.url, proxy=proxy.url)) == "ok"
    assert proxy.seen == [f"POST {server.url}/chat/completions"]

    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert await ask(registry(base_url=server.url, proxy="")) == "ok"
    assert len(proxy.seen) == 1 and len(server.requests) == 2


def test_a_bad_proxy_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="proxy"):
        registry(base_url="http://127.0.0.1:9", proxy="ftp://user:pw@proxy")


# -- certificate authorities --------------------------------------------------------------------


async def test_ca_bundle_trusts_a_private_ca(https: LoopbackServer, authority: Authority) -> None:
    assert await ask(registry(base_url=https.url, ca_bundle=str(authority.ca_pem))) == "over tls"


@pytest.mark.parametrize("var", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR"])
async def test_ca_environment_variables(
    https: LoopbackServer,
    authority: Authority,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    var: str,
) -> None:
    value = str(authority.ca_pem)
    if var == "SSL_CERT_DIR":  # OpenSSL finds a CA in a directory by its subject hash
        assert shutil.which("openssl"), "the openssl command names the hashed file"
        digest = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", value],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        hashed = tmp_path / "certs"
        hashed.mkdir()
        shutil.copy(authority.ca_pem, hashed / f"{digest}.0")
        value = str(hashed)
    monkeypatch.setenv(var, value)
    assert await ask(registry(base_url=https.url)) == "over tls"


async def test_an_untrusted_certificate_is_permanent_and_never_cools_the_model(
    https: LoopbackServer, serve: Any, tmp_path: Path
) -> None:
    """Signed by a CA nobody trusts: a clear, permanent error; the chain stops there."""
    backup = serve(lambda r: stream_answer(["backup"]))
    config = validate_config(
        {
            "providers": {"gw": {"base_url": https.url}, "backup": {"base_url": backup.url}},
            "models": {"executor": "gw/m", "fallback": {"executor": ["backup/m"]}},
        }
    )
    router = make_router(config, FakeClock())
    try:
        with pytest.raises(CertificateError) as info:
            async for _ in router.chat_stream("executor", REQUEST):
                pass
        cooling = await router.state.get(["gw/m"], now=router.clock())
    finally:
        await router.aclose()
    assert not info.value.transient
    assert "certificate could not be verified" in str(info.value)
    assert "ca_bundle" in str(info.value)
    assert cooling == {}
    assert backup.requests == []  # a permanent error is not a reason to try the next model


async def test_a_wrong_ca_bundle_fails_verification_and_a_missing_one_is_a_config_error(
    https: LoopbackServer, tmp_path: Path
) -> None:
    other = make_authority(tmp_path / "other", label="another CA")
    with pytest.raises(CertificateError):
        await ask(registry(base_url=https.url, ca_bundle=str(other.ca_pem)))
    with pytest.raises(ConfigError, match=r"nowhere\.pem"):
        await ask(registry(base_url=https.url, ca_bundle=str(tmp_path / "nowhere.pem")))


async def test_a_plain_http_provider_reads_its_cas_only_for_an_https_request(
    serve: Any, https: LoopbackServer, authority: Authority, tmp_path: Path
) -> None:
    """An http:// base URL does not load CAs up front (start-up time); an https:// request
    through the same client still verifies with the provider's ca_bundle, or fails as before."""
    server = serve(lambda r: stream_answer(["plain"]))
    missing = registry(base_url=server.url, ca_bundle=str(tmp_path / "nowhere.pem"))
    try:
        assert await ask(missing) == "plain"  # no CA file was read for plain http
        with pytest.raises(ConfigError, match=r"nowhere\.pem"):
            await missing.get("gw").client.get(f"{https.url}/models")
    finally:
        await missing.aclose()

    trusted = registry(base_url=server.url, ca_bundle=str(authority.ca_pem))
    other = registry(base_url=server.url, ca_bundle=str(make_authority(tmp_path / "other").ca_pem))
    try:
        answer = await trusted.get("gw").client.get(f"{https.url}/models")
        assert answer.status_code == 200 and b"tls" in answer.content
        assert await ask(trusted) == "plain"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await other.get("gw").client.get(f"{https.url}/models")
    finally:
        await trusted.aclose()
        await other.aclose()
    assert len(https.requests) == 1 and len(server.requests) == 2


# -- connections cut part-way -------------------------------------------------------------------


@pytest.mark.parametrize("cleanly", [False, True], ids=["reset", "closed"])
async def test_a_stream_cut_after_some_chunks_says_so(serve: Any, cleanly: bool) -> None:
    words = [delta(f"w{i} ") for i in range(6)]
    server = serve(lambda r: Reply.sse(words, cut_after=3, cut_cleanly=cleanly))
    reg = registry(base_url=server.url)
    got: list[str] = []
    with pytest.raises(MalformedResponseError) as info:
        async for chunk in reg.get("gw").chat_stream(REQUEST.model_copy(update={"model": "m"})):
            got.append(chunk.delta)
    await reg.aclose()
    assert got == ["w0 ", "w1 ", "w2 "]
    assert "the connection was cut mid-stream" in str(info.value)
    assert "could not reach" not in str(info.value)
    assert info.value.transient


async def test_a_server_that_is_not_there_still_could_not_be_reached() -> None:
    from _routing_support import closed_port

    reg = registry(base_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(NetworkError, match="could not reach the server"):
        await ask(reg)


async def test_a_cut_primary_falls_back_before_its_first_chunk(serve: Any) -> None:
    cut = serve(lambda r: Reply.sse([delta("x")], cut_after=0))
    backup = serve(lambda r: stream_answer(["from ", "backup"]))
    config = validate_config(
        {
            "providers": {"gw": {"base_url": cut.url}, "backup": {"base_url": backup.url}},
            "models": {"executor": "gw/m", "fallback": {"executor": ["backup/m"]}},
        }
    )
    router = make_router(config, FakeClock())
    try:
        text = "".join([c.delta async for c in router.chat_stream("executor", REQUEST)])
    finally:
        await router.aclose()
    assert text == "from backup"


def _raw_server(reply: Callable[[Any], None]) -> tuple[str, Any]:
    """A TCP server on 127.0.0.1 whose every connection is handed to `reply` (raw bytes)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=reply, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def _header_flood(conn: Any) -> None:
    conn.recv(65536)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while True:
            conn.sendall(b"x-junk: " + b"a" * 1000 + b"\r\n")
    except OSError:
        return


def _hang_up(conn: Any) -> None:
    """Read the whole request, then close without a word (a FIN, not a reset)."""
    import contextlib
    import time

    conn.recv(65536)
    time.sleep(0.2)
    conn.setblocking(False)
    with contextlib.suppress(OSError):
        conn.recv(65536)  # the body, if it came in its own segment
    conn.close()


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (_header_flood, "the server's response broke the HTTP protocol"),
        (_hang_up, "the connection was cut before the response was complete"),
    ],
    ids=["header-flood", "hang-up"],
)
async def test_a_reply_that_is_not_http_is_told_from_a_cut_connection(
    reply: Callable[[Any], None], said: str
) -> None:
    url, listener = _raw_server(reply)
    reg = registry(base_url=url)
    try:
        with pytest.raises(MalformedResponseError) as info:
            await reg.get("gw").chat(REQUEST.model_copy(update={"model": "m"}))
    finally:
        await reg.aclose()
        listener.close()
    assert said in str(info.value) and info.value.transient
