"""Test isolation: every test gets its own OPENKOI_HOME and HOME, and no provider keys leak in."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _fleet import PostgresServer, RedisServer
from _server import Handler, LoopbackServer

_CREDENTIAL_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHER_API_KEY",
    "DEEPSEEK_API_KEY",
    "MINIMAX_API_KEY",
    "MOONSHOT_API_KEY",
    "XAI_API_KEY",
    "OPENKOI_MODEL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "OLLAMA_HOST",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    # other tools' credential folders and openkoi's credential settings
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "OPENKOI_CREDENTIAL_STORE",
    "PYTHON_KEYRING_BACKEND",
    "OPENKOI_GITHUB_URL",
    "OPENKOI_GITHUB_API_URL",
    "OPENKOI_GITHUB_DEVICE_URL",
    "OPENKOI_GITHUB_TOKEN_URL",
    "OPENKOI_COPILOT_TOKEN_URL",
    "OPENKOI_CHATGPT_AUTH_URL",
    "OPENKOI_OAUTH_TIME_SCALE",
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENKOI_HOME", str(home / ".openkoi"))
    for var in _CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.endswith("_BASE_URL"):
            monkeypatch.delenv(var, raising=False)
    # Keep the Ollama probe away from any real local server.
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    return home


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], LoopbackServer]]:
    """Start loopback servers for the test; all are stopped afterwards."""
    started: list[LoopbackServer] = []

    def start(handler: Handler) -> LoopbackServer:
        server = LoopbackServer(handler).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- shared-state servers (real redis-server and PostgreSQL, started once per session) ----------


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_session: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_session.flush()
    return redis_session.url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may kill."""
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().init()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres.create_database()
