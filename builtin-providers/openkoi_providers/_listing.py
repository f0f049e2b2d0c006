"""Reading a vendor's model list: one bounded GET, and the fields vendors use for limits.

A listing is read under a cap (`MAX_LISTING_BYTES`, `openkoi._body`), so a server cannot grow
the answer without bound, and within the call's deadlines (a `CallClock`), so it cannot take
forever either; pages are followed at most `MAX_PAGES` times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
from openkoi._body import read_timed
from openkoi._deadline import CallClock
from openkoi._errors import MalformedResponseError
from openkoi._http import json_body, map_transport_errors
from openkoi._transport import httpx_timeout

MAX_LISTING_BYTES = 16 * 1024 * 1024
MAX_PAGES = 20

# The vendor's own reading of an error answer (its error shapes, its hints).
ErrorMapper = Callable[[httpx.Response, str], Exception]


async def get_listing(
    client: httpx.AsyncClient,
    path: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    secrets: Iterable[str],
    on_error: ErrorMapper,
    params: Mapping[str, str] | None = None,
    limit: int = MAX_LISTING_BYTES,
    clock: CallClock | None = None,
) -> Any:
    """GET `path` and parse its JSON; error statuses go through the vendor's `on_error`.

    With a `clock` (a provider's `_clock()`), the request keeps to its deadlines as a chat
    does: `first_token` to the headers, then `idle` and `total` for the body. Without one, only
    the client's own timeouts bound it, and a server dripping its listing holds the caller.
    """
    hidden = tuple(secrets)
    try:
        with map_transport_errors(provider, hidden):
            request = client.build_request(
                "GET",
                path,
                params=params,
                headers=dict(headers),
                timeout=httpx_timeout(clock.deadlines) if clock else httpx.USE_CLIENT_DEFAULT,
                extensions=clock.extensions() if clock else None,
            )
            sent = client.send(request, stream=True)
            response = await (clock.wait(sent) if clock else sent)
        try:
            with map_transport_errors(provider, hidden, receiving=True):
                body = await read_timed(response, limit, provider=provider, what="the model list")
        finally:
            await response.aclose()
    finally:
        if clock is not None:
            clock.close()
    text = body.decode("utf-8", "replace")
    if response.status_code >= 400:
        raise on_error(response, text)
    return json_body(text, provider=provider, status=response.status_code)


def first_int(item: Mapping[str, Any], *keys: str) -> int | None:
    """The first of `keys` holding a positive whole number (`"128000"` counts)."""
    for key in keys:
        value = item.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value > 0 and float(value).is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
            return int(value)
    return None


def listed_items(data: Any, key: str, provider: str) -> list[Mapping[str, Any]]:
    """The objects under `key` that carry a string `id`; a missing list is a malformed answer."""
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MalformedResponseError(f"expected a `{key}` list of models", provider=provider)
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str) and i["id"]]
