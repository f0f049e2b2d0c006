"""The Copilot session token: the GitHub token is exchanged for a short-lived token that names
the API endpoint to use. It is cached in the store entry (`session`) and refreshed before it
expires, or at once when the API answers 401.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from openkoi._errors import AuthenticationError, MalformedResponseError
from openkoi.credentials._device_flow import post, raise_for_reply, require_str
from openkoi.credentials._endpoints import GitHubEndpoints

PROVIDER = "github-copilot"
DEFAULT_API = "https://api.githubcopilot.com"
REFRESH_MARGIN = 120.0  # seconds before expiry at which a session counts as stale

# The Copilot API serves known editor integrations; these identify the client as a chat panel.
EDITOR_HEADERS: dict[str, str] = {
    "editor-version": "vscode/1.99.3",
    "editor-plugin-version": "copilot-chat/0.26.7",
    "copilot-integration-id": "vscode-chat",
    "user-agent": "GitHubCopilotChat/0.26.7",
    "openai-intent": "conversation-panel",
    "x-github-api-version": "2025-04-01",
}

Session = dict[str, Any]


def session_is_fresh(session: Any, now: float | None = None) -> bool:
    if not isinstance(session, dict) or not isinstance(session.get("token"), str):
        return False
    expires_at = session.get("expires_at")
    if not isinstance(expires_at, int | float):
        return False
    return float(expires_at) - REFRESH_MARGIN > (time.time() if now is None else now)


async def exchange(
    client: httpx.AsyncClient, ep: GitHubEndpoints, github_token: str, headers: dict[str, str]
) -> Session:
    """Trade the GitHub token for a Copilot session: token, expiry and API endpoint."""
    reply = await post(
        client,
        ep.copilot_token,
        method="GET",
        provider=PROVIDER,
        headers={"authorization": f"token {github_token}", **headers},
        secrets=(github_token,),
    )
    if reply.status == 401:
        raise AuthenticationError(
            "GitHub no longer accepts the saved token; run `openkoi connect copilot`",
            provider=PROVIDER,
            status=401,
        )
    if reply.status in (403, 404):
        raise AuthenticationError(
            "this GitHub account has no Copilot access (check its subscription), "
            "or the token lacks it; run `openkoi connect copilot` with the right account",
            provider=PROVIDER,
            status=reply.status,
        )
    raise_for_reply(reply, provider=PROVIDER, what="getting a Copilot session token")
    what = "the Copilot token answer"
    token = require_str(reply.data, "token", provider=PROVIDER, what=what)
    expires_at = reply.data.get("expires_at")
    if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
        raise MalformedResponseError(f"{what} has no numeric 'expires_at'", provider=PROVIDER)
    endpoints = reply.data.get("endpoints")
    api = endpoints.get("api") if isinstance(endpoints, dict) else None
    return {
        "token": token,
        "expires_at": float(expires_at),
        "api": api.rstrip("/") if isinstance(api, str) and api else DEFAULT_API,
    }
