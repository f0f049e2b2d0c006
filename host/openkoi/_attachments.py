"""Fetching attachment URLs a provider cannot fetch itself.

The host downloads them (with its own client: no provider headers or credentials go to the
file's server), with a cap on the size and a total deadline, and hands the provider bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx

from openkoi._errors import InvalidRequestError, NetworkError, ProviderTimeoutError
from openkoi._http import map_transport_errors
from openkoi._media import sniff_media_type
from openkoi._types import Attachment, ChatRequest, Message

MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024  # a fetched URL, as a file read from disk

FETCH_TIMEOUT = 60.0  # seconds for one whole download
_MAX_REDIRECTS = 5


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
    if not url.startswith(("http://", "https://")):
        raise InvalidRequestError(
            f"cannot fetch attachment {url!r}: only http(s) URLs can be downloaded",
            provider=provider,
        )
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(FETCH_TIMEOUT) as scope, map_transport_errors(provider):
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(30.0),
                follow_redirects=True,
                max_redirects=_MAX_REDIRECTS,
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise NetworkError(
                    f"attachment {url} could not be downloaded (HTTP {response.status_code})",
                    provider=provider,
                    status=response.status_code,
                )
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
        raise ProviderTimeoutError(
            f"attachment {url} took longer than {FETCH_TIMEOUT:.0f} s to download",
            provider=provider,
        )
    data = b"".join(chunks)
    sniffed = sniff_media_type(data, url)
    generic = ("", "application/octet-stream", "binary/octet-stream")
    media_type = sniffed if header_type in generic else header_type
    return Attachment(data=data, media_type=media_type, name=url.rsplit("/", 1)[-1] or None)


def _too_large(url: str, limit: int, provider: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"attachment {url} is larger than {limit // (1024 * 1024)} MiB", provider=provider
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
            if isinstance(part, Attachment) and part.url is not None and not fetches_itself(part):
                fetched = await fetch(part.url, provider)
                if part.media_type and part.media_type != sniff_media_type(None, part.url):
                    fetched = fetched.model_copy(update={"media_type": part.media_type})
                parts[i] = fetched
        messages.append(message.model_copy(update={"content": parts}))
    return request.model_copy(update={"messages": messages})
