"""Shared limits across real processes: 4 processes x 50 coroutines, each a SpeedSMS client with
its own ``RedisLimiter``, against the simulator (its own process; the ground truth) with the
SpeedSMS limit compressed to 60 requests per second.

Each scenario checks the requests the limiters let go (never more than 60 in any 1 s window,
over every process), and on the simulator's side: no 429 from its window (60 in any 0.95 s: the
rest of the second is for the trip to it, whose delay the limiter's margin does not all cover on
a busy machine), the rate achieved, and the Redis round trips per request (as Redis counted
them). Redis is a private ``redis-server`` per test (it is stopped and started in one scenario).

A turn a limiter reaches too late (a late Redis answer, a late wake-up: more than half its 2 %
margin past its slot) is given up by design: its slot goes unused and another reservation is
made. The rate and round-trip bounds forgive up to one late event's worth of them
(``LATE_EVENT``), counted by the limiters themselves, and no more.

``SMSVN_SHARED_LIMITS_SECONDS`` lengthens the steady run (11 s by default).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from smsvn._shared_limits import DEFAULT_LOOKAHEAD
from tests.multiprocess.harness import (
    Fleet,
    Simulator,
    between,
    max_in_window,
    redis_calls,
)

if TYPE_CHECKING:
    from tests.services import RedisServer


N = 60
PERIOD = 1.0
PROCESSES = 4
COROUTINES = 50
STEADY = float(os.environ.get("SMSVN_SHARED_LIMITS_SECONDS", "11"))
WINDOW = PERIOD * 1.02
SIMULATOR_WINDOW = PERIOD * 0.95
"""The simulator answers 429 to more than N in any such window: 5 % of the period for the trip."""
LATE_EVENT = PROCESSES * DEFAULT_LOOKAHEAD
"""Turns one late event may cost: every turn every process holds at that moment (a machine
stalled for a moment makes all of them late). Given up by design, each is a slot no request
uses and one more reservation."""


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator(N, PERIOD, window=SIMULATOR_WINDOW)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def fleet(redis_server: RedisServer, simulator: Simulator) -> Iterator[Fleet]:
    f = Fleet(redis_server.url, f"smsvn-mp-{uuid.uuid4().hex[:8]}", simulator, COROUTINES)
    try:
        yield f
    finally:
        f.stop()


def check(
    sim: Simulator, results: list[dict[str, Any]], forced: int = 0
) -> tuple[list[float], dict[str, Any]]:
    """The common promises: no window 429, no window over N (of the requests the limiters let
    go, in the true period; of the arrivals, in the simulator's), no worker error."""
    report = sim.report()
    accepted: list[float] = report["accepted"]
    assert len(report["forced"]) == forced
    assert report["rate_limited"] == forced, "the simulator answered 429 for its window"
    taken = [t for r in results for t in r["taken_at"]]
    assert max_in_window(taken, PERIOD) <= N
    assert max_in_window(accepted, SIMULATOR_WINDOW) <= N
    for r in results:
        assert r["errors"] == {}, r
        assert r["sent"] > 0, r
        assert r["given_up"] == len(r["given_up_at"]), r
    print(f"{len(accepted)} arrivals; {given_up(results)} turns given up")
    return accepted, report


def given_up(results: list[dict[str, Any]], start: float = 0.0, end: float = math.inf) -> int:
    """Turns the limiters gave up between ``start`` and ``end`` (Unix times)."""
    return sum(len(between(r["given_up_at"], start, end)) for r in results)


def forgiven(
    results: list[dict[str, Any]], start: float = 0.0, end: float = math.inf, events: int = 1
) -> int:
    """The turns given up between ``start`` and ``end``, up to ``events`` late events' worth: a
    limiter that gives up more (turns that were not late, say) still fails the bounds."""
    return min(given_up(results, start, end), events * LATE_EVENT)


def settled(server: RedisServer) -> None:
    """Wait until the private Redis has been up for longer than a window (plus the second its
    whole-second uptime may hide): before that, the limiter rightly holds a new account for a
    window, as after a restart, which the steady-state measurements are not about."""
    time.sleep(max(0.0, server.started + WINDOW + 1.2 - time.monotonic()))


def utilisation(accepted: list[float], start: float, end: float, wasted: int = 0) -> float:
    """The part of the limit used between ``start`` and ``end``, counting the ``wasted`` turns
    (given up by design) as used."""
    return (len(between(accepted, start, end)) + wasted) / (N / PERIOD * (end - start))


def per_request(calls: int, accepted: list[float], wasted: int = 0) -> float:
    """Redis round trips per request, less one for each of the ``wasted`` turns (each cost a
    reservation that no request used)."""
    return (calls - wasted) / len(accepted)


def test_processes_share_one_account_at_the_limit(fleet: Fleet, redis_server: RedisServer) -> None:
    settled(redis_server)
    _, start = fleet.spawn(PROCESSES, STEADY)
    end = start + STEADY
    results = fleet.results(end)
    accepted, _ = check(fleet.simulator, results)
    rate = utilisation(accepted, start, end, forgiven(results, start, end))
    calls = per_request(redis_calls(redis_server.url), accepted, forgiven(results))
    print(f"steady: {rate:.1%} of the limit, {calls:.3f} Redis calls per request")
    assert rate >= 0.95
    assert calls <= 1.1
    # Each request sent arrived once (a few more may have arrived just as they were cancelled).
    assert 0 <= len(accepted) - sum(r["sent"] for r in results) <= PROCESSES * 2
    # Every process gets a fair part (each at least half of an equal share).
    for r in results:
        assert r["sent"] >= 0.5 * len(accepted) / PROCESSES


def test_a_process_killed_and_one_joining(fleet: Fleet, redis_server: RedisServer) -> None:
    """SIGKILL one process mid-run (its held turns are lost with it) and start another."""
    settled(redis_server)
    first, start = fleet.spawn(PROCESSES, 8.0)
    end = start + 8.0
    time.sleep(max(0.0, start + 2.5 - time.time()))
    killed_at = time.time()
    first[0].kill()
    fleet.join(end - time.time())
    results = fleet.results(end)
    accepted, _ = check(fleet.simulator, results)
    rate = utilisation(accepted, start, end, forgiven(results, start, end))
    calls = per_request(redis_calls(redis_server.url), accepted, forgiven(results))
    print(f"churn: {rate:.1%} of the limit, {calls:.3f} Redis calls per request")
    assert rate >= 0.95
    assert calls <= 1.1
    newcomer = results[-1]
    assert newcomer["started"] > killed_at
    assert newcomer["sent"] > 0
    # After the kill, the others keep the account at its limit.
    after = killed_at + 0.5
    assert utilisation(accepted, after, end, forgiven(results, after, end)) >= 0.95


def test_a_429_pauses_every_process(fleet: Fleet, redis_server: RedisServer) -> None:
    """One process gets a 429 telling it to wait 0.5 s: no process sends during the pause."""
    _, start = fleet.spawn(PROCESSES, 8.0)
    end = start + 8.0
    time.sleep(max(0.0, start + 2.5 - time.time()))
    fleet.simulator.inject_429(0.5)
    results = fleet.results(end)
    accepted, report = check(fleet.simulator, results, forced=1)
    (at,) = report["forced"]
    # Until a process hears of the pause (the 429 reaching its worker, the PAUSE round trip,
    # the message to the other processes: a few ms, more with six processes on two busy
    # cores) it may use the turns it holds, and requests on their way still arrive. Without
    # the shared pause about 20 would arrive in the rest of it.
    during = between(accepted, at + 0.15, at + 0.5)
    assert during == []
    assert between(accepted, at + 0.5, at + 1.5)  # and then it goes on
    # Each process gives up the turns it holds inside the pause and asks again (by design):
    # forgiven, as one late event's.
    calls = per_request(redis_calls(redis_server.url), accepted, forgiven(results, events=2))
    print(f"429: {calls:.3f} Redis calls per request")
    assert calls <= 1.1


def test_redis_restarted_mid_run(fleet: Fleet, redis_server: RedisServer) -> None:
    """Redis dies (every key lost) and comes back: no burst; the account waits a window after
    Redis is back (nothing is sent while it is away), then every process goes on."""
    _, start = fleet.spawn(PROCESSES, 8.0)
    end = start + 8.0
    time.sleep(max(0.0, start + 2.5 - time.time()))
    calls = redis_calls(redis_server.url)  # the restart forgets them
    redis_server.stop()
    # Redis is gone once its kill is reaped (timed before it, a loaded machine that paused this
    # process between the two would count turns Redis still granted as granted while away).
    stopped = time.time()
    time.sleep(0.3)
    redis_server.start()
    back = time.time()
    results = fleet.results(end)
    accepted, _ = check(fleet.simulator, results)
    # Nothing is granted while Redis is away. A turn granted just before it stopped is counted
    # in the window Redis lost (the new Redis holds the account for a window for exactly that)
    # and is used when its slot comes: up to every process's lookahead of turns ahead, plus
    # the lateness a turn may have and the trip. A process gives up the turns it still holds
    # once it finds Redis unreachable.
    held = PROCESSES * DEFAULT_LOOKAHEAD / (N / PERIOD) + (WINDOW - PERIOD) / 2 + 0.05
    assert between(accepted, stopped + held, back + 0.98 * WINDOW) == []
    late = between(accepted, stopped, back + 0.98 * WINDOW)
    after = [round(t - stopped, 3) for t in late]
    print(f"arrivals after Redis stopped: {after} (bound {held:.3f})")
    resumed = back + WINDOW + 1.0
    rate = utilisation(accepted, resumed, end, forgiven(results, resumed, end))
    print(f"after the restart: {rate:.1%} of the limit")
    assert rate >= 0.9
    for r in results:
        assert r["outages"] == 1
    # Round trips that reached Redis (attempts while it was away never did). The outage costs
    # each process the turns it held (given up, by design, and asked for again): a one-time
    # cost on top of the steady 1.1, and one late event's given-up turns are forgiven too.
    calls += redis_calls(redis_server.url)
    print(f"restart: {calls / len(accepted):.3f} Redis calls per request")
    wasted = max(LATE_EVENT, forgiven(results, events=2))
    assert calls <= 1.1 * len(accepted) + wasted
