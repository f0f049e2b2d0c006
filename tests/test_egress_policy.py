# ruff: noqa: RUF001, RUF003 (lookalike characters are the point of these tests)
"""The egress allow-list: spelling -> parsed origin tables, allow/deny URL pairs, address checks.

Hostile spellings first. Everything here is pure (no DNS, no sockets).
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from openkoi.plugins._egress import (
    AllowedOrigin,
    EgressPolicy,
    OriginSyntaxError,
    UrlError,
    address_allowed,
    is_special_address,
    parse_url,
)

POLICY = EgressPolicy.parse(
    [
        "https://api.example.com",
        "https://*.example.org",
        "http://127.0.0.1:8080",
        "http://[::1]:9000",
        "https://xn--bcher-kva.example",
        "http://localhost:3000",
        "https://apple.com",
    ]
)

# ---------------------------------------------------------------------------------------------
# hostile request URLs: every one must be denied


HOSTILE_URLS = [
    # userinfo: the real host is after the '@'
    "https://api.example.com@evil.com/",
    "https://api.example.com:443@evil.com/",
    "https://user:pass@api.example.com/",
    "https://@api.example.com/",
    # backslashes: WHATWG reads '\' as '/', urlsplit does not
    "https://evil.com\\@api.example.com/",
    "https://evil.com\\.api.example.com/",
    "https://api.example.com\\@evil.com/",
    # percent-encoded hosts
    "https://%61pi.example.com/",
    "https://api.example.com%2eevil.com/",
    "https://api%2Eexample%2Ecom/",
    "https://evil.com%2F@api.example.com/",
    # wildcard edges
    "https://example.org/",
    "https://evil-example.org/",
    "https://myexample.org/",
    "https://example.org.evil.com/",
    "https://a.example.org.evil.com/",
    "https://.example.org/",
    "https://a..example.org/",
    # scheme and port
    "http://api.example.com/",
    "https://api.example.com:8443/",
    "https://api.example.com:80/",
    "ftp://api.example.com/",
    "ws://api.example.com/",
    "file:///etc/passwd",
    "https:/api.example.com/",
    "https:api.example.com/",
    "//api.example.com/",
    "api.example.com/v1",
    "https://api.example.com:0/",
    "https://api.example.com:65536/",
    "https://api.example.com:+443/",
    "https://api.example.com:/",
    "https://api.example.com:４４３/",
    # loopback in every spelling, against a policy that allows 127.0.0.1 only on 8080
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://0177.1:8081/",
    "http://127.1/",
    "http://127.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]:8080/",
    "http://[::ffff:7f00:1]:8080/",
    "http://[0:0:0:0:0:ffff:7f00:1]:8080/",
    "http://[::127.0.0.1]:8080/",
    "http://localhost:8080/",
    "http://localhost./",
    "http://LOCALHOST/",
    # metadata and private addresses
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://[fd00::1]/",
    "http://[fe80::1%25eth0]/",
    "http://10.0.0.5/",
    "http://0/",
    "http://0.0.0.0:8080/",
    # malformed numeric hosts: not an address, not a name
    "http://1.2.3.4.5/",
    "http://09.1.1.1/",
    "http://0x/",
    "http://256.1.1.1/",
    "http://1.2.3.256.0/",
    "http://example.123/",
    "http://4294967296/",
    # IDN lookalikes: Cyrillic 'а' in apple.com, and an ASCII spelling of a unicode host
    "https://аpple.com/",
    "https://xn--pple-43d.com/",
    "https://bucher.example/",
    # characters that normalize into authority delimiters
    "https://evil.com／.api.example.com/",
    "https://api.example.com＠evil.com/",
    "https://evil.com：443/",
    # whitespace and control characters
    " https://api.example.com/",
    "https://api.example.com /",
    "https://api.exa\tmple.com/",
    "https://api.example.com/\r\nHost: evil.com",
    "https://api.exa\x00mple.com/",
    "https://api.example.com\u00a0/",
    # brackets and IPvFuture
    "http://[::1/",
    "http://[::1]x/",
    "http://[v1.fe]/",
    "http://::1/",
    "http://[127.0.0.1]:8080/",
    # empty things
    "",
    "https://",
    "https:///path",
    "https://:443/",
    "https://api.example.com../",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_are_denied(url: str) -> None:
    decision = POLICY.check(url)
    assert not decision.allowed, decision
    assert decision.origin is None
    assert decision.reason


@pytest.mark.parametrize(
    ("url", "reason_part"),
    [
        ("https://api.example.com@evil.com/", "user info"),
        ("https://evil.com\\@api.example.com", "backslash"),
        ("https://%61pi.example.com/", "percent-encoded"),
        ("ftp://api.example.com/", "'ftp' is not allowed"),
        ("https://api.example.com:99999/", "port"),
        ("http://1.2.3.4.5/", "not a valid IPv4 address"),
        ("https://a b.com/", "whitespace"),
        ("http://[v1.fe]/", "IPv6"),
        ("api.example.com", "scheme"),
    ],
)
def test_unparsable_urls_are_denied_with_a_reason(url: str, reason_part: str) -> None:
    decision = POLICY.check(url)
    assert not decision.allowed
    assert reason_part in decision.reason
    assert decision.suggestion == ""  # nothing sensible to allow
    assert decision.target is None


# ---------------------------------------------------------------------------------------------
# allow/deny pairs


@pytest.mark.parametrize(
    ("url", "allowed_by"),
    [
        ("https://api.example.com/v1/chat", "https://api.example.com"),
        ("https://api.example.com", "https://api.example.com"),
        ("https://api.example.com:443/", "https://api.example.com"),
        ("https://API.EXAMPLE.COM/x", "https://api.example.com"),
        ("HTTPS://Api.Example.Com./x", "https://api.example.com"),
        ("https://api.example.com?q=1", "https://api.example.com"),
        ("https://api.example.com/a#frag", "https://api.example.com"),
        ("https://api.example.com//evil.com/@x", "https://api.example.com"),
        ("https://a.example.org/", "https://*.example.org"),
        ("https://a.b.c.example.org/", "https://*.example.org"),
        ("https://A.EXAMPLE.ORG./", "https://*.example.org"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://2130706433:8080/", "http://127.0.0.1:8080"),
        ("http://0x7f.1:8080/", "http://127.0.0.1:8080"),
        ("http://0177.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.1:8080/", "http://127.0.0.1:8080"),
        ("http://0x7F.0x0.0x0.0x1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1.:8080/", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("http://[0:0:0:0:0:0:0:1]:9000/", "http://[::1]:9000"),
        ("http://[0000::0001]:9000/", "http://[::1]:9000"),
        ("https://bücher.example/", "https://xn--bcher-kva.example"),
        ("https://BÜCHER.example/", "https://xn--bcher-kva.example"),
        ("https://XN--BCHER-KVA.example/", "https://xn--bcher-kva.example"),
        ("https://bücher。example/", "https://xn--bcher-kva.example"),
        ("https://ａｐｐｌｅ.com/", "https://apple.com"),
        ("http://localhost:3000/", "http://localhost:3000"),
        ("http://LocalHost.:3000/", "http://localhost:3000"),
    ],
)
def test_allowed_urls(url: str, allowed_by: str) -> None:
    decision = POLICY.check(url)
    assert decision.allowed, decision.reason
    assert decision.origin is not None
    assert decision.origin.normalized == allowed_by
    assert decision.suggestion == ""


@pytest.mark.parametrize(
    ("url", "suggestion"),
    [
        ("https://api.other.com/v1?x=1", 'network.allow = ["https://api.other.com"]'),
        ("https://API.Other.com.:8443/", 'network.allow = ["https://api.other.com:8443"]'),
        ("http://api.example.com/", 'network.allow = ["http://api.example.com"]'),
        ("https://example.org/", 'network.allow = ["https://example.org"]'),
        ("http://2130706433/", 'network.allow = ["http://127.0.0.1"]'),
        ("http://[::ffff:127.0.0.1]/", 'network.allow = ["http://[::ffff:7f00:1]"]'),
        ("https://аpple.com/", 'network.allow = ["https://xn--pple-43d.com"]'),
        ("http://localhost:80/", 'network.allow = ["http://localhost"]'),
    ],
)
def test_denial_suggests_the_manifest_line(url: str, suggestion: str) -> None:
    decision = POLICY.check(url)
    assert not decision.allowed
    assert decision.suggestion == suggestion
    assert "not in network.allow" in decision.reason


def test_empty_allow_list_denies_everything() -> None:
    policy = EgressPolicy.parse([])
    assert policy.origins == ()
    for url in ("https://api.example.com/", "http://127.0.0.1/", "http://localhost/"):
        decision = policy.check(url)
        assert not decision.allowed
        assert "network.allow is empty" in decision.reason
        assert decision.suggestion.startswith("network.allow = [")


# ---------------------------------------------------------------------------------------------
# origin spellings -> parsed values


def _o(scheme: str, host: str, port: int, original: str, wildcard: bool = False) -> AllowedOrigin:
    return AllowedOrigin(scheme, host, port, wildcard, original)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("https://api.example.com", _o("https", "api.example.com", 443, "https://api.example.com")),
        ("http://api.example.com", _o("http", "api.example.com", 80, "http://api.example.com")),
        (
            "https://api.example.com/",
            _o("https", "api.example.com", 443, "https://api.example.com/"),
        ),
        ("HTTPS://API.Example.COM", _o("https", "api.example.com", 443, "HTTPS://API.Example.COM")),
        (
            "https://api.example.com.",
            _o("https", "api.example.com", 443, "https://api.example.com."),
        ),
        (
            "https://api.example.com:8443",
            _o("https", "api.example.com", 8443, "https://api.example.com:8443"),
        ),
        (
            "http://api.example.com:443",
            _o("http", "api.example.com", 443, "http://api.example.com:443"),
        ),
        (
            "https://api.example.com:0443",
            _o("https", "api.example.com", 443, "https://api.example.com:0443"),
        ),
        ("https://*.example.com", _o("https", "example.com", 443, "https://*.example.com", True)),
        (
            "https://*.EXAMPLE.com:444",
            _o("https", "example.com", 444, "https://*.EXAMPLE.com:444", True),
        ),
        ("http://127.0.0.1:8080", _o("http", "127.0.0.1", 8080, "http://127.0.0.1:8080")),
        ("http://10.0.0.5", _o("http", "10.0.0.5", 80, "http://10.0.0.5")),
        ("http://[::1]:9000", _o("http", "[::1]", 9000, "http://[::1]:9000")),
        ("http://[0:0::1]", _o("http", "[::1]", 80, "http://[0:0::1]")),
        (
            "http://[::FFFF:127.0.0.1]",
            _o("http", "[::ffff:7f00:1]", 80, "http://[::FFFF:127.0.0.1]"),
        ),
        ("http://localhost:11434", _o("http", "localhost", 11434, "http://localhost:11434")),
        (
            "https://bücher.example",
            _o("https", "xn--bcher-kva.example", 443, "https://bücher.example"),
        ),
        (
            "https://xn--bcher-kva.example",
            _o("https", "xn--bcher-kva.example", 443, "https://xn--bcher-kva.example"),
        ),
        (
            "https://*.bücher.example",
            _o("https", "xn--bcher-kva.example", 443, "https://*.bücher.example", True),
        ),
        (
            "https://my_host.internal",
            _o("https", "my_host.internal", 443, "https://my_host.internal"),
        ),
    ],
)
def test_origin_spelling_parses_to(spelling: str, expected: AllowedOrigin) -> None:
    (origin,) = EgressPolicy.parse([spelling]).origins
    assert origin == expected


@pytest.mark.parametrize(
    ("spelling", "problem"),
    [
        ("api.example.com", "scheme is missing"),
        ("//api.example.com", "scheme is missing"),
        ("ftp://files.example.com", "'ftp' is not supported"),
        ("*://api.example.com", "scheme is missing"),
        ("https://api.example.com/v1", "no path"),
        ("https://api.example.com/v1/", "no path"),
        ("https://api.example.com?x=1", "no a query"),
        ("https://api.example.com#x", "no a fragment"),
        ("https://user@api.example.com", "no user name"),
        ("https://user:pw@api.example.com", "no user name"),
        ("https://*", "'*' alone"),
        ("https://*:443", "'*' alone"),
        ("https://*example.com", "leading label"),
        ("https://api.*.example.com", "leading label"),
        ("https://*.*.example.com", "leading label"),
        ("https://a*.example.com", "leading label"),
        ("https://*.com", "top-level domain"),
        ("https://*.localhost", "top-level domain"),
        ("https://*.127.0.0.1", "wildcard cannot apply to an IP"),
        ("https://api.example.com:*", "wildcards and ranges"),
        ("https://api.example.com:80-90", "wildcards and ranges"),
        ("https://api.example.com:0", "1 to 65535"),
        ("https://api.example.com:65536", "1 to 65535"),
        ("https://api.example.com:https", "1 to 65535"),
        ("https://api.example.com:", "port after ':' is empty"),
        ("http://2130706433", "dotted-decimal form, e.g. '127.0.0.1'"),
        ("http://0x7f.1", "dotted-decimal form, e.g. '127.0.0.1'"),
        ("http://0177.0.0.1", "dotted-decimal form, e.g. '127.0.0.1'"),
        ("http://127.1", "dotted-decimal form, e.g. '127.0.0.1'"),
        ("http://1.2.3.4.5", "last label is a number"),
        ("http://example.123", "last label is a number"),
        ("http://::1", "IPv6 address must be written in brackets"),
        ("http://[::1", "closing ']'"),
        ("http://[::1]x", "unexpected text"),
        ("http://[fe80::1%25eth0]", "zone"),
        ("http://[not-v6]", "not a valid IPv6"),
        ("https://%61pi.example.com", "percent-encoded"),
        ("https://api..example.com", "not a valid host name"),
        ("https://-api.example.com", "not a valid host name"),
        ("https://api.example.com\\", "backslash"),
        (" https://api.example.com", "spaces"),
        ("https://api.example.com\n", "spaces"),
        ("", "empty"),
        ("https://", "host is missing"),
    ],
)
def test_bad_origin_spellings_are_refused(spelling: str, problem: str) -> None:
    with pytest.raises(OriginSyntaxError) as info:
        EgressPolicy.parse([spelling])
    message = str(info.value)
    assert problem in message
    assert repr(spelling) in message  # quotes the original spelling


@pytest.mark.parametrize(
    ("spelling", "fix"),
    [
        ("api.example.com", '"https://api.example.com"'),
        ("https://api.example.com/v1", '"https://api.example.com"'),
        ("https://user:pw@api.example.com", '"https://api.example.com"'),
        ("https://*", '"https://*.example.com"'),
        ("http://0x7f.1:8080", "'127.0.0.1'"),
    ],
)
def test_origin_errors_say_how_to_fix(spelling: str, fix: str) -> None:
    with pytest.raises(OriginSyntaxError) as info:
        EgressPolicy.parse([spelling])
    assert fix in str(info.value)


def test_non_string_and_bare_string_allow_lists_are_refused() -> None:
    with pytest.raises(OriginSyntaxError, match="must be a string"):
        EgressPolicy.parse([42])  # type: ignore[list-item]
    with pytest.raises(OriginSyntaxError, match="must be a list"):
        EgressPolicy.parse("https://api.example.com")


def test_user_grants_are_marked_and_duplicates_collapse() -> None:
    policy = EgressPolicy.parse(
        ["https://api.example.com", "https://API.example.com:443"],
        user_granted=["http://127.0.0.1:8080", "https://api.example.com"],
    )
    assert [(o.normalized, o.user_granted) for o in policy.origins] == [
        ("https://api.example.com", False),
        ("http://127.0.0.1:8080", True),
    ]
    decision = policy.check("http://127.0.0.1:8080/v1")
    assert decision.allowed
    assert decision.origin is not None and decision.origin.user_granted


def test_exact_origin_is_preferred_over_wildcard() -> None:
    policy = EgressPolicy.parse(["https://*.example.com", "https://api.example.com"])
    decision = policy.check("https://api.example.com/")
    assert decision.origin is not None and not decision.origin.wildcard


# ---------------------------------------------------------------------------------------------
# AllowedOrigin.matches: pure, and re-normalizes its input


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "port", "expected"),
    [
        ("https://*.example.com", "https", "a.example.com", 443, True),
        ("https://*.example.com", "https", "example.com", 443, False),
        ("https://*.example.com", "https", "evil-example.com", 443, False),
        ("https://*.example.com", "https", "myexample.com", 443, False),
        ("https://*.example.com", "https", "example.com.evil.com", 443, False),
        ("https://*.example.com", "http", "a.example.com", 80, False),
        ("https://*.example.com", "https", "a.example.com", 8443, False),
        ("https://*.example.com", "HTTPS", "A.Example.COM.", 443, True),
        ("https://api.example.com", "https", "api.example.com", 443, True),
        ("https://api.example.com", "https", "api.example.com@evil.com", 443, False),
        ("https://api.example.com", "https", "a%70i.example.com", 443, False),
        ("http://127.0.0.1", "http", "127.1", 80, True),
        ("http://127.0.0.1", "http", "[::ffff:127.0.0.1]", 80, False),
        ("http://[::1]", "http", "[0::1]", 80, True),
        ("http://[::1]", "http", "::1", 80, False),
    ],
)
def test_matches(origin: str, scheme: str, host: str, port: int, expected: bool) -> None:
    (parsed,) = EgressPolicy.parse([origin]).origins
    assert parsed.matches(scheme, host, port) is expected


# ---------------------------------------------------------------------------------------------
# URL normalization


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7F.0X0.0.01", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("1.256", "1.0.1.0"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("10.0.0.5", "10.0.0.5"),
        ("012.0.0.05", "10.0.0.5"),
    ],
)
def test_ipv4_forms_are_canonicalized_like_inet_aton(spelling: str, canonical: str) -> None:
    target = parse_url(f"http://{spelling}/")
    assert target.host == canonical
    assert target.ip == ipaddress.IPv4Address(canonical)
    assert socket.inet_ntoa(socket.inet_aton(spelling)) == canonical


@pytest.mark.parametrize(
    ("url", "host", "port", "target"),
    [
        ("https://API.Example.com./v1?x=1#f", "api.example.com", 443, "/v1?x=1"),
        ("https://api.example.com", "api.example.com", 443, "/"),
        ("https://api.example.com?x", "api.example.com", 443, "/?x"),
        ("http://[::FFFF:127.0.0.1]:81/a", "[::ffff:7f00:1]", 81, "/a"),
        ("https://bücher.example/ä", "xn--bcher-kva.example", 443, "/ä"),
        ("https://h.example.com//x@y/z", "h.example.com", 443, "//x@y/z"),
    ],
)
def test_parse_url(url: str, host: str, port: int, target: str) -> None:
    parsed = parse_url(url)
    assert (parsed.host, parsed.port, parsed.target) == (host, port, target)


def test_parse_url_host_header_and_origin() -> None:
    assert parse_url("https://api.example.com:443/x").host_header == "api.example.com"
    assert parse_url("http://[::1]:8080/x").host_header == "[::1]:8080"
    assert parse_url("http://127.1:8080/").origin == "http://127.0.0.1:8080"
    assert parse_url("https://a.com/").dns_name == "a.com"
    assert parse_url("https://10.1/").dns_name is None
    with pytest.raises(UrlError):
        parse_url("https://a.com@b.com/")


# ---------------------------------------------------------------------------------------------
# addresses after DNS


SPECIAL = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.5",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.8",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%2",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "fec0::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.5",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "2002:7f00:1::",
    "2002:a9fe:a9fe::1",
    "2002:0a00:0005::",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1",
    "2001::1",
    "2001:db8::1",
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", SPECIAL)
def test_special_addresses_are_refused_for_a_name(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_special_address(ip)
    (origin,) = EgressPolicy.parse(["https://api.example.com"]).origins
    assert not address_allowed(origin, ip)
    (wild,) = EgressPolicy.parse(["https://*.example.com"]).origins
    assert not address_allowed(wild, ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed_for_a_name(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_special_address(ip)
    (origin,) = EgressPolicy.parse(["https://api.example.com"]).origins
    assert address_allowed(origin, ip)


@pytest.mark.parametrize(
    ("origin", "address", "expected"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", True),
        ("http://127.0.0.1:8080", "127.0.0.2", False),
        ("http://127.0.0.1:8080", "::ffff:127.0.0.1", False),
        ("http://127.0.0.1:8080", "::1", False),
        ("http://10.0.0.5", "10.0.0.5", True),
        ("http://10.0.0.5", "10.0.0.6", False),
        ("http://169.254.169.254", "169.254.169.254", True),
        ("http://[::1]:9000", "::1", True),
        ("http://[::1]:9000", "127.0.0.1", False),
        ("http://[::ffff:127.0.0.1]", "::ffff:127.0.0.1", True),
        ("http://localhost:3000", "127.0.0.1", True),
        ("http://localhost:3000", "127.8.9.10", True),
        ("http://localhost:3000", "::1", True),
        ("http://localhost:3000", "::ffff:127.0.0.1", True),
        ("http://localhost:3000", "10.0.0.5", False),
        ("http://localhost:3000", "169.254.169.254", False),
        ("http://localhost:3000", "0.0.0.0", False),
        ("http://localhost:3000", "93.184.216.34", False),
        ("https://*.example.com", "127.0.0.1", False),
        ("https://api.example.com", "127.0.0.1", False),
    ],
)
def test_address_allowed_when_named(origin: str, address: str, expected: bool) -> None:
    (parsed,) = EgressPolicy.parse([origin]).origins
    assert address_allowed(parsed, ipaddress.ip_address(address)) is expected


def test_policy_and_origin_reprs_are_readable() -> None:
    assert repr(POLICY).startswith("EgressPolicy(['https://api.example.com'")
    (origin,) = EgressPolicy.parse(["https://*.Example.com:8443"]).origins
    assert str(origin) == "https://*.example.com:8443"
    assert origin.ip is None
    (literal,) = EgressPolicy.parse(["http://[::1]"]).origins
    assert literal.ip == ipaddress.IPv6Address("::1")


def test_remembered_decisions_are_the_decisions() -> None:
    """`check` remembers its answers (it is pure): asked again, or after its memory was cleared
    by many other URLs, it answers as a fresh policy does."""
    policy = EgressPolicy.parse(["https://api.example.com", "https://*.example.org"])
    urls = [
        "https://api.example.com/v1/chat",
        "https://evil.example.net/",
        "https://a.example.org:443/x",
        "http://api.example.com/",
        "not a url",
        "https://api.example.com/" + "x" * 5000,
    ]
    first = [policy.check(url) for url in urls]
    for i in range(600):  # past the memory's bound: cleared and refilled
        policy.check(f"https://api.example.com/{i}")
    fresh = EgressPolicy.parse(["https://api.example.com", "https://*.example.org"])
    assert [policy.check(url) for url in urls] == first == [fresh.check(url) for url in urls]
    assert [d.allowed for d in first] == [True, False, True, False, False, True]
