"""Finding the credential for a provider: the one resolver the registry calls.

Precedence, first usable match wins (see `openkoi.credentials._discovery` for the details):
the provider's environment variables, the store written by `openkoi connect`
(`~/.openkoi/auth.json`), other tools' sign-ins (Claude CLI file and macOS Keychain, Codex CLI,
Qwen CLI), then a saved key at `~/.openkoi/credentials/<provider>.key`. Expired tokens are
skipped; nothing here makes a network call.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from openkoi._secrets import Secret


def saved_key_path(provider_id: str) -> Path:
    from openkoi.credentials._discovery import saved_key_path as path

    return path(provider_id)


def resolve_api_key(provider_id: str, env_vars: Iterable[str]) -> Secret | None:
    from openkoi.credentials._discovery import resolve

    return resolve(provider_id, tuple(env_vars))
