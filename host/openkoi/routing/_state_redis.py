"""Cooldowns and rate budgets in Redis (or Valkey), shared by every machine that points at it.

Every update is one Lua script, so it is atomic however many machines fail the same model at
once: a cooldown is only ever extended, a budget never admits one call too many. Time is Redis's
own clock (`TIME`), so machines whose clocks disagree still share one window; results are turned
back into the caller's clock as "seconds from now". Keys expire by themselves: a cooldown's key
outlives its cooldown by `max_cooldown` (to remember the failure streak) and then vanishes; a
budget's keys vanish a minute after their last call.

A key no code of ours would write (another type, garbage or out-of-range numbers, missing fields,
megabytes of text) is bad data, not an outage: it is ignored, with one warning naming it, and
replaced or deleted when this machine next writes it; Redis stays in use for everything else.

The `redis` package is imported only when a `redis://` URL is configured (`openkoi[redis]`).
Every operation has a deadline (`[state] timeout`, default 1 s) and the client never retries:
the caller falls back to local state instead.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import sniffio

from openkoi._backends import Health, describe_error, redact_url, url_secrets
from openkoi._errors import ConfigError, ProviderError
from openkoi.routing._budgets import MAX_TOKENS, WINDOW, Admission, Budget, clamp_tokens
from openkoi.routing._cooldown import (
    HORIZON,
    MAX_FAILURES,
    MAX_MESSAGE,
    MAX_REPORTED,
    Cooldown,
    read_cooldown,
    short_message,
)
from openkoi.routing._policy import CooldownPolicy

INSTALL_HINT = "pip install 'openkoi[redis]'"
_IGNORED = "ignored until this machine replaces it"

# Every script starts with these: Redis's clock, and `num`, a stored number only if it is a
# finite one (Lua's `tonumber` takes 'inf' and 'nan'). A key can hold anything anyone wrote.
_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end
local function type_of(key) return redis.call('TYPE', key)['ok'] end
"""

# KEYS[1] the cooldown; ARGV cooldown_ms, backoff, max_cooldown_ms, retry_after_ms (-1: none),
# kind, message, status, horizon_ms, max failures. Returns {ms left, failures, what was wrong
# with the key it replaced, or ''}. Mirrors `_cooldown._next`.
_FAIL = (
    _NOW
    + """
local horizon, max_fail = tonumber(ARGV[8]), tonumber(ARGV[9])
local bad, p_until, p_fail = '', nil, nil
local kind = type_of(KEYS[1])
if kind == 'hash' then
  local prev = redis.call('HMGET', KEYS[1], 'until', 'failures')
  p_until, p_fail = num(prev[1]), num(prev[2])
  if p_until == nil or p_fail == nil or p_until > now + horizon or p_fail < 1
      or p_fail > max_fail or p_fail ~= math.floor(p_fail) then
    bad, p_until, p_fail = 'its until or failures is not valid', nil, nil
  end
elseif kind ~= 'none' then
  bad = 'it is a ' .. kind .. ', not a hash'
end
if bad ~= '' then redis.call('DEL', KEYS[1]) end
local cooldown, backoff, max_cd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local retry = tonumber(ARGV[4])
local active = p_until ~= nil and p_until > now
local failures = 1
if p_until ~= nil then
  if active then failures = p_fail
  elseif now - p_until <= max_cd then failures = math.min(p_fail + 1, max_fail) end
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
return {untl - now, failures, bad}
"""
)

# KEYS the cooldowns; ARGV[1] the bytes kept of each field (a huge one is never sent whole).
# Returns {now, per key: {} (none), {its type} (not a hash) or {until, failures, kind, message,
# status, updated}}.
_GET = (
    _NOW
    + """
local cap = tonumber(ARGV[1])
local out = {now}
for i, key in ipairs(KEYS) do
  local kind = type_of(key)
  if kind == 'hash' then
    local f = redis.call('HMGET', key, 'until', 'failures', 'kind', 'message', 'status',
      'updated')
    for j = 1, 6 do
      if f[j] and #f[j] > cap then f[j] = string.sub(f[j], 1, cap) end
    end
    out[i + 1] = f
  elseif kind == 'none' then out[i + 1] = {}
  else out[i + 1] = {kind} end
end
return out
"""
)

# KEYS[1] the cooldown; ARGV[1] horizon_ms. Deletes it once ended, or when it is no cooldown.
_CLEAR = (
    _NOW
    + """
local kind = type_of(KEYS[1])
if kind == 'none' then return 0 end
local u = nil
if kind == 'hash' then u = num(redis.call('HGET', KEYS[1], 'until')) end
if u == nil or u <= now or u > now + tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return 0
"""
)

# KEYS per budget: a sorted set (reservation -> start ms) and a hash (reservation -> tokens).
# ARGV id, tokens, window_ms, max tokens, then rpm and tpm per budget (-1: none).
# Returns {1, 0, '', 0} or {0, budget index, 'rpm' | 'tpm', ms until there is room}, then a key
# and what was wrong with it for each bad entry deleted. Mirrors `decide`.
_RESERVE = (
    _NOW
    + """
local id, tokens, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_tokens = tonumber(ARGV[4])
local n = #KEYS / 2
local out = {1, 0, '', 0}
local function drop(key, why)
  out[#out + 1] = key
  out[#out + 1] = why
end
local used = {}
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local tz, th = type_of(z), type_of(h)
  if tz ~= 'zset' and tz ~= 'none' then
    redis.call('DEL', z)
    drop(z, 'it is a ' .. tz .. ', not a sorted set')
  end
  if th ~= 'hash' and th ~= 'none' then
    redis.call('DEL', h)
    drop(h, 'it is a ' .. th .. ', not a hash')
  end
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - window)
  for j = 1, #old do redis.call('HDEL', h, old[j]) end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
  local ahead = redis.call('ZRANGEBYSCORE', z, '(' .. (now + window), '+inf')
  if #ahead > 0 then
    for j = 1, #ahead do redis.call('HDEL', h, ahead[j]) end
    redis.call('ZREMRANGEBYSCORE', z, '(' .. (now + window), '+inf')
    drop(z, #ahead .. ' reservation(s) start more than a window ahead')
  end
  used[i] = 0
  if tonumber(ARGV[4 + 2 * i]) >= 0 then
    local garbage = 0
    local all = redis.call('HGETALL', h)
    for j = 1, #all, 2 do
      local v = num(all[j + 1])
      if v == nil or v < 0 or v > max_tokens then
        redis.call('HDEL', h, all[j])
        redis.call('ZREM', z, all[j])
        garbage = garbage + 1
      else
        used[i] = used[i] + v
      end
    end
    if garbage > 0 then drop(h, garbage .. ' reservation(s) hold no valid token count') end
  end
end
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local count = redis.call('ZCARD', z)
  if rpm >= 0 and count + 1 > rpm then
    local wait = window
    if rpm > 0 and count > 0 then
      local oldest = redis.call('ZRANGE', z, count - rpm, count - rpm, 'WITHSCORES')
      wait = math.max(tonumber(oldest[2]) + window - now, 1)
    end
    out[1], out[2], out[3], out[4] = 0, i, 'rpm', wait
    return out
  end
  if tpm >= 0 then
    local need, use = math.min(tokens, tpm), used[i]
    if tpm == 0 or use + need > tpm or use >= tpm then
      local wait = window
      if tpm > 0 then
        local live = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
        local freed = 0
        for j = 1, #live, 2 do
          freed = freed + (num(redis.call('HGET', h, live[j])) or 0)
          if use - freed + need <= tpm and use - freed < tpm then
            wait = tonumber(live[j + 1]) + window - now
            break
          end
        end
      end
      out[1], out[2], out[3], out[4] = 0, i, 'tpm', math.max(wait, 1)
      return out
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
return out
"""
)

_SETTLE = """
for _, h in ipairs(KEYS) do
  if redis.call('TYPE', h)['ok'] == 'hash' and redis.call('HEXISTS', h, ARGV[1]) == 1 then
    redis.call('HSET', h, ARGV[1], ARGV[2])
  end
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
        encoding_errors="replace",  # bytes that are not UTF-8 are a bad value, not a failure
    )


class RedisState:
    """The `StateStore` of a fleet. Raises on an unreachable server (the failover catches it)."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        prefix: str = "openkoi:",
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.where = redact_url(url)
        self.secrets = url_secrets(url)  # masked in any error text shown
        self.timeout = timeout
        self.prefix = prefix
        self.on_warning = on_warning
        self._reported: set[str] = set()
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

    def _bad(self, key: str, problem: str, done: str) -> None:
        """Say once per key that it holds bad data, and what became of it."""
        if key in self._reported or len(self._reported) >= MAX_REPORTED:
            return
        self._reported.add(key)
        message = (
            f"the shared state store {self.where} holds a bad key {key[:200]} ({problem}): {done}"
        )
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            with contextlib.suppress(Warning):  # warnings made errors must not fail the call
                warnings.warn(message, RuntimeWarning, stacklevel=3)

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        _on_asyncio()
        # Twice the socket timeout: a connect and one round trip, never a hang.
        with anyio.fail_after(self.timeout * 2):
            return await self._scripts[script](keys=keys, args=args)

    async def get(self, refs: Iterable[str], *, now: float) -> dict[str, Cooldown]:
        refs = list(refs)
        if not refs:
            return {}
        started = time.monotonic()
        # Enough bytes of each field for MAX_MESSAGE characters and one more (which cuts it).
        cap = MAX_MESSAGE * 4 + 4
        reply = await self._run("get", [self._key(r) for r in refs], [cap])
        # The server's times are mapped from the caller's clock as the reply arrived, which is
        # never before the server read its own: a cooldown read back never ends earlier than
        # Redis has it (at most the round trip later).
        local = now + (time.monotonic() - started)
        server_now = int(reply[0])
        found = {}
        for ref, fields in zip(refs, reply[1:], strict=True):
            if not fields:
                continue
            if len(fields) == 1:
                self._bad(self._key(ref), f"it is a {fields[0]}, not a hash", _IGNORED)
                continue
            cooldown = read_cooldown(
                ref, fields, now=local, seconds=lambda ms: local + (ms - server_now) / 1000
            )
            if isinstance(cooldown, str):
                self._bad(self._key(ref), cooldown, _IGNORED)
                continue
            found[ref] = cooldown
        return found

    async def all(self) -> list[Cooldown]:
        _on_asyncio()
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
        longest = min(policy.max_cooldown, HORIZON)  # what is read back as valid
        if after is not None and math.isfinite(after) and after >= 0:
            retry = round(min(after, longest) * 1000)
        message = short_message(error.message)
        started = time.monotonic()
        left, failures, bad = await self._run(
            "fail",
            [self._key(ref)],
            [
                round(min(policy.cooldown, longest) * 1000),
                policy.backoff,
                round(longest * 1000),
                retry,
                error.kind,
                message,
                "" if error.status is None else error.status,
                round(HORIZON * 1000),
                MAX_FAILURES,
            ],
        )
        if bad:
            self._bad(self._key(ref), bad, "replaced")
        # `left` counts from the server's moment, mapped as `get` maps it (from the reply).
        replied = now + (time.monotonic() - started)
        return Cooldown(
            ref=ref,
            until=replied + int(left) / 1000,
            failures=int(failures),
            kind=error.kind,
            message=message,
            status=error.status,
            updated_at=now,
        )

    async def clear(self, ref: str, *, now: float) -> None:
        await self._run("clear", [self._key(ref)], [round(HORIZON * 1000)])

    def _budget_keys(self, budgets: tuple[Budget, ...]) -> list[str]:
        keys = []
        for budget in budgets:
            keys += [
                f"{self.prefix}budget:{budget.name}:calls",
                f"{self.prefix}budget:{budget.name}:tokens",
            ]
        return keys

    async def reserve(self, budgets: tuple[Budget, ...], tokens: int, *, now: float) -> Admission:
        tokens = clamp_tokens(tokens)
        admission = Admission(True, budgets, tokens=tokens, backend=self.backend)
        args: list[Any] = [admission.id, tokens, round(WINDOW * 1000), MAX_TOKENS]
        for budget in budgets:
            args += [
                -1 if budget.rpm is None else budget.rpm,
                -1 if budget.tpm is None else budget.tpm,
            ]
        ok, index, which, wait, *bad = await self._run("reserve", self._budget_keys(budgets), args)
        for key, problem in zip(bad[::2], bad[1::2], strict=True):
            self._bad(key, problem, "deleted")
        if int(ok) == 1:
            return admission
        refused = budgets[int(index) - 1]
        admission.ok = False
        admission.budget = refused.label(str(which))
        admission.retry_after = int(wait) / 1000
        return admission

    async def settle(self, admission: Admission, tokens: int) -> None:
        keys = self._budget_keys(admission.budgets)[1::2]
        await self._run("settle", keys, [admission.id, clamp_tokens(tokens)])

    async def health(self) -> Health:
        import time

        try:
            _on_asyncio()
            with anyio.fail_after(self.timeout * 2):
                start = time.perf_counter()
                await self._client.ping()
                took = (time.perf_counter() - start) * 1000
        except Exception as exc:
            return Health(self.backend, self.where, False, describe_error(exc, self.secrets))
        return Health(self.backend, self.where, True, f"PING {took:.1f} ms")

    async def aclose(self) -> None:
        if sniffio.current_async_library() != "asyncio":
            return  # nothing was opened: every operation refused before connecting
        with anyio.move_on_after(self.timeout * 2):
            await self._client.aclose()


def _on_asyncio() -> None:
    """redis-py's client runs on asyncio only: under another loop (trio) an operation is
    refused before it touches the client, so the caller keeps to its local store."""
    library = sniffio.current_async_library()
    if library != "asyncio":
        raise RuntimeError(f"the Redis client runs on asyncio, not {library}")
