"""PKCE (RFC 7636): a random verifier and its S256 challenge.

The ChatGPT device flow hands the client a verifier and its challenge; checking that they match
before the code exchange catches a garbled or tampered poll answer early.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str
    method: str = "S256"

    def __repr__(self) -> str:  # the verifier is a one-time secret
        return f"Pkce(challenge={self.challenge!r}, method={self.method!r})"


def challenge_for(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_valid_verifier(verifier: str) -> bool:
    return 43 <= len(verifier) <= 128 and all(c in _UNRESERVED for c in verifier)


def generate(length: int = 64) -> Pkce:
    if not 43 <= length <= 128:
        raise ValueError("a PKCE verifier has 43 to 128 characters")
    verifier = secrets.token_urlsafe(96)[:length]
    return Pkce(verifier=verifier, challenge=challenge_for(verifier))


def matches(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(challenge_for(verifier), challenge)
