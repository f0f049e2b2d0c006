"""Reading the claims of a JWT without verifying it: only for our own tokens' expiry and ids.

The server verifies the signature; the client just needs `exp` and the ChatGPT account id.
"""

from __future__ import annotations

import base64
import json
from typing import Any

OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, or {} when `token` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return {}
    return data if isinstance(data, dict) else {}


def expiry(token: str) -> float | None:
    exp = claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def chatgpt_account_id(*tokens: str | None) -> str | None:
    """The ChatGPT account id from the first token that carries the OpenAI auth claim."""
    for token in tokens:
        if not token:
            continue
        auth = claims(token).get(OPENAI_AUTH_CLAIM)
        if isinstance(auth, dict):
            account = auth.get("chatgpt_account_id")
            if isinstance(account, str) and account:
                return account
    return None
