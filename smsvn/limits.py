"""Per-account rate limiters that never exceed the provider's window and obey its 429 answers.

A provider's limit is stated as "N requests per T seconds". A plain ``AsyncLimiter(N, T)`` starts
with a full bucket and admits about 2N requests in the first T seconds (aiolimiter's documented
burst), which earns 429s. smsvn paces requests with an aiolimiter bucket that drains at
``(N - burst) / T`` a second — 59 a minute for SpeedSMS's 60, evenly spaced, which is what a bulk
send wants (98 % of the allowed rate) — and holds the hard rule on the times requests really go:
no request while the N-th previous one is less than T seconds ago. The bucket holds ``burst + 1``
so that the moment the event loop takes to wake a waiter is not lost once per request (with a
capacity of 1 it is: a late waiter finds the bucket clamped at empty); the window rule (with a 2 %
margin, since the provider counts arrivals) is what guarantees the limit, whatever the bucket
lets through.

One limiter serves an account (provider + credential) for every client instance in the process
(per event loop, since asyncio primitives belong to one loop). A 429 pauses the whole account.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import deque

import msgspec
from aiolimiter import AsyncLimiter

__all__ = ["AccountLimiter", "RateLimit", "account_key", "limiter_for"]

_log = logging.getLogger("smsvn")


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """A provider limit: at most ``requests`` in any window of ``period`` seconds.

    Requests are paced at ``(requests - burst) / period`` a second, so that a few (``burst``,
    one more after a late wake-up) may go at once from idle without the window ever being
    exceeded.
    """

    requests: int
    period: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.requests < 1 or self.period <= 0:
            raise ValueError("RateLimit needs requests >= 1 and period > 0")
        if not 1 <= self.burst <= self.requests:
            raise ValueError("RateLimit.burst must be between 1 and requests")

    @property
    def sustained_rate(self) -> float:
        """Requests per second the limiter admits once its burst is spent."""
        spare = self.requests - self.burst
        # With no spare (burst == requests) the window rule alone paces: a window's worth at once.
        return spare / self.period if spare else 1.0 / self.period


_WINDOW_GUARD = 1.02
"""The window rule keeps requests 2 % further apart than the provider's window: a request takes
longer to arrive than the next one (a new connection, a busy loop), and the provider counts
arrivals, not departures."""


class AccountLimiter:
    """The limiter of one account: a leaky bucket plus a pause that a 429 imposes on everyone."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        capacity = limit.burst + 1
        # AsyncLimiter(capacity, capacity / rate): ``capacity`` draining at ``rate`` a second.
        self._bucket = AsyncLimiter(capacity, capacity / limit.sustained_rate)
        # When the last ``requests`` requests went: the hard "N in any window of T" rule.
        self._sent: deque[float] = deque(maxlen=limit.requests)
        self._paused_until = 0.0
        self.pauses = 0

    async def acquire(self) -> None:
        """Wait until this account may send one more request."""
        loop = asyncio.get_running_loop()
        sent, period = self._sent, self.limit.period * _WINDOW_GUARD
        while True:
            wait = self._paused_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._bucket.acquire()
            # Sleeps until a known deadline (the window's oldest request ages out), no polling.
            while len(sent) == sent.maxlen and (wait := sent[0] + period - loop.time()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            # A 429 may have paused the account while we waited.
            now = loop.time()
            if self._paused_until <= now:
                sent.append(now)
                return

    def pause(self, seconds: float) -> None:
        """Hold every request of this account for ``seconds`` (the provider's reset hint)."""
        until = asyncio.get_running_loop().time() + max(seconds, 0.0)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1
            _log.warning("rate limited: pausing the account for %.1f s", seconds)

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - asyncio.get_running_loop().time())

    def __repr__(self) -> str:
        lim = self.limit
        return f"AccountLimiter({lim.requests} per {lim.period:g} s, burst {lim.burst})"


_REGISTRY: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], AccountLimiter]
] = weakref.WeakKeyDictionary()


def account_key(credential: str) -> str:
    """A digest that names an account without holding its credential."""
    return hashlib.sha256(credential.encode()).hexdigest()[:32]


def limiter_for(provider: str, account: str, limit: RateLimit) -> AccountLimiter:
    """The shared limiter of ``provider``'s ``account`` (an ``account_key``) in the running loop.

    The first client of an account sets its limit; a later client asking for a different one
    gets the existing limiter (one account has one limit) and a warning in the log.
    """
    loop = asyncio.get_running_loop()
    accounts = _REGISTRY.setdefault(loop, {})
    key = (provider, account)
    limiter = accounts.get(key)
    if limiter is None:
        limiter = accounts[key] = AccountLimiter(limit)
    elif limiter.limit != limit:
        _log.warning(
            "%s: this account already has a limiter (%r); ignoring the different limit %r",
            provider,
            limiter,
            limit,
        )
    return limiter
