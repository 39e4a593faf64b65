"""Per-account rate limiters that never exceed the provider's window and obey its 429 answers.

A provider's limit is stated as "N requests per T seconds". A plain token bucket starts full
and admits about 2N requests in the first T seconds, which earns 429s. smsvn's limiter gives
each request a *reservation*: the moment it may go, known at once, so a call that would wait
longer than its ``max_wait`` is refused before it waits at all (a web request never hangs on
the account's turn). Reservations are paced at ``(N - burst) / T`` a second (GCRA: 59 a minute
for SpeedSMS's 60, evenly spaced, with ``burst + 1`` at once from idle), and a reservation is
never closer than T (plus a 2 % margin: the provider counts arrivals) to the N-th before it.
The same rule is then held on the times requests really go, so a late wake-up of the event loop
can never squeeze N + 1 requests into a window.

A limiter belongs to an account (provider + credential digest), not to a client: every client of
one account in the process (per event loop, since asyncio primitives belong to one loop) shares
it, and a 429 pauses the whole account. ``limiter=`` on a client chooses where accounts are
counted: ``InProcessLimiter`` (the default) or a shared one such as ``smsvn.RedisLimiter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import weakref
from collections import deque
from typing import Protocol

import msgspec

from smsvn._checks import checked_int, checked_seconds
from smsvn.errors import ValidationError

__all__ = [
    "MAX_REQUESTS",
    "AccountLimit",
    "AccountLimiter",
    "InProcessLimiter",
    "LimiterBackend",
    "RateLimit",
    "WaitTooLong",
    "account_key",
    "limiter_for",
]

_log = logging.getLogger("smsvn")


MAX_REQUESTS = 1_000_000_000
"""The most requests a ``RateLimit`` window may hold: past any provider's limit, and small
enough that rates computed from it stay ordinary floats (``10**400`` overflowed the limiter)."""


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """A provider limit: at most ``requests`` in any window of ``period`` seconds.

    Requests are paced at ``(requests - burst) / period`` a second, so that a few (``burst``,
    one more after a late wake-up) may go at once from idle without the window ever being
    exceeded.

    ``requests`` is an int from 1 to ``MAX_REQUESTS``, ``period`` a positive number of seconds up
    to a year, ``burst`` an int from 1 to ``requests``; anything else is a ``ValidationError``
    here, not an ``OverflowError`` at the first send.
    """

    requests: int
    period: float
    burst: int = 1

    def __post_init__(self) -> None:
        checked_int(self.requests, "RateLimit.requests", low=1, high=MAX_REQUESTS)
        checked_seconds(self.period, "RateLimit.period")
        checked_int(self.burst, "RateLimit.burst", low=1)
        if self.burst > self.requests:
            raise ValidationError("RateLimit.burst must be between 1 and requests")

    @property
    def sustained_rate(self) -> float:
        """Requests per second the limiter admits once its burst is spent."""
        spare = self.requests - self.burst
        # With no spare (burst == requests) the window rule alone paces: a window's worth at
        # once, then the next window's as the first ones age out.
        return spare / self.period if spare else self.requests / self.period


WINDOW_GUARD = 1.02
"""The window rule keeps requests 2 % further apart than the provider's window: a request takes
longer to arrive than the next one (a new connection, a busy loop), and the provider counts
arrivals, not departures."""


class WaitTooLong(Exception):
    """The account's next turn is further away than the caller's ``max_wait``; nothing was
    reserved. The transport turns it into ``errors.RateLimited`` naming the call."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the account's next turn is {wait:.2f} s away")
        self.wait = wait


class AccountLimit(Protocol):
    """The limiter of one account, wherever it is counted."""

    async def acquire(self, max_wait: float | None = None) -> None:
        """Wait for the account's turn; ``WaitTooLong`` at once if it is over ``max_wait`` s."""
        ...

    async def pause(self, seconds: float) -> None:
        """Hold every request of the account for ``seconds`` (a 429's reset hint)."""
        ...


class LimiterBackend(Protocol):
    """Where accounts are counted: gives each (provider, account) its ``AccountLimit``."""

    def for_account(self, provider: str, account: str, limit: RateLimit) -> AccountLimit:
        """The limiter of ``provider``'s ``account`` (an ``account_key`` digest)."""
        ...


class _Turn:
    """One reserved turn, with the schedule as it was before it (to rewind to)."""

    __slots__ = ("given_back", "last", "slot", "tat")

    def __init__(self, slot: float, tat: float, last: float) -> None:
        self.slot = slot
        self.tat = tat
        self.last = last
        self.given_back = False


class AccountLimiter:
    """The in-process limiter of one account: reservations (GCRA), the window rule, and a pause
    that a 429 imposes on everyone."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._interval = 1.0 / limit.sustained_rate
        self._tolerance = limit.burst * self._interval
        self._period = limit.period * WINDOW_GUARD
        self._tat = -math.inf  # GCRA's theoretical arrival time of the next request
        self._last = -math.inf  # the latest reservation: they are handed out in order
        # The reservations of the last window (given-back ones removed) and the last N real
        # sends: the "N in any window" rule.
        self._reserved: deque[float] = deque()
        self._sent: deque[float] = deque(maxlen=limit.requests)
        self._paused_until = 0.0
        self.pauses = 0
        # Turns reserved and not yet used, in the order handed out (with those given back above
        # the newest one still waiting): a turn given back at the top rewinds the schedule.
        self._turns: list[_Turn] = []

    def _reserve(self, now: float, max_wait: float | None) -> _Turn:
        """The next free moment (now or later), reserved; ``WaitTooLong`` reserves nothing."""
        slot = max(now, self._tat - self._tolerance, self._paused_until, self._last)
        reserved, period, n = self._reserved, self._period, self.limit.requests
        while reserved and reserved[0] + period <= now:
            reserved.popleft()  # a window ago: it can hold nothing back any more
        if len(reserved) >= n:
            slot = max(slot, reserved[-n] + period)
        if max_wait is not None and slot - now > max_wait:
            raise WaitTooLong(slot - now)
        turn = _Turn(slot, self._tat, self._last)
        self._tat = max(self._tat, slot) + self._interval
        self._last = slot
        reserved.append(slot)
        self._turns.append(turn)
        return turn

    def _used(self, turn: _Turn) -> None:
        """``turn`` was used: it, and every turn before it, can no longer be given back into
        the schedule (a later one is counted after them)."""
        turns = self._turns
        for index, held in enumerate(turns):
            if held is turn:
                del turns[: index + 1]
                return

    def _give_back(self, turn: _Turn) -> None:
        """``turn`` will not be used (its waiter was cancelled, or a pause voided it): it no
        longer counts in the window, and while the newest turns are given back the schedule
        rewinds to before them, so that the next caller is not made to wait for them."""
        turn.given_back = True
        with contextlib.suppress(ValueError):
            self._reserved.remove(turn.slot)
        turns = self._turns
        while turns and turns[-1].given_back:
            top = turns.pop()
            self._tat, self._last = top.tat, top.last

    async def acquire(self, max_wait: float | None = None) -> None:
        """Wait until this account may send one more request (``WaitTooLong`` at once when
        that is more than ``max_wait`` seconds away). A caller cancelled while it waits gives
        its turn back."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent, period = self._sent, self._period
        while True:
            now = loop.time()
            budget = None if max_wait is None else max(0.0, max_wait - (now - started))
            turn = self._reserve(now, budget)
            try:
                if turn.slot > now:
                    await asyncio.sleep(turn.slot - now)
                # The hard rule, on real times: a late wake-up never squeezes one more in.
                while len(sent) == sent.maxlen and (wait := sent[0] + period - loop.time()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)
            except BaseException:
                self._give_back(turn)  # nothing was sent on it
                raise
            now = loop.time()
            if self._paused_until <= now:
                sent.append(now)
                self._used(turn)
                return
            self._give_back(turn)  # a 429 paused the account while we waited: take a new one

    def pause_now(self, seconds: float) -> None:
        """Hold every request of this account for ``seconds`` (the provider's reset hint)."""
        until = asyncio.get_running_loop().time() + max(seconds, 0.0)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1
            _log.warning("rate limited: pausing the account for %.1f s", seconds)

    async def pause(self, seconds: float) -> None:
        """``pause_now``, as the ``AccountLimit`` protocol has it."""
        self.pause_now(seconds)

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


class InProcessLimiter:
    """The default backend: each account's limiter lives in this process, one per event loop,
    shared by every client of the account in that loop."""

    def for_account(self, provider: str, account: str, limit: RateLimit) -> AccountLimit:
        """The account's ``AccountLimiter`` in the running loop."""
        return limiter_for(provider, account, limit)

    def __repr__(self) -> str:
        return "InProcessLimiter()"
