"""Fetching attachment URLs a provider cannot fetch itself.

The host downloads them (with its own client: no provider headers or credentials go to the
file's server), with a cap on the size and a total deadline, and hands the provider bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import httpx

from openkoi._errors import InvalidRequestError, NetworkError, ProviderError, ProviderTimeoutError
from openkoi._http import _short, map_transport_errors
from openkoi._media import sniff_media_type
from openkoi._types import Attachment, ChatRequest, Message

MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024  # a fetched URL, as a file read from disk

FETCH_TIMEOUT = 60.0  # seconds for one whole download
_MAX_REDIRECTS = 5
_FETCHED_SCHEMES = ("http", "https")  # what the host downloads
_SERVICE_SCHEMES = ("http", "https", "gs")  # what a service that fetches itself may be given
_RETRYABLE_STATUSES = (408, 425, 429)  # a 4xx that may go away by waiting


def _shown(url: str) -> str:
    """The attachment as an error names it: no query (a signed URL carries its key there)."""
    return repr(_short(url.split("?", 1)[0].split("#", 1)[0], 120))


def _malformed(url: str, provider: str, why: str) -> InvalidRequestError:
    """Permanent: the same URL fails the same way, and the provider was never asked."""
    return InvalidRequestError(
        f"attachment {_shown(url)} is not a URL openkoi can use: {why}", provider=provider
    )


def checked_url(url: str, provider: str, schemes: tuple[str, ...] = _FETCHED_SCHEMES) -> httpx.URL:
    """The URL parsed, or the caller's error when it cannot name a file anywhere (no host, a
    scheme outside `schemes`, characters a URL cannot hold), before anything is sent."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise _malformed(url, provider, _short(str(exc), 120)) from None
    if parsed.scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise _malformed(url, provider, f"only {allowed} URLs can be used")
    if not parsed.host:
        raise _malformed(url, provider, "it has no host")
    if "%" in parsed.host and ":" not in parsed.host:  # httpx escaped a space or the like
        raise _malformed(url, provider, f"{parsed.host!r} is not a host name")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _malformed(url, provider, f"port {parsed.port} does not exist")
    return parsed


@contextmanager
def _fetch_errors(url: str, provider: str) -> Iterator[None]:
    """Download failures named after the attachment. A URL httpx cannot request (a redirect to
    another scheme, an invalid one) is permanent like a malformed URL; a file server that is
    down or slow stays transient, as any network failure is."""
    try:
        with map_transport_errors(provider):
            try:
                yield
            except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
                raise _malformed(url, provider, _short(str(exc), 120)) from None
    except ProviderError as exc:
        if not exc.message.startswith("attachment "):
            exc.message = f"attachment {_shown(url)} could not be downloaded: {exc.message}"
        _not_the_models(exc)
        raise


def _not_the_models(error: ProviderError) -> ProviderError:
    """A download's failure is the file server's: the provider was never asked, so the fallback
    chain moves on (when it is transient) without putting the model in cooldown."""
    error.cools_model = False
    return error


def has_url_attachments(request: ChatRequest) -> bool:
    """Cheap on the text-only path: one isinstance per message."""
    for message in request.messages:
        if isinstance(message.content, list) and any(
            isinstance(p, Attachment) and p.url is not None for p in message.content
        ):
            return True
    return False


async def fetch(url: str, provider: str, limit: int | None = None) -> Attachment:
    """Download `url` into an attachment; an oversized or failed download is a typed error."""
    limit = MAX_ATTACHMENT_BYTES if limit is None else limit
    target = checked_url(url, provider)
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(FETCH_TIMEOUT) as scope, _fetch_errors(url, provider):
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(30.0),
                follow_redirects=True,
                max_redirects=_MAX_REDIRECTS,
            ) as client,
            client.stream("GET", target) as response,
        ):
            if response.status_code >= 400:
                raise _refused(url, provider, response.status_code)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(url, limit, provider)
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _too_large(url, limit, provider)
                chunks.append(chunk)
            header_type = response.headers.get("content-type", "").split(";")[0].strip()
    if scope.cancelled_caught:
        raise _not_the_models(
            ProviderTimeoutError(
                f"attachment {_shown(url)} took longer than {FETCH_TIMEOUT:.0f} s to download",
                provider=provider,
            )
        )
    data = b"".join(chunks)
    sniffed = sniff_media_type(data, url)
    generic = ("", "application/octet-stream", "binary/octet-stream")
    media_type = sniffed if header_type in generic else header_type
    return Attachment(data=data, media_type=media_type, name=url.rsplit("/", 1)[-1] or None)


def _refused(url: str, provider: str, status: int) -> ProviderError:
    """A file server's error status: a 4xx will not change by asking again (the caller's URL
    names nothing it will serve), a 5xx or a "wait" status may."""
    message = f"attachment {_shown(url)} could not be downloaded"  # str() adds the status
    if 400 <= status < 500 and status not in _RETRYABLE_STATUSES:
        return InvalidRequestError(message, provider=provider, status=status)
    return NetworkError(message, provider=provider, status=status)


def _too_large(url: str, limit: int, provider: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"attachment {_shown(url)} is larger than {limit // (1024 * 1024)} MiB", provider=provider
    )


async def fetch_for(
    request: ChatRequest, provider: str, fetches_itself: Callable[[Attachment], bool]
) -> ChatRequest:
    """The request with every URL attachment the provider cannot fetch replaced by its bytes.
    A media type the caller gave wins over the one the download says."""
    if not has_url_attachments(request):
        return request
    messages: list[Message] = []
    for message in request.messages:
        if not isinstance(message.content, list):
            messages.append(message)
            continue
        parts = list(message.content)
        for i, part in enumerate(parts):
            if not isinstance(part, Attachment) or part.url is None:
                continue
            if fetches_itself(part):
                checked_url(part.url, provider, _SERVICE_SCHEMES)  # a malformed one is ours
            else:
                fetched = await fetch(part.url, provider)
                if part.media_type and part.media_type != sniff_media_type(None, part.url):
                    fetched = fetched.model_copy(update={"media_type": part.media_type})
                parts[i] = fetched
        messages.append(message.model_copy(update={"content": parts}))
    return request.model_copy(update={"messages": messages})
