"""GitHub Copilot: OpenAI Chat Completions at the endpoint the Copilot session token names.

The credential is the GitHub token saved by `openkoi connect copilot`. Before the first request
it is exchanged for a short-lived session token (cached in `auth.json`, shared by every openkoi
process, renewed before it expires), and a 401 from the API renews it once and retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from openkoi._errors import AuthenticationError, CredentialsMissingError, CredentialStoreError
from openkoi._provider import ProviderSettings
from openkoi._types import ChatChunk, ChatRequest, ChatResponse
from openkoi.credentials._copilot_token import (
    DEFAULT_API,
    EDITOR_HEADERS,
    exchange,
    session_is_fresh,
)
from openkoi.credentials._discovery import STORE_SOURCE
from openkoi.credentials._endpoints import GitHubEndpoints
from openkoi.credentials._store import AuthStore

from openkoi_providers.openai_compat import OpenAICompatibleProvider

STORE_KEY = "github-copilot"


class CopilotProvider(OpenAICompatibleProvider):
    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.AsyncClient | None = None,
        store: AuthStore | None = None,
    ) -> None:
        settings.options.setdefault("max_tokens_field", "max_tokens")
        super().__init__(settings, client)
        self._store = store
        self._session: dict[str, Any] | None = None
        self._lock = anyio.Lock()

    # -- the session token ------------------------------------------------------------------

    def _editor_headers(self) -> dict[str, str]:
        configured = {k.lower() for k in self.settings.headers}
        return {k: v for k, v in EDITOR_HEADERS.items() if k not in configured}

    def _github_token(self) -> str:
        key = self.settings.api_key
        if key is None:
            raise CredentialsMissingError(
                "GitHub Copilot is not connected; run `openkoi connect copilot`",
                provider=self.id,
            )
        return key.reveal()

    async def _new_session(self, github_token: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30.0) as client:
            return await exchange(
                client, GitHubEndpoints.from_env(), github_token, self._editor_headers()
            )

    async def _ensure_session(self, failed: str | None = None) -> None:
        """A fresh session token; `failed` names one the API just refused (never reused)."""
        async with self._lock:
            current = self._session
            if current is not None and session_is_fresh(current) and current["token"] != failed:
                return
            github_token = self._github_token()
            key = self.settings.api_key
            if key is not None and key.source == STORE_SOURCE:
                store = self._store or AuthStore()

                def fresh(entry: dict[str, Any]) -> bool:
                    session = entry.get("session")
                    return session_is_fresh(session) and (session or {}).get("token") != failed

                async def renew(entry: dict[str, Any]) -> dict[str, Any]:
                    return {**entry, "session": await self._new_session(str(entry["access"]))}

                try:
                    session = (await store.refresh(STORE_KEY, fresh, renew))["session"]
                except CredentialStoreError:
                    # Nowhere to cache it (read-only home): a session for this process only.
                    session = await self._new_session(github_token)
            else:
                session = await self._new_session(github_token)
            self._session = session
            self._point_at(str(session.get("api") or DEFAULT_API))

    def _point_at(self, api: str) -> None:
        """Use the API endpoint the token names, unless the user configured a base URL."""
        if self.settings.base_url.rstrip("/") in ("", DEFAULT_API):
            self.client.base_url = httpx.URL(api.rstrip("/"))

    def _auth_headers(self) -> dict[str, str]:
        token = self._session["token"] if self._session else ""
        return {"authorization": f"Bearer {token}", **self._editor_headers()}

    def _secrets(self) -> tuple[str, ...]:
        found = list(super()._secrets())
        if self._session:
            found.append(str(self._session["token"]))
        return tuple(found)

    # -- requests, retried once on 401 ---------------------------------------------------------

    def _refused(self, exc: AuthenticationError) -> str | None:
        """The session token to replace when `exc` is the API refusing it, else None."""
        if exc.status == 401 and self._session is not None:
            return str(self._session["token"])
        return None

    async def _chat(self, request: ChatRequest) -> ChatResponse:
        await self._ensure_session()
        try:
            return await super()._chat(request)
        except AuthenticationError as exc:
            failed = self._refused(exc)
            if failed is None:
                raise
        await self._ensure_session(failed=failed)
        return await super()._chat(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self._ensure_session()
        failed: str | None = None
        started = False
        try:
            async for chunk in super()._stream(request):
                started = True
                yield chunk
        except AuthenticationError as exc:
            failed = self._refused(exc)
            if failed is None or started:
                raise
        if failed is None:
            return
        await self._ensure_session(failed=failed)
        async for chunk in super()._stream(request):
            yield chunk


def create(settings: ProviderSettings) -> CopilotProvider:
    return CopilotProvider(settings)
