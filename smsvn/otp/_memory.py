"""``MemoryStore``: verifications in this process's memory (one process, any number of tasks).

Each step runs under one lock and without awaiting anything, so concurrent tasks (and threads)
see it as one atomic step -- the same rules as ``RedisStore``'s Lua scripts, line for line.
What is kept: per (purpose, number digest) the live code's digest, its expiry, cooldown,
attempts, sends and the token of its last send, with the verification that send replaced (put
back if the send provably went nowhere; never checked); per number digest the times of its
recent sends; the times of all recent sends. No code, no phone number. What no rule needs any
more is swept as time passes.
"""

from __future__ import annotations

import bisect
import heapq
import hmac
import itertools
import threading
from typing import Final

from smsvn.otp._types import Checked, Claim, Reason, Refusal, Start, span, ticks, ticks_up

__all__ = ["EXPIRED_GRACE", "LOG_HORIZON", "MemoryStore"]

EXPIRED_GRACE = 600.0
LOG_HORIZON = 86400.0
"""Seconds a number's sends are kept at least: the longest cap window a ``Verifier`` has (a
day). Every purpose's sends go into one log per number, so each verifier's caps count the
sends of all of them: a verifier with shorter caps (or none) must not cut the log short."""
"""Seconds a verification is kept after it expired (and its cooldown ended), so that a late
check is told ``expired`` rather than ``not_found``; then it is removed."""


_GRACE: Final = ticks(EXPIRED_GRACE)
_HORIZON: Final = ticks(LOG_HORIZON)

EARLIER_KEPT: Final = 4
"""Live verifications a record keeps to put back, newest first: one per send that may still be
undone (several overlap only when ``resend_after`` is shorter than a send can take)."""


class _Previous:
    """A live verification a send replaced, with its own send's token: put back if every send
    after it is undone (``_rollback``); dropped from the list if its own send is."""

    __slots__ = ("digest", "expires", "resend", "sends", "token")

    def __init__(self, digest: str, expires: int, resend: int, sends: int, token: str) -> None:
        self.digest = digest
        self.expires = expires
        self.resend = resend
        self.sends = sends
        self.token = token


class _Record:
    """One number's verification (for one purpose); times in microseconds (``ticks``)."""

    __slots__ = ("attempts", "digest", "earlier", "expires", "resend", "sends", "token")

    def __init__(
        self,
        digest: str,
        expires: int,
        resend: int,
        attempts: int,
        sends: int,
        token: str,
        earlier: tuple[_Previous, ...],
    ) -> None:
        self.digest = digest
        self.expires = expires
        self.resend = resend
        self.attempts = attempts
        self.sends = sends
        self.token = token
        self.earlier = earlier
        """The live verifications this one's sends replaced, newest first (``_Previous``)."""

    def removable_at(self) -> int:
        """When no rule needs the record any more."""
        return max(self.expires, self.resend) + _GRACE


class _Log:
    """Times of recent sends (ascending, in microseconds) and the token of each, to count sends
    in a window."""

    __slots__ = ("keep", "times", "tokens")

    def __init__(self, keep: int = _HORIZON) -> None:
        self.times: list[int] = []
        self.tokens: list[str] = []
        self.keep = keep
        """How long to keep a send: the longest window any start on this number has used."""

    def trim(self, before: int) -> None:
        """Forget the sends at or before ``before``."""
        cut = bisect.bisect_right(self.times, before)
        if cut:
            del self.times[:cut]
            del self.tokens[:cut]

    def add(self, when: int, token: str) -> None:
        at = bisect.bisect_right(self.times, when)
        self.times.insert(at, when)
        self.tokens.insert(at, token)

    def remove(self, token: str) -> None:
        try:
            at = self.tokens.index(token)
        except ValueError:
            return
        del self.times[at]
        del self.tokens[at]

    def wait(self, span: int, limit: int, now: int) -> int:
        """How long until one more send fits ``limit`` sends in ``span`` (0: it fits now). A
        send at ``t`` counts while ``now - span < t``."""
        first = bisect.bisect_right(self.times, now - span)
        count = len(self.times) - first
        if count < limit:
            return 0
        return self.times[first + count - limit] + span - now


class MemoryStore:
    """Verifications in this process's memory: for one process (a single worker, tests).

    Several workers (gunicorn, uvicorn ``--workers``, several machines) each have their own
    memory, so each would count attempts and caps by itself: use ``RedisStore`` there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], _Record] = {}
        self._numbers: dict[str, _Log] = {}
        self._all = _Log()
        # (when, n, key): when a record (key: (purpose, number)) or a number's log (key: number)
        # may be removable; checked against the entry itself when it comes up, since a later
        # send may have extended it.
        self._sweep: list[tuple[int, int, tuple[str, str] | str]] = []
        self._serial = itertools.count()

    def __repr__(self) -> str:
        return f"MemoryStore(verifications={len(self._records)})"

    def __len__(self) -> int:
        """Verifications held (live, or expired and not yet swept)."""
        return len(self._records)

    async def begin(self, start: Start) -> Claim:
        """See ``Store.begin``."""
        with self._lock:
            return self._begin(start)

    async def rollback(self, start: Start, now: float) -> None:
        """See ``Store.rollback``."""
        with self._lock:
            self._rollback(start, ticks(now))

    async def check(
        self, number: str, purpose: str, digest: str, max_attempts: int, now: float
    ) -> Checked:
        """See ``Store.check``."""
        with self._lock:
            return self._check((purpose, number), digest, max_attempts, ticks(now))

    async def aclose(self) -> None:
        """Nothing to release."""

    # -- the steps, each under the lock ---------------------------------------------------------

    def _begin(self, s: Start) -> Claim:
        now = ticks(s.now)
        self._swept(now)
        key = (s.purpose, s.number)
        record = self._records.get(key)
        live = record is not None and record.expires > now
        attempts = sends = 0
        if record is not None:
            if live:
                attempts, sends = record.attempts, record.sends
                if attempts >= s.max_attempts:
                    return Claim(
                        granted=False,
                        refusal=Refusal.LOCKED,
                        retry_after=(record.expires - now) / 1e6,
                        sends=sends,
                        attempts=attempts,
                    )
            if record.resend > now:
                return Claim(
                    granted=False,
                    refusal=Refusal.TOO_SOON,
                    retry_after=(record.resend - now) / 1e6,
                    sends=sends,
                    attempts=attempts,
                )
        log = self._numbers.get(s.number)
        spans = [span(w) for w in s.number_caps]
        keep = max([_HORIZON, *spans])  # a verifier may have no number caps
        if log is not None:
            log.keep = max(log.keep, keep)
            log.trim(now - log.keep)
        wait, cap = 0, -2
        for index, window in enumerate(s.number_caps):
            if log is not None and (w := log.wait(spans[index], window.limit, now)) > wait:
                wait, cap = w, index
        if s.global_cap is not None:
            every = span(s.global_cap)
            self._all.trim(now - every)
            if (w := self._all.wait(every, s.global_cap.limit, now)) > wait:
                wait, cap = w, -1
        if cap != -2:
            return Claim(
                granted=False,
                refusal=Refusal.CAPPED,
                retry_after=wait / 1e6,
                cap=cap,
                sends=sends,
                attempts=attempts,
            )
        # Every send is logged, capped here or not: other purposes' caps count it. At its time
        # rounded up: it leaves a cap's window no earlier than it should.
        logged = ticks_up(s.now)
        if log is None:
            log = self._numbers[s.number] = _Log(keep)
        log.add(logged, s.token)
        self._later(logged + log.keep, s.number)
        if s.global_cap is not None:
            self._all.add(logged, s.token)
        earlier: tuple[_Previous, ...] = ()
        if live and record is not None:
            replaced = _Previous(
                record.digest, record.expires, record.resend, record.sends, record.token
            )
            earlier = (replaced, *record.earlier)[:EARLIER_KEPT]
        fresh = _Record(
            digest=s.digest,
            expires=ticks(s.now + s.ttl),  # the very tick of ``Verification.expires_at``
            resend=ticks_up(s.now + s.resend_after),
            attempts=attempts,
            sends=sends + 1,
            token=s.token,
            earlier=earlier,
        )
        self._records[key] = fresh
        self._later(fresh.removable_at(), key)
        return Claim(granted=True, sends=sends, attempts=attempts)

    def _rollback(self, s: Start, now: int) -> None:
        log = self._numbers.get(s.number)
        if log is not None:
            log.remove(s.token)
        self._all.remove(s.token)
        key = (s.purpose, s.number)
        record = self._records.get(key)
        if record is None:
            return  # approved (or gone) meanwhile: nothing of ours is left
        if record.token != s.token:
            # Replaced by a later send: this one's verification must never be put back when
            # that later send is undone too.
            record.earlier = tuple(e for e in record.earlier if e.token != s.token)
            return
        if not record.earlier:
            del self._records[key]
            return
        previous, *rest = record.earlier
        record.digest = previous.digest
        record.expires = previous.expires
        record.resend = previous.resend
        record.sends = previous.sends
        record.token = previous.token
        record.earlier = tuple(rest)
        self._later(record.removable_at(), key)

    def _check(self, key: tuple[str, str], digest: str, max_attempts: int, now: int) -> Checked:
        self._swept(now)
        record = self._records.get(key)
        if record is None:
            return Checked(Reason.NOT_FOUND, 0)
        if record.expires <= now:
            return Checked(Reason.EXPIRED, record.attempts)
        if record.attempts >= max_attempts:
            return Checked(Reason.TOO_MANY_ATTEMPTS, record.attempts)
        record.attempts += 1
        if hmac.compare_digest(record.digest, digest):
            del self._records[key]
            return Checked(Reason.APPROVED, record.attempts)
        return Checked(Reason.WRONG_CODE, record.attempts)

    # -- cleanup -------------------------------------------------------------------------------

    def _later(self, when: int, key: tuple[str, str] | str) -> None:
        heapq.heappush(self._sweep, (when, next(self._serial), key))

    def _swept(self, now: int) -> None:
        """Remove what no rule needs any more (each entry is looked at once, when due)."""
        heap = self._sweep
        while heap and heap[0][0] <= now:
            _, _, key = heapq.heappop(heap)
            if isinstance(key, tuple):
                record = self._records.get(key)
                if record is not None and record.removable_at() <= now:
                    del self._records[key]
            else:
                log = self._numbers.get(key)
                if log is not None and (not log.times or log.times[-1] <= now - log.keep):
                    del self._numbers[key]
