"""Credential discovery: where a provider's credential comes from, first usable match wins.

Order (the spec's "Credential Discovery"):

    1. environment variables             ANTHROPIC_API_KEY, OPENAI_API_KEY, ...
    2. the OAuth store                   ~/.openkoi/auth.json (`openkoi connect`)
    3. Claude CLI credentials            ~/.claude/.credentials.json  (anthropic)
    4. Claude CLI Keychain (macOS only)  "Claude Code-credentials"     (anthropic)
    5. OpenAI Codex CLI                  ~/.codex/auth.json            (openai: API key,
                                                                        openai-oauth: tokens)
    6. Qwen CLI                          ~/.qwen/oauth_creds.json      (qwen)
    7. saved openkoi keys                ~/.openkoi/credentials/<provider>.key
    8. the Ollama probe                  (see `openkoi.credentials._status`)

Every source reports a `Finding` that says what it found and where, never the value (the
`Secret` it carries hides itself). An expired token is reported as expired and not used; a
malformed file is skipped with one warning naming it. Nothing here touches the network.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from openkoi._paths import openkoi_home
from openkoi._secrets import Secret
from openkoi.credentials import _jwt

log = logging.getLogger("openkoi.credentials")

Kind = Literal["api-key", "oauth"]
State = Literal["ok", "refreshable", "expired", "revoked", "invalid"]

KEYCHAIN_SERVICE = "Claude Code-credentials"
STORE_SOURCE = "store:auth.json"


@dataclass(frozen=True)
class Finding:
    """One source's answer for one provider. `secret` is None unless it can be used."""

    provider: str
    source: str  # env, store, claude-cli, claude-keychain, codex-cli, qwen-cli, key-file
    where: str  # the variable, file or keychain entry
    kind: Kind = "api-key"
    state: State = "ok"
    expires_at: float | None = None
    detail: str = ""
    secret: Secret | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        return self.secret is not None and self.state in ("ok", "refreshable")

    def describe(self) -> str:
        """A one-line account of the finding, e.g. 'API key from env ANTHROPIC_API_KEY'."""
        what = "API key" if self.kind == "api-key" else "OAuth token"
        label = SOURCE_LABELS.get(self.source, self.source)
        if self.source == "env":
            return f"{what} from env {self.where}"
        if self.source == "store":
            return f"{what} saved by openkoi connect"
        return f"{what} from {label} ({_tilde(self.where)})"


SOURCE_LABELS = {
    "env": "environment",
    "store": "openkoi connect",
    "claude-cli": "Claude CLI",
    "claude-keychain": "macOS Keychain",
    "codex-cli": "Codex CLI",
    "qwen-cli": "Qwen CLI",
    "key-file": "saved key",
}


def _tilde(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


_warned: set[str] = set()


def _warn(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("warning: %s", message)


def _now() -> float:
    return time.time()


# -- 1. environment ---------------------------------------------------------------------------


def env_finding(provider: str, env_vars: Iterable[str]) -> Finding | None:
    for var in env_vars:
        value = os.environ.get(var, "").strip()
        if value:
            return Finding(provider, "env", var, secret=Secret(value, source=f"env:{var}"))
    return None


# -- 2. the store -----------------------------------------------------------------------------


def store_finding(provider: str, entries: dict[str, Any] | None) -> Finding | None:
    entry = (entries or {}).get(provider)
    if not isinstance(entry, dict):
        return None
    where = "auth.json"
    if entry.get("type") == "api-key":
        key = entry.get("key")
        if not isinstance(key, str) or not key:
            return Finding(provider, "store", where, state="invalid", detail="entry has no key")
        return Finding(provider, "store", where, secret=Secret(key, source=STORE_SOURCE))
    access = entry.get("access")
    if not isinstance(access, str) or not access:
        return Finding(provider, "store", where, "oauth", "invalid", detail="entry has no token")
    if isinstance(entry.get("error"), str):
        return Finding(provider, "store", where, "oauth", "revoked", detail=entry["error"])
    expires_at = entry.get("expires_at")
    expires = float(expires_at) if isinstance(expires_at, int | float) else None
    session = entry.get("session")
    if expires is None and isinstance(session, dict):  # Copilot: the session token's expiry
        shown = session.get("expires_at")
        shown_at = float(shown) if isinstance(shown, int | float) else None
        secret = Secret(access, source=STORE_SOURCE, kind="oauth")
        return Finding(provider, "store", where, "oauth", "ok", shown_at, secret=secret)
    state: State = "ok"
    if expires is not None and expires <= _now():
        if not entry.get("refresh"):
            return Finding(provider, "store", where, "oauth", "expired", expires)
        state = "refreshable"
    secret = Secret(access, source=STORE_SOURCE, kind="oauth", expires_at=expires)
    return Finding(provider, "store", where, "oauth", state, expires, secret=secret)


# -- 3-6. other tools' files ------------------------------------------------------------------


def _read_json(path: Path, tool: str) -> Any | None:
    """The parsed file, or None when it is absent; malformed files warn once and give None."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        _warn(str(path), f"skipped {tool} credentials {path}: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError:
        _warn(str(path), f"skipped {tool} credentials {path}: not valid UTF-8")
        return _MALFORMED
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _warn(str(path), f"skipped {tool} credentials {path}: not valid JSON ({exc.msg})")
        return _MALFORMED


_MALFORMED = object()


def _invalid(provider: str, source: str, path: Path, tool: str, why: str) -> Finding:
    if why:
        _warn(str(path), f"skipped {tool} credentials {path}: {why}")
    return Finding(provider, source, str(path), state="invalid", detail=why or "not valid JSON")


def _oauth(provider: str, source: str, where: str, token: str, expires_at: float | None) -> Finding:
    if expires_at is not None and expires_at <= _now():
        return Finding(provider, source, where, "oauth", "expired", expires_at)
    secret = Secret(token, source=f"{source}:{where}", kind="oauth", expires_at=expires_at)
    return Finding(provider, source, where, "oauth", "ok", expires_at, secret=secret)


def _millis(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0
    return None


def _claude_dir() -> Path:
    override = os.environ.get("CLAUDE_CONFIG_DIR", "").strip()
    return Path(override).expanduser() if override else Path.home() / ".claude"


def _parse_claude(data: Any, provider: str, source: str, where: str) -> Finding:
    oauth = data.get("claudeAiOauth") if isinstance(data, dict) else None
    token = oauth.get("accessToken") if isinstance(oauth, dict) else None
    if not isinstance(oauth, dict) or not isinstance(token, str) or not token:
        return Finding(
            provider, source, where, state="invalid", detail="no claudeAiOauth.accessToken"
        )
    return _oauth(provider, source, where, token, _millis(oauth.get("expiresAt")))


def claude_file_finding(provider: str = "anthropic") -> Finding | None:
    path = _claude_dir() / ".credentials.json"
    data = _read_json(path, "Claude CLI")
    if data is None:
        return None
    if data is _MALFORMED:
        return _invalid(provider, "claude-cli", path, "Claude CLI", "")
    found = _parse_claude(data, provider, "claude-cli", str(path))
    if found.state == "invalid":
        return _invalid(provider, "claude-cli", path, "Claude CLI", found.detail)
    return found


def _is_macos() -> bool:
    return sys.platform == "darwin"


def claude_keychain_finding(provider: str = "anthropic") -> Finding | None:
    """The Claude Code entry in the macOS login Keychain (a local `security` call, no network)."""
    if not _is_macos():
        return None
    security = shutil.which("security")
    if security is None:
        return None
    try:
        done = subprocess.run(
            [security, "find-generic-password", "-s", KEYCHAIN_SERVICE, "-w"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    where = f"Keychain {KEYCHAIN_SERVICE!r}"
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        _warn(where, f"skipped the {where} entry: not valid JSON")
        return Finding(provider, "claude-keychain", where, state="invalid", detail="not valid JSON")
    found = _parse_claude(data, provider, "claude-keychain", where)
    if found.state == "invalid":
        _warn(where, f"skipped the {where} entry: {found.detail}")
    return found


def _codex_file() -> Path:
    override = os.environ.get("CODEX_HOME", "").strip()
    return (Path(override).expanduser() if override else Path.home() / ".codex") / "auth.json"


def _codex_document(provider: str) -> tuple[Path, dict[str, Any]] | Finding | None:
    """The Codex CLI's auth.json as an object, a finding that it is unusable, or None if absent."""
    path = _codex_file()
    data = _read_json(path, "Codex CLI")
    if data is None:
        return None
    if data is _MALFORMED or not isinstance(data, dict):
        return _invalid(
            provider,
            "codex-cli",
            path,
            "Codex CLI",
            "" if data is _MALFORMED else "not a JSON object",
        )
    return path, data


def codex_api_key_finding(provider: str = "openai") -> Finding | None:
    document = _codex_document(provider)
    if not isinstance(document, tuple):
        return document
    path, data = document
    key = data.get("OPENAI_API_KEY")
    if isinstance(key, str) and key.strip():
        secret = Secret(key.strip(), source=f"codex-cli:{path}")
        return Finding(provider, "codex-cli", str(path), secret=secret)
    return None


def codex_tokens_finding(provider: str = "openai-oauth") -> Finding | None:
    document = _codex_document(provider)
    if not isinstance(document, tuple):
        return document
    path, data = document
    tokens = data.get("tokens")
    if tokens is None:
        return None
    access = tokens.get("access_token") if isinstance(tokens, dict) else None
    if not isinstance(access, str) or not access:
        return _invalid(provider, "codex-cli", path, "Codex CLI", "'tokens' has no access_token")
    return _oauth(provider, "codex-cli", str(path), access, _jwt.expiry(access))


def qwen_finding(provider: str = "qwen") -> Finding | None:
    path = Path.home() / ".qwen" / "oauth_creds.json"
    data = _read_json(path, "Qwen CLI")
    if data is None:
        return None
    token = data.get("access_token") if isinstance(data, dict) else None
    if data is _MALFORMED or not isinstance(token, str) or not token:
        why = "" if data is _MALFORMED else "no access_token"
        return _invalid(provider, "qwen-cli", path, "Qwen CLI", why)
    return _oauth(provider, "qwen-cli", str(path), token, _millis(data.get("expiry_date")))


# -- 7. saved keys ------------------------------------------------------------------------------


def saved_key_path(provider: str) -> Path:
    return openkoi_home() / "credentials" / f"{provider}.key"


def key_file_finding(provider: str) -> Finding | None:
    path = saved_key_path(provider)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        _warn(str(path), f"skipped saved key {path}: {getattr(exc, 'strerror', None) or exc}")
        return None
    if not value:
        return None
    return Finding(provider, "key-file", str(path), secret=Secret(value, source=f"file:{path}"))


# Sources 3-6, per provider, in the spec's order.
EXTERNAL: dict[str, tuple[Callable[[], Finding | None], ...]] = {
    "anthropic": (claude_file_finding, claude_keychain_finding),
    "openai": (codex_api_key_finding,),
    "openai-oauth": (codex_tokens_finding,),
    "qwen": (qwen_finding,),
}


def read_store() -> tuple[dict[str, Any] | None, str | None]:
    """The store's entries, or (None, why) when it cannot be read (reported, never fatal)."""
    from openkoi._errors import CredentialStoreError
    from openkoi.credentials._store import AuthStore

    try:
        return AuthStore().read(), None
    except CredentialStoreError as exc:
        _warn("store", str(exc))
        return None, str(exc)


def findings(
    provider: str,
    env_vars: Iterable[str] = (),
    *,
    entries: dict[str, Any] | None = None,
    first_usable: bool = False,
) -> list[Finding]:
    """What every source says about `provider`, in order (stopping at the first usable one
    when `first_usable`)."""
    if entries is None:
        entries, _ = read_store()

    def sources() -> Iterable[Callable[[], Finding | None]]:
        yield lambda: env_finding(provider, env_vars)
        yield lambda: store_finding(provider, entries)
        yield from EXTERNAL.get(provider, ())
        yield lambda: key_file_finding(provider)

    out: list[Finding] = []
    for source in sources():
        found = source()
        if found is None:
            continue
        out.append(found)
        if first_usable and found.usable:
            break
    return out


def resolve(provider: str, env_vars: Iterable[str] = ()) -> Secret | None:
    """The credential to use for `provider`, or None."""
    for found in findings(provider, tuple(env_vars), first_usable=True):
        if found.usable:
            return found.secret
    return None
