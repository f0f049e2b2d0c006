"""Cooldowns and rate budgets in Redis (or Valkey), shared by every machine that points at it.

Every update is one Lua script, so it is atomic however many machines fail the same model at
once: a cooldown is only ever extended, a budget never admits one call too many. Time is Redis's
own clock (`TIME`), so machines whose clocks disagree still share one window; results are turned
back into the caller's clock as "seconds from now". Keys expire by themselves: a cooldown's key
outlives its cooldown by `max_cooldown` (to remember the failure streak) and then vanishes; a
budget's keys vanish a minute after their last call.

The `redis` package is imported only when a `redis://` URL is configured (`openkoi[redis]`).
Every operation has a deadline (`[state] timeout`, default 0.25 s) and the client never retries:
the caller falls back to local state instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import anyio

from openkoi._backends import Health, describe_error, redact_url
from openkoi._errors import ConfigError, ProviderError
from openkoi.routing._budgets import WINDOW, Admission, Budget
from openkoi.routing._cooldown import Cooldown
from openkoi.routing._policy import CooldownPolicy

INSTALL_HINT = "pip install 'openkoi[redis]'"

_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] the cooldown; ARGV cooldown_ms, backoff, max_cooldown_ms, retry_after_ms (-1: none),
# kind, message, status. Returns {ms left, failures}. Mirrors `_cooldown._next`.
_FAIL = (
    _NOW
    + """
local prev = redis.call('HMGET', KEYS[1], 'until', 'failures')
local p_until, p_fail = tonumber(prev[1]), tonumber(prev[2])
local cooldown, backoff, max_cd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local retry = tonumber(ARGV[4])
local active = p_until ~= nil and p_until > now
local failures = 1
if p_until ~= nil then
  if active then failures = p_fail
  elseif now - p_until <= max_cd then failures = p_fail + 1 end
end
local dur = retry
if retry < 0 then
  dur = cooldown * (backoff ^ (failures - 1))
  if dur ~= dur or dur > max_cd then dur = max_cd end
end
local untl = now + math.floor(dur)
if active and p_until > untl then untl = p_until end
redis.call('HSET', KEYS[1], 'until', untl, 'failures', failures, 'kind', ARGV[5],
  'message', ARGV[6], 'status', ARGV[7], 'updated', now)
redis.call('PEXPIREAT', KEYS[1], untl + max_cd)
return {untl - now, failures}
"""
)

# KEYS the cooldowns. Returns {now, {until, failures, kind, message, status, updated}...}.
_GET = (
    _NOW
    + """
local out = {now}
for i, key in ipairs(KEYS) do
  out[i + 1] = redis.call('HMGET', key, 'until', 'failures', 'kind', 'message', 'status',
    'updated')
end
return out
"""
)

_CLEAR = (
    _NOW
    + """
local u = tonumber(redis.call('HGET', KEYS[1], 'until'))
if u ~= nil and u <= now then redis.call('DEL', KEYS[1]) end
return 0
"""
)

# KEYS per budget: a sorted set (reservation -> start ms) and a hash (reservation -> tokens).
# ARGV id, tokens, window_ms, then rpm and tpm per budget (-1: none).
# Returns {1} or {0, budget index, 'rpm' | 'tpm', ms until there is room}. Mirrors `decide`.
_RESERVE = (
    _NOW
    + """
local id, tokens, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS / 2
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - window)
  for j = 1, #old do redis.call('HDEL', h, old[j]) end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
end
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local count = redis.call('ZCARD', z)
  if rpm >= 0 and count + 1 > rpm then
    if rpm == 0 or count == 0 then return {0, i, 'rpm', window} end
    local oldest = redis.call('ZRANGE', z, count - rpm, count - rpm, 'WITHSCORES')
    return {0, i, 'rpm', math.max(tonumber(oldest[2]) + window - now, 1)}
  end
  if tpm >= 0 then
    if tpm == 0 then return {0, i, 'tpm', window} end
    local need = math.min(tokens, tpm)
    local used = 0
    for _, v in ipairs(redis.call('HVALS', h)) do used = used + tonumber(v) end
    if used + need > tpm or used >= tpm then
      local live = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
      local freed, wait = 0, window
      for j = 1, #live, 2 do
        freed = freed + tonumber(redis.call('HGET', h, live[j]) or '0')
        if used - freed + need <= tpm and used - freed < tpm then
          wait = tonumber(live[j + 1]) + window - now
          break
        end
      end
      return {0, i, 'tpm', math.max(wait, 1)}
    end
  end
end
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZADD', z, now, id)
  redis.call('HSET', h, id, tokens)
  redis.call('PEXPIRE', z, window)
  redis.call('PEXPIRE', h, window)
end
return {1}
"""
)

_SETTLE = """
for _, h in ipairs(KEYS) do
  if redis.call('HEXISTS', h, ARGV[1]) == 1 then redis.call('HSET', h, ARGV[1], ARGV[2]) end
end
return 0
"""


def _load_client(url: str, timeout: float) -> Any:
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:
        raise ConfigError(
            f"[state] url is a Redis URL, but the redis package is missing: {INSTALL_HINT}",
            key="state.url",
        ) from None
    if url.startswith("valkey://"):
        url = "redis://" + url.removeprefix("valkey://")
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        decode_responses=True,
    )


class RedisState:
    """The `StateStore` of a fleet. Raises on an unreachable server (the failover catches it)."""

    backend = "redis"

    def __init__(self, url: str, *, timeout: float = 0.25, prefix: str = "openkoi:") -> None:
        self.where = redact_url(url)
        self.timeout = timeout
        self.prefix = prefix
        self._client = _load_client(url, timeout)
        self._scripts = {
            name: self._client.register_script(body)
            for name, body in (
                ("fail", _FAIL),
                ("get", _GET),
                ("clear", _CLEAR),
                ("reserve", _RESERVE),
                ("settle", _SETTLE),
            )
        }

    def __repr__(self) -> str:
        return f"RedisState({self.where!r})"

    def _key(self, ref: str) -> str:
        return f"{self.prefix}cooldown:{ref}"

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        # Twice the socket timeout: a connect and one round trip, never a hang.
        with anyio.fail_after(self.timeout * 2):
            return await self._scripts[script](keys=keys, args=args)

    async def get(self, refs: Iterable[str], *, now: float) -> dict[str, Cooldown]:
        refs = list(refs)
        if not refs:
            return {}
        started = time.monotonic()
        reply = await self._run("get", [self._key(r) for r in refs], [])
        # The server's times are mapped from the caller's clock as the reply arrived, which is
        # never before the server read its own: a cooldown read back never ends earlier than
        # Redis has it (at most the round trip later).
        local = now + (time.monotonic() - started)
        server_now = int(reply[0])
        found = {}
        for ref, fields in zip(refs, reply[1:], strict=True):
            if fields[0] is None:
                continue
            until, failures, kind, message, status, updated = fields
            found[ref] = Cooldown(
                ref=ref,
                until=local + (int(until) - server_now) / 1000,
                failures=int(failures),
                kind=kind,
                message=message,
                status=int(status) if status else None,
                updated_at=local + (int(updated) - server_now) / 1000,
            )
        return found

    async def all(self) -> list[Cooldown]:
        keys: list[str] = []
        with anyio.fail_after(self.timeout * 4):
            async for key in self._client.scan_iter(match=f"{self.prefix}cooldown:*", count=500):
                keys.append(key)
                if len(keys) >= 10_000:  # a bounded report, however many models there are
                    break
        refs = [k.removeprefix(f"{self.prefix}cooldown:") for k in keys]
        found = await self.get(refs, now=time.time())
        return sorted(found.values(), key=lambda c: c.ref)

    async def fail(
        self, ref: str, error: ProviderError, *, now: float, policy: CooldownPolicy
    ) -> Cooldown:
        retry = -1  # none, or garbage (negative, NaN): the policy's own backoff
        after = error.retry_after
        if after is not None and math.isfinite(after) and after >= 0:
            retry = round(min(after, policy.max_cooldown) * 1000)
        started = time.monotonic()
        left, failures = await self._run(
            "fail",
            [self._key(ref)],
            [
                round(policy.cooldown * 1000),
                policy.backoff,
                round(policy.max_cooldown * 1000),
                retry,
                error.kind,
                error.message,
                "" if error.status is None else error.status,
            ],
        )
        # `left` counts from the server's moment, mapped as `get` maps it (from the reply).
        replied = now + (time.monotonic() - started)
        return Cooldown(
            ref=ref,
            until=replied + int(left) / 1000,
            failures=int(failures),
            kind=error.kind,
            message=error.message,
            status=error.status,
            updated_at=now,
        )

    async def clear(self, ref: str, *, now: float) -> None:
        await self._run("clear", [self._key(ref)], [])

    def _budget_keys(self, budgets: tuple[Budget, ...]) -> list[str]:
        keys = []
        for budget in budgets:
            keys += [
                f"{self.prefix}budget:{budget.name}:calls",
                f"{self.prefix}budget:{budget.name}:tokens",
            ]
        return keys

    async def reserve(self, budgets: tuple[Budget, ...], tokens: int, *, now: float) -> Admission:
        admission = Admission(True, budgets, tokens=tokens, backend=self.backend)
        args: list[Any] = [admission.id, tokens, round(WINDOW * 1000)]
        for budget in budgets:
            args += [
                -1 if budget.rpm is None else budget.rpm,
                -1 if budget.tpm is None else budget.tpm,
            ]
        reply = await self._run("reserve", self._budget_keys(budgets), args)
        if int(reply[0]) == 1:
            return admission
        refused = budgets[int(reply[1]) - 1]
        admission.ok = False
        admission.budget = refused.label(str(reply[2]))
        admission.retry_after = int(reply[3]) / 1000
        return admission

    async def settle(self, admission: Admission, tokens: int) -> None:
        keys = self._budget_keys(admission.budgets)[1::2]
        await self._run("settle", keys, [admission.id, tokens])

    async def health(self) -> Health:
        import time

        try:
            with anyio.fail_after(self.timeout * 2):
                start = time.perf_counter()
                await self._client.ping()
                took = (time.perf_counter() - start) * 1000
        except Exception as exc:
            return Health(self.backend, self.where, False, describe_error(exc))
        return Health(self.backend, self.where, True, f"PING {took:.1f} ms")

    async def aclose(self) -> None:
        with anyio.move_on_after(self.timeout * 2):
            await self._client.aclose()
