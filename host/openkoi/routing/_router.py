"""The router: each role's request goes to its own model, and along the role's fallback chain
when that model is rate limited or down.

One retry loop only, this one: providers and the HTTP client never retry underneath it. The chain
moves on after a transient `ProviderError` (and puts that model in cooldown, unless the failure
was not the model's: `ProviderError.cools_model`), and stops on anything else. A stream falls
back only before its first chunk; after that, an error goes to the caller with the usage consumed
so far (a transient one still cools the model for the next call). Every attempt, failed or not,
is one row in the ledger.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from openkoi._config import Config, FallbackSection
from openkoi._errors import (
    AllCandidatesExhausted,
    CandidateFailure,
    ConfigError,
    NetworkError,
    ProviderError,
)
from openkoi._provider import EmbedsWithUsage, ModelProvider
from openkoi._registry import ProviderRegistry
from openkoi._types import ChatChunk, ChatRequest, ChatResponse, Embeddings, TokenUsage
from openkoi.routing._budgets import Admission, budgets_for, estimate_tokens, used_tokens
from openkoi.routing._cooldown import CooldownStore
from openkoi.routing._policy import CooldownPolicy, should_fall_back
from openkoi.routing._roles import Roles, resolve_roles
from openkoi.routing._state import LocalState, open_state
from openkoi.routing._store import StateStore
from openkoi.usage._backend import LedgerBackend, open_ledger
from openkoi.usage._genai import warm as warm_prices
from openkoi.usage._ledger import CallRecord, new_uid
from openkoi.usage._pricing import PriceTable, call_cost, load_price_table
from openkoi.usage._writer import QueuedLedger

T = TypeVar("T")

# With `wait`, never spin: each wait is at least this long, and there are at most this many.
_MIN_WAIT = 0.05
_MAX_ROUNDS = 50


class RouterWarning(UserWarning):
    """Usage could not be recorded, or cooldowns could not be kept on disk; the call went on."""


def _warn(message: str) -> None:
    # Warnings turned into errors must still never fail the call.
    with contextlib.suppress(Warning):
        warnings.warn(message, RouterWarning, stacklevel=4)


@dataclass
class _Attempt:
    role: str
    ref: str
    provider: str
    model: str
    operation: str
    request_id: str
    number: int
    started_at: float
    t0: float
    first_chunk_ms: float | None = None
    admission: Admission | None = None


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return exc.kind
    return "error" if isinstance(exc, Exception) else "cancelled"


def _failed_usage(exc: ProviderError) -> TokenUsage | None:
    """Tokens a failed call consumed: what it reported, else none if it was refused outright,
    else unknown (a timeout or a cut body may have been billed)."""
    if exc.partial_usage is not None:
        return exc.partial_usage
    if exc.status is not None or isinstance(exc, NetworkError):
        return TokenUsage()
    return None


class Router:
    """`chat(role, request)`, `chat_stream(role, request)` and `embed(texts)`, routed by role.

    `clock` gives unix seconds (cooldowns are shared between processes, so wall time) and `sleep`
    waits; both are injectable so tests never sleep.
    """

    def __init__(
        self,
        registry: ProviderRegistry,
        roles: Roles | None = None,
        *,
        settings: FallbackSection | None = None,
        cooldowns: CooldownStore | None = None,
        state: StateStore | None = None,
        ledger: LedgerBackend | None = None,
        record_usage: bool = True,
        prices: PriceTable | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        on_fallback: Callable[[CandidateFailure], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.roles = roles if roles is not None else resolve_roles(registry)
        self.settings = settings or registry.config.fallback
        self.policy = CooldownPolicy.from_config(self.settings)
        self._warn = on_warning or _warn
        config = registry.config
        if state is None:
            state = (
                LocalState(cooldowns)
                if cooldowns is not None
                else open_state(config, on_warning=self._warn)
            )
        self.state = state
        self.budgets = config.budgets
        if record_usage:
            # A ledger we open is written by a background thread (see `QueuedLedger`); one
            # handed to us is written on the call's path, as its owner may read it directly.
            self.ledger: LedgerBackend | None = ledger or QueuedLedger(
                open_ledger(config, on_warning=self._warn), on_warning=self._warn
            )
        else:
            self.ledger = None
        self.prices = prices if prices is not None else load_price_table(registry.config.pricing)
        warm_prices()
        self.clock = clock
        self._sleep = sleep
        self.on_fallback = on_fallback

    @classmethod
    def from_config(
        cls,
        config: Config | None = None,
        *,
        registry: ProviderRegistry | None = None,
        model: str | None = None,
        overrides: dict[str, str | None] | None = None,
        **kwargs: Any,
    ) -> Router:
        """A router for `config` (default: config.toml), with CLI-style role overrides."""
        if config is None:
            from openkoi._config import load_config

            config = load_config()
        registry = registry or ProviderRegistry(config)
        roles = resolve_roles(registry, config, model=model, overrides=overrides)
        prices = load_price_table(config.pricing)
        return cls(registry, roles, settings=config.fallback, prices=prices, **kwargs)

    # -- the library API -------------------------------------------------------------------

    async def chat(self, role: str, request: ChatRequest) -> ChatResponse:
        async def call(provider: ModelProvider, model: str) -> ChatResponse:
            return await provider.chat(_for_model(request, model))

        response, attempt = await self._route(role, "chat", call, estimate_tokens(request))
        self._record(attempt, "ok", response.usage)
        await self._settle(attempt, response.usage)
        response.cost_usd = self.prices.cost(attempt.provider, attempt.model, response.usage)
        return response

    async def chat_stream(self, role: str, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Yield the answer's chunks from the first model of the chain that starts one."""

        async def open_first(
            provider: ModelProvider, model: str
        ) -> tuple[AsyncIterator[ChatChunk], ChatChunk | None]:
            stream = provider.chat_stream(_for_model(request, model))
            try:
                return stream, await anext(stream)
            except StopAsyncIteration:
                return stream, None
            except BaseException:
                await _aclose(stream)
                raise

        (stream, first), attempt = await self._route(
            role, "stream", open_first, estimate_tokens(request)
        )
        attempt.first_chunk_ms = (time.perf_counter() - attempt.t0) * 1000
        usage: TokenUsage | None = None
        outcome, error = "ok", None
        try:
            if first is not None:
                usage = first.usage or usage
                yield first
                async for chunk in stream:
                    usage = chunk.usage or usage
                    yield chunk
            cost = self.prices.cost(attempt.provider, attempt.model, usage)
            if cost is not None:  # the last chunk: what the call cost, as the ledger has it
                yield ChatChunk(cost_usd=cost)
        except ProviderError as exc:
            outcome, error = exc.kind, str(exc)
            if exc.partial_usage is None:
                exc.partial_usage = usage
            usage = exc.partial_usage
            if should_fall_back(exc) and exc.cools_model:  # too late to switch; the next call
                # should not wait on it
                await self.state.fail(attempt.ref, exc, now=self.clock(), policy=self.policy)
            raise
        except BaseException as exc:
            outcome, error = _outcome(exc), type(exc).__name__
            raise
        finally:
            await _aclose(stream)
            self._record(attempt, outcome, usage, error)
            await self._settle(attempt, usage)

    async def embed(self, texts: Sequence[str], *, role: str = "embedder") -> list[list[float]]:
        if not texts:
            return []

        async def call(provider: ModelProvider, model: str) -> Embeddings:
            if isinstance(provider, EmbedsWithUsage):
                return await provider.embed_with_usage(list(texts), model)
            return Embeddings(await provider.embed(list(texts), model))

        tokens = sum(len(t) + 3 for t in texts) // 4
        result, attempt = await self._route(role, "embed", call, tokens)
        self._record(attempt, "ok", result.usage)  # None: the service did not say
        await self._settle(attempt, result.usage)
        return result.vectors

    async def aclose(self) -> None:
        """Close the providers' HTTP clients and the state files."""
        await self.registry.aclose()
        if self.ledger is not None:
            self.ledger.close()
        await self.state.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def chain(self, role: str) -> tuple[str, ...]:
        chain = self.roles[role].chain
        if not chain:
            raise ConfigError(
                f"no model is assigned to the {role} role: set [models] {role} in config.toml, "
                f"pass --{role}, or configure a provider"
            )
        return chain

    # -- the one retry loop ----------------------------------------------------------------

    async def _route(
        self,
        role: str,
        operation: str,
        call: Callable[[ModelProvider, str], Awaitable[T]],
        tokens: int = 0,
    ) -> tuple[T, _Attempt]:
        chain = self.chain(role)
        request_id = new_uid()
        number = 0
        waited = 0.0
        for _round in range(_MAX_ROUNDS):
            failures: list[CandidateFailure] = []
            last: ProviderError | None = None
            states = await self.state.get(chain, now=self.clock())
            for ref in chain:
                now = self.clock()
                state = states.get(ref)
                if state is not None and state.active(now):
                    self._failed(failures, CandidateFailure(ref, state.error(), state.until, True))
                    continue
                admission = None
                budgets = budgets_for(ref, self.budgets)
                if budgets:
                    admission = await self.state.reserve(budgets, tokens, now=now)
                    if not admission.ok:
                        refused = CandidateFailure(
                            ref, admission.error(ref), now + admission.retry_after, True
                        )
                        self._failed(failures, refused)
                        continue
                provider, model = self.registry.resolve(ref)
                number += 1
                attempt = _Attempt(
                    role, ref, ref.partition("/")[0], model, operation, request_id, number, now,
                    time.perf_counter(), admission=admission,
                )  # fmt: skip
                try:
                    result = await call(provider, model)
                except ProviderError as exc:
                    self._record(attempt, exc.kind, _failed_usage(exc), str(exc))
                    await self._settle(attempt, _failed_usage(exc))
                    if not should_fall_back(exc):
                        raise
                    until = None
                    if exc.cools_model:
                        failed = await self.state.fail(
                            ref, exc, now=self.clock(), policy=self.policy
                        )
                        until = failed.until
                    self._failed(failures, CandidateFailure(ref, exc, until))
                    last = exc
                    continue
                except BaseException as exc:
                    self._record(attempt, _outcome(exc), None, type(exc).__name__)
                    raise
                if state is not None:
                    await self.state.clear(ref, now=self.clock())
                return result, attempt
            now = self.clock()
            ends = [f.cooldown_until for f in failures if f.cooldown_until is not None]
            if self.settings.wait and ends:
                delay = max(min(ends) - now, _MIN_WAIT)
                if waited + delay <= self.settings.max_wait:
                    await self._wait(delay)
                    waited += delay
                    continue
            raise AllCandidatesExhausted(role, failures, now=now) from last
        raise AllCandidatesExhausted(role, failures, now=self.clock()) from last

    async def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
        else:
            import anyio

            await anyio.sleep(seconds)

    def _failed(self, failures: list[CandidateFailure], failure: CandidateFailure) -> None:
        failures.append(failure)
        if self.on_fallback is not None:
            self.on_fallback(failure)

    async def _settle(self, attempt: _Attempt, usage: TokenUsage | None) -> None:
        """Settle the call's budget reservation to the tokens it reported (if it reported any)."""
        if attempt.admission is None or usage is None:
            return
        import anyio

        with anyio.CancelScope(shield=True):  # even when the caller is being cancelled
            await self.state.settle(attempt.admission, used_tokens(usage))

    def _record(
        self, attempt: _Attempt, outcome: str, usage: TokenUsage | None, error: str | None = None
    ) -> None:
        if self.ledger is None:
            return
        price = self.prices.lookup(attempt.provider, attempt.model)
        cost = call_cost(price, usage)
        record = CallRecord(
            provider=attempt.provider,
            model=attempt.model,
            role=attempt.role,
            operation=attempt.operation,
            outcome=outcome,
            started_at=attempt.started_at,
            latency_ms=(time.perf_counter() - attempt.t0) * 1000,
            usage=usage,
            error=error,
            first_chunk_ms=attempt.first_chunk_ms,
            price=price,
            cost_usd=cost,
            request_id=attempt.request_id,
            attempt=attempt.number,
        )
        try:
            self.ledger.record(record)
        except Exception as exc:  # the answer matters more than its bookkeeping
            self._warn(f"usage not recorded: {exc}")


def _for_model(request: ChatRequest, model: str) -> ChatRequest:
    return request if request.model == model else request.model_copy(update={"model": model})


async def _aclose(stream: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
