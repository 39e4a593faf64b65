"""``RedisStore``: verifications in Redis, shared by every worker and machine (extra
``smsvn[redis]``); each step is one Lua script, so one round trip and atomic.

Keys (``prefix`` is ``smsvn`` by default; ``{otp}`` keeps them in one Redis Cluster slot, as
the global budget is counted in the same script as a number's sends):

- ``<prefix>:{otp}:v:<purpose>:<number digest>``, a hash: ``d`` the live code's digest, ``e``
  its expiry and ``r`` the end of its cooldown in whole milliseconds, ``E`` and ``R`` the same
  in microseconds and ``u`` the token of the send they were written for, ``a`` attempts
  counted, ``n`` codes sent for this verification, ``t`` the token of its last send; ``p``:
  the live verifications its sends replaced, newest first (JSON: ``[[digest, expiry,
  cooldown, sends, token, expiry us, cooldown us], ...]``, at most ``EARLIER_KEPT``), the
  first put back if the send provably went nowhere, one dropped when its own send did; never
  checked. (``pd``, ``pe``, ``pr``, ``pn``: one replaced verification, as an earlier version
  kept it; read, never written.)
- ``<prefix>:{otp}:n:<number digest>``, a sorted set: the number's sends of every purpose
  for a day (``LOG_HORIZON``) or the longest cap window if longer (member: a send's random
  token; score: its time).
- ``<prefix>:{otp}:c:<random>``: the answer of one check that counted, for a minute, so that
  the same call sent again (its answer lost, the client retrying) is not counted twice.
- ``<prefix>:{otp}:all``, a sorted set: every send in the global budget's window.

Times are whole microseconds of the verifier's clock (``ticks``, as ``MemoryStore`` decides),
passed into each script. What is stored stays readable by an earlier version (whole
milliseconds, which decided within a millisecond of an edge unlike ``MemoryStore``), so its
workers and this one's may share the keys during a rolling deploy: ``e``/``r`` stay whole
milliseconds (``E``/``R`` are used only while ``u`` is the record's ``t`` and they refine
``e``/``r``: an earlier version's write leaves them stale), and the send logs' scores are
milliseconds with the microseconds as a fraction. (An earlier version's worker truncates a
fractional wait, so during the deploy it may say a cap opens up to a millisecond early.) The
rules never depend on a key's TTL, which is only for cleanup (a verification is removed
``EXPIRED_GRACE`` seconds after its expiry and cooldown end; a send log after
``LOG_HORIZON``).
A start is recognised by its token when the client sends it again: its grant, not a refusal.
Digests are keyed HMACs (the verifier's ``secret``): no key or value holds a code or a phone
number, or anything from which one could be computed without the secret. Codes are compared
in constant time inside the script (an XOR over every byte); what is compared are HMACs anyway.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Final

from smsvn._redis_url import checked_prefix, redis_client
from smsvn._shared_limits import LuaScript, RedisCalls
from smsvn.otp._memory import EXPIRED_GRACE, LOG_HORIZON
from smsvn.otp._types import (
    Checked,
    Claim,
    Reason,
    Refusal,
    Start,
    StoreError,
    span,
    ticks,
    ticks_up,
)

__all__ = ["BEGIN", "CHECK", "DEFAULT_TIMEOUT", "ROLLBACK", "RedisStore"]

DEFAULT_TIMEOUT: Final = 1.0
"""Seconds a Redis connect or answer may take (a client the store creates)."""

_GRACE_MS: Final = math.ceil(EXPIRED_GRACE * 1000)
"""The keys' cleanup margin, in Redis's unit."""

EARLIER_KEPT: Final = 4
"""Replaced verifications a record keeps to put back (see ``MemoryStore``'s)."""

_TIMES: Final = """
-- Times are whole microseconds (the stores' unit); what Redis itself holds of them stays in
-- milliseconds an earlier version reads the same way: the hash's e and r (whole ms, with E and
-- R the same times in microseconds) and the send logs' scores (ms with the microseconds as a
-- fraction, exact: distinct microseconds give distinct, ordered scores).
local function us(ms, precise, mine)
  -- E or R when it is this send's (mine: u, the token E and R were written with, is t) and
  -- refines e or r; an earlier version (or its workers during a rolling deploy) writes e, r
  -- and t alone, leaving any E, R and u stale.
  ms = tonumber(ms)
  precise = tonumber(precise)
  if mine and precise and math.floor(precise / 1000) == ms then
    return precise
  end
  return ms * 1000
end
local function score(t)
  return string.format('%.17g', t / 1000)
end
local function from_score(s)
  -- A score back to microseconds; the whole milliseconds apart, so that no rounding of the
  -- product reaches them.
  s = tonumber(s)
  local ms = math.floor(s)
  return ms * 1000 + math.floor((s - ms) * 1000 + 0.5)
end
local function whole_ms(t)
  return string.format('%d', math.floor(t / 1000))
end
local function digits(t)
  return string.format('%d', t)
end
-- The live verifications a record's sends replaced, newest first: {digest, expiry, cooldown,
-- sends, token, expiry us, cooldown us} each (the last two absent from an earlier version's,
-- and meant for that entry's own token);
-- from the one pd/pe/pr/pn an earlier version kept, if that is all.
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
    _TIMES
    + """
-- KEYS: the verification (hash), the number's sends (zset), every send (zset).
-- ARGV: now, expiry, cooldown's end (us), max_attempts, digest, token, grace (ms), global
-- window (us, 0: no global cap), global limit, the time the send is logged at (us, now rounded
-- up), number of number caps, then (window us, limit) pairs. Returns {granted, refusal (1
-- locked, 2 too soon, 3 capped), retry_after (us), cap index (-1: global), sends before this
-- one, attempts carried}.
local now = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'd', 'e', 'r', 'a', 'n', 't', 'E', 'R', 'u')
if v[6] == ARGV[6] then
  -- This very start ran already (its answer was lost and the client sent it again): its grant,
  -- not a refusal by its own cooldown.
  return {1, 0, 0, -1, tonumber(v[5]) - 1, tonumber(v[4])}
end
local expiry, cooldown
if v[1] then
  local mine = v[9] == v[6]
  expiry, cooldown = us(v[2], v[7], mine), us(v[3], v[8], mine)
end
local live = v[1] and expiry > now
local attempts, sends = 0, 0
if v[1] then
  if live then
    attempts = tonumber(v[4])
    sends = tonumber(v[5])
    if attempts >= tonumber(ARGV[4]) then
      return {0, 1, expiry - now, -1, sends, attempts}
    end
  end
  if cooldown > now then
    return {0, 2, cooldown - now, -1, sends, attempts}
  end
end
local ncaps = tonumber(ARGV[11])
-- A number's sends of every purpose are kept for LOG_HORIZON at least (a verifier with shorter
-- caps, or none, must not cut short the log other purposes' caps count).
local keep = LOG_HORIZON_US
for i = 1, ncaps do
  keep = math.max(keep, tonumber(ARGV[10 + 2 * i]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', score(now - keep))
local wait, capped = 0, -2
local function over(key, window, limit, index)
  local since = '(' .. score(now - window)
  local count = redis.call('ZCOUNT', key, since, '+inf')
  if count >= limit then
    local first = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT',
                             count - limit, 1)
    local w = from_score(first[2]) + window - now
    if w > wait then
      wait = w
      capped = index
    end
  end
end
for i = 1, ncaps do
  over(KEYS[2], tonumber(ARGV[10 + 2 * i]), tonumber(ARGV[11 + 2 * i]), i - 1)
end
local gwindow = tonumber(ARGV[8])
if gwindow > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', score(now - gwindow))
  over(KEYS[3], gwindow, tonumber(ARGV[9]), -1)
end
if capped ~= -2 then
  return {0, 3, wait, capped, sends, attempts}
end
local token = ARGV[6]
local logged = tonumber(ARGV[10])
local keep_ms = math.ceil(keep / 1000)
redis.call('ZADD', KEYS[2], score(logged), token)
if redis.call('PTTL', KEYS[2]) < keep_ms then
  redis.call('PEXPIRE', KEYS[2], keep_ms)  -- never shortened: a longer window may need it
end
if gwindow > 0 then
  redis.call('ZADD', KEYS[3], score(logged), token)
  redis.call('PEXPIRE', KEYS[3], math.ceil(gwindow / 1000))
end
local expires = tonumber(ARGV[2])
local resend = tonumber(ARGV[3])
if live then
  local earlier = earlier_of(KEYS[1])
  table.insert(earlier, 1, {v[1], v[2], v[3], v[5], v[6] or '', digits(expiry), digits(cooldown)})
  while #earlier > EARLIER_KEPT do
    table.remove(earlier)
  end
  redis.call('HSET', KEYS[1], 'p', cjson.encode(earlier))
else
  redis.call('HDEL', KEYS[1], 'p')
end
redis.call('HDEL', KEYS[1], 'pd', 'pe', 'pr', 'pn')
redis.call('HSET', KEYS[1], 'd', ARGV[5], 'e', whole_ms(expires), 'r', whole_ms(resend),
           'E', digits(expires), 'R', digits(resend), 'u', token, 'a', attempts, 'n', sends + 1,
           't', token)
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(expires, resend) - now) / 1000)
           + tonumber(ARGV[7]))
return {1, 0, 0, -1, sends, attempts}
""".replace("LOG_HORIZON_US", str(ticks(LOG_HORIZON))).replace("EARLIER_KEPT", str(EARLIER_KEPT))
)

ROLLBACK: Final = LuaScript(
    _TIMES
    + """
-- KEYS: as BEGIN's. ARGV: the send's token, now (us), grace (ms).
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
local expiry, cooldown = us(p[2], p[6], true), us(p[3], p[7], true)
redis.call('HSET', KEYS[1], 'd', p[1], 'e', p[2], 'r', p[3], 'E', digits(expiry),
           'R', digits(cooldown), 'u', p[5], 'n', p[4], 't', p[5])
if #earlier > 0 then
  redis.call('HSET', KEYS[1], 'p', cjson.encode(earlier))
else
  redis.call('HDEL', KEYS[1], 'p')
end
local ttl = math.ceil((math.max(expiry, cooldown) - tonumber(ARGV[2])) / 1000)
            + tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
return 2
"""
)

CHECK: Final = LuaScript(
    _TIMES
    + """
-- KEYS: the verification, this check's answer (a key of its own call). ARGV: the digest to
-- compare, now (us), max_attempts.
-- Returns {reason (0 approved, 1 wrong, 2 expired, 3 not found, 4 too many attempts), attempts}.
-- A check that counted (approved or wrong) keeps its answer for a minute: the same call sent
-- again (its answer lost) gets it back instead of counting a second attempt.
local done = redis.call('GET', KEYS[2])
if done then
  local reason, counted = string.match(done, '^(%d) (%d+)$')
  return {tonumber(reason), tonumber(counted)}
end
local v = redis.call('HMGET', KEYS[1], 'd', 'e', 'a', 'E', 'u', 't')
if not v[1] then
  return {3, 0}
end
local attempts = tonumber(v[3])
if us(v[2], v[4], v[5] == v[6]) <= tonumber(ARGV[2]) then
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

_REASONS: Final = (
    Reason.APPROVED,
    Reason.WRONG_CODE,
    Reason.EXPIRED,
    Reason.NOT_FOUND,
    Reason.TOO_MANY_ATTEMPTS,
)
"""``CHECK``'s reason codes, in order."""


class RedisStore:
    """Verifications in Redis, shared by every process (and machine) using the same Redis and
    ``prefix``: attempts, cooldowns and caps hold across all of them.

    ``url_or_client``: a ``redis://`` URL (the store creates, and ``aclose()`` closes, its own
    client) or a ``redis.asyncio.Redis`` client (borrowed, never closed by the store).
    ``timeout``: seconds a connect or an answer may take (own client only). Every process
    should run with a synchronised clock (NTP): times are the verifiers' clocks.
    """

    def __init__(
        self, url_or_client: str | Any, *, prefix: str = "smsvn", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        prefix = checked_prefix(prefix)
        try:
            import redis.asyncio  # noqa: F401
            from redis import exceptions
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise ModuleNotFoundError(
                "smsvn.otp.RedisStore needs the redis extra: pip install 'smsvn[redis]'"
            ) from exc
        client, self._owns_client = redis_client(
            url_or_client, timeout=timeout, what="the OTP store's"
        )
        self._redis = RedisCalls(client)
        self._failures: tuple[type[BaseException], ...] = (
            exceptions.RedisError,
            OSError,
            TimeoutError,
        )
        self._closed = False
        self.prefix = prefix
        self._root = f"{prefix}:{{otp}}"

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"RedisStore(prefix={self.prefix!r})"

    @property
    def calls(self) -> int:
        """Redis round trips made so far."""
        return self._redis.calls

    def _keys(self, purpose: str, number: str) -> tuple[str, str, str]:
        """The verification's key, the number's send log, and the global send log."""
        root = self._root
        return f"{root}:v:{purpose}:{number}", f"{root}:n:{number}", f"{root}:all"

    async def begin(self, start: Start) -> Claim:
        """See ``Store.begin``: one ``BEGIN`` script."""
        glob = start.global_cap
        args: list[int | float | str] = [
            ticks(start.now),
            # The ticks of ``Verification.expires_at`` (down) and ``resend_at`` (up), and of
            # the send in the logs (up), as ``MemoryStore`` decides.
            ticks(start.now + start.ttl),
            ticks_up(start.now + start.resend_after),
            start.max_attempts,
            start.digest,
            start.token,
            _GRACE_MS,
            0 if glob is None else span(glob),
            0 if glob is None else glob.limit,
            ticks_up(start.now),
            len(start.number_caps),
        ]
        for window in start.number_caps:
            args += [span(window), window.limit]
        reply = await self._run(BEGIN, self._keys(start.purpose, start.number), args)
        granted, refusal, wait, cap, sends, attempts = reply
        return Claim(
            granted=bool(granted),
            refusal=Refusal(refusal),
            retry_after=wait / 1e6,
            cap=cap,
            sends=sends,
            attempts=attempts,
        )

    async def rollback(self, start: Start, now: float) -> None:
        """See ``Store.rollback``: one ``ROLLBACK`` script."""
        await self._run(
            ROLLBACK,
            self._keys(start.purpose, start.number),
            [start.token, ticks(now), _GRACE_MS],
        )

    async def check(
        self, number: str, purpose: str, digest: str, max_attempts: int, now: float
    ) -> Checked:
        """See ``Store.check``: one ``CHECK`` script."""
        key = self._keys(purpose, number)[0]
        answer = f"{self._root}:c:{secrets.token_hex(8)}"  # this call's own
        reason, attempts = await self._run(CHECK, (key, answer), [digest, ticks(now), max_attempts])
        return Checked(_REASONS[reason], attempts)

    async def _run(
        self, script: LuaScript, keys: tuple[str, ...], args: list[int | float | str]
    ) -> list[int]:
        """Run one script; a Redis failure becomes ``StoreError`` (the redis-py exception is
        not chained: its arguments are of no use to the caller and stay out of tracebacks)."""
        if self._closed:
            raise StoreError("the OTP store is closed")
        try:
            return await self._redis.script(script, keys, args)
        except self._failures as exc:
            detail = str(exc)[:200]
            raise StoreError(
                f"the OTP store (Redis) failed: {type(exc).__name__}: {detail}"
            ) from None

    async def aclose(self) -> None:
        """Close the Redis client if the store created it; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
