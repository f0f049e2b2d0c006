"""GuardedClient against real loopback servers, with a fake resolver for the names.

Hostile cases first. No test sends traffic anywhere but 127.0.0.1: names that resolve elsewhere
are refused before any connection, which each test proves by showing the server saw nothing.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import itertools
import json
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import httpx_sse  # noqa: F401  (its SSEError subclasses httpx's errors: cover it too)
import pytest
from _server import LoopbackServer, Recorded, Reply
from openkoi._secrets import Secret
from openkoi.plugins._egress import EgressPolicy
from openkoi.plugins._guarded_http import (
    REDACTED,
    SECRET_PLACEHOLDER,
    GuardedClient,
    HttpError,
    SecretScrubber,
    TransportPool,
)
from openkoi.plugins._limits import REQUEST_HEADER_BYTES, REQUEST_HEADERS, REQUEST_URL_CHARS

pytestmark = pytest.mark.anyio

Serve = Callable[..., LoopbackServer]

KEY = "sk-live-0123456789abcdefXYZ"
SECRETS = {"API_KEY": Secret(KEY, "env:TEST_API_KEY"), "OTHER": Secret("other-secret-value-42")}


class FakeResolver:
    """Names -> addresses, recording every lookup. Unknown names fail like a real resolver."""

    def __init__(self, table: dict[str, list[str] | Callable[[int], list[str]]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        answer = self.table.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if callable(answer):
            return answer(sum(1 for h, _ in self.calls if h == host))
        return list(answer)


GZIP = {"content-encoding": "gzip"}


def ok(body: str = "ok") -> Callable[[Recorded], Reply]:
    return lambda _req: Reply(body=body)


def client(
    origins: list[str], resolver: FakeResolver | None = None, **kwargs: object
) -> GuardedClient:
    return GuardedClient(
        EgressPolicy.parse(origins),
        SECRETS,
        resolver=resolver or FakeResolver({"localhost": ["127.0.0.1"]}),
        **kwargs,  # type: ignore[arg-type]
    )


async def denied(call: Awaitable[object], kind: str = "denied") -> HttpError:
    with pytest.raises(HttpError) as info:
        await call
    assert info.value.kind == kind, info.value
    assert KEY not in info.value.message
    assert KEY not in repr(info.value)
    return info.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# names that resolve to special addresses


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.0.0.5"],
        ["169.254.169.254"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["fe80::1"],
        ["100.64.0.1"],
        ["0.0.0.0"],
        ["93.184.216.34", "127.0.0.1"],  # one bad address among good ones is enough to refuse
    ],
)
async def test_public_looking_name_resolving_to_special_address_is_denied(
    serve: Serve, addresses: list[str]
) -> None:
    server = serve(ok())
    resolver = FakeResolver({"api.example.com": addresses})
    async with client([f"http://api.example.com:{server.port}"], resolver) as c:
        error = await denied(c.send("GET", f"http://api.example.com:{server.port}/", [], None))
    assert "resolved to" in error.message
    assert resolver.calls == [("api.example.com", server.port)]
    assert server.requests == [] and server.connections == 0


async def test_loopback_is_reachable_when_declared_literally_or_as_localhost(
    serve: Serve,
) -> None:
    server = serve(ok("hello"))
    resolver = FakeResolver({"localhost": ["127.0.0.1", "::1"]})
    async with client(
        [f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}"], resolver
    ) as c:
        for url in (
            f"http://127.0.0.1:{server.port}/a",
            f"http://2130706433:{server.port}/b",
            f"http://0x7f.1:{server.port}/c",
            f"http://LOCALHOST.:{server.port}/d",
        ):
            response = await c.send("GET", url, [], None)
            assert response.status == 200
            assert await response.text() == "hello"
    assert [r.path for r in server.requests] == ["/a", "/b", "/c", "/d"]
    # IP literals are never looked up; the name was looked up once.
    assert resolver.calls == [("localhost", server.port)]


async def test_localhost_resolving_elsewhere_is_denied(serve: Serve) -> None:
    server = serve(ok())
    resolver = FakeResolver({"localhost": ["10.0.0.5"]})
    async with client([f"http://localhost:{server.port}"], resolver) as c:
        error = await denied(c.send("GET", f"http://localhost:{server.port}/", [], None))
    assert "not a loopback address" in error.message
    assert server.connections == 0


async def test_name_is_resolved_once_and_the_checked_address_is_the_one_connected(
    serve: Serve,
) -> None:
    """DNS rebinding: a second answer pointing at the metadata service changes nothing for the
    request already checked, and is itself refused."""
    server = serve(ok())
    answers = {1: ["127.0.0.1"]}
    resolver = FakeResolver({"localhost": lambda n: answers.get(n, ["169.254.169.254"])})
    async with client([f"http://localhost:{server.port}"], resolver) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/first", [], None)
        assert await response.text() == "ok"
        await denied(c.send("GET", f"http://localhost:{server.port}/second", [], None))
    assert len(resolver.calls) == 2
    assert [r.path for r in server.requests] == ["/first"]
    # The Host header names the origin, not the address connected to.
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


# ---------------------------------------------------------------------------------------------
# undeclared hosts and redirects


async def test_undeclared_host_is_denied_before_any_lookup(serve: Serve) -> None:
    server = serve(ok())
    resolver = FakeResolver({"evil.example": ["127.0.0.1"]})
    async with client([f"http://localhost:{server.port}"], resolver) as c:
        error = await denied(c.send("GET", f"http://evil.example:{server.port}/", [], None))
    assert f'network.allow = ["http://evil.example:{server.port}"]' in error.message
    assert resolver.calls == []
    assert server.connections == 0


async def test_redirect_to_undeclared_host_is_denied(serve: Serve) -> None:
    target = serve(ok("stolen"))
    origin = serve(
        lambda _r: Reply(302, headers={"location": f"http://evil.example:{target.port}/steal"})
    )
    resolver = FakeResolver({"localhost": ["127.0.0.1"], "evil.example": ["127.0.0.1"]})
    async with client([f"http://localhost:{origin.port}"], resolver) as c:
        error = await denied(c.send("GET", f"http://localhost:{origin.port}/start", [], None))
        assert c.requests_made == 2
    assert "redirect" in error.message
    assert f'network.allow = ["http://evil.example:{target.port}"]' in error.message
    assert len(origin.requests) == 1
    assert target.connections == 0
    assert ("evil.example", target.port) not in resolver.calls


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9fea9fe/latest/meta-data/",
        "http://2852039166/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.5:8080/",
        "http://127.1:{port}/",
        "http://localhost.evil.example:{port}/",
        "http://evil.example\\@localhost:{port}/",
        "//evil.example/",
        "https://localhost:{port}/",
    ],
)
async def test_redirect_to_private_or_smuggled_address_is_denied(
    serve: Serve, location: str
) -> None:
    origin = serve(lambda r: Reply(301, headers={"location": location.format(port=origin.port)}))
    async with client([f"http://localhost:{origin.port}"]) as c:
        await denied(c.send("GET", f"http://localhost:{origin.port}/", [], None))
    assert len(origin.requests) == 1  # the redirect was not followed back, or anywhere


async def test_redirect_to_declared_name_resolving_to_private_address_is_denied(
    serve: Serve,
) -> None:
    origin = serve(lambda r: Reply(307, headers={"location": "http://internal.example/admin"}))
    resolver = FakeResolver({"localhost": ["127.0.0.1"], "internal.example": ["10.0.0.5"]})
    async with client(
        [f"http://localhost:{origin.port}", "http://internal.example"], resolver
    ) as c:
        error = await denied(c.send("GET", f"http://localhost:{origin.port}/", [], None))
    assert "10.0.0.5" in error.message and "private" in error.message
    assert ("internal.example", 80) in resolver.calls


async def test_redirects_are_followed_hop_by_hop(serve: Serve) -> None:
    final = serve(lambda r: Reply(body=f"{r.method} {r.path} {r.body.decode()}"))

    def hop(r: Recorded) -> Reply:
        if r.path == "/307":
            return Reply(307, headers={"location": "/308"})
        if r.path == "/308":
            return Reply(308, headers={"location": "/303"})
        if r.path == "/303":
            return Reply(303, headers={"location": f"http://127.0.0.1:{final.port}/done"})
        return Reply(404)

    origin = serve(hop)
    async with client([f"http://localhost:{origin.port}", f"http://127.0.0.1:{final.port}"]) as c:
        response = await c.send(
            "POST",
            f"http://localhost:{origin.port}/307",
            [("content-type", "application/json")],
            '{"a": 1}',
        )
        assert await response.text() == "GET /done "
        assert c.requests_made == 4
    assert [(r.method, r.path, r.body) for r in origin.requests] == [
        ("POST", "/307", b'{"a": 1}'),
        ("POST", "/308", b'{"a": 1}'),
        ("POST", "/303", b'{"a": 1}'),
    ]
    assert final.requests[0].body == b""
    assert "content-type" not in final.requests[0].headers


@pytest.mark.parametrize("status", [301, 302])
async def test_301_and_302_become_get_without_body(serve: Serve, status: int) -> None:
    def handler(r: Recorded) -> Reply:
        if r.path == "/old":
            return Reply(status, headers={"location": "/new"})
        return Reply(body=f"{r.method} {len(r.body)}")

    server = serve(handler)
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send("POST", f"http://localhost:{server.port}/old", [], "payload")
        assert await response.text() == "GET 0"


async def test_redirect_loop_stops_at_the_limit(serve: Serve) -> None:
    server = serve(lambda r: Reply(302, headers={"location": r.path + "x"}))
    async with client([f"http://localhost:{server.port}"], max_redirects=3) as c:
        error = await denied(c.send("GET", f"http://localhost:{server.port}/", [], None), "limit")
    assert "3 redirects" in error.message
    assert len(server.requests) == 4


# ---------------------------------------------------------------------------------------------
# secrets


async def test_placeholder_in_url_or_body_is_denied(serve: Serve) -> None:
    server = serve(ok())
    base = f"http://localhost:{server.port}"
    async with client([base]) as c:
        for url, body in [
            (f"{base}/?key={{{{secret:API_KEY}}}}", None),
            (f"{base}/{{{{secret:API_KEY}}}}", None),
            (f"{base}/?key=" + quote("{{secret:API_KEY}}", safe=""), None),
            (f"{base}/", '{"key": "{{secret:API_KEY}}"}'),
            (f"{base}/", "{{secret:NOT_DECLARED}}"),
        ]:
            error = await denied(c.send("POST", url, [], body))
            assert "only appear in a header value" in error.message
    assert server.connections == 0


async def test_undeclared_secret_is_denied(serve: Serve) -> None:
    server = serve(ok())
    async with client([f"http://localhost:{server.port}"]) as c:
        error = await denied(
            c.send(
                "GET",
                f"http://localhost:{server.port}/",
                [("authorization", "Bearer {{secret:AWS_SECRET}}")],
                None,
            )
        )
    assert "'AWS_SECRET'" in error.message
    assert server.connections == 0


async def test_secret_to_undeclared_origin_is_denied_before_substitution(serve: Serve) -> None:
    server = serve(ok())
    resolver = FakeResolver({"localhost": ["127.0.0.1"], "evil.example": ["127.0.0.1"]})
    async with client([f"http://localhost:{server.port}"], resolver) as c:
        await denied(
            c.send(
                "GET",
                f"http://evil.example:{server.port}/",
                [("authorization", "Bearer {{secret:API_KEY}}")],
                None,
            )
        )
    assert server.connections == 0


def echo_secret(r: Recorded) -> Reply:
    """A server that echoes the credential back in every form it can think of."""
    auth = r.headers.get("authorization", "")
    key = auth.removeprefix("Bearer ")
    body = json.dumps({"you_sent": auth, "upper": key.upper(), "quoted": quote(key)})
    half = len(body) // 2
    return Reply(
        headers={"x-echo": auth, "x-key-" + key.lower(): "1", "content-type": "application/json"},
        chunks=[body[:half], body[half:-3], body[-3:]],
    )


async def test_secret_is_substituted_for_the_allowed_origin_and_never_echoed_back(
    serve: Serve,
) -> None:
    server = serve(echo_secret)
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send(
            "GET",
            f"http://localhost:{server.port}/",
            [("Authorization", "Bearer {{secret:API_KEY}}"), ("x-plain", "{{secret:}}")],
            None,
        )
        chunks = []
        while (chunk := await response.next_chunk()) is not None:
            chunks.append(chunk)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[0].headers["x-plain"] == "{{secret:}}"
    seen = json.dumps(response.headers) + "".join(chunks)
    for form in (KEY, KEY.lower(), KEY.upper(), quote(KEY), KEY[: len(KEY) // 2 + 1]):
        assert form not in seen
    body = json.loads("".join(chunks))
    assert body == {"you_sent": f"Bearer {REDACTED}", "upper": REDACTED, "quoted": REDACTED}
    assert ("x-echo", f"Bearer {REDACTED}") in response.headers
    assert (f"x-key-{REDACTED}", "1") in response.headers


@pytest.mark.parametrize("encoding", ["", "gzip"])
async def test_the_guest_is_not_told_the_length_of_a_body_that_held_a_secret(
    serve: Serve, encoding: str
) -> None:
    """The guest gets the body decoded and scrubbed, so the upstream's framing headers would
    describe bytes it never sees; `content-length` would also give away how long the scrubbed
    secret was (the body's length with the key, minus its length with the placeholder)."""

    def answer(r: Recorded) -> Reply:
        body = json.dumps({"you_sent": r.headers.get("authorization", "")}).encode()
        headers = {"content-type": "application/json"}
        if encoding:
            return Reply(
                body=gzip.compress(body), headers={**headers, "content-encoding": encoding}
            )
        return Reply(body=body, headers=headers)

    server = serve(answer)
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send(
            "GET",
            f"http://localhost:{server.port}/",
            [("Authorization", "{{secret:API_KEY}}")],
            None,
        )
        text = await response.text()
    assert json.loads(text) == {"you_sent": REDACTED}
    names = {name.lower() for name, _ in response.headers}
    assert not names & {"content-length", "content-encoding", "transfer-encoding"}
    assert "content-type" in names


@pytest.mark.parametrize("cut", range(1, len(KEY)))
def test_secret_split_at_any_chunk_boundary_is_scrubbed(cut: int) -> None:
    stream = SecretScrubber([KEY]).stream()
    text = f"before {KEY} after"
    at = len("before ") + cut
    out = stream.feed(text[:at]) + stream.feed(text[at:]) + stream.finish()
    assert out == f"before {REDACTED} after"


def test_what_the_stream_scrubber_releases_never_depends_on_the_secret() -> None:
    """The chunk-split oracle: a guest that makes an allowed origin echo a guess must not learn
    whether its guess starts the secret from where its chunks split."""
    scrubber = SecretScrubber([KEY])
    for k in range(1, len(KEY)):
        guess, wrong = KEY[:k], "Q" * k
        seen: list[list[int]] = []
        for text in (guess, wrong, guess.lower()):
            stream = scrubber.stream()
            sizes = [len(stream.feed("hello " + text)), len(stream.feed(" and more"))]
            sizes.append(len(stream.release()))
            seen.append(sizes)
        assert seen[0] == seen[1] == seen[2], (k, seen)


@pytest.mark.parametrize("cut", range(1, 40))
def test_a_secret_split_across_chunks_is_scrubbed(cut: int) -> None:
    stream = SecretScrubber([KEY]).stream()
    text = f"data: {KEY} end"
    out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.finish()
    assert out == f"data: {REDACTED} end"


def _forms(secret: str) -> list[str]:
    raw = secret.encode()
    standard = base64.b64encode(raw).decode()
    return [
        secret,
        secret.upper(),
        json.dumps(secret)[1:-1],
        secret.replace("/", "\\/"),  # PHP, Go's HTML-safe JSON
        "".join(f"\\u{ord(c):04x}" for c in secret),
        "".join(f"\\u{ord(c):04X}" for c in secret),
        secret[:5] + "".join(f"\\u{ord(c):04x}" for c in secret[5:9]) + secret[9:],  # mixed
        json.dumps(json.dumps(secret))[3:-3],  # JSON inside JSON
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret, safe="").lower(),
        "".join(f"%{b:02X}" for b in raw),  # every byte encoded
        "".join(f"&#{ord(c)};" for c in secret),
        "".join(f"&#x{ord(c):x};" for c in secret),
        standard,
        standard.rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        standard.replace("/", "\\/"),
    ]


@pytest.mark.parametrize("index", range(len(_forms(KEY + "/x+y"))))
def test_every_form_a_benign_server_writes_a_secret_in_is_scrubbed(index: int) -> None:
    secret = KEY + "/x+y"
    form = _forms(secret)[index]
    scrubber = SecretScrubber([secret])
    assert scrubber.scrub(f"<{form}>") == f"<{REDACTED}>", form
    # and in a stream cut at every place
    for cut in range(0, len(form) + 2, 7):
        text = f"<{form}>"
        stream = scrubber.stream()
        out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.finish()
        assert out == f"<{REDACTED}>", (form, cut)


def test_scrubber_passes_text_through_and_ignores_short_values() -> None:
    scrubber = SecretScrubber(["abc", ""])
    assert not scrubber
    stream = scrubber.stream()
    assert stream.feed("abc abc") == "abc abc"
    assert stream.finish() == ""
    assert SecretScrubber([KEY]).scrub(f'"{KEY}"') == f'"{REDACTED}"'


async def test_secret_headers_are_dropped_on_cross_origin_redirect(serve: Serve) -> None:
    other = serve(ok("other"))

    def first(r: Recorded) -> Reply:
        if r.path == "/same":
            return Reply(307, headers={"location": "/cross"})
        return Reply(307, headers={"location": f"http://127.0.0.1:{other.port}/landed"})

    origin = serve(first)
    async with client([f"http://localhost:{origin.port}", f"http://127.0.0.1:{other.port}"]) as c:
        response = await c.send(
            "GET",
            f"http://localhost:{origin.port}/same",
            [
                ("authorization", "Bearer {{secret:API_KEY}}"),
                ("x-api-key", "{{secret:OTHER}}"),
                ("cookie", "session=1"),
                ("x-trace", "keep-me"),
            ],
            None,
        )
        assert await response.text() == "other"
    # same-origin hop keeps the secrets
    assert [r.headers.get("authorization") for r in origin.requests] == [f"Bearer {KEY}"] * 2
    assert origin.requests[1].headers["x-api-key"] == "other-secret-value-42"
    # the cross-origin hop gets none of them
    landed = other.requests[0].headers
    assert "authorization" not in landed and "x-api-key" not in landed and "cookie" not in landed
    assert landed["x-trace"] == "keep-me"


async def test_secret_in_a_redirect_location_does_not_reach_the_error_message(
    serve: Serve,
) -> None:
    def leak(r: Recorded) -> Reply:
        key = r.headers["authorization"].removeprefix("Bearer ")
        return Reply(302, headers={"location": f"http://{key}.evil.example/{key}"})

    server = serve(leak)
    async with client([f"http://localhost:{server.port}"]) as c:
        error = await denied(
            c.send(
                "GET",
                f"http://localhost:{server.port}/",
                [("authorization", "Bearer {{secret:API_KEY}}")],
                None,
            )
        )
    assert REDACTED in error.message
    assert KEY.lower() not in error.message.lower()


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("short", "invalid-request", "shorter than"),
        ("line\r\nX-Injected: 1", "invalid-request", "not allowed in a header"),
    ],
)
async def test_unsafe_secret_values_are_not_sent(
    serve: Serve, value: str, kind: str, message: str
) -> None:
    server = serve(ok())
    c = GuardedClient(
        EgressPolicy.parse([f"http://localhost:{server.port}"]),
        {"K": Secret(value)},
        resolver=FakeResolver({"localhost": ["127.0.0.1"]}),
    )
    async with c:
        error = await denied(
            c.send("GET", f"http://localhost:{server.port}/", [("x-k", "{{secret:K}}")], None),
            kind,
        )
    assert message in error.message
    assert server.connections == 0


def test_placeholder_pattern() -> None:
    assert SECRET_PLACEHOLDER.findall("a {{secret:A_1}} b {{secret:_x}}") == ["A_1", "_x"]
    assert SECRET_PLACEHOLDER.findall("{{secret:1A}} {{secret:}} {{ secret:A }}") == []


# ---------------------------------------------------------------------------------------------
# headers and methods


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (("Host", "api.example.com"), "denied"),
        (("host", "localhost"), "denied"),
        (("Transfer-Encoding", "chunked"), "invalid-request"),
        (("connection", "upgrade"), "invalid-request"),
        (("Content-Length", "5"), "invalid-request"),
        (("upgrade", "websocket"), "invalid-request"),
        (("proxy-authorization", "Basic x"), "invalid-request"),
        (("x-ok", "a\r\nHost: evil.example"), "invalid-request"),
        (("x-ok", "a\nb"), "invalid-request"),
        (("x-ok", "a\x00b"), "invalid-request"),
        (("bad header", "x"), "invalid-request"),
        (("x:colon", "x"), "invalid-request"),
        (("{{secret:API_KEY}}", "x"), "denied"),
    ],
)
async def test_forbidden_headers_are_refused(
    serve: Serve, header: tuple[str, str], kind: str
) -> None:
    server = serve(ok())
    async with client([f"http://localhost:{server.port}"]) as c:
        await denied(c.send("GET", f"http://localhost:{server.port}/", [header], None), kind)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ([("x-a", "b")] * (REQUEST_HEADERS + 1), f"at most {REQUEST_HEADERS} headers"),
        ([("x-a", "b")] * 300_000, f"at most {REQUEST_HEADERS} headers"),
        ([("x-big", "v" * REQUEST_HEADER_BYTES)], "headers may be at most"),
        ([(f"x-{i}", "v" * 1000) for i in range(70)], "headers may be at most"),
    ],
)
async def test_a_request_head_past_the_host_s_caps_is_refused_before_it_goes_out(
    serve: Serve, headers: list[tuple[str, str]], says: str
) -> None:
    server = serve(ok())
    async with client([f"http://localhost:{server.port}"]) as c:
        error = await denied(
            c.send("GET", f"http://localhost:{server.port}/", headers, None), "invalid-request"
        )
    assert says in str(error)
    assert server.connections == 0


async def test_a_head_just_within_the_caps_goes_out(serve: Serve) -> None:
    server = serve(ok())
    value = "v" * (REQUEST_HEADER_BYTES // REQUEST_HEADERS - 10)
    headers = [(f"x-{i:03}", value) for i in range(REQUEST_HEADERS)]
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", headers, None)
        assert await response.text() == "ok"
    assert server.requests[0].headers["x-127"] == value


async def test_a_url_past_the_host_s_cap_is_the_guest_s_error(serve: Serve) -> None:
    server = serve(ok())
    url = f"http://localhost:{server.port}/?q=" + "a" * REQUEST_URL_CHARS
    async with client([f"http://localhost:{server.port}"]) as c:
        error = await denied(c.send("GET", url, [], None), "invalid-request")
    assert "longer than" in str(error)
    assert server.connections == 0


@pytest.mark.parametrize("method", ["CONNECT", "TRACE", "GET / HTTP/1.1\r\n", ""])
async def test_unusual_methods_are_refused(serve: Serve, method: str) -> None:
    server = serve(ok())
    async with client([f"http://localhost:{server.port}"]) as c:
        await denied(
            c.send(method, f"http://localhost:{server.port}/", [], None), "invalid-request"
        )
    assert server.connections == 0


async def test_request_reaches_server_as_written(serve: Serve) -> None:
    server = serve(lambda r: Reply.json({"ok": True}, headers={"x-server": "1"}))
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send(
            "put",
            f"http://localhost:{server.port}/v1/ä%20b?q=ü&x=1#frag",
            [("content-type", "application/json"), ("x-multi", "1"), ("x-multi", "2")],
            '{"text": "héllo"}',
        )
        assert response.status == 200
        assert ("x-server", "1") in response.headers
        assert json.loads(await response.text()) == {"ok": True}
        assert await response.next_chunk() is None  # the body is consumed and closed
    (seen,) = server.requests
    assert seen.method == "PUT"
    assert seen.target == "/v1/%C3%A4%20b?q=%C3%BC&x=1"
    assert seen.body == '{"text": "héllo"}'.encode()
    assert seen.headers["content-length"] == str(len(seen.body))
    assert seen.headers["host"] == f"localhost:{server.port}"


# ---------------------------------------------------------------------------------------------
# limits and failures


async def test_request_count_limit(serve: Serve) -> None:
    server = serve(ok())
    async with client([f"http://localhost:{server.port}"], max_requests=2) as c:
        for _ in range(2):
            await (await c.send("GET", f"http://localhost:{server.port}/", [], None)).aclose()
        error = await denied(c.send("GET", f"http://localhost:{server.port}/", [], None), "limit")
        assert c.requests_made == 2
    assert "at most 2 HTTP requests" in error.message
    assert len(server.requests) == 2


async def test_redirect_hops_count_toward_the_request_limit(serve: Serve) -> None:
    server = serve(lambda r: Reply(302, headers={"location": r.path + "x"}))
    async with client([f"http://localhost:{server.port}"], max_requests=3) as c:
        await denied(c.send("GET", f"http://localhost:{server.port}/", [], None), "limit")
    assert len(server.requests) == 3


async def test_too_large_response(serve: Serve) -> None:
    server = serve(ok("x" * 5000))
    async with client([f"http://localhost:{server.port}"], max_response_bytes=1000) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        error = await denied(response.text(), "too-large")
        assert "1000 bytes" in error.message
        assert await response.next_chunk() is None  # closed after the breach


async def test_too_large_counts_all_responses_and_stops_a_stream(serve: Serve) -> None:
    server = serve(lambda r: Reply(chunks=["a" * 400] * 10))
    url = f"http://localhost:{server.port}/"
    async with client([f"http://localhost:{server.port}"], max_response_bytes=6000) as c:
        assert len(await (await c.send("GET", url, [], None)).text()) == 4000
        second = await c.send("GET", url, [], None)
        received = []
        with pytest.raises(HttpError) as info:
            while (chunk := await second.next_chunk()) is not None:
                received.append(chunk)
        assert info.value.kind == "too-large"
        assert 0 < len("".join(received)) <= 2000
        assert c.bytes_received > 6000


async def test_gzip_is_decoded_and_accept_encoding_is_the_hosts(serve: Serve) -> None:
    text = "data: hello\n\n" * 100
    server = serve(lambda r: Reply(body=gzip.compress(text.encode()), headers=GZIP))
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send(
            "GET", f"http://localhost:{server.port}/", [("accept-encoding", "br")], None
        )
        assert await response.text() == text
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/plain; charset=iso-8859-1", "café".encode("latin-1"), "café"),
        ('text/plain; CHARSET="ISO-8859-1"', "café".encode("latin-1"), "café"),
        ("application/json", "café ✓".encode(), "café ✓"),
        ("text/plain; charset=no-such-codec", "café".encode(), "café"),
        ("text/plain", b"caf\xe9", "caf\ufffd"),
    ],
)
async def test_the_body_is_decoded_by_its_charset_or_as_utf8(
    serve: Serve, content_type: str, body: bytes, text: str
) -> None:
    server = serve(lambda r: Reply(body=body, headers={"content-type": content_type}))
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        assert await response.text() == text


async def test_compression_bomb_is_stopped_at_the_byte_limit(serve: Serve) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    server = serve(lambda r: Reply(body=bomb, headers=GZIP))
    async with client([f"http://localhost:{server.port}"], max_response_bytes=1_000_000) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        await denied(response.text(), "too-large")
        # never inflated more than one byte past the limit, whatever the ratio
        assert c.bytes_received == 1_000_001


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
async def test_unknown_content_encoding_is_refused(serve: Serve, encoding: str) -> None:
    server = serve(lambda r: Reply(body=b"\x00\x01", headers={"content-encoding": encoding}))
    async with client([f"http://localhost:{server.port}"]) as c:
        error = await denied(c.send("GET", f"http://localhost:{server.port}/", [], None), "other")
    assert "content-encoding" in error.message


async def test_corrupt_gzip_is_an_error(serve: Serve) -> None:
    server = serve(lambda r: Reply(body=b"not gzip at all", headers=GZIP))
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        await denied(response.text(), "other")


async def test_timeout_maps_to_timeout(serve: Serve) -> None:
    server = serve(lambda r: Reply(body="late", delay=2.0))
    async with client([f"http://localhost:{server.port}"], timeout=0.2) as c:
        error = await denied(
            c.send(
                "GET",
                f"http://localhost:{server.port}/",
                [("authorization", "Bearer {{secret:API_KEY}}")],
                None,
            ),
            "timeout",
        )
    assert "timed out" in error.message


async def test_stream_read_timeout_maps_to_timeout(serve: Serve) -> None:
    server = serve(lambda r: Reply(chunks=["one", "two"], chunk_delay=1.0))
    async with client([f"http://localhost:{server.port}"], timeout=0.3) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        assert await response.next_chunk() == "one"
        await denied(response.next_chunk(), "timeout")


async def test_connection_refused_maps_to_connect() -> None:
    port = free_port()
    async with client([f"http://127.0.0.1:{port}"]) as c:
        error = await denied(c.send("GET", f"http://127.0.0.1:{port}/", [], None), "connect")
    assert f"127.0.0.1:{port}" in error.message


async def test_cut_stream_maps_to_connect(serve: Serve) -> None:
    server = serve(lambda r: Reply(chunks=["one", "two", "three"], cut_after=1))
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        assert await response.next_chunk() == "one"
        await denied(response.next_chunk(), "connect")


async def test_unresolvable_name_maps_to_connect() -> None:
    async with client(["https://nowhere.example"], FakeResolver({})) as c:
        error = await denied(c.send("GET", "https://nowhere.example/", [], None), "connect")
    assert "could not resolve nowhere.example" in error.message


async def test_system_resolver_reaches_localhost(serve: Serve) -> None:
    server = serve(ok("system"))
    policy = EgressPolicy.parse([f"http://localhost:{server.port}"])
    async with GuardedClient(policy, {}) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        assert await response.text() == "system"


async def test_second_address_is_tried_when_the_first_refuses(serve: Serve) -> None:
    server = serve(ok("second"))
    # Both addresses pass the check; nothing listens on 127.0.0.2 (the server binds 127.0.0.1).
    resolver = FakeResolver({"localhost": ["127.0.0.2", "127.0.0.1"]})
    async with client([f"http://localhost:{server.port}"], resolver) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        assert await response.text() == "second"


def _httpx_errors(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _httpx_errors(sub)
    return found


EXPECTED_KINDS = {
    httpx.ConnectTimeout: "timeout",
    httpx.ReadTimeout: "timeout",
    httpx.WriteTimeout: "timeout",
    httpx.PoolTimeout: "timeout",
    httpx.TimeoutException: "timeout",
    httpx.ConnectError: "connect",
    httpx.ReadError: "connect",
    httpx.WriteError: "connect",
    httpx.CloseError: "connect",
    httpx.NetworkError: "connect",
    httpx.RemoteProtocolError: "connect",
    httpx.LocalProtocolError: "invalid-request",
    httpx.DecodingError: "other",
}


@pytest.mark.parametrize(
    "exc_type", sorted(_httpx_errors(httpx.HTTPError), key=lambda c: c.__name__)
)
def test_every_httpx_exception_maps_to_a_kind_without_secrets(exc_type: type) -> None:
    request = httpx.Request("GET", f"https://api.example.com/?k={KEY}")
    text = f"failed for https://api.example.com/?k={KEY} with {KEY}"
    if exc_type is httpx.HTTPStatusError:
        exc = exc_type(text, request=request, response=httpx.Response(500, request=request))
    elif issubclass(exc_type, httpx.RequestError):
        exc = exc_type(text, request=request)
    else:
        exc = exc_type(text)
    error = client(["https://api.example.com"])._mapped(exc, "requesting https://api.example.com")
    assert error.kind == EXPECTED_KINDS.get(exc_type, "other")
    assert KEY not in error.message and "?k=" not in error.message
    assert exc_type.__name__ in error.message


# ---------------------------------------------------------------------------------------------
# streaming


async def test_chunks_decode_utf8_split_across_boundaries(serve: Serve) -> None:
    text = "data: héllo wörld 😀\n\n" * 3
    raw = text.encode()
    server = serve(lambda r: Reply(chunks=[raw[i : i + 5] for i in range(0, len(raw), 5)]))
    policy = EgressPolicy.parse([f"http://localhost:{server.port}"])
    resolver = FakeResolver({"localhost": ["127.0.0.1"]})
    async with GuardedClient(policy, {}, resolver=resolver) as c:  # no secret: no hold-back
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        chunks = []
        while (chunk := await response.next_chunk()) is not None:
            assert "\ufffd" not in chunk
            chunks.append(chunk)
    assert "".join(chunks) == text
    assert len(chunks) > 3


async def test_a_slow_stream_is_not_delayed_by_the_scrubbers_window(serve: Serve) -> None:
    """With a secret configured the last `window` characters wait for more text, but only
    until the upstream goes quiet: each slow event still arrives on its own."""
    events = [f"data: event {i}\n\n" for i in range(4)]
    server = serve(lambda r: Reply.sse(events, chunk_delay=0.3))
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
        arrivals: list[tuple[float, str]] = []
        loop = asyncio.get_running_loop()
        while (chunk := await response.next_chunk()) is not None:
            arrivals.append((loop.time(), chunk))
    assert "".join(text for _, text in arrivals) == "".join(events)
    assert len(arrivals) >= 4
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert all(gap > 0.15 for gap in gaps[:3]), gaps  # one by one, not held to the end


async def test_secret_split_across_stream_chunks_is_scrubbed(serve: Serve) -> None:
    def handler(r: Recorded) -> Reply:
        key = r.headers["x-api-key"]
        line = f"data: {key}\n\n"
        return Reply(chunks=[line[:9], line[9:14], line[14:]])

    server = serve(handler)
    async with client([f"http://localhost:{server.port}"]) as c:
        response = await c.send(
            "GET", f"http://localhost:{server.port}/", [("x-api-key", "{{secret:API_KEY}}")], None
        )
        chunks = []
        while (chunk := await response.next_chunk()) is not None:
            chunks.append(chunk)
    assert "".join(chunks) == f"data: {REDACTED}\n\n"
    assert not any(KEY[:6] in chunk for chunk in chunks)


async def test_client_close_closes_open_responses(serve: Serve) -> None:
    server = serve(lambda r: Reply(chunks=["a", "b"], chunk_delay=0.05))
    c = client([f"http://localhost:{server.port}"])
    response = await c.send("GET", f"http://localhost:{server.port}/", [], None)
    await c.aclose()
    assert await response.next_chunk() is None
    await denied(c.send("GET", f"http://localhost:{server.port}/", [], None), "other")


async def test_shared_transport_pool_reuses_connections(serve: Serve) -> None:
    server = serve(ok())
    pool = TransportPool()
    try:
        for _ in range(3):
            async with client([f"http://localhost:{server.port}"], transports=pool) as c:
                await (await c.send("GET", f"http://localhost:{server.port}/", [], None)).text()
    finally:
        await pool.aclose()
    assert len(server.requests) == 3
    assert server.connections == 1


# ---------------------------------------------------------------------------------------------
# TLS: the connection goes to the checked IP, the certificate is verified for the name


CERT = """-----BEGIN CERTIFICATE-----
MIIBvDCCAWKgAwIBAgIUDnuCnfeLEf/7Jp6JdKzJin82UB0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNTA2NTAyM1oYDzIxMjYxMTAx
MDY1MDIzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARbuRKAN9ajUPUht4m90ACw8GnKIPArGD/fYOSg2Dt9ADqnDk/SdNpa
tgMLe38B7mrO/WXo/v29GSnLBc0QdFtmo4GPMIGMMB0GA1UdDgQWBBRbZKZJmumQ
1uUKtijdi4iHLcuaiDAfBgNVHSMEGDAWgBRbZKZJmumQ1uUKtijdi4iHLcuaiDAP
BgNVHRMBAf8EBTADAQH/MBQGA1UdEQQNMAuCCWxvY2FsaG9zdDAOBgNVHQ8BAf8E
BAMCAoQwEwYDVR0lBAwwCgYIKwYBBQUHAwEwCgYIKoZIzj0EAwIDSAAwRQIhALt1
3Cw7BAQM5XgEl3qQqcncIzXc42lDQJbi5ILwhqYYAiAii4vrPMW5+fbnC0+xhAMb
70Qne2TEVfeST/8G3S347w==
-----END CERTIFICATE-----
"""
# A throwaway key for the certificate above (CN and SAN localhost only, no IP address).
TEST_ONLY_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8Cakc78LZIsjDyW5
XoELL9gbzKO6PLxaDnMhikASTWKhRANCAARbuRKAN9ajUPUht4m90ACw8GnKIPAr
GD/fYOSg2Dt9ADqnDk/SdNpatgMLe38B7mrO/WXo/v29GSnLBc0QdFtm
-----END PRIVATE KEY-----
"""


class TlsServer(LoopbackServer):
    def __init__(self, handler: Callable[[Recorded], Reply], context: ssl.SSLContext) -> None:
        super().__init__(handler)
        self.context = context

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]


@pytest.fixture
def tls_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "cert.pem").write_text(CERT)
    (tmp_path / "key.pem").write_text(TEST_ONLY_KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc]
    with TlsServer(ok("secure"), context) as server:
        server.sni_names = names  # type: ignore[attr-defined]
        yield server


def trusting_pool() -> TransportPool:
    context = ssl.create_default_context(cadata=CERT)
    return TransportPool(ssl_context=context)


async def test_https_connects_to_the_checked_ip_with_the_name_as_sni(tls_server: TlsServer) -> None:
    pool = trusting_pool()
    resolver = FakeResolver({"localhost": ["127.0.0.1"]})
    try:
        async with client([f"https://localhost:{tls_server.port}"], resolver, transports=pool) as c:
            response = await c.send("GET", f"https://localhost:{tls_server.port}/tls", [], None)
            assert await response.text() == "secure"
    finally:
        await pool.aclose()
    assert tls_server.sni_names == ["localhost"]  # type: ignore[attr-defined]
    assert tls_server.requests[0].headers["host"] == f"localhost:{tls_server.port}"


async def test_https_certificate_is_verified(tls_server: TlsServer) -> None:
    # The certificate names localhost, not 127.0.0.1: an IP-literal request must fail to verify.
    pool = trusting_pool()
    try:
        async with client([f"https://127.0.0.1:{tls_server.port}"], transports=pool) as c:
            await denied(
                c.send("GET", f"https://127.0.0.1:{tls_server.port}/", [], None), "connect"
            )
        # and without trusting the test certificate at all, the name fails too
        async with client([f"https://localhost:{tls_server.port}"]) as c:
            await denied(
                c.send("GET", f"https://localhost:{tls_server.port}/", [], None), "connect"
            )
    finally:
        await pool.aclose()
    assert tls_server.requests == []


async def test_a_secret_bound_to_an_origin_is_refused_for_any_other(serve: Serve) -> None:
    bound_to = serve(lambda r: Reply(body=r.headers.get("authorization", "none")))
    other = serve(lambda r: Reply(body=r.headers.get("authorization", "none")))
    a, b = f"http://localhost:{bound_to.port}", f"http://127.0.0.1:{other.port}"
    origins = {"API_KEY": EgressPolicy.parse([a])}
    resolver = FakeResolver({"localhost": ["127.0.0.1"]})
    async with client([a, b], resolver, secret_origins=origins) as c:
        header = [("authorization", "Bearer {{secret:API_KEY}}")]
        response = await c.send("GET", a + "/", header, None)
        assert await response.text() == f"Bearer {REDACTED}"  # sent, and scrubbed on the way back
        error = await denied(c.send("GET", b + "/", header, None))
        assert error.message == (
            f"secret 'API_KEY' may only be sent to {a} (secrets.API_KEY.origins in the "
            f"manifest), not to {b}"
        )
        # an unbound secret still goes to any allowed origin
        response = await c.send("GET", b + "/", [("x-other", "{{secret:OTHER}}")], None)
        assert await response.text() == "none"
    assert [r.headers.get("authorization") for r in other.requests] == [None]
    assert bound_to.requests[0].headers["authorization"] == f"Bearer {KEY}"
