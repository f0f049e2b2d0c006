"""Every OAuth and token URL openkoi talks to, each overridable by an environment variable
(tests point them at a local server; GitHub Enterprise or a proxy can do the same).

    OPENKOI_GITHUB_URL           https://github.com         device code + access token
    OPENKOI_GITHUB_DEVICE_URL    <github>/login/device/code
    OPENKOI_GITHUB_TOKEN_URL     <github>/login/oauth/access_token
    OPENKOI_GITHUB_API_URL       https://api.github.com
    OPENKOI_COPILOT_TOKEN_URL    <api>/copilot_internal/v2/token
    OPENKOI_COPILOT_CLIENT_ID    the GitHub OAuth app used for Copilot
    OPENKOI_CHATGPT_AUTH_URL     https://auth.openai.com    device code, poll, token, refresh
    OPENKOI_CHATGPT_CLIENT_ID    the OpenAI OAuth client
    OPENKOI_OAUTH_TIME_SCALE     multiplies every wait of a device flow (tests use 0.01)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The public client ids of the editors' and CLIs' OAuth apps; device flows need no secret.
COPILOT_CLIENT_ID = "Iv1.b507a08c87ecfe98"
CHATGPT_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
GITHUB_SCOPE = "read:user"
CHATGPT_SCOPE = "openid profile email offline_access"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value.rstrip("/") if value else default


@dataclass(frozen=True)
class GitHubEndpoints:
    device_code: str
    access_token: str
    copilot_token: str
    client_id: str

    @classmethod
    def from_env(cls) -> GitHubEndpoints:
        github = _env("OPENKOI_GITHUB_URL", "https://github.com")
        api = _env("OPENKOI_GITHUB_API_URL", "https://api.github.com")
        return cls(
            device_code=_env("OPENKOI_GITHUB_DEVICE_URL", f"{github}/login/device/code"),
            access_token=_env("OPENKOI_GITHUB_TOKEN_URL", f"{github}/login/oauth/access_token"),
            copilot_token=_env("OPENKOI_COPILOT_TOKEN_URL", f"{api}/copilot_internal/v2/token"),
            client_id=_env("OPENKOI_COPILOT_CLIENT_ID", COPILOT_CLIENT_ID),
        )


@dataclass(frozen=True)
class ChatGPTEndpoints:
    device_code: str
    device_token: str
    token: str
    verification: str
    redirect_uri: str
    client_id: str

    @classmethod
    def from_env(cls) -> ChatGPTEndpoints:
        issuer = _env("OPENKOI_CHATGPT_AUTH_URL", "https://auth.openai.com")
        return cls(
            device_code=f"{issuer}/api/accounts/deviceauth/usercode",
            device_token=f"{issuer}/api/accounts/deviceauth/token",
            token=f"{issuer}/oauth/token",
            verification=f"{issuer}/codex/device",
            redirect_uri=f"{issuer}/deviceauth/callback",
            client_id=_env("OPENKOI_CHATGPT_CLIENT_ID", CHATGPT_CLIENT_ID),
        )


def time_scale() -> float:
    try:
        scale = float(os.environ.get("OPENKOI_OAUTH_TIME_SCALE", "1") or 1)
    except ValueError:
        return 1.0
    return scale if scale > 0 else 1.0
