"""`~/.openkoi/config.toml`: read and validated with pydantic, written back with tomlkit so a
user's comments and key order survive, always through a temp file and a rename.

    [models]
    executor = "openai/gpt-5.2"
    [models.fallback]
    executor = ["anthropic/claude-sonnet-4-5", "ollama/llama3.3"]

    [providers.mygateway]          # a custom OpenAI-compatible endpoint, no code needed
    base_url = "https://llm.example.com/v1"
    api_key_env = "MYGATEWAY_KEY"
    default_model = "llama-3.3-70b"

    [plugins]
    wasm = ["~/.openkoi/plugins/wasm/my-provider.wasm"]

    [timeouts]                     # seconds, for every provider...
    first_token = 120
    [providers.openai.timeouts]    # ...and per provider, which wins
    first_token = 30
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from openkoi._errors import ConfigError
from openkoi._fileio import atomic_write_text, read_state_text
from openkoi._paths import config_path
from openkoi._timeouts import Timeouts


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderEntry(_Section):
    """`[providers.NAME]`: overrides for a built-in provider, or a custom OpenAI-compatible one."""

    name: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    default_model: str | None = None
    embedding_model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int | None = Field(default=None, ge=1, le=100_000)
    idle_connections: int | None = Field(default=None, ge=0, le=100_000)  # kept for reuse
    # a whole answer's decoded body; the default is `openkoi._body.MAX_RESPONSE_BYTES`
    max_response_bytes: int | None = Field(default=None, ge=1024, le=1 << 40)
    proxy: str | None = None  # "" : connect directly, whatever the environment says
    ca_bundle: str | None = None

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ValueError('expected an http://, https:// or socks5:// proxy URL, or ""')
        if value and _url_problem(value) is not None:
            # Never the URL or the parser's words about it: a proxy URL may carry a password.
            raise ValueError("not a valid proxy URL (its host or port cannot be read)")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        problem = _url_problem(value)
        if problem is not None:
            raise ValueError(f"not a valid URL: {problem}")
        return value.rstrip("/")


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be connected to (no host, a port out of range, a broken IPv6
    literal), or None: found here, it is a config error, not a failed call later."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it: a number from 0 to 65535)
    except ValueError as exc:
        text = str(exc).rstrip(".")
        return text[:1].lower() + text[1:]
    if not parts.hostname:
        return "it has no host"
    return None


class ModelsSection(_Section):
    executor: str | None = None
    evaluator: str | None = None
    planner: str | None = None
    embedder: str | None = None
    fallback: dict[str, list[str]] = Field(default_factory=dict)


class FallbackSection(_Section):
    """`[fallback]`: how the chain cools a model down after a transient error.

    Without a `Retry-After` from the server, the n-th failure in a row cools the model for
    `cooldown * backoff**(n-1)` seconds, at most `max_cooldown`. With `wait`, a call whose every
    candidate is cooling waits for the earliest one (up to `max_wait` seconds) instead of failing.
    """

    cooldown: float = Field(default=10.0, gt=0)
    backoff: float = Field(default=2.0, ge=1)
    max_cooldown: float = Field(default=300.0, gt=0)
    wait: bool = False
    max_wait: float = Field(default=60.0, ge=0)


class StateSection(_Section):
    """`[state]`: where cooldowns and rate budgets live. No URL: SQLite in `$OPENKOI_HOME`;
    `redis://` / `rediss://` / `unix://`: one Redis (or Valkey) shared by a fleet.
    `OPENKOI_STATE_URL` overrides it."""

    url: str | None = None
    # seconds, per network operation; at 0.25 s, 8 processes starting at once on a busy 2-core
    # machine timed out connecting and counted a shared budget on their own (120 admitted
    # against rpm=40; 40-61 at 1 s)
    timeout: float = Field(default=1.0, gt=0, le=10)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value and value.lower() in {"sqlite", "local"}:
            return None
        if value and not value.startswith(("redis://", "rediss://", "unix://", "valkey://")):
            raise ValueError("expected a redis://, rediss://, unix:// or valkey:// URL")
        if value and not value.startswith("unix://") and _redis_url_problem(value):
            # Never the URL or the parser's words about it: they may hold the password.
            raise ValueError(
                "not a valid Redis URL (its host, port or db cannot be read; a password with "
                "'/', '?', '#' or '@' in it must be percent-encoded)"
            )
        return value or None


def _redis_url_problem(url: str) -> bool:
    """Whether the Redis client would fail to read `url`'s host, port or db number (it raises
    a bare ValueError naming the bad piece, which may be part of the password)."""
    if _url_problem(url) is not None:
        return True
    parts = urlsplit(url)
    db = dict(parse_qsl(parts.query)).get("db", unquote(parts.path).replace("/", "") or "0")
    return not db.isdigit()


class UsageSection(_Section):
    """`[usage]`: where the ledger lives. No database: `$OPENKOI_HOME/usage.db` (SQLite);
    `postgresql://...`: one PostgreSQL for a fleet, rows queued locally first.
    `OPENKOI_USAGE_DATABASE` overrides it."""

    database: str | None = None
    timeout: float = Field(default=2.0, gt=0, le=60)  # seconds, per database operation

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str | None) -> str | None:
        if value and value.lower() in {"sqlite", "local"}:
            return None
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a postgresql:// URL")
        return value or None


class BudgetEntry(_Section):
    """`[budgets."provider/model"]` or `[budgets.provider]`: requests and tokens per minute."""

    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)


class PluginsSection(BaseModel):
    """`[plugins]`: `wasm` lists plugin files; `[plugins.<id>]` tables hold per-plugin settings."""

    model_config = ConfigDict(extra="allow")
    wasm: list[str] = Field(default_factory=list)
    # Any other key must be a plugin's table, so a typo such as `wsm = [...]` is an error.
    __pydantic_extra__: dict[str, dict[str, Any]] = Field(init=False)


class Config(_Section):
    models: ModelsSection = Field(default_factory=ModelsSection)
    providers: dict[str, ProviderEntry] = Field(default_factory=dict)
    plugins: PluginsSection = Field(default_factory=PluginsSection)
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fallback: FallbackSection = Field(default_factory=FallbackSection)
    state: StateSection = Field(default_factory=StateSection)
    usage: UsageSection = Field(default_factory=UsageSection)
    budgets: dict[str, BudgetEntry] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)


def _describe(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return key, f"unknown key {key!r}"
    return key, f"{key}: {first['msg'].removeprefix('Value error, ')}"


def validate_config(data: dict[str, Any], path: Path | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        key, message = _describe(exc)
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}: {message}", key=key, path=str(path)) from None


class ConfigFile:
    """A config file on disk: `config` is the validated view, `set()` edits the TOML in place.

    Reading uses the standard library's parser; tomlkit, which keeps comments and key order
    for writing back (and takes tens of milliseconds to import), loads on the first edit."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_path()
        self._text = read_state_text(self.path, "config file")
        self._edited: Any = None
        data: dict[str, Any] = {}
        if self._text is not None:
            import tomllib  # imported only when there is a file to read

            try:
                data = tomllib.loads(self._text)
            except tomllib.TOMLDecodeError as exc:
                raise self._not_toml(exc) from None
            except RecursionError:  # arrays or tables nested thousands deep
                raise self._not_toml("nested too deeply") from None
        self.config = validate_config(data, self.path)

    def _not_toml(self, exc: Exception | str) -> ConfigError:
        return ConfigError(f"config file {self.path} is not valid TOML: {exc}", path=str(self.path))

    @property
    def _document(self) -> Any:
        """The file as a tomlkit document, parsed on first use."""
        if self._edited is None:
            import tomlkit

            if self._text is None:
                self._edited = tomlkit.document()
            else:
                try:
                    self._edited = tomlkit.parse(self._text)
                except tomlkit.exceptions.ParseError as exc:
                    raise self._not_toml(exc) from None
                except RecursionError:
                    raise self._not_toml("nested too deeply") from None
        return self._edited

    def set(self, dotted_key: str, value: Any) -> None:
        """Set `a.b.c = value`, creating tables as needed; validated before anything is kept."""
        import tomlkit

        parts = dotted_key.split(".")
        table = self._document
        for part in parts[:-1]:
            if part not in table:
                table[part] = tomlkit.table()
            table = table[part]
        previous = table.get(parts[-1])
        table[parts[-1]] = value
        try:
            self.config = validate_config(self._document.unwrap(), self.path)
        except ConfigError:
            if previous is None:
                del table[parts[-1]]
            else:
                table[parts[-1]] = previous
            raise

    def remove(self, dotted_key: str) -> bool:
        parts = dotted_key.split(".")
        table = self._document
        for part in parts[:-1]:
            if part not in table:
                return False
            table = table[part]
        if parts[-1] not in table:
            return False
        del table[parts[-1]]
        self.config = validate_config(self._document.unwrap(), self.path)
        return True

    def save(self) -> None:
        import tomlkit

        atomic_write_text(self.path, tomlkit.dumps(self._document), mode=0o600)


def backend_url(
    variable: str,
    section: type[_Section],
    key: str,
    configured: str | None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """A backend URL: the environment variable (validated as the config key it overrides), else
    the config value; none, `sqlite` or `local` mean the local SQLite file."""
    env = (os.environ if environ is None else environ).get(variable, "").strip()
    if env:
        try:
            section.model_validate({key: env})
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{variable}: {reason}", key=variable) from None
    url = env or configured
    return None if not url or url.lower() in {"sqlite", "local"} else url


def load_config(path: Path | None = None) -> Config:
    return ConfigFile(path).config
