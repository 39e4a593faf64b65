"""Real processes for the shared-limit tests: the simulator as the ground truth in a process of
its own, and worker processes that send through SpeedSMS clients sharing one ``RedisLimiter``.

Every process is started with ``spawn`` (a fresh interpreter: nothing inherited but the
arguments) and talks to the test over a ``multiprocessing`` pipe; all traffic is on 127.0.0.1.
The simulator reports the Unix time of every accepted request (its outbox), the 429s it
answered and when it answered each forced one; a worker reports what it sent and what its
limiter did: when it let each request go (``taken_at``) and when it gave up a turn
(``given_up_at``). Times are Unix times: every process reads the same machine clock.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from smsvn._shared_limits import RedisAccountLimit, RedisLimiter
from smsvn.limits import RateLimit

CTX = multiprocessing.get_context("spawn")


# -- the limiter, observed ---------------------------------------------------------------------


class StampedAccountLimit(RedisAccountLimit):
    """A ``RedisAccountLimit`` that also notes the Unix time of each request it lets go
    (``taken_at``: what the limit promises is about these moments, the trip to the provider
    aside) and of each turn it gives up (``given_up_at``: a turn reached more than half the
    margin late, inside a pause, or made stale by an outage; its slot goes unused and another
    reservation is made). Nothing of the limiter changes: ``given_up`` is its own counter, read
    and written through a property. With ``echo``, each request let go is also written to
    stderr as ``taken <Unix time>`` (a process the test reads only the output of)."""

    taken_at: list[float]
    given_up_at: list[float]
    echo: bool

    @property
    def given_up(self) -> int:
        count: int = self.__dict__["given_up"]
        return count

    @given_up.setter
    def given_up(self, value: int) -> None:
        self.given_up_at.extend([time.time()] * (value - self.__dict__.get("given_up", 0)))
        self.__dict__["given_up"] = value

    async def acquire(self, max_wait: float | None = None) -> None:
        await super().acquire(max_wait)
        now = time.time()
        self.taken_at.append(now)
        if self.echo:
            print(f"taken {now:.6f}", file=sys.stderr, flush=True)


def stamped(acc: RedisAccountLimit, *, echo: bool = False) -> StampedAccountLimit:
    """``acc``, from now on noting when it lets requests go and gives turns up (the same object:
    every client that holds it is observed)."""
    if not isinstance(acc, StampedAccountLimit):
        acc.__dict__.update(taken_at=[], given_up_at=[], echo=echo)
        acc.__class__ = StampedAccountLimit
    assert isinstance(acc, StampedAccountLimit)
    return acc


class StampedLimiter(RedisLimiter):
    """A ``RedisLimiter`` whose accounts are ``StampedAccountLimit``s (``echo``: see there)."""

    def __init__(self, url_or_client: str | Any, *, echo: bool = False, **options: Any) -> None:
        super().__init__(url_or_client, **options)
        self.echo = echo

    def for_account(self, provider: str, account: str, limit: RateLimit) -> StampedAccountLimit:
        return stamped(super().for_account(provider, account, limit), echo=self.echo)


# -- the simulator process -------------------------------------------------------------------


def simulator_main(conn: Connection, requests: int, window: float) -> None:
    asyncio.run(_simulator(conn, requests, window))


async def _simulator(conn: Connection, requests: int, window: float) -> None:
    from smsvn.sandbox import Fault, Sandbox

    forced: list[float] = []
    async with Sandbox(
        speedsms_rate_limit=RateLimit(requests=requests, period=window), delivery_delay=3600.0
    ) as sb:
        select = sb.faults.select

        def recording_select(provider: str, route: str) -> Any:
            extra, fault = select(provider, route)
            if fault is not None and fault.kind == "rate_limit":
                forced.append(time.time())
            return extra, fault

        sb.faults.select = recording_select  # type: ignore[method-assign]
        conn.send(sb.client_options("speedsms"))
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            if command == "inject_429":
                fault = Fault(
                    kind="rate_limit", provider="speedsms", route="send", times=1, seconds=arg
                )
                sb.faults.add(fault)
                conn.send(None)
            elif command == "report":
                conn.send(
                    {
                        "accepted": sorted(r.accepted_at for r in sb.outbox),
                        "rate_limited": sb.stats.rate_limited,
                        "forced": list(forced),
                    }
                )
            else:
                conn.send(None)
                return


class Simulator:
    """The simulator's process, with its SpeedSMS limit compressed to ``requests`` per
    ``period`` seconds: the clients' limit (``client_options``). The simulator itself answers
    429 to more than ``requests`` in any ``window`` seconds (``period`` unless given): a window
    slightly shorter than the clients' period leaves room for the trip from client to
    simulator, whose delay the clients' margin does not all cover on a busy machine."""

    def __init__(self, requests: int, period: float, window: float | None = None) -> None:
        self.limit = RateLimit(requests=requests, period=period)
        self.window = period if window is None else window
        self._conn, child = CTX.Pipe()
        self._proc = CTX.Process(
            target=simulator_main,
            args=(child, requests, self.window),
            name="simulator",
            daemon=True,
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(60):
            raise RuntimeError("the simulator process did not start")
        options: dict[str, Any] = self._conn.recv()
        self.client_options: dict[str, Any] = {**options, "rate_limit": self.limit}

    def _ask(self, command: str, arg: object = None) -> Any:
        self._conn.send((command, arg))
        if not self._conn.poll(30):
            raise RuntimeError(f"the simulator did not answer {command!r}")
        return self._conn.recv()

    def inject_429(self, seconds: float) -> None:
        """The next send gets a 429 telling the client to wait ``seconds``."""
        self._ask("inject_429", seconds)

    def report(self) -> dict[str, Any]:
        return dict(self._ask("report"))

    def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError, EOFError, RuntimeError):
                self._ask("stop")
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


# -- worker processes --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    redis_url: str
    prefix: str
    client_options: dict[str, Any]
    coroutines: int
    duration: float  # seconds to send for, from the start the test gives (or from ready)
    wait_for_go: bool  # True: start at the Unix time the test sends; False: once ready


def worker_main(conn: Connection, cfg: WorkerConfig) -> None:
    asyncio.run(_worker(conn, cfg))


async def _worker(conn: Connection, cfg: WorkerConfig) -> None:
    from smsvn import SpeedSMS
    from smsvn.limits import account_key

    limiter = StampedLimiter(cfg.redis_url, prefix=cfg.prefix)
    options = dict(cfg.client_options)
    sent = 0
    errors: Counter[str] = Counter()
    async with SpeedSMS(**options, limiter=limiter) as sms:
        acc = limiter.for_account("speedsms", account_key(options["token"]), options["rate_limit"])
        conn.send("ready")
        if cfg.wait_for_go:
            start_at: float = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            await asyncio.sleep(max(0.0, start_at - time.time()))
        started = time.time()
        end_at = started + cfg.duration

        async def one() -> None:
            nonlocal sent
            while True:
                try:
                    await sms.send("0912345678", "Xin chao")
                    sent += 1
                except Exception as exc:  # counted and reported: the test asserts there are none
                    errors[type(exc).__name__] += 1

        # At the end, whoever is still waiting for a turn (or on its way) is cancelled.
        tasks = [asyncio.create_task(one()) for _ in range(cfg.coroutines)]
        await asyncio.sleep(max(0.0, end_at - time.time()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        report = {
            "pid": os.getpid(),
            "started": started,
            "sent": sent,
            "errors": dict(errors),
            "calls": limiter.calls,
            "acquired": limiter.acquired,
            "given_up": acc.given_up,
            "given_up_at": list(acc.given_up_at),
            "taken_at": list(acc.taken_at),
            "refused": acc.refused,
            "outages": limiter.outages,
        }
    await limiter.aclose()
    conn.send(report)


class Worker:
    def __init__(self, cfg: WorkerConfig, name: str) -> None:
        self._conn, child = CTX.Pipe()
        self.proc = CTX.Process(target=worker_main, args=(child, cfg), name=name, daemon=True)
        self.proc.start()
        child.close()
        self.killed = False

    def wait_ready(self, timeout: float = 60) -> None:
        if not self._conn.poll(timeout) or self._conn.recv() != "ready":
            raise RuntimeError("a worker process did not start")

    def go(self, start_at: float) -> None:
        self._conn.send(start_at)

    def kill(self) -> None:
        """SIGKILL: no cleanup, its reservations left in Redis."""
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()
        self.killed = True

    def result(self, timeout: float) -> dict[str, Any]:
        if not self._conn.poll(timeout):
            raise RuntimeError("a worker did not report")
        report: dict[str, Any] = self._conn.recv()
        self.proc.join(10)
        return report

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


@dataclass
class Fleet:
    """The worker processes of one scenario."""

    redis_url: str
    prefix: str
    simulator: Simulator
    coroutines: int
    workers: list[Worker] = field(default_factory=list)

    def spawn(self, count: int, duration: float) -> tuple[list[Worker], float]:
        """Start ``count`` workers; once all are ready they send for ``duration`` seconds from
        the returned Unix start time (a little ahead, so that all start together)."""
        new = self._start(count, duration, wait_for_go=True)
        start_at = time.time() + 0.2
        for w in new:
            w.go(start_at)
        return new, start_at

    def join(self, duration: float) -> Worker:
        """One more worker, sending for ``duration`` seconds from when it is ready."""
        (new,) = self._start(1, duration, wait_for_go=False)
        return new

    def _start(self, count: int, duration: float, *, wait_for_go: bool) -> list[Worker]:
        cfg = WorkerConfig(
            self.redis_url,
            self.prefix,
            self.simulator.client_options,
            self.coroutines,
            duration,
            wait_for_go,
        )
        new = [Worker(cfg, f"worker-{len(self.workers) + i}") for i in range(count)]
        self.workers.extend(new)
        for w in new:
            w.wait_ready()
        return new

    def results(self, end_at: float) -> list[dict[str, Any]]:
        timeout = max(0.0, end_at - time.time()) + 30
        return [w.result(timeout) for w in self.workers if not w.killed]

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


# -- analysis ----------------------------------------------------------------------------------


def max_in_window(times: list[float], period: float) -> int:
    """The most times that fall in any half-open window [t, t + period)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + period) - i for i, t in enumerate(times)), default=0)


def between(times: list[float], start: float, end: float) -> list[float]:
    return [t for t in times if start <= t < end]


def redis_calls(url: str) -> int:
    """Round trips the limiters made, as the Redis server counted them (commandstats: those it
    ran, those it refused such as an EVALSHA it did not know, and those that failed)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    names = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_ping", "cmdstat_subscribe")
    return sum(
        int(stats[name].get(kind, 0))
        for name in names
        if name in stats
        for kind in ("calls", "rejected_calls", "failed_calls")
    )
