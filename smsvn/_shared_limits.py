"""Shared limits: every process that uses the same Redis counts each account's requests together
(extra ``smsvn[redis]``).

    shared = smsvn.RedisLimiter("redis://127.0.0.1:6379/0")      # or a redis.asyncio client
    async with smsvn.SpeedSMS(token, limiter=shared, max_wait=5.0) as sms:
        await sms.send("0912345678", "Ma OTP cua ban la 4821")
    await shared.aclose()

How it counts. Each request takes a *reservation* from one Lua script that reads Redis's own
clock (``TIME``) and answers "yours, in ``wait`` seconds" or "over your ``max_wait``: nothing
reserved". The caller sleeps ``wait`` on its own monotonic clock, measured from when the answer
arrived (never earlier than Redis meant), so clocks of different machines never meet. A turn
may be used up to a round trip after Redis gave it (its answer was on the way), and Redis counts
it that late in its window, so a Redis in another zone makes requests a little slower, never
too many nor late on arrival. The rules
are the in-process limiter's (``smsvn.limits.AccountLimiter``), run inside Redis:

- GCRA paces reservations at ``(N - burst) / T`` a second, ``burst + 1`` at once from idle;
- a window log keeps the last N reservation times: a reservation is never closer than
  ``T * 1.02`` to the N-th before it. GCRA alone would admit ``burst + 1 + N - burst`` = N + 1
  in a window of T (its tolerance plus its pace); the log caps every window of ``T * 1.02`` at
  N, whatever the pace, and lets the long-run rate reach ``N / (T * 1.02)`` (98 %) rather than
  the ``(N - burst) / (T * 1.02)`` that pacing alone, tuned to be safe, would allow;
- a pause (a 429's reset hint, set by ``pause``) holds every reservation until it ends.

The 2 % margin exists because the provider counts *arrivals*: a reservation woken late (a busy
event loop) is given up, not used, when it is more than half the margin late; the other half is
for the trip to the provider. So on real send times, too, no window of T holds more than N.

One reserver per process and account. Coroutines of one process queue (first come, first served)
behind one reserver that holds at most ``lookahead`` reservations ahead of use (2 by default):
about one Redis round trip per request, no polling, and a process killed with SIGKILL wastes at
most ``lookahead`` turns. ``RedisLimiter.calls`` counts the round trips.

A 429 (``pause``) writes the pause into the account's state in Redis and publishes it: every
process, listening on one pub/sub connection, drops the turns it holds inside the pause and asks
again; a process that missed the message meets the pause at its next reservation.

Keys: ``{prefix}:limit:{<provider>:<digest>}`` (a hash: GCRA's theoretical arrival time, the last
reservation, the pause end) and ``...:log`` (a list of the last N reservations), both expiring
once idle for a window; the channel ``{prefix}:limit:pause``. An account is named by the digest
of its credential (``smsvn.limits.account_key``), never by the credential. The braces keep one
account's keys in one Redis Cluster slot.

When Redis loses its data (a restart without persistence) the account's state is gone and its
last window's requests with it, so the script holds the account for one window: no reservation
earlier than Redis's start time plus one window (Redis's uptime says when it started, to the
second, so the hold may last a second longer), nor earlier than one window from now when this
process had a reservation in the last window and finds the state missing (a flush, an
eviction: the keys have a TTL, so only ``maxmemory-policy noeviction`` never evicts them). A
first use on a Redis that has been up for more than a window and a second does not wait. So a
flush (or a failover to a replica without the last writes) while Redis stays up is caught only
by a process that reserved in the last window: one that comes first without that history
starts a fresh window, and up to N more may go in it. Do not flush a live limiter's Redis.

When Redis cannot be reached, ``on_unavailable`` says what happens (never unlimited sending; one
WARNING in the ``smsvn`` log per outage, one when Redis is back):

- ``"wait"`` (the default): requests wait, retrying Redis with backoff; ``max_wait`` still bounds
  every call (``WaitTooLong``, which the client turns into ``errors.RateLimited``). Safe always;
  nothing is sent while Redis is away.
- ``"fallback"``: after holding the account for one window (the requests counted in Redis just
  before it went away may fill the provider's window), each process limits the account by
  itself at ``fallback_share`` of the limit (choose at most ``1 / number of processes``). When
  Redis is back, a process holds the account for a window after its last fallback request, then
  counts in Redis again.
- ``"raise"``: ``acquire`` raises ``LimiterUnavailable``, a ``ConnectError`` (nothing was sent;
  safe to retry; ``Failover`` moves on); Redis is tried again after a short backoff.

Every turn a process holds when it finds Redis unreachable is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import re
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple

from smsvn._checks import checked_int, checked_number
from smsvn._redis_url import checked_prefix, redis_client
from smsvn.errors import LimiterUnavailable, ValidationError
from smsvn.limits import WINDOW_GUARD, AccountLimiter, RateLimit, WaitTooLong, account_key

__all__ = [
    "DEFAULT_LOOKAHEAD",
    "DEFAULT_PREFIX",
    "LimiterUnavailable",
    "LuaScript",
    "RedisAccountLimit",
    "RedisCalls",
    "RedisLimiter",
    "UnavailablePolicy",
]

_log = logging.getLogger("smsvn")

UnavailablePolicy = Literal["wait", "fallback", "raise"]

DEFAULT_PREFIX: Final = "smsvn"
"""The first part of every key and of the pause channel."""
DEFAULT_LOOKAHEAD: Final = 2
"""Reservations one process holds ahead of use, per account."""
DEFAULT_TIMEOUT: Final = 1.0
"""Seconds a Redis connect or answer may take (a client the limiter creates)."""
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 1.0
_US: Final = 1_000_000


class LuaScript:
    """A Lua script and its SHA-1 (for ``EVALSHA``)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


RESERVE: Final = LuaScript(
    """
-- KEYS[1]: the account's state (hash: tat, last, pause); KEYS[2]: its last N reservations;
-- KEYS[3]: this limiter's last answer ("call granted wait state").
-- ARGV: interval, tolerance, window (microseconds), N, max_wait (us, -1: none), seen (1: this
-- process had a reservation less than a window ago), now (us, -1: Redis's clock; tests only),
-- call (this limiter's call number: the same call again, as redis-py sends a command again when
-- its answer is late, gets the first answer and reserves nothing more), slack (us, absent: 0;
-- how much after its slot the turn may be used: the asker's round trip, the answer being on
-- its way meanwhile; the window log records slot + slack, so a turn used that late still
-- counts in its window).
-- Returns {granted (1|0), wait (us), state (0 found, 1 new, 2 new and held for a window)}.
local before = redis.call('GET', KEYS[3])
if before then
  local call, g, w, st = string.match(before, '^(%S+) (%d+) (%d+) (%d+)$')
  if call == ARGV[8] then
    return {tonumber(g), tonumber(w), tonumber(st)}
  end
end
local function answer(granted, wait, state)
  redis.call('SET', KEYS[3], ARGV[8] .. ' ' .. granted .. ' ' .. wait .. ' ' .. state, 'PX', 60000)
  return {granted, wait, state}
end
local now = tonumber(ARGV[7])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local slack = tonumber(ARGV[9]) or 0
local st = redis.call('HMGET', KEYS[1], 'tat', 'last', 'pause')
local tat = tonumber(st[1])
local last = tonumber(st[2]) or 0
local pause = tonumber(st[3]) or 0
local state = 0
if tat == nil then
  -- No state: a first use, an account idle past its keys' expiry, or lost data. Requests sent
  -- before Redis started again are at most a window old only while Redis is younger than that.
  tat = 0
  state = 1
  local hold = 0
  -- uptime_in_seconds is the difference of two whole-second clock readings: Redis started
  -- at least (uptime - 1) s ago, so a hold counted from then is never too short.
  local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
  if up == nil then
    hold = now + window
  else
    hold = now - (up - 1) * 1000000 + window
  end
  if ARGV[6] == '1' then
    hold = math.max(hold, now + window)
  end
  if hold > now then
    state = 2
    last = math.max(last, hold)
    redis.call('HSET', KEYS[1], 'tat', 0, 'last', last)
    redis.call('PEXPIRE', KEYS[1], math.ceil((last - now) / 1000) + window / 1000 + 1000)
  end
end
local slot = math.max(now, tat - tolerance, pause, last)
local len = redis.call('LLEN', KEYS[2])
if len >= n then
  slot = math.max(slot, tonumber(redis.call('LINDEX', KEYS[2], -n)) + window)
end
if max_wait >= 0 and slot - now > max_wait then
  return answer(0, math.ceil(slot - now), state)
end
tat = math.max(tat, slot) + interval
redis.call('HSET', KEYS[1], 'tat', tat, 'last', slot)
redis.call('RPUSH', KEYS[2], slot + slack)
if len >= n then
  redis.call('LTRIM', KEYS[2], -n, -1)
end
local ttl = math.ceil((math.max(tat, slot + slack + window, pause) - now) / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return answer(1, math.ceil(slot - now), state)
"""
)

PAUSE: Final = LuaScript(
    """
-- KEYS[1]: the account's state. ARGV: seconds (us), channel, message, now (us, -1: Redis's).
-- Extends the account's pause to now + seconds (never shortens it), publishes
-- "<message> <remaining us>" when it did, and returns the pause's remaining microseconds.
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local ends = now + tonumber(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[1], 'pause')) or 0
if ends <= old then
  return math.ceil(old - now)
end
redis.call('HSET', KEYS[1], 'pause', ends)
local need = math.ceil((ends - now) / 1000) + 1000
if redis.call('PTTL', KEYS[1]) < need then
  redis.call('PEXPIRE', KEYS[1], need)
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. math.ceil(ends - now))
return math.ceil(ends - now)
"""
)


def _import_redis() -> None:
    """redis-py is there, or a ``ModuleNotFoundError`` that names the extra to install."""
    try:
        import redis.asyncio  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError(
            "smsvn.RedisLimiter needs the redis extra: pip install 'smsvn[redis]'"
        ) from exc


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """What "Redis cannot be reached" looks like: no connection, no answer in time, a replica
    that refuses writes, a server out of memory (``ConnectionError`` covers a server still
    loading its data and refused authentication)."""
    from redis import exceptions

    return (
        exceptions.ConnectionError,
        exceptions.TimeoutError,
        exceptions.ReadOnlyError,
        exceptions.OutOfMemoryError,
        exceptions.ClusterDownError,
        OSError,
        TimeoutError,
    )


_REFUSING_WRITES: Final = frozenset(
    {"NOREPLICAS", "MISCONF", "TRYAGAIN", "MASTERDOWN", "LOADING", "BUSY"}
)
"""Redis error replies that mean "not now" rather than "never": an outage, for the policy."""


def _reply_code(exc: BaseException) -> str:
    """The code an error reply starts with (``NOREPLICAS``), or ""."""
    head = str(exc).split(" ", 1)[0]
    return head if head.isalpha() and head.isupper() and len(head) <= 20 else ""


def _refused(exc: BaseException, provider: str) -> LimiterUnavailable:
    """A Redis error the limiter cannot work around (a wrong key type, a script error): an
    ``SmsError`` naming it (its code, never the URL or the arguments); nothing was sent."""
    code = _reply_code(exc)
    return LimiterUnavailable(
        f"the shared rate limiter's Redis refused the reservation ({type(exc).__name__}"
        f"{': ' + code if code else ''}); nothing was sent",
        provider=provider,
    )


class RedisCalls:
    """The few redis-py calls the limiter makes, typed (redis-py's own types are partial and
    differ between versions) and counted: ``calls`` is the number of round trips."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0
        from redis.exceptions import NoScriptError

        self._no_script: type[BaseException] = NoScriptError

    async def script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[int | float | str]
    ) -> list[int]:
        """Run ``script`` (``EVALSHA``, and ``EVAL`` once when the server does not know it yet:
        a new or restarted Redis); its reply as a list of ints."""
        self.calls += 1
        try:
            reply = await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except self._no_script:
            self.calls += 1
            reply = await self.client.eval(script.source, len(keys), *keys, *args)
        return _ints(reply)

    async def ping(self) -> None:
        """One ``PING`` (a probe while Redis is away)."""
        self.calls += 1
        await self.client.ping()

    def pubsub(self) -> PubSubCalls:
        """A new pub/sub connection (its own socket)."""
        return PubSubCalls(self.client.pubsub(ignore_subscribe_messages=True), self)

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        close = getattr(self.client, "aclose", None)
        if close is None:  # pragma: no cover - redis-py 5.0.0
            close = self.client.close
        await close()


class PubSubCalls:
    """The pub/sub calls the limiter makes: subscribe to one channel, read its messages."""

    def __init__(self, pubsub: Any, owner: RedisCalls) -> None:
        self._pubsub = pubsub
        self._owner = owner

    async def subscribe(self, channel: str) -> None:
        self._owner.calls += 1
        await self._pubsub.subscribe(channel)

    async def message(self, within: float) -> bytes | None:
        """The next message's data, or None when none came within ``within`` seconds."""
        msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=within)
        if not isinstance(msg, dict) or msg.get("type") != "message":
            return None
        data = msg.get("data")
        if isinstance(data, str):
            return data.encode()
        return data if isinstance(data, bytes) else None

    async def aclose(self) -> None:
        close = getattr(self._pubsub, "aclose", None)
        if close is None:  # pragma: no cover - redis-py 5.0.0
            close = self._pubsub.reset
        with contextlib.suppress(Exception):
            await close()


def _ints(reply: object) -> list[int]:
    if isinstance(reply, int) and not isinstance(reply, bool):
        return [reply]
    if isinstance(reply, list) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in reply
    ):
        return list(reply)
    raise TypeError(f"unexpected reply from the limiter's Lua script: {reply!r}")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Sleep until the loop's clock reads ``when`` (never wakes before it). A timer at exactly
    ``when`` (not ``sleep(when - now)``, which lands a moment later each call): sleepers wake in
    the order of their ``when``."""
    while when > loop.time():
        future = loop.create_future()
        handle = loop.call_at(when, _wake, future)
        try:
            await future
        finally:
            handle.cancel()


_HEX = re.compile(r"[0-9a-f]{16,64}")


class RedisLimiter:
    """A ``LimiterBackend`` that counts each account in Redis, shared by every process (and
    machine) that uses the same Redis and ``prefix``. Pass it as ``limiter=`` to any client.

    ``url_or_client``: a ``redis://`` URL (the limiter creates, and ``aclose()`` closes, its own
    client) or a ``redis.asyncio.Redis`` client (borrowed: never closed by the limiter).
    ``lookahead``: reservations one process holds ahead of use per account. ``margin``: the
    fraction of the window by which reservations of N requests are kept wider than the window
    (0.02 = the in-process limiter's). ``on_unavailable`` / ``fallback_share``: see the module
    documentation. ``timeout``: seconds a connect or an answer may take (own client only).

    A limiter belongs to one event loop (that of its first use) at a time.
    """

    def __init__(
        self,
        url_or_client: str | Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        lookahead: int = DEFAULT_LOOKAHEAD,
        margin: float = WINDOW_GUARD - 1.0,
        on_unavailable: UnavailablePolicy = "wait",
        fallback_share: float = 0.25,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if on_unavailable not in ("wait", "fallback", "raise"):
            raise ValidationError("on_unavailable must be 'wait', 'fallback' or 'raise'")
        fallback_share = checked_number(
            fallback_share, "fallback_share", low=0.0, high=1.0, low_open=True
        )
        lookahead = checked_int(lookahead, "lookahead", low=1)
        margin = checked_number(margin, "margin", low=0.0, high=1.0, high_open=True)
        prefix = checked_prefix(prefix)
        _import_redis()
        client, self._owns_client = redis_client(
            url_or_client, timeout=timeout, what="the limiter's"
        )
        self.redis = RedisCalls(client)
        self.prefix = prefix
        self.ident = secrets.token_hex(8)
        """This limiter's name in its keys of last answers (``RESERVE``'s ``KEYS[3]``)."""
        self.lookahead = lookahead
        self.guard = 1.0 + margin
        self.on_unavailable: UnavailablePolicy = on_unavailable
        self.fallback_share = fallback_share
        self.channel = f"{prefix}:limit:pause"
        self.unavailable_errors = _unavailable_errors()
        from redis import exceptions

        self.response_error: type[BaseException] = exceptions.ResponseError
        self._accounts: dict[tuple[str, str], RedisAccountLimit] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._outage = False
        self._closed = False
        self.outages = 0
        """Outages seen (each logged once)."""

    # -- the LimiterBackend protocol -------------------------------------------------------

    def for_account(self, provider: str, account: str, limit: RateLimit) -> RedisAccountLimit:
        """The shared limit of ``provider``'s ``account`` (an ``account_key`` digest; anything
        else is digested again, so a key never holds a credential)."""
        if not _HEX.fullmatch(account):
            account = account_key(account)
        key = (provider, account)
        acc = self._accounts.get(key)
        if acc is None:
            acc = self._accounts[key] = RedisAccountLimit(self, provider, account, limit)
        elif acc.limit != limit:
            _log.warning(
                "%s: this account already has a shared limit (%r); ignoring the different %r",
                provider,
                acc.limit,
                limit,
            )
        return acc

    # -- counters ---------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """Redis round trips made so far (reservations, pauses, probes, subscriptions)."""
        return self.redis.calls

    @property
    def acquired(self) -> int:
        """Requests let through so far, over every account."""
        return sum(acc.acquired for acc in self._accounts.values())

    # -- lifecycle ---------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop; the first async use starts the pause listener in it."""
        loop = asyncio.get_running_loop()
        if self._closed:
            raise LimiterUnavailable("the shared limiter is closed")
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError("a RedisLimiter belongs to one event loop; make one per loop")
            self._loop = loop
            self._listener = loop.create_task(self._listen(), name="smsvn-limit-pauses")
        return loop

    async def aclose(self) -> None:
        """Stop listening, fail waiting requests (``LimiterUnavailable``: nothing was sent) and
        close the Redis client if the limiter created it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        listener, self._listener = self._listener, None
        tasks: list[asyncio.Task[None]] = [] if listener is None else [listener]
        for acc in self._accounts.values():
            tasks.extend(acc.close())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._owns_client:
            await self.redis.aclose()

    async def __aenter__(self) -> RedisLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- outages ----------------------------------------------------------------------------

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means Redis cannot serve the limiter now: no connection or answer,
        or an error reply saying it refuses writes for a while (``NOREPLICAS``, ``MISCONF``
        after a failed snapshot, ``TRYAGAIN``, ``MASTERDOWN``, ``LOADING``, ``BUSY``)."""
        if isinstance(exc, self.unavailable_errors):
            return True
        return isinstance(exc, self.response_error) and _reply_code(exc) in _REFUSING_WRITES

    def went_away(self, exc: BaseException) -> None:
        """Log the first failure of an outage (once, not per request)."""
        if not self._outage:
            self._outage = True
            self.outages += 1
            _log.warning(
                "shared rate limiter: Redis is unreachable (%s: %s); policy %r",
                type(exc).__name__,
                exc,
                self.on_unavailable,
            )

    def came_back(self) -> None:
        if self._outage:
            self._outage = False
            _log.warning("shared rate limiter: Redis is reachable again")

    def backoff(self, failures: int, window: float) -> float:
        """Seconds before trying Redis again after ``failures`` failures in a row."""
        cap = min(_BACKOFF_MAX, max(window / 4, _BACKOFF_FIRST))
        return min(cap, _BACKOFF_FIRST * 2.0**failures) * (0.5 + random.random() / 2)

    # -- pauses from other processes ----------------------------------------------------------

    async def _listen(self) -> None:
        """Apply every pause any process publishes (a 429 somewhere) to this process's accounts."""
        failures = 0
        while not self._closed:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                failures = 0
                while True:
                    data = await pubsub.message(within=1.0)
                    if data is not None:
                        self._on_pause(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.is_unavailable(exc):
                    _log.warning("shared rate limiter: pause listener failed: %r", exc)
                await asyncio.sleep(self.backoff(failures, 4.0))
                failures += 1
            finally:
                await pubsub.aclose()

    def _on_pause(self, data: bytes) -> None:
        try:
            provider, account, remaining = data.decode().split(" ")
            seconds = int(remaining) / _US
        except ValueError:
            return
        acc = self._accounts.get((provider, account))
        if acc is not None:
            acc.pause_locally(seconds)

    def __repr__(self) -> str:
        return f"RedisLimiter(prefix={self.prefix!r}, on_unavailable={self.on_unavailable!r})"


class _Turn(NamedTuple):
    """A reservation held in this process, in local monotonic time.

    Redis ran the script at some moment between asking and the answer, so the turn Redis meant
    lies between ``earliest`` (asked + wait) and ``slot`` (answered + wait). A request goes no
    earlier than ``slot`` and no later than ``earliest`` plus the limiter's ``late``: a slow
    answer (this process descheduled, say) must not hide that the turn is long past. ``due``
    is what a caller's ``max_wait`` is held against (the head waiter's deadline at most, since
    Redis held the wait to its budget). ``generation``: the held turns it belongs to (-1: go
    through the fallback limiter instead); ``pauses``: the pauses this process knew of when it
    asked (a later pause may fall on it); ``slack``: how much later than ``earliest + late``
    it may still be used (Redis counted it that late in its window: the round trip)."""

    slot: float
    earliest: float
    due: float
    generation: int
    pauses: int
    slack: float = 0.0


class _Waiter:
    """One ``acquire`` waiting for a turn: its future gets a ``_Turn`` or an exception."""

    __slots__ = ("deadline", "future", "graced", "timer")

    def __init__(self, future: asyncio.Future[_Turn], deadline: float | None) -> None:
        self.future = future
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None
        self.graced = False  # its deadline came while Redis was asked for it: one grace


_ANSWER_GRACE: Final = 0.05
"""Seconds past its deadline a waiter waits for the answer Redis is being asked for it."""
_FALLBACK: Final = -1
_TIE: Final = 1e-6  # seconds between two turns Redis gave with the same local slot
_VIA_FALLBACK: Final = _Turn(math.nan, math.nan, math.nan, _FALLBACK, 0)


class RedisAccountLimit:
    """One account's shared limit as seen by this process: a FIFO of local waiters behind one
    reserver that holds at most ``lookahead`` reservations (an ``AccountLimit``)."""

    def __init__(self, owner: RedisLimiter, provider: str, account: str, limit: RateLimit) -> None:
        self.owner = owner
        self.provider = provider
        self.account = account
        self.limit = limit
        interval = 1.0 / limit.sustained_rate
        self.window = limit.period * owner.guard
        self.late = limit.period * (owner.guard - 1.0) / 2
        """A turn reached more than this late is given up (half the margin)."""
        self._args = (
            interval * _US,
            limit.burst * interval * _US,
            self.window * _US,
            limit.requests,
        )
        tag = f"{{{provider}:{account}}}"
        self.keys = (
            f"{owner.prefix}:limit:{tag}",
            f"{owner.prefix}:limit:{tag}:log",
            f"{owner.prefix}:limit:{tag}:call:{owner.ident}",
        )
        self._calls = 0
        """RESERVE calls made: each call's number is its ``call`` argument (see ``RESERVE``)."""
        self._message = f"{provider} {account}"
        self.acquired = 0
        """Requests let through by Redis reservations."""
        self.fallback_acquired = 0
        """Requests let through by the fallback limiter (``on_unavailable="fallback"``)."""
        self.given_up = 0
        """Reservations not used: reached late, inside a pause, or made stale by an outage."""
        self.refused = 0
        """Reservations Redis refused (over a caller's ``max_wait``)."""
        self._waiters: deque[_Waiter] = deque()
        self._spare: deque[_Turn] = deque()  # reserved turns no waiter holds yet, in order
        self._holding = 0  # turns handed to waiters that have not reached them yet
        self._generation = 0  # bumped when held turns become invalid
        self._task: asyncio.Task[None] | None = None
        self._asking: _Waiter | None = None  # the waiter a reservation in flight is for
        self._floor = -math.inf  # no new turn can come before this (local time)
        self._last_slot = -math.inf  # the latest turn handed out (turns keep their order)
        self._paused_until = -math.inf
        self._pauses = 0  # pauses learned (a turn asked for before one may fall inside it)
        self._last_ok: float | None = None  # when the last reservation was granted
        self._rtt = 0.0  # recent reservation round trips (rises at once, decays slowly)
        # Outages.
        self._failures = 0
        self._down = False
        self._retry_at = -math.inf
        self._fallback: AccountLimiter | None = None
        self._fallback_from = -math.inf  # no fallback request before this
        self._fallback_last = -math.inf  # the last fallback request
        self._hold_until = -math.inf  # no Redis reservation before this (after a fallback)
        self._probe: asyncio.Task[None] | None = None

    # -- the AccountLimit protocol -----------------------------------------------------------

    async def acquire(self, max_wait: float | None = None) -> None:
        """Wait for this account's turn, counted in Redis; ``WaitTooLong`` (nothing reserved)
        as soon as it is known to be more than ``max_wait`` seconds away."""
        loop = self.owner._bind()
        start = loop.time()
        deadline = None if max_wait is None else start + max(0.0, max_wait)
        again = False  # a turn given up: back to the head of the queue
        while True:
            now = loop.time()
            if self._fallback is not None:
                await self._via_fallback(loop, deadline)
                return
            if self._down and self.owner.on_unavailable == "raise" and now < self._retry_at:
                raise self._unavailable_error()
            if deadline is not None:
                earliest = max(self._floor, self._paused_until)
                if earliest > deadline:
                    raise WaitTooLong(earliest - now)
            waiter = _Waiter(loop.create_future(), deadline)
            if deadline is not None:
                waiter.timer = loop.call_at(deadline, self._expire, waiter)
            if again:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            self._serve(loop)
            future = waiter.future
            try:
                turn = await future
            except asyncio.CancelledError:
                # Cancelled just after being handed a turn: the turn goes to the next waiter.
                if future.done() and not future.cancelled() and future.exception() is None:
                    turn = future.result()
                    if turn.generation != _FALLBACK:
                        self._holding -= 1
                        self._give_back(turn, loop)
                raise
            finally:
                if waiter.timer is not None:
                    waiter.timer.cancel()
            if turn.generation == _FALLBACK:
                await self._via_fallback(loop, deadline)
                return
            try:
                await _sleep_until(loop, turn.slot)
            except asyncio.CancelledError:
                self._holding -= 1
                self._give_back(turn, loop)
                raise
            self._holding -= 1
            now = loop.time()
            valid = self._usable(turn, now)
            self._serve(loop)
            if valid:
                self.acquired += 1
                return
            self.given_up += 1
            again = True

    async def pause(self, seconds: float) -> None:
        """Hold every request of this account, in every process, for ``seconds`` (a 429's
        reset hint): at once here, through Redis everywhere else."""
        seconds = max(0.0, seconds)
        self.pause_locally(seconds)
        self.owner._bind()
        try:
            await self.owner.redis.script(
                PAUSE,
                self.keys[:1],
                (math.ceil(seconds * _US), self.owner.channel, self._message, -1),
            )
        except Exception as exc:
            if not self.owner.is_unavailable(exc):
                # Paused here all the same; the other processes meet the 429 themselves.
                raise _refused(exc, self.provider) from None
            self.owner.went_away(exc)
        else:
            # Reservations asked for while the pause was on its way to Redis (on another
            # connection) may have run before it: only those asked from now on are placed
            # after it.
            self._pauses += 1
        _log.warning("%s: rate limited: pausing the account for %.1f s", self.provider, seconds)

    # -- local state -------------------------------------------------------------------------

    def pause_locally(self, seconds: float) -> None:
        """Apply a pause in this process (own 429, or one another process published): turns
        asked for before it and falling inside it are given up."""
        now = asyncio.get_running_loop().time()
        until = now + seconds
        if until > self._paused_until:
            # A new pause (or a real extension) makes turns asked for before it suspect; the
            # same pause heard again (this process's own, back through pub/sub a moment
            # later) does not: Redis already placed later turns after it.
            if self._paused_until < now or until > self._paused_until + self.late:
                self._pauses += 1
            self._paused_until = until
            if self._fallback is not None:
                self._fallback.pause_now(seconds)

    def _usable(self, turn: _Turn, now: float) -> bool:
        """Whether a turn may still be used at ``now``: not made stale by an outage or lost
        data, not reached too late, not inside a pause Redis did not know of when it gave the
        turn (Redis places turns asked for after a pause after its end)."""
        return (
            turn.generation == self._generation
            and now <= turn.earliest + self.late + turn.slack
            and (turn.pauses == self._pauses or turn.slot >= self._paused_until)
        )

    @property
    def paused_for(self) -> float:
        """Seconds left of the pause this process knows of (0 when none)."""
        return max(0.0, self._paused_until - asyncio.get_running_loop().time())

    def _head(self) -> _Waiter | None:
        waiters = self._waiters
        while waiters and waiters[0].future.done():
            waiters.popleft()
        return waiters[0] if waiters else None

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand reserved turns to waiters in order; start the reserver when one is needed."""
        now = loop.time()
        spare = self._spare
        if spare and not all(self._usable(t, max(now, t.slot)) for t in spare):
            kept = [t for t in spare if self._usable(t, max(now, t.slot))]
            self.given_up += len(spare) - len(kept)
            spare = self._spare = deque(kept)
        while spare and (waiter := self._head()) is not None:
            turn = spare[0]
            if waiter.deadline is not None and turn.due > waiter.deadline:
                self._waiters.popleft()
                waiter.future.set_exception(WaitTooLong(turn.slot - now))
                continue
            spare.popleft()
            self._waiters.popleft()
            self._holding += 1
            waiter.future.set_result(turn)
        if (
            self._task is None
            and self._head() is not None
            and self._holding + len(spare) < self.owner.lookahead
        ):
            self._task = loop.create_task(self._reserve(loop))

    def _give_back(self, turn: _Turn, loop: asyncio.AbstractEventLoop) -> None:
        """A waiter cancelled before its turn: the turn goes to the next waiter."""
        if self._usable(turn, max(loop.time(), turn.slot)):
            self._spare.appendleft(turn)
            if len(self._spare) > 1 and self._spare[0].slot > self._spare[1].slot:
                self._spare = deque(sorted(self._spare))
        self._serve(loop)

    def _expire(self, waiter: _Waiter) -> None:
        """A waiter's ``max_wait`` ran out before it got a turn: ``WaitTooLong``. While Redis is
        being asked for it, its answer decides if it comes within ``_ANSWER_GRACE`` (so that
        ``max_wait=0`` takes a free turn); a Redis that holds it longer does not hold the call
        (the turn, if it comes, goes to the next waiter)."""
        if waiter.future.done():
            return
        loop = asyncio.get_running_loop()
        if waiter is self._asking and not waiter.graced:
            waiter.graced = True
            waiter.timer = loop.call_later(_ANSWER_GRACE, self._expire, waiter)
            return
        now = loop.time()
        earliest = max(self._floor, self._paused_until, self._retry_at, now)
        waiter.future.set_exception(WaitTooLong(earliest - now))

    def _fail_all(self, exc_factory: Any) -> None:
        while (waiter := self._head()) is not None:
            self._waiters.popleft()
            waiter.future.set_exception(exc_factory())

    def _unavailable_error(self) -> LimiterUnavailable:
        return LimiterUnavailable(
            "the shared rate limiter (Redis) is unreachable; nothing was sent",
            provider=self.provider,
        )

    def close(self) -> list[asyncio.Task[None]]:
        """Fail every waiter (the limiter is closing); the tasks to cancel."""
        self._fail_all(lambda: LimiterUnavailable("the shared limiter was closed"))
        tasks = [t for t in (self._task, self._probe) if t is not None]
        self._task = self._probe = None
        return tasks

    # -- the reserver ------------------------------------------------------------------------

    async def _reserve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take reservations from Redis for the waiters at the head of the queue, one round trip
        at a time, while fewer than ``lookahead`` are held."""
        owner = self.owner
        try:
            while True:
                head = self._head()
                if head is None or self._holding + len(self._spare) >= owner.lookahead:
                    return
                now = loop.time()
                if self._fallback is not None:
                    # Another waiter switched this account to the fallback limiter.
                    self._fail_all_to_fallback()
                    return
                if (left := self._hold_until - now) > 0:
                    # Back from the fallback limiter: no Redis turn yet (waiters' own max_wait
                    # still bounds them).
                    await asyncio.sleep(left)
                    continue
                budget = None if head.deadline is None else max(0.0, head.deadline - now)
                # This process had (or holds) a reservation in the last window: lost state then
                # means lost requests, whatever Redis's uptime says.
                seen = (
                    self._last_ok is not None and now - self._last_ok < 0.9 * self.window
                ) or now < self._last_slot + self.window
                self._calls += 1
                # A turn is used up to a round trip after Redis gave it (its answer is on the
                # way): counted that late in the window, a Redis far away (another zone) does
                # not make every turn late on arrival. At most a tenth of the window.
                slack = min(1.5 * self._rtt, 0.1 * self.window)
                args = (
                    *self._args,
                    -1 if budget is None else int(budget * _US),
                    int(seen),
                    -1,
                    self._calls,
                    int(slack * _US),
                )
                pauses = self._pauses
                asked = loop.time()
                self._asking = head
                try:
                    granted, wait_us, state = await owner.redis.script(RESERVE, self.keys, args)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._asking = None
                    if head.deadline is not None and loop.time() >= head.deadline:
                        self._expire(head)  # its timer fired while Redis was being asked
                    if not owner.is_unavailable(exc):
                        self._fail_all(lambda exc=exc: _refused(exc, self.provider))
                        return
                    if not await self._outage(exc, loop):
                        return
                    continue
                finally:
                    self._asking = None
                self._rtt = max(loop.time() - asked, 0.8 * self._rtt)
                self._failures = 0
                if self._down:
                    self._down = False
                    owner.came_back()
                t = loop.time()
                if state == 2:
                    # The account's state was lost (a Redis restart, a flush): turns this
                    # process holds from before may share a window with the new ones.
                    self._drop_held()
                    _log.warning(
                        "%s: shared rate limiter: the account's state in Redis was lost; "
                        "holding the account for one window",
                        self.provider,
                    )
                if granted:
                    self._last_ok = t
                    wait = wait_us / _US
                    # Redis held the wait to the head's budget: the time it took to ask (with
                    # max_wait=0, say) is not the account's wait.
                    earliest = asked + wait
                    due = earliest if head.deadline is None else min(earliest, head.deadline)
                    # Redis gives turns in order, but an answer that reached this process late
                    # (the loop busy) would put its turn after the next one's: the next turn
                    # is held until just after it, so local waiters go first come, first served.
                    slot = max(t + wait, self._last_slot + _TIE)
                    self._last_slot = slot
                    self._spare.append(_Turn(slot, earliest, due, self._generation, pauses, slack))
                else:
                    self.refused += 1
                    self._floor = max(self._floor, asked + wait_us / _US)
                    self._refuse(t)
                self._serve(loop)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _refuse(self, now: float) -> None:
        """Fail every waiter whose deadline comes before the earliest possible turn."""
        floor = self._floor
        keep: deque[_Waiter] = deque()
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if waiter.deadline is not None and waiter.deadline < floor:
                waiter.future.set_exception(WaitTooLong(floor - now))
            else:
                keep.append(waiter)
        self._waiters = keep

    def _drop_held(self) -> None:
        """Invalidate every turn this process holds (waiters holding one ask again)."""
        self.given_up += len(self._spare)
        self._spare.clear()
        self._generation += 1

    async def _outage(self, exc: BaseException, loop: asyncio.AbstractEventLoop) -> bool:
        """Redis could not be reached: apply the policy. True to try Redis again now."""
        owner = self.owner
        owner.went_away(exc)
        first = not self._down
        self._down = True
        if first:
            self._drop_held()
        delay = owner.backoff(self._failures, self.window)
        self._failures += 1
        now = loop.time()
        self._retry_at = now + delay
        policy = owner.on_unavailable
        if policy == "raise":
            self._fail_all(self._unavailable_error)
            return False
        if policy == "fallback":
            self._start_fallback(now)
            self._fail_all_to_fallback()
            return False
        # "wait": waiters stay queued (each bounded by its own max_wait) while Redis is retried.
        await asyncio.sleep(delay)
        return True

    # -- the fallback limiter ----------------------------------------------------------------

    def _start_fallback(self, now: float) -> None:
        if self._fallback is not None:
            return
        lim = self.limit
        requests = max(1, math.floor(lim.requests * self.owner.fallback_share))
        self._fallback = AccountLimiter(
            RateLimit(requests=requests, period=lim.period, burst=min(lim.burst, requests))
        )
        # What Redis counted just before it went away may fill the provider's window.
        self._fallback_from = now + self.window
        _log.warning(
            "%s: shared rate limiter: counting in this process at %d per %g s after a %.1f s hold",
            self.provider,
            requests,
            lim.period,
            self.window,
        )

    def _fail_all_to_fallback(self) -> None:
        while (waiter := self._head()) is not None:
            self._waiters.popleft()
            waiter.future.set_result(_VIA_FALLBACK)

    async def _via_fallback(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        """One request through the fallback limiter (Redis away, ``on_unavailable="fallback"``)."""
        fallback = self._fallback
        if fallback is None:  # Redis came back meanwhile
            await self.acquire(None if deadline is None else max(0.0, deadline - loop.time()))
            return
        self._maybe_probe(loop)
        now = loop.time()
        start = max(self._fallback_from, self._paused_until)
        if deadline is not None and start > deadline:
            raise WaitTooLong(start - now)
        await _sleep_until(loop, start)
        await fallback.acquire(None if deadline is None else max(0.0, deadline - loop.time()))
        if self._fallback is not fallback:
            # Redis came back while this request waited: it is counted there instead.
            await self.acquire(None if deadline is None else max(0.0, deadline - loop.time()))
            return
        self._fallback_last = loop.time()
        self.fallback_acquired += 1

    def _maybe_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._probe is None and not self.owner._closed:
            self._probe = loop.create_task(self._probe_until_back(loop))

    async def _probe_until_back(self, loop: asyncio.AbstractEventLoop) -> None:
        """While in fallback: PING Redis with backoff; when it answers, count in Redis again
        once a window has passed since this process's last fallback request."""
        owner = self.owner
        try:
            while True:
                await asyncio.sleep(max(0.0, self._retry_at - loop.time()))
                try:
                    await owner.redis.ping()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not owner.is_unavailable(exc):
                        _log.warning("shared rate limiter: probing Redis failed: %r", exc)
                    delay = owner.backoff(self._failures, self.window)
                    self._failures += 1
                    self._retry_at = loop.time() + delay
                    continue
                break
            self._failures = 0
            self._down = False
            owner.came_back()
            # No Redis turn before a window after the last request counted only here.
            resume = max(self._fallback_last + self.window, self._fallback_from)
            self._floor = max(self._floor, resume)
            self._hold_until = resume
            self._fallback = None
            self._serve(loop)
        finally:
            if self._probe is asyncio.current_task():
                self._probe = None

    def __repr__(self) -> str:
        lim = self.limit
        return (
            f"RedisAccountLimit({self.provider}, {lim.requests} per {lim.period:g} s, "
            f"burst {lim.burst})"
        )
