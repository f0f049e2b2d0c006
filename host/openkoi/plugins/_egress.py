"""The egress allow-list: which network origins a plugin may reach. Pure; no DNS, no I/O.

A manifest's `network.allow` entries are parsed once into `AllowedOrigin`s (Spin's
`allowed_outbound_hosts` is the model): `scheme://host[:port]`, scheme required (http or https),
no path, query or userinfo, the port defaulting to the scheme's, `*` only as a leading `*.`
label, IP addresses only as canonical literals. An empty list denies everything.

Request URLs go through one strict parser, `parse_url`, that either yields the exact
(scheme, host, port) the host will connect to or refuses. It defeats the classic smuggling
spellings: userinfo (`https://allowed.com@evil.com`), backslashes, percent-encoded or unicode
lookalike hosts (IDN is normalized to punycode), uppercase and trailing dots, IPv4 in
decimal/octal/hex/short forms (canonicalized like `inet_aton` and treated as literals), and
IPv6 literals. The transport never re-parses the guest's URL: it connects to what was checked.

The name check is half the job. `address_allowed` is the other half, applied after DNS to the
address actually connected to: loopback, private, link-local and other special addresses are
refused unless the origin names that address literally (or is `localhost`, for loopback only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "AllowedOrigin",
    "Decision",
    "EgressPolicy",
    "IPAddress",
    "OriginSyntaxError",
    "RequestTarget",
    "UrlError",
    "address_allowed",
    "is_special_address",
    "parse_url",
    "suggestion_for",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
# WHATWG URL: a host whose last label is a number is an IPv4 address, whatever the rest.
_NUMERIC_LABEL = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
_CANONICAL_IPV4 = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_FULL_STOPS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# IANA special-purpose blocks that are not globally reachable, listed here so the verdict does not
# depend on which Python version's `ipaddress` tables are installed.
_SPECIAL_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_SPECIAL_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo among them
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


class OriginSyntaxError(ValueError):
    """A `network.allow` entry is not a valid origin; the message quotes it and says the fix."""

    def __init__(self, original: object, problem: str, fix: str = "") -> None:
        self.original = original
        self.problem = problem
        self.fix = fix
        shown = repr(original) if isinstance(original, str) else f"{original!r} (not a string)"
        message = f"network.allow entry {shown}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class UrlError(ValueError):
    """A request URL the policy cannot vouch for; `reason` says why (it never echoes the URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# hosts


class _HostError(ValueError):
    pass


def _parse_ipv4_whatwg(host: str) -> ipaddress.IPv4Address:
    """IPv4 in any form `inet_aton` and the WHATWG URL parser accept: `127.1`, `0x7f.1`, `0177.0.0.1`,
    `2130706433`. Each part is decimal, `0x` hex or `0`-prefixed octal; the last part fills the
    remaining bytes."""
    parts = host.split(".")
    if len(parts) > 4 or any(p == "" for p in parts):
        raise _HostError("it ends in a number but is not a valid IPv4 address")
    numbers: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                if len(part) == 2:
                    raise ValueError
                numbers.append(int(part[2:], 16))
            elif len(part) > 1 and part[0] == "0":
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            raise _HostError("it ends in a number but is not a valid IPv4 address") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise _HostError("it ends in a number but is not a valid IPv4 address")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True)
class _Host:
    text: str  # normalized: punycode DNS name, dotted-quad IPv4, or "[v6]"
    ip: IPAddress | None


def _normalize_host(raw: str, *, strict_literals: bool) -> _Host:
    """Lowercase, strip one trailing dot, IDN to punycode, canonicalize IP literals.

    `strict_literals` (manifest spelling): IPv4 must already be canonical dotted-quad.
    """
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise _HostError("an IPv6 address must be closed with ']'")
        inner = raw[1:-1]
        if "%" in inner:
            raise _HostError("IPv6 zone identifiers are not allowed")
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", inner):
            raise _HostError("it is not a valid IPv6 address")
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _HostError("it is not a valid IPv6 address") from None
        return _Host(f"[{v6.compressed}]", v6)
    if not raw:
        raise _HostError("the host is empty")
    if "%" in raw:
        raise _HostError("percent-encoded hosts are not allowed")
    if any(c in raw for c in "[]:@\\/"):
        raise _HostError("the host contains a character that is not allowed in a host name")
    text = raw.translate(_FULL_STOPS)  # the dots IDNA treats as label separators
    text = text[:-1] if text.endswith(".") else text  # one trailing dot: the root
    if not text:
        raise _HostError("the host is empty")
    try:
        ascii_host = text.lower().encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise _HostError("it is not a valid host name (empty or over-long label)") from None
    labels = ascii_host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if strict_literals and not _CANONICAL_IPV4.fullmatch(ascii_host):
            try:
                canonical = str(_parse_ipv4_whatwg(ascii_host))
            except _HostError:
                raise _HostError(
                    "a host whose last label is a number must be an IPv4 address"
                ) from None
            raise _HostError(
                f"IPv4 addresses must be written in dotted-decimal form, e.g. {canonical!r}"
            )
        v4 = _parse_ipv4_whatwg(ascii_host)
        return _Host(str(v4), v4)
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _HostError("it is not a valid host name")
    return _Host(ascii_host, None)


# ---------------------------------------------------------------------------------------------
# origins


@dataclass(frozen=True)
class AllowedOrigin:
    """One parsed `network.allow` entry. For a wildcard, `host` is the suffix after `*.`."""

    scheme: str
    host: str
    port: int
    wildcard: bool
    original: str
    user_granted: bool = False

    @property
    def ip(self) -> IPAddress | None:
        """The address when the origin is an IP literal, else None."""
        if self.wildcard:
            return None
        text = self.host[1:-1] if self.host.startswith("[") else self.host
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            return None

    @property
    def normalized(self) -> str:
        """`scheme://[*.]host[:port]`, the port left out when it is the scheme's default."""
        return _origin_text(self.scheme, ("*." if self.wildcard else "") + self.host, self.port)

    def __str__(self) -> str:
        return self.normalized

    def matches(self, scheme: str, host: str, port: int) -> bool:
        """Whether a request to (scheme, host, port) falls under this origin.

        `host` should come from `parse_url`; it is normalized again here, so a differently
        spelled host cannot match by accident, and an unparsable one never matches.
        """
        if scheme.lower() != self.scheme or port != self.port:
            return False
        try:
            normalized = _normalize_host(host, strict_literals=False)
        except _HostError:
            return False
        if self.wildcard:
            return normalized.ip is None and normalized.text.endswith("." + self.host)
        return normalized.text == self.host


def _origin_text(scheme: str, host: str, port: int) -> str:
    suffix = "" if DEFAULT_PORTS.get(scheme) == port else f":{port}"
    return f"{scheme}://{host}{suffix}"


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


def _parse_origin(spelling: object, *, user_granted: bool) -> AllowedOrigin:
    if not isinstance(spelling, str):
        raise OriginSyntaxError(
            spelling, "an origin must be a string", 'e.g. "https://api.example.com"'
        )
    original = spelling

    def fail(problem: str, fix: str = "") -> OriginSyntaxError:
        return OriginSyntaxError(original, problem, fix)

    if not spelling:
        raise fail("the origin is empty", 'write it as "https://api.example.com"')
    if spelling != spelling.strip() or any(
        c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in spelling
    ):
        raise fail("it contains spaces or control characters", "remove them")
    if "\\" in spelling:
        raise fail("it contains a backslash", "use only scheme://host[:port]")
    scheme, sep, rest = spelling.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise fail(
            "the scheme is missing",
            f'write it with one, e.g. "https://{spelling.split("/")[0] or "api.example.com"}"',
        )
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise fail(f"the scheme {scheme!r} is not supported", "use http or https")
    authority, _, path = rest.partition("/")
    for mark, what in (("?", "a query"), ("#", "a fragment")):
        if mark in authority or mark in path:
            raise fail(f"an origin has no {what}", f'write "{scheme}://{authority.split(mark)[0]}"')
    if path:
        raise fail(
            f"an origin has no path ('/{path}')",
            f'write "{scheme}://{authority}" (the plugin may use any path on it)',
        )
    if "@" in authority:
        raise fail(
            "an origin has no user name or password",
            f'write "{scheme}://{authority.rsplit("@", 1)[1]}" and pass credentials as secrets',
        )
    host_text, port_text = _split_authority(authority, fail)
    if port_text is None:
        port = DEFAULT_PORTS[scheme]
    elif port_text == "*" or "-" in port_text:
        raise fail(
            "port wildcards and ranges are not supported", "list each port as its own origin"
        )
    else:
        try:
            port = _parse_port(port_text)
        except ValueError:
            raise fail(f"the port {port_text!r} is not a number from 1 to 65535") from None
    wildcard = False
    if "*" in host_text:
        if host_text == "*":
            raise fail(
                "'*' alone would allow every host", 'name the hosts, e.g. "https://*.example.com"'
            )
        if not host_text.startswith("*.") or "*" in host_text[2:]:
            raise fail(
                "'*' is allowed only as a whole leading label", 'write e.g. "https://*.example.com"'
            )
        wildcard = True
        host_text = host_text[2:]
    try:
        host = _normalize_host(host_text, strict_literals=True)
    except _HostError as exc:
        raise fail(f"the host {host_text!r} is not valid: {exc}") from None
    if wildcard and host.ip is not None:
        raise fail("a wildcard cannot apply to an IP address", "list the address itself")
    if wildcard and "." not in host.text:
        raise fail(
            f"'*.{host.text}' would match a whole top-level domain",
            'name a domain, e.g. "https://*.example.com"',
        )
    return AllowedOrigin(
        scheme=scheme,
        host=host.text,
        port=port,
        wildcard=wildcard,
        original=original,
        user_granted=user_granted,
    )


def _split_authority(
    authority: str, fail: Callable[..., OriginSyntaxError]
) -> tuple[str, str | None]:
    """(host, port text or None) from `host[:port]` or `[v6][:port]`."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise fail("the IPv6 address is missing its closing ']'")
        host, after = authority[: end + 1], authority[end + 1 :]
        if not after:
            return host, None
        if not after.startswith(":"):
            raise fail("unexpected text after the IPv6 address")
        return host, after[1:]
    if authority.count(":") > 1:
        raise fail("an IPv6 address must be written in brackets", 'e.g. "http://[::1]:8080"')
    host, colon, port = authority.partition(":")
    if not host:
        raise fail("the host is missing")
    if colon and not port:
        raise fail("the port after ':' is empty", "remove the ':' or give a port")
    return host, (port if colon else None)


# ---------------------------------------------------------------------------------------------
# request URLs


@dataclass(frozen=True)
class RequestTarget:
    """A request URL reduced to what the host connects to and sends.

    `host` is normalized (punycode, dotted-quad IPv4, or `[v6]`); `ip` is set when the host is an
    IP literal (then no DNS is done); `target` is the path and query, starting with '/'.
    """

    scheme: str
    host: str
    port: int
    target: str
    ip: IPAddress | None

    @property
    def origin(self) -> str:
        return _origin_text(self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        """The `Host` header value: the name, plus the port when it is not the default."""
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return self.host
        return f"{self.host}:{self.port}"

    @property
    def dns_name(self) -> str | None:
        """The name to resolve, or None for an IP literal."""
        return None if self.ip is not None else self.host

    @property
    def url(self) -> str:
        return f"{self.origin}{self.target}"


def parse_url(url: str) -> RequestTarget:
    """Parse a request URL strictly, or raise `UrlError` saying why it cannot be trusted."""
    if not isinstance(url, str):
        raise UrlError("the URL is not a string")
    if not url:
        raise UrlError("the URL is empty")
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        raise UrlError("the URL contains whitespace or control characters")
    if "\\" in url:
        raise UrlError("the URL contains a backslash, which URL parsers disagree about")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise UrlError("the URL has no scheme:// prefix")
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlError(f"the scheme {scheme!r} is not allowed (only http and https)")
    end = len(rest)
    for mark in "/?#":
        pos = rest.find(mark)
        if pos >= 0:
            end = min(end, pos)
    authority, target = rest[:end], rest[end:]
    if "@" in authority:
        raise UrlError(
            "the URL contains user info ('...@'); send credentials in a header with a secret"
        )
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise UrlError("the IPv6 address in the URL is missing its closing ']'")
        host_text, after = authority[: close + 1], authority[close + 1 :]
        if after and not after.startswith(":"):
            raise UrlError("unexpected text after the IPv6 address in the URL")
        port_text: str | None = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise UrlError("the URL's host has several ':'; IPv6 addresses go in brackets")
        host_text, colon, port_part = authority.partition(":")
        port_text = port_part if colon else None
    if port_text is None:
        port = DEFAULT_PORTS[scheme]
    else:
        try:
            port = _parse_port(port_text)
        except ValueError:
            raise UrlError("the URL's port is not a number from 1 to 65535") from None
    try:
        host = _normalize_host(host_text, strict_literals=False)
    except _HostError as exc:
        raise UrlError(f"the URL's host is not valid: {exc}") from None
    target = target.partition("#")[0]
    if not target:
        target = "/"
    elif target.startswith("?"):
        target = "/" + target
    return RequestTarget(scheme=scheme, host=host.text, port=port, target=target, ip=host.ip)


# ---------------------------------------------------------------------------------------------
# the policy


@dataclass(frozen=True)
class Decision:
    """The verdict on one URL. `suggestion` is the manifest line that would allow it."""

    allowed: bool
    reason: str
    origin: AllowedOrigin | None
    suggestion: str
    target: RequestTarget | None = None


def suggestion_for(target: RequestTarget) -> str:
    return f'network.allow = ["{target.origin}"]'


_REMEMBERED_DECISIONS = 256
_REMEMBERED_URL_LENGTH = 2048


class EgressPolicy:
    """The parsed allow-list. Build with `EgressPolicy.parse`; decide with `check(url)`."""

    __slots__ = ("_decisions", "_origins")

    def __init__(self, origins: Iterable[AllowedOrigin] = ()) -> None:
        self._origins: tuple[AllowedOrigin, ...] = tuple(origins)
        # `check` is pure, and a plugin asks about the same few URLs on every call: remember
        # the answers (a bounded number, for URLs of a bounded length).
        self._decisions: dict[str, Decision] = {}

    @classmethod
    def parse(cls, origins: Iterable[str], *, user_granted: Iterable[str] = ()) -> EgressPolicy:
        """Parse manifest origins, then the user's grants (marked `user_granted`).

        Raises `OriginSyntaxError` on the first bad entry. A plain string (not a list) is refused:
        iterating it would parse single characters.
        """
        parsed: list[AllowedOrigin] = []
        seen: set[tuple[str, str, int, bool]] = set()
        for entries, granted in ((origins, False), (user_granted, True)):
            if isinstance(entries, str | bytes):
                raise OriginSyntaxError(
                    entries, "network.allow must be a list of origins", f"write [{entries!r}]"
                )
            for spelling in entries:
                origin = _parse_origin(spelling, user_granted=granted)
                key = (origin.scheme, origin.host, origin.port, origin.wildcard)
                if key not in seen:
                    seen.add(key)
                    parsed.append(origin)
        return cls(parsed)

    @property
    def origins(self) -> tuple[AllowedOrigin, ...]:
        return self._origins

    def __repr__(self) -> str:
        return f"EgressPolicy({[o.normalized for o in self._origins]!r})"

    def find(self, scheme: str, host: str, port: int) -> AllowedOrigin | None:
        """The origin that allows (scheme, host, port): an exact one before a wildcard."""
        wildcard_match: AllowedOrigin | None = None
        for origin in self._origins:
            if origin.matches(scheme, host, port):
                if not origin.wildcard:
                    return origin
                wildcard_match = wildcard_match or origin
        return wildcard_match

    def check(self, url: str) -> Decision:
        """Allow or deny `url` by name, scheme and port. Pure: no DNS (see `address_allowed`)."""
        remember = type(url) is str and len(url) <= _REMEMBERED_URL_LENGTH
        decision = self._decisions.get(url) if remember else None
        if decision is not None:
            return decision
        try:
            target = parse_url(url)
        except UrlError as exc:
            return Decision(False, f"refused: {exc.reason}", None, "")
        decision = self.check_target(target)
        if remember:
            if len(self._decisions) >= _REMEMBERED_DECISIONS:
                self._decisions.clear()
            self._decisions[url] = decision
        return decision

    def check_target(self, target: RequestTarget) -> Decision:
        origin = self.find(target.scheme, target.host, target.port)
        if origin is not None:
            return Decision(
                True, f"{target.origin} is allowed by {origin.original!r}", origin, "", target
            )
        if not self._origins:
            reason = f"{target.origin} is not allowed: the plugin's network.allow is empty"
        else:
            allowed = ", ".join(o.normalized for o in self._origins)
            reason = f"{target.origin} is not in network.allow ({allowed})"
        return Decision(False, reason, None, suggestion_for(target), target)


# ---------------------------------------------------------------------------------------------
# addresses, after DNS


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped, 6to4 or NAT64 (well-known prefix)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_special_address(ip: IPAddress) -> bool:
    """Loopback, private, link-local, unspecified, multicast, reserved, CGNAT, documentation or
    otherwise not globally reachable, including the IPv4-mapped, 6to4 and NAT64 forms of those."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_special_address(embedded)
        if any(ip in net for net in _SPECIAL_V6):
            return True
    elif any(ip in net for net in _SPECIAL_V4):
        return True
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or not ip.is_global
    )


def _is_loopback(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def address_allowed(origin: AllowedOrigin, ip: IPAddress) -> bool:
    """Whether the host may connect to `ip` for a request allowed by `origin`.

    Public addresses are fine. A special address (see `is_special_address`) only when the origin
    names that exact address literally, or the origin is `localhost` and the address is loopback.
    A `localhost` origin never reaches anything but loopback.
    """
    if not origin.wildcard and origin.host == "localhost":
        return _is_loopback(ip)
    if not is_special_address(ip):
        return True
    named = origin.ip
    return named is not None and named == ip
