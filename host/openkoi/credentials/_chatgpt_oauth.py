"""ChatGPT sign-in: OpenAI's device step, the authorization-code exchange with the PKCE
verifier, and refresh-token rotation.

The device step answers with an authorization code plus the PKCE verifier and challenge the
server generated; the verifier is checked against the challenge, then exchanged with the code.
While the user has not approved yet the poll answers 403 or 404; the RFC 8628 error codes
(`authorization_pending`, `slow_down`, `access_denied`, `expired_token`) are honoured too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from openkoi._errors import AuthenticationError, MalformedResponseError
from openkoi.credentials import _jwt, _pkce
from openkoi.credentials._device_flow import (
    DeviceCode,
    PollResult,
    Reply,
    as_seconds,
    interpret,
    poll,
    post,
    raise_for_reply,
    require_str,
)
from openkoi.credentials._endpoints import CHATGPT_SCOPE, ChatGPTEndpoints

PROVIDER = "openai-oauth"
REFRESH_MARGIN = 300.0  # refresh when the access token has less than this many seconds left
_REVOKED_CODES = frozenset(
    {
        "invalid_grant",
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
        "invalid_request",
    }
)

ShowCode = Callable[[DeviceCode], Awaitable[None] | None]
Entry = dict[str, Any]


def _poll_result(reply: Reply) -> PollResult:
    data = reply.data if isinstance(reply.data, dict) else {}
    if reply.status in (403, 404) and not (
        isinstance(data.get("error"), str) and data["error"] in ("access_denied", "expired_token")
    ):
        return PollResult("pending")
    return interpret(reply, provider=PROVIDER, success_key="authorization_code")


async def device_flow(client: httpx.AsyncClient, ep: ChatGPTEndpoints, show: ShowCode) -> Entry:
    """Run the whole sign-in; returns the store entry (tokens, expiry, account id)."""
    reply = await post(client, ep.device_code, provider=PROVIDER, body={"client_id": ep.client_id})
    raise_for_reply(reply, provider=PROVIDER, what="asking OpenAI for a device code")
    what = "OpenAI's device code answer"
    device_auth_id = require_str(reply.data, "device_auth_id", provider=PROVIDER, what=what)
    user_code = require_str(reply.data, "user_code", provider=PROVIDER, what=what)
    code = DeviceCode(
        device_code=device_auth_id,
        user_code=user_code,
        verification_uri=str(reply.data.get("verification_uri") or ep.verification),
        interval=as_seconds(reply.data.get("interval"), 5.0),
        expires_in=as_seconds(reply.data.get("expires_in"), 900.0),
    )
    shown = show(code)
    if shown is not None:
        await shown

    async def check() -> PollResult:
        answer = await post(
            client,
            ep.device_token,
            provider=PROVIDER,
            body={"device_auth_id": device_auth_id, "user_code": user_code},
        )
        return _poll_result(answer)

    grant = await poll(
        check,
        interval=code.interval,
        expires_in=code.expires_in,
        provider=PROVIDER,
        target="chatgpt",
    )
    authorization_code = require_str(
        grant, "authorization_code", provider=PROVIDER, what="the device authorization"
    )
    verifier = require_str(
        grant, "code_verifier", provider=PROVIDER, what="the device authorization"
    )
    challenge = grant.get("code_challenge")
    if not _pkce.is_valid_verifier(verifier) or (
        isinstance(challenge, str) and not _pkce.matches(verifier, challenge)
    ):
        raise MalformedResponseError(
            "the device authorization's PKCE verifier does not match its challenge",
            provider=PROVIDER,
        )
    return await exchange_code(client, ep, authorization_code, verifier)


async def exchange_code(
    client: httpx.AsyncClient, ep: ChatGPTEndpoints, code: str, verifier: str
) -> Entry:
    reply = await post(
        client,
        ep.token,
        provider=PROVIDER,
        form={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": ep.redirect_uri,
            "client_id": ep.client_id,
            "code_verifier": verifier,
        },
        secrets=(code, verifier),
    )
    raise_for_reply(reply, provider=PROVIDER, what="exchanging the authorization code")
    return entry_from_tokens(reply.data)


def entry_from_tokens(tokens: Any, previous: Entry | None = None) -> Entry:
    """A store entry from a token answer; a refresh answer without a new refresh token keeps
    the old one (rotation is the server's choice)."""
    what = "the token answer"
    access = require_str(tokens, "access_token", provider=PROVIDER, what=what)
    refresh = tokens.get("refresh_token") or (previous or {}).get("refresh")
    if not isinstance(refresh, str) or not refresh:
        raise MalformedResponseError(f"{what} has no refresh token", provider=PROVIDER)
    expires_in = tokens.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at: float | None = time.time() + float(expires_in)
    else:
        expires_at = _jwt.expiry(access)
    id_token = tokens.get("id_token") if isinstance(tokens.get("id_token"), str) else None
    account = _jwt.chatgpt_account_id(id_token, access) or (previous or {}).get("account_id")
    entry: Entry = {"type": "oauth", "access": access, "refresh": refresh, "expires_at": expires_at}
    if account:
        entry["account_id"] = account
    return entry


def is_fresh(entry: Entry, now: float | None = None) -> bool:
    expires_at = entry.get("expires_at")
    if not isinstance(entry.get("access"), str) or "error" in entry:
        return False
    if not isinstance(expires_at, int | float):
        return True  # no expiry known: use it until the server says 401
    return float(expires_at) - REFRESH_MARGIN > (time.time() if now is None else now)


async def refresh(client: httpx.AsyncClient, ep: ChatGPTEndpoints, entry: Entry) -> Entry:
    """Spend the refresh token for new tokens. A revoked or reused one asks for reconnecting."""
    token = entry.get("refresh")
    if not isinstance(token, str) or not token:
        raise AuthenticationError(
            "the ChatGPT sign-in has no refresh token; run `openkoi connect chatgpt`",
            provider=PROVIDER,
        )
    reply = await post(
        client,
        ep.token,
        provider=PROVIDER,
        body={
            "client_id": ep.client_id,
            "grant_type": "refresh_token",
            "refresh_token": token,
            "scope": CHATGPT_SCOPE,
        },
        secrets=(token, str(entry.get("access") or "")),
    )
    if reply.status in (400, 401, 403):
        data = reply.data if isinstance(reply.data, dict) else {}
        error = data.get("error")
        code = error.get("code") if isinstance(error, dict) else error
        if reply.status != 400 or code in _REVOKED_CODES:
            raise AuthenticationError(
                "ChatGPT no longer accepts the saved sign-in"
                + (f" ({code})" if isinstance(code, str) else "")
                + "; run `openkoi connect chatgpt`",
                provider=PROVIDER,
                status=reply.status,
                code=code if isinstance(code, str) else None,
            )
    raise_for_reply(reply, provider=PROVIDER, what="refreshing the ChatGPT token")
    return entry_from_tokens(reply.data, previous=entry)
