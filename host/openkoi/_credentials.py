"""Finding the credential for a provider.

Precedence, first match wins: the environment variables the provider names, then a saved key at
`~/.openkoi/credentials/<provider>.key`. (Subscription tokens and other tools' credential files
are layered on top of this by the credential discovery module.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from openkoi._paths import openkoi_home
from openkoi._secrets import Secret


def saved_key_path(provider_id: str) -> os.PathLike[str]:
    return openkoi_home() / "credentials" / f"{provider_id}.key"


def resolve_api_key(provider_id: str, env_vars: Iterable[str]) -> Secret | None:
    for var in env_vars:
        value = os.environ.get(var, "").strip()
        if value:
            return Secret(value, source=f"env:{var}")
    path = openkoi_home() / "credentials" / f"{provider_id}.key"
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return Secret(value, source=f"file:{path}") if value else None
