"""The engine behind every simulated provider of one sandbox: the accounts (balances and
prices), the outbox, delivery scheduling, and the HTTP calls the simulator makes back to
callback URLs.

Each simulator (``speedsms``, ``esms``, ``fibo``, or any registered provider's) owns its wire
format and asks the engine to charge, record and schedule; ``Sandbox`` owns the server.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import aiohttp
from yarl import URL

from smsvn.sandbox._base import Batch, Outbox, Stats

__all__ = ["CALLBACK_TIMEOUT", "Engine"]

CALLBACK_TIMEOUT: Final = 5.0
"""Seconds one callback attempt may wait to connect, and then for each read."""


class Engine:
    """Accounts, the outbox, delivery scheduling and outgoing callbacks of one sandbox."""

    def __init__(
        self,
        *,
        delivery_delay: float,
        record_outbox: bool,
        balances: Mapping[str, float],
        prices: Mapping[str, float],
        seed: int,
        callback_retry_delay: float,
    ) -> None:
        self.delivery_delay = delivery_delay
        self.record_outbox = record_outbox
        self.balances = dict(balances)
        self.prices = dict(prices)
        self.callback_retry_delay = callback_retry_delay
        self.outbox = Outbox()
        self.stats = Stats()
        self._ids = random.Random(seed * 7919 + 17)
        self._serial = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._settled_at = 0.0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the running loop and open the callback session."""
        self._closed = False
        self._loop = loop
        self._session = aiohttp.ClientSession(
            # Per-socket timeouts, not a total: waiting for one of the pool's connections
            # behind a burst of thousands of reports is not the receiver's failure.
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CALLBACK_TIMEOUT, sock_read=CALLBACK_TIMEOUT
            ),
            connector=aiohttp.TCPConnector(limit=32),
        )

    async def close(self) -> None:
        """Cancel every pending delivery and callback, then close the callback session."""
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the sandbox runs in (only once started)."""
        if self._loop is None:
            raise RuntimeError("the sandbox is not started")
        return self._loop

    def now(self) -> float:
        """The event loop's clock (delivery times are on it)."""
        return self.loop.time()

    async def idle(self) -> None:
        """Wait until no delivery is pending and no callback is in flight."""
        while True:
            last = max((h.when() for h in self._timers.values()), default=self._settled_at)
            wait = max(last, self._settled_at) - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            elif self._timers:
                await asyncio.sleep(0)
            elif self._tasks:
                await asyncio.wait(list(self._tasks))
            else:
                return

    # -- money and ids ---------------------------------------------------------------------

    def charge(self, provider: str, amount: float) -> bool:
        """Take ``amount`` from ``provider``'s balance; False (nothing taken) when too little."""
        balance = self.balances[provider]
        if amount > balance + 1e-9:
            return False
        self.balances[provider] = balance - amount
        return True

    def guid(self) -> str:
        """A GUID from the seeded generator (reproducible ids)."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def serial(self) -> int:
        """The next number of a sandbox-wide sequence."""
        return next(self._serial)

    # -- accepting and delivering ----------------------------------------------------------

    def times(self, start: float | None = None) -> tuple[float, float]:
        """(due, retry_at) loop times for a batch starting now, or at Unix time ``start``."""
        now = self.now()
        if start is not None:
            now += max(0.0, start - time.time())
        due = now + self.delivery_delay
        return due, due + self.delivery_delay

    def accept(self, batch: Batch) -> None:
        """Record an accepted batch: the outbox (unless off), the counters, the settle time."""
        if self.record_outbox:
            self.outbox.add(batch)
        self.stats.accepted[batch.provider] += len(batch.numbers)
        if not batch.sandbox and batch.retry_at > self._settled_at:
            self._settled_at = batch.retry_at

    def schedule(self, when: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` at loop time ``when`` (cancelled if the sandbox closes first)."""
        if self._closed:
            return
        tid = self.serial()
        self._timers[tid] = self.loop.call_at(when, self._fire, tid, job)

    def spawn(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` now as a tracked task (cancelled if the sandbox closes first)."""
        if self._closed:
            return
        task = self.loop.create_task(self._guarded(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fire(self, tid: int, job: Callable[[], Awaitable[None]]) -> None:
        """A timer went off: forget its handle and run its job as a tracked task."""
        self._timers.pop(tid, None)
        self.spawn(job)

    async def _guarded(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run a job so that no error escapes as an unretrieved task exception."""
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # counted, never left as an unretrieved task exception
            self.stats.callback_failures += 1

    async def callback(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        attempts: int = 1,
    ) -> bool:
        """Call a callback URL until it answers 200, at most ``attempts`` times, backing off
        ``callback_retry_delay`` x 2^n between tries; True when one got 200."""
        for attempt in range(attempts):
            if await self.call(method, url, params=params, body=body) == 200:
                return True
            if attempt + 1 < attempts:
                await asyncio.sleep(self.callback_retry_delay * 2**attempt)
        return False

    async def call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> int:
        """One counted callback attempt: the HTTP status, or 0 when there was no answer.
        ``params`` replace same-named parameters already in the URL; ``body`` goes as JSON."""
        session = self._session
        stats = self.stats
        stats.callback_attempts += 1
        status = 0
        if session is not None:
            headers = {"Content-Type": "application/json"} if body is not None else None
            try:
                target = URL(url)
                if params:
                    target = target.update_query(params)
                async with session.request(method, target, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                status = 0
        if status == 200:
            stats.callbacks_delivered += 1
        else:
            stats.callback_failures += 1
        return status
