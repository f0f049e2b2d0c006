"""`~/.openkoi/auth.json`: OAuth tokens and saved API keys, one entry per provider.

    {"version": 1, "providers": {
        "openai-oauth": {"type": "oauth", "access": "...", "refresh": "...", "expires_at": 1.7e9,
                         "account_id": "..."},
        "anthropic":    {"type": "api-key", "key": "..."}}}

Every change is a locked read-modify-write: take the file lock, re-read, change one entry, write
a temp file (mode 0600) and rename it over the old one. So two openkoi processes never lose each
other's entries, and a refresh that loses the race re-reads the winner's token instead of
spending a refresh token the winner already rotated. A file that is not valid JSON is reported
with its path and never overwritten. The document can live in the OS keyring instead
(`OPENKOI_CREDENTIAL_STORE=keyring`, needs the `keyring` package); the lock stays a file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from openkoi._errors import CredentialStoreError
from openkoi._fileio import read_state_text
from openkoi._paths import openkoi_home

AUTH_FILE = "auth.json"
LOCK_FILE = ".auth.json.lock"
KEYRING_SERVICE = "openkoi"
KEYRING_USER = "auth.json"
LOCK_TIMEOUT = 30.0
STORE_ENV = "OPENKOI_CREDENTIAL_STORE"

Entry = dict[str, Any]


class _Backend(Protocol):
    description: str

    def load(self) -> str | None: ...

    def save(self, text: str) -> None: ...


class FileBackend:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)

    def load(self) -> str | None:
        return read_state_text(self.path, "credential file", CredentialStoreError)

    def save(self, text: str) -> None:
        from openkoi._fileio import atomic_write_text

        try:
            _make_private_dir(self.path.parent)
            atomic_write_text(self.path, text, mode=0o600)
        except OSError as exc:
            raise _write_error(self.path, exc) from None


class KeyringBackend:
    """The whole document as one secret in the OS keyring (service `openkoi`)."""

    def __init__(self) -> None:
        try:
            import keyring
            from keyring.backends import fail
        except ImportError:
            raise CredentialStoreError(
                f"{STORE_ENV}=keyring needs the keyring package: pip install 'openkoi[keyring]'"
            ) from None
        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
            raise CredentialStoreError(
                f"{STORE_ENV}=keyring but no usable OS keyring was found "
                f"({type(backend).__name__}); unset {STORE_ENV} to use ~/.openkoi/auth.json"
            )
        self._keyring = keyring
        self.description = f"OS keyring ({type(backend).__name__}, service {KEYRING_SERVICE!r})"

    def load(self) -> str | None:
        try:
            value: str | None = self._keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception as exc:  # keyring backends raise their own error types
            raise CredentialStoreError(f"cannot read the OS keyring: {exc}") from None
        return value

    def save(self, text: str) -> None:
        try:
            self._keyring.set_password(KEYRING_SERVICE, KEYRING_USER, text)
        except Exception as exc:
            raise CredentialStoreError(f"cannot write the OS keyring: {exc}") from None


def _make_private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _write_error(path: Path, exc: OSError) -> CredentialStoreError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += " (is the home directory read-only? set OPENKOI_HOME to a writable folder)"
    return CredentialStoreError(f"cannot save credentials to {path}: {reason}", path=str(path))


def default_backend(home: Path) -> _Backend:
    choice = os.environ.get(STORE_ENV, "file").strip().lower() or "file"
    if choice == "keyring":
        return KeyringBackend()
    if choice != "file":
        raise CredentialStoreError(f"{STORE_ENV} must be 'file' or 'keyring', not {choice!r}")
    return FileBackend(home / AUTH_FILE)


class AuthStore:
    """The credential store. Reads need no lock (writes are atomic renames); writes take it."""

    def __init__(self, home: Path | None = None, backend: _Backend | None = None) -> None:
        self.home = home or openkoi_home()
        self.backend = backend or default_backend(self.home)
        self.lock_path = self.home / LOCK_FILE

    @property
    def description(self) -> str:
        return self.backend.description

    # -- reading --------------------------------------------------------------------------

    def read(self) -> dict[str, Entry]:
        """Every entry; raises `CredentialStoreError` naming the file when it is corrupted."""
        text = self.backend.load()
        if text is None or not text.strip():
            return {}
        where = self.backend.description
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialStoreError(
                f"{where} is not valid JSON ({exc.msg}, line {exc.lineno}); openkoi left it "
                "untouched: fix it, or move it away and run `openkoi connect` again",
                path=where,
            ) from None
        providers = data.get("providers") if isinstance(data, dict) else None
        if not isinstance(providers, dict) or not all(
            isinstance(v, dict) for v in providers.values()
        ):
            raise CredentialStoreError(
                f"{where} does not look like an openkoi credential file (no 'providers' table); "
                "openkoi left it untouched",
                path=where,
            )
        return {str(k): dict(v) for k, v in providers.items()}

    def get(self, provider: str) -> Entry | None:
        return self.read().get(provider)

    # -- writing --------------------------------------------------------------------------

    def _lock(self) -> Any:
        from filelock import FileLock

        try:
            _make_private_dir(self.home)
        except OSError as exc:
            raise _write_error(self.home / AUTH_FILE, exc) from None
        return FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT, mode=0o600, thread_local=False)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import Timeout

        lock = self._lock()
        try:
            lock.acquire()
        except Timeout:
            raise CredentialStoreError(
                f"another openkoi process holds {self.lock_path} for over {LOCK_TIMEOUT:.0f} s",
                path=str(self.lock_path),
            ) from None
        except OSError as exc:
            raise _write_error(self.lock_path, exc) from None
        try:
            yield
        finally:
            lock.release()

    def check_writable(self) -> None:
        """Raise `CredentialStoreError` now if a later write would fail (read-only home)."""
        with self._locked():
            pass

    def _write(self, entries: dict[str, Entry]) -> None:
        document = {"version": 1, "providers": dict(sorted(entries.items()))}
        self.backend.save(json.dumps(document, indent=2) + "\n")

    def update(self, provider: str, change: Callable[[Entry | None], Entry | None]) -> Entry | None:
        """Locked read-modify-write of one entry; `change` returns the new entry or None to drop."""
        with self._locked():
            entries = self.read()
            new = change(entries.get(provider))
            if new is None:
                if provider not in entries:
                    return None
                entries.pop(provider)
            else:
                entries[provider] = {**new, "updated_at": time.time()}
            self._write(entries)
            return new

    def put(self, provider: str, entry: Entry) -> None:
        self.update(provider, lambda _old: entry)

    def remove(self, provider: str) -> bool:
        removed: list[bool] = []

        def drop(old: Entry | None) -> None:
            removed.append(old is not None)
            return None

        self.update(provider, drop)
        return bool(removed and removed[0])

    def clear(self) -> list[str]:
        """Remove every entry; returns the providers that had one."""
        with self._locked():
            entries = self.read()
            if entries:
                self._write({})
            return sorted(entries)

    async def refresh(
        self,
        provider: str,
        is_fresh: Callable[[Entry], bool],
        refresher: Callable[[Entry], Awaitable[Entry]],
    ) -> Entry:
        """The entry, refreshed by `refresher` when `is_fresh` says it is not.

        The check is repeated under the lock: a process that waited while another refreshed finds
        the new token and returns it without calling `refresher` (a rotated refresh token must be
        spent once). Other providers' entries are carried over untouched.
        """
        entry = self.get(provider)
        if entry is not None and is_fresh(entry):
            return entry
        from filelock import AsyncFileLock, Timeout

        from openkoi._errors import AuthenticationError

        try:
            _make_private_dir(self.home)
        except OSError as exc:
            raise _write_error(self.home / AUTH_FILE, exc) from None
        lock = AsyncFileLock(str(self.lock_path), timeout=LOCK_TIMEOUT, mode=0o600)
        try:
            await lock.acquire()
        except Timeout:
            raise CredentialStoreError(
                f"another openkoi process holds {self.lock_path} for over {LOCK_TIMEOUT:.0f} s",
                path=str(self.lock_path),
            ) from None
        except OSError as exc:
            raise _write_error(self.lock_path, exc) from None
        try:
            entries = self.read()
            current = entries.get(provider)
            if current is None:
                from openkoi._errors import CredentialsMissingError

                raise CredentialsMissingError(
                    f"{provider} is no longer connected", provider=provider
                )
            if is_fresh(current):
                return current
            try:
                new = await refresher(current)
            except AuthenticationError as exc:
                # Keep the entry (and every other one), marked, so `connect status` can say why.
                entries[provider] = {**current, "error": exc.message}
                self._write(entries)
                raise
            entries[provider] = {**new, "updated_at": time.time()}
            self._write(entries)
            return new
        finally:
            await lock.release()
