"""The OTP Redis scripts of smsvn before 2026-12-02 (whole milliseconds, no ``E``/``R``), for
``tests/test_otp_redis_upgrade.py``: a worker of that version shares the keys with this one's
during a rolling deploy. Kept byte for byte as that version ran them."""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator
from typing import Final

import pytest

from smsvn import otp
from smsvn._shared_limits import LuaScript
from smsvn.otp._memory import EXPIRED_GRACE, LOG_HORIZON
from smsvn.otp._redis import _REASONS
from smsvn.otp._types import Checked, Claim, Refusal, Start

EARLIER_KEPT: Final = 4

_EARLIER_OF: Final = """
-- The live verifications a record's sends replaced, newest first: {digest, expiry, cooldown,
-- sends, token} each; from the one pd/pe/pr/pn an earlier version kept, if that is all.
local function earlier_of(key)
  local f = redis.call('HMGET', key, 'p', 'pd', 'pe', 'pr', 'pn')
  if f[1] then
    return cjson.decode(f[1])
  end
  if f[2] then
    return {{f[2], f[3], f[4], f[5], ''}}
  end
  return {}
end
"""

BEGIN: Final = LuaScript(
    _EARLIER_OF
    + """
-- KEYS: the verification (hash), the number's sends (zset), every send (zset).
-- ARGV: now, ttl, resend_after (ms), max_attempts, digest, token, grace (ms), global window
-- (ms, 0: no global cap), global limit, number of number caps, then (window ms, limit) pairs.
-- Returns {granted, refusal (1 locked, 2 too soon, 3 capped), retry_after (ms), cap index
-- (-1: global), sends before this one, attempts carried}.
local now = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'd', 'e', 'r', 'a', 'n', 't')
if v[6] == ARGV[6] then
  -- This very start ran already (its answer was lost and the client sent it again): its grant,
  -- not a refusal by its own cooldown.
  return {1, 0, 0, -1, tonumber(v[5]) - 1, tonumber(v[4])}
end
local live = v[1] and tonumber(v[2]) > now
local attempts, sends = 0, 0
if v[1] then
  if live then
    attempts = tonumber(v[4])
    sends = tonumber(v[5])
    if attempts >= tonumber(ARGV[4]) then
      return {0, 1, tonumber(v[2]) - now, -1, sends, attempts}
    end
  end
  if tonumber(v[3]) > now then
    return {0, 2, tonumber(v[3]) - now, -1, sends, attempts}
  end
end
local ncaps = tonumber(ARGV[10])
-- A number's sends of every purpose are kept for LOG_HORIZON at least (a verifier with shorter
-- caps, or none, must not cut short the log other purposes' caps count).
local keep = LOG_HORIZON_MS
for i = 1, ncaps do
  keep = math.max(keep, tonumber(ARGV[9 + 2 * i]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - keep)
local wait, capped = 0, -2
local function over(key, window, limit, index)
  local since = '(' .. string.format('%d', now - window)
  local count = redis.call('ZCOUNT', key, since, '+inf')
  if count >= limit then
    local first = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT',
                             count - limit, 1)
    local w = tonumber(first[2]) + window - now
    if w > wait then
      wait = w
      capped = index
    end
  end
end
for i = 1, ncaps do
  over(KEYS[2], tonumber(ARGV[9 + 2 * i]), tonumber(ARGV[10 + 2 * i]), i - 1)
end
local gwindow = tonumber(ARGV[8])
if gwindow > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - gwindow)
  over(KEYS[3], gwindow, tonumber(ARGV[9]), -1)
end
if capped ~= -2 then
  return {0, 3, wait, capped, sends, attempts}
end
local token = ARGV[6]
redis.call('ZADD', KEYS[2], now, token)
if redis.call('PTTL', KEYS[2]) < keep then
  redis.call('PEXPIRE', KEYS[2], keep)  -- never shortened: a longer window may need it
end
if gwindow > 0 then
  redis.call('ZADD', KEYS[3], now, token)
  redis.call('PEXPIRE', KEYS[3], gwindow)
end
local expires = now + tonumber(ARGV[2])
local resend = now + tonumber(ARGV[3])
if live then
  local earlier = earlier_of(KEYS[1])
  table.insert(earlier, 1, {v[1], v[2], v[3], v[5], v[6] or ''})
  while #earlier > EARLIER_KEPT do
    table.remove(earlier)
  end
  redis.call('HSET', KEYS[1], 'p', cjson.encode(earlier))
else
  redis.call('HDEL', KEYS[1], 'p')
end
redis.call('HDEL', KEYS[1], 'pd', 'pe', 'pr', 'pn')
redis.call('HSET', KEYS[1], 'd', ARGV[5], 'e', string.format('%d', expires),
           'r', string.format('%d', resend), 'a', attempts, 'n', sends + 1, 't', token)
redis.call('PEXPIRE', KEYS[1], math.max(expires, resend) - now + tonumber(ARGV[7]))
return {1, 0, 0, -1, sends, attempts}
""".replace("LOG_HORIZON_MS", str(round(LOG_HORIZON * 1000))).replace(
        "EARLIER_KEPT", str(EARLIER_KEPT)
    )
)

ROLLBACK: Final = LuaScript(
    _EARLIER_OF
    + """
-- KEYS: as BEGIN's. ARGV: the send's token, now (ms), grace (ms).
-- Uncounts the send; puts back the verification it replaced (or none) if it is still the
-- last send, keeping the attempts counted since. Returns 0 (replaced meanwhile), 1, 2.
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local t = redis.call('HGET', KEYS[1], 't')
if not t then
  return 0
end
local earlier = earlier_of(KEYS[1])
redis.call('HDEL', KEYS[1], 'pd', 'pe', 'pr', 'pn')
if t ~= ARGV[1] then
  -- Replaced by a later send: this send's verification is never to be put back.
  local kept = {}
  for _, e in ipairs(earlier) do
    if e[5] ~= ARGV[1] then
      table.insert(kept, e)
    end
  end
  if #kept > 0 then
    redis.call('HSET', KEYS[1], 'p', cjson.encode(kept))
  else
    redis.call('HDEL', KEYS[1], 'p')
  end
  return 0
end
if #earlier == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
local p = table.remove(earlier, 1)
redis.call('HSET', KEYS[1], 'd', p[1], 'e', p[2], 'r', p[3], 'n', p[4], 't', p[5])
if #earlier > 0 then
  redis.call('HSET', KEYS[1], 'p', cjson.encode(earlier))
else
  redis.call('HDEL', KEYS[1], 'p')
end
local ttl = math.max(tonumber(p[2]), tonumber(p[3])) - tonumber(ARGV[2]) + tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
return 2
"""
)

CHECK: Final = LuaScript(
    """
-- KEYS: the verification, this check's answer (a key of its own call). ARGV: the digest to
-- compare, now (ms), max_attempts.
-- Returns {reason (0 approved, 1 wrong, 2 expired, 3 not found, 4 too many attempts), attempts}.
-- A check that counted (approved or wrong) keeps its answer for a minute: the same call sent
-- again (its answer lost) gets it back instead of counting a second attempt.
local done = redis.call('GET', KEYS[2])
if done then
  local reason, counted = string.match(done, '^(%d) (%d+)$')
  return {tonumber(reason), tonumber(counted)}
end
local v = redis.call('HMGET', KEYS[1], 'd', 'e', 'a')
if not v[1] then
  return {3, 0}
end
local attempts = tonumber(v[3])
if tonumber(v[2]) <= tonumber(ARGV[2]) then
  return {2, attempts}
end
if attempts >= tonumber(ARGV[3]) then
  return {4, attempts}
end
attempts = attempts + 1
local a, b = v[1], ARGV[1]
local diff = 0
if #a ~= #b then
  diff = 1
end
for i = 1, math.min(#a, #b) do
  diff = bit.bor(diff, bit.bxor(string.byte(a, i), string.byte(b, i)))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '0 ' .. attempts, 'PX', 60000)
  return {0, attempts}
end
redis.call('HSET', KEYS[1], 'a', attempts)
redis.call('SET', KEYS[2], '1 ' .. attempts, 'PX', 60000)
return {1, attempts}
"""
)


def _ms(seconds: float) -> int:
    """That version's unit: whole milliseconds."""
    return math.floor(seconds * 1000.0)


class EarlierRedisStore(otp.RedisStore):
    """``otp.RedisStore`` as that version ran its steps (the scripts above, millisecond
    arguments); the connection handling is today's, which did not change."""

    async def begin(self, start: Start) -> Claim:
        glob = start.global_cap
        now = _ms(start.now)
        args: list[int | float | str] = [
            now,
            _ms(start.now + start.ttl) - now,
            _ms(start.now + start.resend_after) - now,
            start.max_attempts,
            start.digest,
            start.token,
            _ms(EXPIRED_GRACE),
            0 if glob is None else max(1, _ms(glob.seconds)),
            0 if glob is None else glob.limit,
            len(start.number_caps),
        ]
        for window in start.number_caps:
            args += [max(1, _ms(window.seconds)), window.limit]
        reply = await self._run(BEGIN, self._keys(start.purpose, start.number), args)
        granted, refusal, wait, cap, sends, attempts = reply
        return Claim(
            granted=bool(granted),
            refusal=Refusal(refusal),
            retry_after=wait / 1000.0,
            cap=cap,
            sends=sends,
            attempts=attempts,
        )

    async def rollback(self, start: Start, now: float) -> None:
        await self._run(
            ROLLBACK,
            self._keys(start.purpose, start.number),
            [start.token, _ms(now), _ms(EXPIRED_GRACE)],
        )

    async def check(
        self, number: str, purpose: str, digest: str, max_attempts: int, now: float
    ) -> Checked:
        key = self._keys(purpose, number)[0]
        answer = f"{self._root}:c:{secrets.token_hex(8)}"
        reason, attempts = await self._run(CHECK, (key, answer), [digest, _ms(now), max_attempts])
        return Checked(_REASONS[reason], attempts)


# -- fixtures for the tests that run this version beside the current one --------------------------


@pytest.fixture
async def new(redis_url: str, redis_prefix: str) -> AsyncIterator[otp.RedisStore]:
    """The current version's store."""
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as store:
        yield store


@pytest.fixture
async def old(redis_url: str, redis_prefix: str) -> AsyncIterator[otp.RedisStore]:
    """This earlier version's store, on the same keys as ``new``."""
    async with EarlierRedisStore(redis_url, prefix=redis_prefix) as store:
        yield store


async def granted(store: otp.Store, s: Start) -> Claim:
    """``store.begin(s)``, which must grant the send."""
    claim = await store.begin(s)
    assert claim.granted, claim
    return claim
