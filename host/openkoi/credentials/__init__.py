"""Credentials: the store (`auth.json`), discovery of other tools' sign-ins, and the device-code
OAuth flows behind `openkoi connect`.

    _store.py          auth.json (or the OS keyring): locked, atomic, mode 0600
    _discovery.py      the ordered credential sources; findings never show a secret
    _status.py         what `openkoi connect status` reports, Ollama probe included
    _device_flow.py    RFC 8628 polling rules shared by both flows
    _github.py         GitHub's device flow (Copilot)
    _copilot_token.py  GitHub token -> Copilot session token
    _chatgpt_oauth.py  ChatGPT device step, PKCE code exchange, refresh rotation
    _pkce.py, _jwt.py  small helpers
    _endpoints.py      every URL, overridable by environment variables
"""

from __future__ import annotations

from openkoi._errors import CredentialStoreError
from openkoi.credentials._discovery import Finding, findings, resolve
from openkoi.credentials._store import AuthStore

__all__ = ["AuthStore", "CredentialStoreError", "Finding", "findings", "resolve"]
