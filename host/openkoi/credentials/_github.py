"""GitHub's device flow: the GitHub token that `openkoi connect copilot` stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from openkoi.credentials._device_flow import (
    DEVICE_GRANT,
    DeviceCode,
    PollResult,
    as_seconds,
    interpret,
    poll,
    post,
    raise_for_reply,
    require_str,
)
from openkoi.credentials._endpoints import GITHUB_SCOPE, GitHubEndpoints

PROVIDER = "github-copilot"

ShowCode = Callable[[DeviceCode], Awaitable[None] | None]


async def request_code(client: httpx.AsyncClient, ep: GitHubEndpoints) -> DeviceCode:
    reply = await post(
        client,
        ep.device_code,
        provider=PROVIDER,
        form={"client_id": ep.client_id, "scope": GITHUB_SCOPE},
    )
    raise_for_reply(reply, provider=PROVIDER, what="asking GitHub for a device code")
    what = "GitHub's device code answer"
    return DeviceCode(
        device_code=require_str(reply.data, "device_code", provider=PROVIDER, what=what),
        user_code=require_str(reply.data, "user_code", provider=PROVIDER, what=what),
        verification_uri=require_str(reply.data, "verification_uri", provider=PROVIDER, what=what),
        verification_uri_complete=reply.data.get("verification_uri_complete"),
        interval=as_seconds(reply.data.get("interval"), 5.0),
        expires_in=as_seconds(reply.data.get("expires_in"), 900.0),
    )


async def device_flow(client: httpx.AsyncClient, ep: GitHubEndpoints, show: ShowCode) -> str:
    """Run the whole flow; returns the GitHub OAuth token."""
    code = await request_code(client, ep)
    shown = show(code)
    if shown is not None:
        await shown

    async def check() -> PollResult:
        reply = await post(
            client,
            ep.access_token,
            provider=PROVIDER,
            form={
                "client_id": ep.client_id,
                "device_code": code.device_code,
                "grant_type": DEVICE_GRANT,
            },
        )
        return interpret(reply, provider=PROVIDER)

    data = await poll(
        check,
        interval=code.interval,
        expires_in=code.expires_in,
        provider=PROVIDER,
        target="copilot",
    )
    return str(data["access_token"])
