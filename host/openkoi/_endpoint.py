"""Checking an OpenAI-compatible endpoint before it is saved: one bounded `GET /models`."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from openkoi._errors import AuthenticationError, ConfigError, InvalidRequestError, OpenKoiError

CHECK_TIMEOUT = 10.0
_ID = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def normalize_url(url: str) -> str:
    """The base URL as config stores it; anything that is not http(s)://host is refused."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r} is not an http:// or https:// URL")
    return text


def provider_id_for(url: str) -> str:
    """A provider id from the URL's host: `https://llm.example.com/v1` -> `llm-example`."""
    host = (urlsplit(url).hostname or "custom").lower()
    labels = [p for p in host.split(".") if p not in ("www", "api", "com", "net", "org", "io")]
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(labels) or host).strip("-")
    if not name or not name[0].isalpha():
        name = f"custom-{name}".rstrip("-")
    return name[:40]


def check_id(name: str) -> str:
    wanted = name.strip().lower()
    if not _ID.fullmatch(wanted):
        raise ConfigError(
            f"{name!r} is not a provider id: use a letter, then letters, digits, - or _ (40 at most)"
        )
    return wanted


async def list_endpoint_models(
    base_url: str, key: str | None, *, timeout: float = CHECK_TIMEOUT
) -> list[str]:
    """The model ids the endpoint lists; a typed error (with a hint) when it cannot be used."""
    import anyio
    import httpx
    from openkoi_providers._listing import get_listing, listed_items

    from openkoi._http import error_from_response

    secrets = (key,) if key else ()
    headers = {"authorization": f"Bearer {key}"} if key else {}

    def refused(response: httpx.Response, text: str) -> OpenKoiError:
        error = error_from_response(
            response.status_code, response.headers, text, provider="endpoint", secrets=secrets
        )
        status = response.status_code
        hint = ""
        if isinstance(error, AuthenticationError):
            hint = "; check the API key" if key else "; it needs an API key"
        elif isinstance(error, InvalidRequestError) and status in (404, 405):
            hint = "; is the base URL right? OpenAI-compatible APIs usually end in /v1"
        return ConfigError(f"{base_url}/models answered HTTP {status}: {error.message}{hint}")

    try:
        with anyio.fail_after(timeout + 1):
            async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
                data = await get_listing(
                    client,
                    "/models",
                    provider="endpoint",
                    headers=headers,
                    secrets=secrets,
                    on_error=refused,
                )
    except TimeoutError:
        raise ConfigError(f"{base_url} did not answer within {timeout:g} s") from None
    return sorted({str(item["id"]) for item in listed_items(data, "data", "endpoint")})
