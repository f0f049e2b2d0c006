"""Every error openkoi raises, in one tree.

    OpenKoiError
    ├── ConfigError                  the caller must fix configuration or input
    │   ├── ModelRefError            `provider/model` malformed or missing its prefix
    │   ├── UnknownProviderError     no provider with that id
    │   ├── CredentialsMissingError  the provider needs a key nobody gave it
    │   ├── CredentialStoreError     auth.json (or the keyring) cannot be read or written
    │   ├── PluginBuildError         `openkoi plugin build` failed
    │   └── PluginLoadError          a plugin file was refused
    │       ├── ManifestError        its manifest is missing, malformed or for another WIT
    │       └── PluginApprovalError  it asks for more than the user approved
    ├── InvalidToolArgumentsError    the model wrote tool arguments that are not JSON
    ├── LedgerError                  the usage database could not be read or written
    └── ProviderError                a provider call failed; `transient` says whether to fall back
        ├── RateLimitedError         429 (transient, honours Retry-After)
        ├── OverloadedError          529 / 503 (transient)
        ├── ServerError              other 5xx (transient)
        ├── ProviderTimeoutError     a deadline fired; `deadline` names it (transient)
        ├── NetworkError             connection refused, reset, DNS (transient)
        ├── CertificateError         the server's TLS certificate failed verification (permanent)
        ├── LocalPoolTimeoutError    every local connection slot stayed busy (permanent, not
        │                            the provider's fault: no cooldown)
        ├── MalformedResponseError   non-JSON, HTML, truncated body or stream (transient)
        ├── AuthenticationError      401 / 403 (permanent)
        ├── InvalidRequestError      400 / 404 / 422 (permanent)
        │   └── ContextOverflowError the prompt does not fit (recognised by code/type)
        ├── ContentPolicyError       the provider refused on policy grounds (permanent)
        ├── UnsupportedError         the provider cannot do this at all, e.g. embeddings
        ├── PluginError              a WASM plugin misbehaved (transient)
        │   ├── PluginTrapError      the guest trapped; its instance was thrown away
        │   ├── PluginLimitError     a limit was hit; `limit` names it
        │   └── PluginDeniedError    the egress policy refused a request (permanent)
        └── AllCandidatesExhausted   every model of a fallback chain failed or is cooling down

The fallback chain decides on `ProviderError.transient` alone, never on message text.
Messages are scrubbed of secrets before they are stored (see `redact`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from openkoi._timefmt import utc_moment

if TYPE_CHECKING:
    from openkoi._timeouts import DeadlineName
    from openkoi._types import TokenUsage

_REDACTED = "[REDACTED]"

# A run of at least this many leading characters of a secret is redacted: servers echo a key's
# first characters back ("Incorrect API key provided: sk-live-abcd..."). Ten is longer than the
# public prefixes alone (`sk-`, `sk-proj-`, `AKIA`) and short enough that no useful part survives.
REDACT_PREFIX = 10


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret, and of each prefix of it at least
    `REDACT_PREFIX` characters long, in `text`."""
    for secret in secrets:
        if not secret or len(secret) < 6:
            continue
        text = text.replace(secret, _REDACTED)
        if len(secret) <= REDACT_PREFIX:
            continue
        head = secret[:REDACT_PREFIX]
        start = text.find(head)
        while start != -1:
            end = start + REDACT_PREFIX
            while (
                end < len(text) and end - start < len(secret) and text[end] == secret[end - start]
            ):
                end += 1
            text = text[:start] + _REDACTED + text[end:]
            start = text.find(head, start + len(_REDACTED))
    return text


class OpenKoiError(Exception):
    """Base of every openkoi error. `str(err)` is a one-line cause a user can act on."""


class ConfigError(OpenKoiError):
    """Configuration or user input is wrong; `key` names the config key when there is one."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.path = path


class ModelRefError(ConfigError):
    pass


class UnknownProviderError(ConfigError):
    pass


class CredentialsMissingError(ConfigError):
    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


class CredentialStoreError(ConfigError):
    """The credential store cannot be read or written; `path` says which file."""


class PluginBuildError(ConfigError):
    """The plugin could not be built; the message says why (with componentize-py's output)."""


class PluginLoadError(ConfigError):
    """A plugin file was refused: unreadable, not a component, or a bad manifest."""


class ManifestError(PluginLoadError):
    """The manifest is missing, malformed, or targets a WIT version this host cannot run."""


class PluginApprovalError(PluginLoadError):
    """The plugin changed and asks for capabilities the user has not approved."""


class InvalidToolArgumentsError(OpenKoiError):
    def __init__(self, message: str, *, tool_call_id: str) -> None:
        super().__init__(message)
        self.tool_call_id = tool_call_id


class OutputValidationError(OpenKoiError):
    """The model's answer to a request with a schema is not JSON matching it; `raw_text` is what
    the model wrote, so nothing is lost."""

    def __init__(self, message: str, *, raw_text: str) -> None:
        super().__init__(message)
        self.raw_text = raw_text


class LedgerError(OpenKoiError):
    """The usage ledger could not be read or written; a call never fails because of it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ProviderError(OpenKoiError):
    """A provider call failed.

    `status` is the HTTP status when there was one, `code` the provider's own error code or type,
    `retry_after` seconds the server asked us to wait, and `partial_usage` the tokens a stream had
    consumed before it failed. `cools_model` is False when the failure was not the model's (the
    server of an attachment the host downloads for it): the chain still moves on after a
    transient one, but the model is not put in cooldown.
    """

    transient: ClassVar[bool] = False
    kind: ClassVar[str] = "other"
    cools_model: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        partial_usage: TokenUsage | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.partial_usage = partial_usage

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{prefix}{self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status={self.status!r}, "
            f"code={self.code!r}, retry_after={self.retry_after!r}, message={self.message!r})"
        )


class RateLimitedError(ProviderError):
    transient = True
    kind = "rate-limited"


class OverloadedError(ProviderError):
    transient = True
    kind = "overloaded"


class ServerError(ProviderError):
    transient = True
    kind = "server"


class ProviderTimeoutError(ProviderError):
    """One of the call's deadlines fired: `deadline` is connect, first_token, idle or total."""

    transient = True
    kind = "timeout"

    def __init__(
        self, message: str, *, deadline: DeadlineName | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.deadline: DeadlineName | None = deadline


class NetworkError(ProviderError):
    transient = True
    kind = "network"


class CertificateError(ProviderError):
    """Permanent: the same certificate fails the same way until the user trusts its CA."""

    kind = "certificate"


class LocalPoolTimeoutError(ProviderError):
    """The call waited its whole deadline for one of this process's own connection slots.

    Permanent and never cooled: the provider was not even asked, so it is not its fault.
    """

    kind = "pool-timeout"


class MalformedResponseError(ProviderError):
    transient = True
    kind = "malformed-response"


class AuthenticationError(ProviderError):
    kind = "auth"


class InvalidRequestError(ProviderError):
    kind = "invalid-request"


class ContextOverflowError(InvalidRequestError):
    kind = "context-overflow"


class ContentPolicyError(ProviderError):
    kind = "content-policy"


class UnsupportedError(ProviderError):
    kind = "unsupported"


class BudgetExceededError(ProviderError):
    """A call would go over a rate budget of `[budgets]` (`budget` names it, e.g.
    `openai/gpt-5.2 rpm=500`); the chain skips the model until `retry_after` frees room."""

    transient = True
    kind = "budget"

    def __init__(
        self, message: str, *, budget: str, provider: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider=provider, code=budget, retry_after=retry_after)
        self.budget = budget


LimitName = Literal["memory", "time", "event-time", "response-bytes", "requests", "values"]


class PluginError(ProviderError):
    """A WASM plugin itself failed (not the service behind it); the chain moves on."""

    transient = True
    kind = "plugin"


class PluginTrapError(PluginError):
    kind = "plugin-trap"


class PluginLimitError(PluginError):
    kind = "plugin-limit"

    def __init__(self, message: str, *, limit: LimitName, provider: str = "") -> None:
        super().__init__(message, provider=provider, code=limit)
        self.limit: LimitName = limit


class PluginDeniedError(PluginError):
    """Permanent: the same request would be refused again."""

    transient = False
    kind = "plugin-denied"


@dataclass(frozen=True)
class CandidateFailure:
    """One model of a chain: the error it gave (or its last one, when `skipped` for cooling down)
    and the epoch second its cooldown ends, if it has one."""

    ref: str
    error: ProviderError
    cooldown_until: float | None = None
    skipped: bool = False


class AllCandidatesExhausted(ProviderError):
    """No model of a role's chain could answer. `candidates` lists each one in chain order;
    `retry_after` is the wait until the earliest cooldown ends."""

    transient = True
    kind = "exhausted"

    def __init__(self, role: str, candidates: Sequence[CandidateFailure], *, now: float) -> None:
        ends = [c.cooldown_until for c in candidates if c.cooldown_until is not None]
        parts = []
        for c in candidates:
            until = ""
            if c.cooldown_until is not None:
                waiting = "room again at" if c.error.kind == "budget" else "cooling until"
                until = f", {waiting} {utc_moment(c.cooldown_until, now)}"
            how = "error"
            if c.skipped:
                how = "skipped" if c.error.kind == "budget" else "skipped, last error"
            parts.append(f"{c.ref} ({how}: {c.error}{until})")
        super().__init__(
            f"every model for the {role} role failed: " + "; ".join(parts),
            retry_after=max(0.0, min(ends) - now) if ends else None,
        )
        self.role = role
        self.candidates = list(candidates)


ERROR_KINDS: dict[str, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        ProviderError,
        RateLimitedError,
        OverloadedError,
        ServerError,
        ProviderTimeoutError,
        NetworkError,
        CertificateError,
        LocalPoolTimeoutError,
        MalformedResponseError,
        AuthenticationError,
        InvalidRequestError,
        ContextOverflowError,
        ContentPolicyError,
        UnsupportedError,
        BudgetExceededError,
    )
}
