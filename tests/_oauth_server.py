"""A local sign-in and API server for the subscription providers, on a real loopback socket.

It plays GitHub (device flow and the Copilot token exchange), the Copilot chat API, OpenAI's
ChatGPT sign-in (device step, code exchange with PKCE, refresh rotation) and the ChatGPT
Responses endpoint. Each poll answer comes from a script the test sets, so pending, slow_down,
denial, expiry and success can be ordered at will; every request is recorded.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from _server import LoopbackServer, Recorded, Reply

ACCOUNT_ID = "acct-test-7f3a"
GITHUB_CLIENT = "Iv1.b507a08c87ecfe98"
CHATGPT_CLIENT = "app_EMoamEEZ73f0CkXaXp7hrann"


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def chatgpt_access_token(ttl: float, n: int, account: str = ACCOUNT_ID) -> str:
    return jwt(
        {
            "exp": int(time.time() + ttl),
            "n": n,
            "https://api.openai.com/auth": {"chatgpt_account_id": account},
        }
    )


def chat_sse(text: str, usage: tuple[int, int] = (12, 5)) -> list[str]:
    words = text.split(" ")
    events = [
        "data: "
        + json.dumps(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": "gpt-4.1",
                "choices": [{"index": 0, "delta": {"content": (" " if i else "") + w}}],
            }
        )
        + "\n\n"
        for i, w in enumerate(words)
    ]
    events.append(
        "data: "
        + json.dumps(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        + "\n\n"
    )
    events.append(
        "data: "
        + json.dumps(
            {
                "choices": [],
                "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
            }
        )
        + "\n\n"
    )
    events.append("data: [DONE]\n\n")
    return events


def responses_sse(text: str, model: str = "gpt-5.2") -> list[str]:
    def event(kind: str, **data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    out = [event("response.created", response={"id": "r1", "status": "in_progress"})]
    out += [event("response.output_text.delta", output_index=0, delta=w) for w in text.split("|")]
    out.append(
        event(
            "response.completed",
            response={
                "id": "r1",
                "status": "completed",
                "model": model,
                "output": [],
                "usage": {
                    "input_tokens": 20,
                    "input_tokens_details": {"cached_tokens": 4},
                    "output_tokens": 3,
                },
            },
        )
    )
    return out


@dataclass
class FakeAuth:
    """State of the fake services; tests change the scripts and read the records."""

    # GitHub device flow: one entry per poll; None means "approve now".
    github_script: list[str | None] = field(default_factory=lambda: [None])
    github_interval: int = 5
    github_expires_in: int = 900
    github_tokens: set[str] = field(default_factory=set)
    github_polls: list[float] = field(default_factory=list)
    copilot_ttl: float = 1800.0
    copilot_sessions: list[str] = field(default_factory=list)
    copilot_valid: set[str] = field(default_factory=set)
    copilot_status: int = 200  # 404 plays an account without Copilot
    chat_rejections: int = 0  # answer this many chat requests with 401
    chat_text: str = "Hello from Copilot"
    # ChatGPT: "pending" (403), "slow_down", "access_denied", "expired_token", None = approve.
    chatgpt_script: list[str | None] = field(default_factory=lambda: [None])
    chatgpt_interval: str = "5"
    chatgpt_polls: list[float] = field(default_factory=list)
    chatgpt_bad_verifier: bool = False
    access_ttl: float = 3600.0
    refresh_current: str | None = None
    refresh_spent: set[str] = field(default_factory=set)
    refresh_revoked: bool = False
    refresh_delay: float = 0.0
    refreshes: int = 0
    access_valid: set[str] = field(default_factory=set)
    responses_rejections: int = 0
    responses_text: str = "Hello| from| ChatGPT"
    responses_body: Callable[[Recorded], Reply] | None = None
    issued: int = 0
    requests: list[Recorded] = field(default_factory=list)
    server: LoopbackServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pkce: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def env(self) -> dict[str, str]:
        """Environment pointing openkoi's sign-in and API URLs here, with fast polling."""
        return {
            "OPENKOI_GITHUB_URL": self.url,
            "OPENKOI_GITHUB_API_URL": self.url,
            "OPENKOI_CHATGPT_AUTH_URL": self.url,
            "OPENKOI_CHATGPT_BASE_URL": f"{self.url}/backend-api/codex",
            "OPENKOI_OAUTH_TIME_SCALE": "0.01",
            "OPENKOI_NO_BROWSER": "1",
        }

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    # -- routing ---------------------------------------------------------------------------------

    def handle(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
        route = {
            ("POST", "/login/device/code"): self._github_code,
            ("POST", "/login/oauth/access_token"): self._github_token,
            ("GET", "/copilot_internal/v2/token"): self._copilot_token,
            ("POST", "/copilot/chat/completions"): self._copilot_chat,
            ("POST", "/api/accounts/deviceauth/usercode"): self._chatgpt_code,
            ("POST", "/api/accounts/deviceauth/token"): self._chatgpt_poll,
            ("POST", "/oauth/token"): self._oauth_token,
            ("POST", "/backend-api/codex/responses"): self._responses,
        }.get((request.method, request.path))
        if route is None:
            return Reply.json({"error": f"no route {request.method} {request.path}"}, 404)
        return route(request)

    # -- GitHub --------------------------------------------------------------------------------

    def _github_code(self, request: Recorded) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        assert form["client_id"] == GITHUB_CLIENT, form
        return Reply.json(
            {
                "device_code": "dev-code-secret-1",
                "user_code": "ABCD-1234",
                "verification_uri": f"{self.url}/login/device",
                "expires_in": self.github_expires_in,
                "interval": self.github_interval,
            }
        )

    def _github_token(self, request: Recorded) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code", form
        assert form["device_code"] == "dev-code-secret-1", form
        self.github_polls.append(time.monotonic())
        outcome = self.github_script.pop(0) if self.github_script else "authorization_pending"
        if outcome == "close":
            return Reply(close=True)
        if outcome is not None:
            return Reply.json({"error": outcome, "error_description": f"{outcome} (test)"})
        self.issued += 1
        token = f"gho_testtoken{self.issued:04d}"
        self.github_tokens.add(token)
        return Reply.json({"access_token": token, "token_type": "bearer", "scope": "read:user"})

    def _copilot_token(self, request: Recorded) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("token ") or auth[6:] not in self.github_tokens:
            return Reply.json({"message": "Bad credentials"}, 401)
        if self.copilot_status != 200:
            return Reply.json({"message": "Not Found"}, self.copilot_status)
        self.issued += 1
        session = f"tid=sess{self.issued:04d};exp={int(time.time() + self.copilot_ttl)}"
        self.copilot_sessions.append(session)
        self.copilot_valid.add(session)
        return Reply.json(
            {
                "token": session,
                "expires_at": int(time.time() + self.copilot_ttl),
                "refresh_in": 1500,
                "endpoints": {"api": f"{self.url}/copilot"},
            }
        )

    def _copilot_chat(self, request: Recorded) -> Reply:
        for header in ("editor-version", "editor-plugin-version", "copilot-integration-id"):
            if header not in request.headers:
                return Reply.json({"error": {"message": f"missing {header}"}}, 400)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if self.chat_rejections > 0:
            self.chat_rejections -= 1
            self.copilot_valid.discard(token)
        if token not in self.copilot_valid:
            return Reply.json({"error": {"message": "unauthorized: token expired"}}, 401)
        if not request.json().get("stream"):
            return Reply.json(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "model": "gpt-4.1",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.chat_text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 5},
                }
            )
        return Reply.sse(chat_sse(self.chat_text))

    # -- ChatGPT ---------------------------------------------------------------------------------

    def _chatgpt_code(self, request: Recorded) -> Reply:
        assert request.json() == {"client_id": CHATGPT_CLIENT}, request.json()
        return Reply.json(
            {
                "device_auth_id": "da-secret-1",
                "user_code": "WXYZ-5678",
                "interval": self.chatgpt_interval,
            }
        )

    def _chatgpt_poll(self, request: Recorded) -> Reply:
        assert request.json() == {"device_auth_id": "da-secret-1", "user_code": "WXYZ-5678"}
        self.chatgpt_polls.append(time.monotonic())
        outcome = self.chatgpt_script.pop(0) if self.chatgpt_script else "pending"
        if outcome == "pending":
            return Reply.json({"error": {"message": "Device authorization is pending"}}, 403)
        if outcome == "close":
            return Reply(close=True)
        if outcome is not None:
            return Reply.json({"error": outcome}, 400)
        from openkoi.credentials import _pkce

        pkce = _pkce.generate()
        self._pkce = (pkce.verifier, pkce.challenge)
        verifier = pkce.verifier if not self.chatgpt_bad_verifier else _pkce.generate().verifier
        return Reply.json(
            {
                "authorization_code": "auth-code-secret-1",
                "code_challenge": pkce.challenge,
                "code_verifier": verifier,
            }
        )

    def _issue(self) -> dict[str, Any]:
        self.issued += 1
        access = chatgpt_access_token(self.access_ttl, self.issued)
        refresh = f"rt-secret-{self.issued:04d}"
        self.access_valid.add(access)
        self.refresh_current = refresh
        return {
            "id_token": jwt(
                {
                    "email": "t@example.com",
                    "https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT_ID},
                }
            ),
            "access_token": access,
            "refresh_token": refresh,
        }

    def _oauth_token(self, request: Recorded) -> Reply:
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in content_type:
            form = dict(parse_qsl(request.body.decode()))
            assert form["grant_type"] == "authorization_code", form
            assert form["code"] == "auth-code-secret-1", form
            assert form["redirect_uri"] == f"{self.url}/deviceauth/callback", form
            assert form["client_id"] == CHATGPT_CLIENT, form
            assert self._pkce is not None and form["code_verifier"] == self._pkce[0], "verifier"
            return Reply.json(self._issue())
        body = request.json()
        assert body["grant_type"] == "refresh_token", body
        assert body["client_id"] == CHATGPT_CLIENT, body
        with self._lock:
            self.refreshes += 1
            token = body["refresh_token"]
            if self.refresh_revoked:
                return Reply.json(
                    {"error": {"code": "refresh_token_invalidated", "message": "revoked"}}, 401
                )
            if token in self.refresh_spent or token != self.refresh_current:
                return Reply.json(
                    {"error": {"code": "refresh_token_reused", "message": "already used"}}, 401
                )
            self.refresh_spent.add(token)
            issued = self._issue()
        return Reply(
            status=200,
            body=json.dumps(issued),
            headers={"content-type": "application/json"},
            delay=self.refresh_delay,
        )

    def _responses(self, request: Recorded) -> Reply:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.responses_rejections > 0:
            self.responses_rejections -= 1
            self.access_valid.discard(token)
        if token not in self.access_valid:
            return Reply.json({"detail": "Could not validate your credentials"}, 401)
        if request.headers.get("chatgpt-account-id") != ACCOUNT_ID:
            return Reply.json({"detail": "missing account id"}, 400)
        if self.responses_body is not None:
            return self.responses_body(request)
        return Reply.sse(responses_sse(self.responses_text))


def start_fake_auth(serve: Callable[..., LoopbackServer], **state: Any) -> FakeAuth:
    fake = FakeAuth(**state)
    fake.server = serve(fake.handle)
    return fake
