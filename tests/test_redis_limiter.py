"""The shared (Redis) limiter, against a real Redis: the Lua script with a controlled clock, the
per-process reserver on real time, pauses across limiters, lost data, and Redis going away.

Each test uses a key prefix of its own and deletes its keys (``tests.services.redis_prefix``).
Tests that stop Redis use a private ``redis-server`` (``tests.services.redis_server``), never the
shared one.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from smsvn import AttemptInfo, Hooks, SpeedSMS
from smsvn._shared_limits import (
    PAUSE,
    RESERVE,
    LimiterUnavailable,
    LuaScript,
    RedisCalls,
    RedisLimiter,
)
from smsvn.errors import ConnectError, RateLimited, ValidationError
from smsvn.limits import WINDOW_GUARD, AccountLimiter, RateLimit, WaitTooLong, account_key
from smsvn.sandbox import Fault, Sandbox
from tests.test_otp_attacks import SlowProxy

if TYPE_CHECKING:
    from tests.services import RedisServer

# The service fixtures (redis_url, redis_prefix, redis_server); imported as a plugin, not by
# name, so that they are not shadowed by the test arguments that use them.

US = 1_000_000
BASE = 1_800_000_000 * US  # a Redis clock reading (us), as the script sees TIME
DIGEST = account_key("tok-SENTINEL-7f3a9c")


def max_in_window(times: list[float], period: float) -> int:
    """The most times that fall in any half-open window [t, t + period)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + period) - i for i, t in enumerate(times)), default=0)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url)
    yield c
    await c.aclose()


class Script:
    """The reservation script on one account, driven with a clock the test chooses."""

    def __init__(self, calls: RedisCalls, prefix: str, limit: RateLimit) -> None:
        self.calls = calls
        interval = 1.0 / limit.sustained_rate
        self.window = limit.period * WINDOW_GUARD
        self.args = (interval * US, limit.burst * interval * US, self.window * US, limit.requests)
        self.keys = (
            f"{prefix}:limit:{{speedsms:{DIGEST}}}",
            f"{prefix}:limit:{{speedsms:{DIGEST}}}:log",
            f"{prefix}:limit:{{speedsms:{DIGEST}}}:call:test",
        )
        self.call = 0

    async def reserve(
        self, now: float, max_wait: float | None = None, *, seen: bool = False, clock: bool = True
    ) -> tuple[bool, float, int]:
        """(granted, the turn as seconds on the test's clock, state)."""
        at = int(BASE + now * US)
        wait = -1 if max_wait is None else int(max_wait * US)
        self.call += 1
        granted, wait_us, state = await self.calls.script(
            RESERVE, self.keys, (*self.args, wait, int(seen), at if clock else -1, self.call)
        )
        return bool(granted), now + wait_us / US, state

    async def pause(self, now: float, seconds: float, channel: str = "ch") -> float:
        (left,) = await self.calls.script(
            PAUSE, self.keys[:1], (int(seconds * US), channel, "speedsms x", int(BASE + now * US))
        )
        return left / US


async def published(pubsub: aioredis.client.PubSub, within: float) -> list[bytes]:
    """The messages that arrive within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    found: list[bytes] = []
    while (left := end - loop.time()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if msg is not None:
            found.append(msg["data"])
            end = min(end, loop.time() + 0.05)
    return found


# -- the script, with a controlled clock ------------------------------------------------------


@pytest.mark.parametrize(("requests", "burst"), [(60, 1), (20, 5), (10, 10), (3, 1), (1, 1)])
async def test_script_reserves_what_the_in_process_limiter_would(
    client: aioredis.Redis, redis_prefix: str, requests: int, burst: int
) -> None:
    """Same arrivals, same max_waits, same pauses: the same turns as ``AccountLimiter`` (the
    reference), refused where it raises ``WaitTooLong``."""
    limit = RateLimit(requests=requests, period=1.0, burst=burst)
    script = Script(RedisCalls(client), redis_prefix, limit)
    ref = AccountLimiter(limit)
    rng = random.Random(requests * 31 + burst)
    now = 0.0
    granted_count = refused_count = 0
    for i in range(300):
        now += rng.choice((0.0, 0.0, 0.001, 0.01, 0.05, 0.3, 1.5)) if i else 0.0
        max_wait = rng.choice((None, None, 0.0, 0.05, 0.5))
        if rng.random() < 0.02:
            seconds = rng.choice((0.1, 0.7))
            await script.pause(now, seconds)
            ref._paused_until = max(ref._paused_until, now + seconds)
        try:
            expected: float | None = ref._reserve(now, max_wait).slot
        except WaitTooLong as exc:
            expected = None
            wait = exc.wait
        granted, slot, _ = await script.reserve(now, max_wait)
        if expected is None:
            refused_count += 1
            assert not granted
            assert slot - now == pytest.approx(wait, abs=5e-6)
        else:
            granted_count += 1
            assert granted
            assert slot == pytest.approx(expected, abs=5e-6)
    assert granted_count > 50
    assert refused_count > 5


@pytest.mark.parametrize(("requests", "burst"), [(60, 1), (20, 5), (10, 10), (2, 1)])
async def test_no_window_ever_holds_more_than_n_reservations(
    client: aioredis.Redis, redis_prefix: str, requests: int, burst: int
) -> None:
    """Bursty, saturating demand: every N + 1 consecutive turns span at least T * 1.02 (so no
    window of T * 1.02 holds N + 1, though GCRA's tolerance plus pace alone would admit N + 1
    in T), and the long-run rate still reaches the lower of GCRA's pace and N per T * 1.02
    (within 1.5 %)."""
    period = 1.0
    limit = RateLimit(requests=requests, period=period, burst=burst)
    script = Script(RedisCalls(client), redis_prefix, limit)
    rng = random.Random(7)
    now = 0.0
    slots: list[float] = []
    while now < 20 * period:
        for _ in range(rng.choice((1, 1, 3, requests))):
            granted, slot, _ = await script.reserve(now)
            assert granted
            slots.append(slot)
        # Callers arrive while the queue is never empty: demand always exceeds the limit.
        now = max(now, slots[-1] - 0.5 * period) + rng.random() * 0.01
    window = period * WINDOW_GUARD
    # In order, to the microsecond the script counts in (now + wait is a float sum).
    assert all(b >= a - 2e-6 for a, b in itertools.pairwise(slots))
    for a, b in zip(slots, slots[requests:], strict=False):
        assert b - a >= window - 1e-6
    assert max_in_window(slots, window - 1e-5) <= requests  # (turns are whole microseconds)
    # Past the first window's burst, the rate is the lower of the two rules' rates.
    steady = [s for s in slots if s >= window]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert rate >= 0.985 * min(limit.sustained_rate, requests / window)


async def test_a_refused_reservation_reserves_nothing(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    script = Script(RedisCalls(client), redis_prefix, RateLimit(requests=10, period=1.0))
    for _ in range(2):  # burst + 1 at once
        assert (await script.reserve(0.0))[0]
    granted, turn, _ = await script.reserve(0.0, max_wait=0.05)
    assert not granted
    assert turn == pytest.approx(1 / 9, abs=1e-5)
    log_len = await client.llen(script.keys[1])
    # Asking again at the same moment finds the same turn: the refusal took nothing.
    granted, again, _ = await script.reserve(0.0, max_wait=0.2)
    assert granted
    assert again == pytest.approx(turn, abs=1e-6)
    assert await client.llen(script.keys[1]) == log_len + 1


async def test_the_same_call_again_gets_its_first_answer_and_reserves_nothing(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    """redis-py sends a command again when its answer is late (a timeout, a dropped
    connection): the script, run twice for one call, must reserve one turn, not two."""
    script = Script(RedisCalls(client), redis_prefix, RateLimit(requests=10, period=1.0))
    first = await script.reserve(0.0)
    script.call -= 1  # the same call number again, as a resent command carries
    assert await script.reserve(0.0) == first
    assert await client.llen(script.keys[1]) == 1
    nxt = await script.reserve(0.0)  # the next call reserves again
    assert nxt[0] and await client.llen(script.keys[1]) == 2


async def test_a_reservation_answered_late_and_sent_again_takes_one_turn(
    redis_url: str, redis_prefix: str, client: aioredis.Redis
) -> None:
    """Through a relay that holds back one RESERVE answer past the client's timeout: redis-py
    sends the command again on a new connection and the script runs twice; the account must
    have lost one turn, not two (before: every late answer wasted a turn of the account)."""
    parts = urllib.parse.urlsplit(redis_url)
    async with SlowProxy(parts.hostname or "127.0.0.1", parts.port or 6379, delay=0.5) as proxy:
        limiter = RedisLimiter(proxy.url, prefix=redis_prefix, timeout=0.2, lookahead=1)
        try:
            acc = limiter.for_account("speedsms", DIGEST, RateLimit(requests=50, period=1.0))
            await acc.acquire()  # loads the script (EVAL), so the armed EVALSHA is a RESERVE
            proxy.arm()
            await acc.acquire()
            await asyncio.sleep(0.6)  # the held answer is delivered (and dropped) meanwhile
            assert proxy.scripts >= 2, "the relay never saw the command sent again"
            log = f"{redis_prefix}:limit:{{speedsms:{DIGEST}}}:log"
            assert await client.llen(log) == limiter.acquired + acc.given_up
        finally:
            await limiter.aclose()


async def test_a_pause_holds_every_turn_and_is_never_shortened(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    script = Script(RedisCalls(client), redis_prefix, RateLimit(requests=60, period=1.0))
    assert (await script.reserve(0.0))[1] == 0.0
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("ch")
    try:
        assert await script.pause(0.1, 0.5) == pytest.approx(0.5)
        assert await published(pubsub, 2.0) == [b"speedsms x 500000"]
        # A shorter pause later does not end the longer one (and is not published).
        assert await script.pause(0.2, 0.1) == pytest.approx(0.4)
        assert await published(pubsub, 0.3) == []
    finally:
        await pubsub.aclose()
    granted, turn, _ = await script.reserve(0.2)
    assert granted
    assert turn == pytest.approx(0.6, abs=1e-6)
    # max_wait counts the pause too.
    assert not (await script.reserve(0.2, max_wait=0.1))[0]


async def test_first_use_on_a_long_running_redis_does_not_wait(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    uptime = (await client.info("server"))["uptime_in_seconds"]
    if uptime < 3:
        await asyncio.sleep(3 - uptime)
    script = Script(RedisCalls(client), redis_prefix, RateLimit(requests=60, period=1.0))
    granted, turn, state = await script.reserve(0.0, clock=False)
    assert (granted, state) == (True, 1)
    assert turn < 0.01
    # The state now exists: later reservations find it.
    assert (await script.reserve(0.0, clock=False))[2] == 0


async def test_state_lost_while_this_process_was_using_it_holds_a_window(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    """A process that had a reservation less than a window ago finds the state gone (a flush,
    an eviction): no turn for one window."""
    script = Script(RedisCalls(client), redis_prefix, RateLimit(requests=60, period=1.0))
    assert (await script.reserve(0.0))[0]
    await client.delete(*script.keys)
    granted, turn, state = await script.reserve(0.3, seen=True)
    assert (granted, state) == (True, 2)
    assert turn == pytest.approx(0.3 + script.window, abs=1e-5)
    # The hold is stored, so a refusal does not move it and no one else skips it.
    assert not (await script.reserve(0.4, max_wait=0.1))[0]
    assert (await script.reserve(0.5))[1] == pytest.approx(0.3 + script.window, abs=1e-5)


async def test_a_restarted_redis_holds_every_account_for_a_window(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Redis younger than a window (a restart without persistence): every account with no
    state waits until Redis's start plus one window, even a process that never used it."""
    redis_server.stop()
    redis_server.start()
    started = time.time()
    c = aioredis.Redis.from_url(redis_server.url)
    try:
        script = Script(RedisCalls(c), redis_prefix, RateLimit(requests=20, period=2.0))
        granted, turn, state = await script.reserve(0.0, clock=False)
        elapsed = time.time() - started
        assert (granted, state) == (True, 2)
        # Until (start + window); Redis tells its uptime in whole seconds (a difference of two
        # whole-second clock readings), so the hold ends up to a second later than that.
        assert script.window - elapsed <= turn <= script.window + 1.0
    finally:
        await c.aclose()


async def test_keys_name_the_account_digest_and_expire_when_idle(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    limiter = RedisLimiter(client, prefix=redis_prefix)
    try:
        raw = "tok-SENTINEL-7f3a9c"
        acc = limiter.for_account("speedsms", raw, RateLimit(requests=60, period=1.0))
        await acc.acquire()
        keys = sorted(k.decode() for k in await client.keys(f"{redis_prefix}:*"))
        tag = f"{{speedsms:{account_key(raw)}}}"
        call = f"{redis_prefix}:limit:{tag}:call:{limiter.ident}"
        assert keys == sorted(
            [f"{redis_prefix}:limit:{tag}", f"{redis_prefix}:limit:{tag}:log", call]
        )
        assert all("SENTINEL" not in k for k in keys)
        for key in keys:
            ttl = await client.pttl(key)
            # This limiter's last answer is kept a minute (a command sent again by redis-py
            # comes within its timeout); the account's state a window and a second.
            bound = 60_000 if key == call else (1.0 * WINDOW_GUARD + 1.0) * 1000 + 50
            assert 0 < ttl <= bound
        # A digest is kept as it is: the same account.
        assert limiter.for_account("speedsms", account_key(raw), acc.limit) is acc
    finally:
        await limiter.aclose()


# -- the reserver, on real time ----------------------------------------------------------------


async def test_about_one_round_trip_per_request_and_first_come_first_served(
    redis_url: str, redis_prefix: str
) -> None:
    limit = RateLimit(requests=80, period=1.0)
    limiter = RedisLimiter(redis_url, prefix=redis_prefix)
    acc = limiter.for_account("speedsms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    order: list[int] = []
    times: list[float] = []

    async def one(i: int) -> None:
        await acc.acquire()
        order.append(i)
        times.append(loop.time())

    try:
        tasks = []
        for i in range(120):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0)  # each one queues before the next
        await asyncio.gather(*tasks)
        # First come, first served; a turn given up (reached late: a busy machine) sends its
        # waiter to the head of the queue, behind the few turns already handed out.
        late = {i for i, before in enumerate(order) if any(j > before for j in order[:i])}
        assert len(late) <= acc.given_up * limiter.lookahead
        assert max_in_window(times, 1.0) <= 80
        assert limiter.acquired == 120
        # One reservation each (and one per turn given up), plus the script's first EVAL and
        # the pause subscription.
        assert limiter.calls <= 120 + acc.given_up + 2
    finally:
        await limiter.aclose()


async def test_an_answer_that_arrives_late_keeps_local_waiters_in_order(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis gives turns in order, but the process may read an answer late (its loop busy): the
    next turn, read at once, must not go before it. (In CI two turns the window log placed
    0.5 ms apart swapped this way.) A wide margin keeps the late turn usable."""
    limit = RateLimit(requests=21, period=1.0)  # a turn every 50 ms once the burst is spent
    limiter = RedisLimiter(redis_url, prefix=redis_prefix, margin=0.5)  # late: up to 250 ms
    acc = limiter.for_account("speedsms", DIGEST, limit)
    order: list[str] = []
    delayed = False
    real = RedisCalls.script

    async def slow_once(
        self: RedisCalls, script: LuaScript, keys: Sequence[str], args: Sequence[int]
    ) -> list[int]:
        nonlocal delayed
        reply = await real(self, script, keys, args)
        if script is RESERVE and not delayed:
            delayed = True
            await asyncio.sleep(0.1)  # Redis answered; this process reads it 100 ms later
        return reply

    async def one(name: str) -> None:
        await acc.acquire()
        order.append(name)

    try:
        for _ in range(3):
            await acc.acquire()  # the burst is spent: the next turns lie 50 ms apart ahead
        monkeypatch.setattr(RedisCalls, "script", slow_once)
        first = asyncio.create_task(one("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(one("second"))
        await asyncio.gather(first, second)
        assert delayed
        assert acc.given_up == 0
        assert order == ["first", "second"]
    finally:
        await limiter.aclose()


async def test_limiters_of_two_processes_share_one_account(
    redis_url: str, redis_prefix: str
) -> None:
    """Two limiters with their own Redis connections (as two processes would have): together
    never more than N in any window, and together close to the limit."""
    limit = RateLimit(requests=60, period=1.0)
    a = RedisLimiter(redis_url, prefix=redis_prefix)
    b = RedisLimiter(redis_url, prefix=redis_prefix)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def worker(limiter: RedisLimiter) -> None:
        acc = limiter.for_account("speedsms", DIGEST, limit)
        while loop.time() < end:
            await acc.acquire()
            times.append(loop.time())

    end = loop.time() + 2.5
    try:
        await asyncio.gather(*(worker(x) for x in (a, b) for _ in range(10)))
        assert max_in_window(times, 1.0) <= 60
        # (tests/multiprocess measures the rate reached; here: the two share, neither starves)
        rate = len(times) / (max(times) - min(times))
        assert rate >= 0.85 * 60
        assert a.acquired > 0.3 * len(times)
        assert b.acquired > 0.3 * len(times)
    finally:
        await a.aclose()
        await b.aclose()


async def test_max_wait_fails_fast_with_nothing_reserved(redis_url: str, redis_prefix: str) -> None:
    limit = RateLimit(requests=5, period=1.0, burst=5)
    # A wide margin (turns are given up only 250 ms late): a warm-up answer read a few ms late
    # on a busy machine must not cost a turn, which would move the window this test reads.
    limiter = RedisLimiter(redis_url, prefix=redis_prefix, margin=0.5)
    acc = limiter.for_account("speedsms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(5):  # the whole window at once: the next turn is a window away
            await acc.acquire(max_wait=2.0)
        started, refused = loop.time(), acc.refused
        with pytest.raises(WaitTooLong) as info:
            await acc.acquire(max_wait=0.1)
        assert loop.time() - started < 0.1  # refused at once, not waited out
        assert acc.refused == refused + 1  # by Redis: nothing reserved
        assert info.value.wait > 0.5
        calls = limiter.calls
        # The next turn is still the one the refusal saw: known now without asking Redis.
        with pytest.raises(WaitTooLong):
            await acc.acquire(max_wait=0.1)
        assert limiter.calls == calls
        started = loop.time()
        await acc.acquire(max_wait=2.0)
        assert 0.5 < loop.time() - started < acc.window + 0.2
    finally:
        await limiter.aclose()


async def test_max_wait_zero_takes_a_free_turn(redis_url: str, redis_prefix: str) -> None:
    """max_wait=0: go now or not at all (the round trip to Redis is not the account's wait). A
    wide margin: a warm-up answer read a few ms late must not cost one of the free turns."""
    limiter = RedisLimiter(redis_url, prefix=redis_prefix, margin=0.5)
    acc = limiter.for_account("speedsms", DIGEST, RateLimit(requests=5, period=1.0, burst=2))
    try:
        for _ in range(3):  # burst + 1 at once
            await acc.acquire(max_wait=0.0)
        with pytest.raises(WaitTooLong):
            await acc.acquire(max_wait=0.0)
        assert acc.acquired == 3
    finally:
        await limiter.aclose()


async def test_a_cancelled_waiter_passes_its_turn_on(redis_url: str, redis_prefix: str) -> None:
    limit = RateLimit(requests=10, period=1.0)
    # A wide margin (a turn is given up only 250 ms late): the inherited turn, reached a few ms
    # late on a busy machine, is still the one this test follows. GCRA's pace is unchanged.
    limiter = RedisLimiter(redis_url, prefix=redis_prefix, lookahead=1, margin=0.5)
    acc = limiter.for_account("speedsms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    try:
        await acc.acquire()
        await acc.acquire()
        first = asyncio.create_task(acc.acquire())
        await asyncio.sleep(0.02)  # it holds the next turn, about 0.11 s away
        # (A turn before this one may have been given up: a Redis answer slower than half the
        # margin, on a busy machine. Only what happens from here on is this test's.)
        calls, given_up = limiter.calls, acc.given_up
        second = asyncio.create_task(acc.acquire())
        await asyncio.sleep(0.01)
        first.cancel()
        started = loop.time()
        await second
        assert loop.time() - started < 0.2  # the cancelled one's turn, not a later one
        assert limiter.calls == calls
        assert acc.given_up == given_up
    finally:
        await limiter.aclose()


async def test_a_turn_reached_late_is_given_up(redis_url: str, redis_prefix: str) -> None:
    """A blocked event loop wakes a waiter after its turn: past half the margin it asks again
    rather than send where the provider may count it with the next window's requests."""
    limit = RateLimit(requests=10, period=1.0)
    limiter = RedisLimiter(redis_url, prefix=redis_prefix, lookahead=1)
    acc = limiter.for_account("speedsms", DIGEST, limit)
    try:
        await acc.acquire()
        await acc.acquire()
        task = asyncio.create_task(acc.acquire())
        await asyncio.sleep(0.02)
        calls, given_up = limiter.calls, acc.given_up
        time.sleep(0.25)  # noqa: ASYNC251 - the loop is stuck past the turn (about 0.11 s away) and its margin
        await task
        # Given up and asked again (the retry's own answer, read late on a busy machine, may
        # be given up too): each turn given up costs exactly one more reservation.
        lost = acc.given_up - given_up
        assert lost >= 1
        assert limiter.calls == calls + lost
    finally:
        await limiter.aclose()


async def test_a_pause_reaches_every_process_at_once(redis_url: str, redis_prefix: str) -> None:
    """A 429 in one process: the other, holding turns inside the pause, drops them (pub/sub)
    and sends nothing until the pause ends."""
    limit = RateLimit(requests=40, period=1.0)
    a = RedisLimiter(redis_url, prefix=redis_prefix)
    b = RedisLimiter(redis_url, prefix=redis_prefix, lookahead=4)
    acc_a = a.for_account("speedsms", DIGEST, limit)
    acc_b = b.for_account("speedsms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def worker() -> None:
        while loop.time() < end:
            await acc_b.acquire()
            sent.append(loop.time())

    # When b heard of the pause: until then it may use the turns it holds (the module's
    # promise), however long the PAUSE and its message take on a busy machine.
    heard: list[float] = []
    pause_locally = acc_b.pause_locally

    def hearing(seconds: float) -> None:
        heard.append(loop.time())
        pause_locally(seconds)

    acc_b.pause_locally = hearing  # type: ignore[method-assign]
    end = loop.time() + 1.5
    try:
        await acc_a.acquire()  # starts a's listener too
        tasks = [asyncio.create_task(worker()) for _ in range(8)]
        await asyncio.sleep(0.4)
        paused_at = loop.time()
        await acc_a.pause(0.5)
        await asyncio.gather(*tasks)
        assert heard and heard[0] - paused_at < 0.2
        during = [t for t in sent if heard[0] < t < paused_at + 0.5]
        assert during == []
        assert any(t >= paused_at + 0.5 for t in sent)
        assert acc_b.given_up >= 1  # it held turns inside the pause
    finally:
        await a.aclose()
        await b.aclose()


async def test_aclose_closes_only_a_client_it_created(redis_url: str, redis_prefix: str) -> None:
    borrowed = aioredis.Redis.from_url(redis_url)
    own_name = f"{redis_prefix}-own"
    lim_b = RedisLimiter(borrowed, prefix=redis_prefix)
    lim_o = RedisLimiter(f"{redis_url}?client_name={own_name}", prefix=redis_prefix)
    limit = RateLimit(requests=60, period=1.0)
    try:
        await lim_b.for_account("speedsms", DIGEST, limit).acquire()
        await lim_o.for_account("speedsms", DIGEST, limit).acquire()
        names = [c["name"] for c in await borrowed.client_list()]
        assert own_name in names
        await lim_b.aclose()
        await lim_o.aclose()
        await lim_o.aclose()  # twice is fine
        assert await borrowed.ping()
        names = [c["name"] for c in await borrowed.client_list()]
        assert own_name not in names
        with pytest.raises(LimiterUnavailable):
            await lim_o.for_account("speedsms", DIGEST, limit).acquire()
    finally:
        await borrowed.aclose()


def test_options_are_checked() -> None:
    redis_url = "redis://127.0.0.1:6379/0"  # nothing connects: the options are checked first
    for bad in (
        {"on_unavailable": "ignore"},
        {"fallback_share": 0.0},
        {"fallback_share": 1.5},
        {"lookahead": 0},
        {"margin": -0.1},
        {"prefix": "a{b}"},
    ):
        with pytest.raises(ValidationError):
            RedisLimiter(redis_url, **bad)  # type: ignore[arg-type]


# -- Redis going away --------------------------------------------------------------------------


async def test_wait_policy_waits_within_max_wait_and_resumes(
    redis_server: RedisServer, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="smsvn")
    limit = RateLimit(requests=20, period=0.5)
    limiter = RedisLimiter(redis_server.url, prefix=redis_prefix, timeout=0.5)
    acc = limiter.for_account("speedsms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    try:
        await acc.acquire()
        redis_server.stop()
        for _ in range(3):
            started = loop.time()
            with pytest.raises(WaitTooLong):
                await acc.acquire(max_wait=0.2)
            assert 0.18 < loop.time() - started < 0.5
        # Without max_wait a request waits for Redis, then for the lost data's window.
        task = asyncio.create_task(acc.acquire())
        await asyncio.sleep(0.3)
        assert not task.done()
        redis_server.start()
        back = loop.time()
        await asyncio.wait_for(task, 5.0)
        assert loop.time() - back >= 0.9 * acc.window
        gone = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(gone) == 1  # once per outage, not per request
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        assert limiter.outages == 1
    finally:
        await limiter.aclose()


async def test_raise_policy_raises_a_connect_error_at_once(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    limit = RateLimit(requests=20, period=0.5)
    limiter = RedisLimiter(redis_server.url, prefix=redis_prefix, on_unavailable="raise")
    acc = limiter.for_account("esms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    try:
        await acc.acquire()
        redis_server.stop()
        for _ in range(3):
            started = loop.time()
            with pytest.raises(LimiterUnavailable) as info:
                await acc.acquire()
            assert loop.time() - started < 0.1
            assert isinstance(info.value, ConnectError)
            assert info.value.provider == "esms"
        redis_server.start()
        await asyncio.sleep(0.3)  # past the backoff
        await asyncio.wait_for(acc.acquire(), 3.0)
        assert acc.acquired == 2
    finally:
        await limiter.aclose()


async def test_a_limiter_that_never_reached_redis_raises(closed_port: int) -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{closed_port}/0", on_unavailable="raise")
    try:
        with pytest.raises(LimiterUnavailable):
            await limiter.for_account("fibo", DIGEST, RateLimit(requests=5, period=1.0)).acquire()
    finally:
        await limiter.aclose()


async def test_fallback_policy_holds_a_window_then_counts_locally_at_its_share(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    limit = RateLimit(requests=20, period=0.5)
    limiter = RedisLimiter(
        redis_server.url, prefix=redis_prefix, on_unavailable="fallback", fallback_share=0.25
    )
    acc = limiter.for_account("speedsms", DIGEST, limit)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def worker() -> None:
        while loop.time() < end:
            await acc.acquire()
            times.append(loop.time())

    try:
        await acc.acquire()
        redis_server.stop()
        down = loop.time()
        end = down + 2.0
        await asyncio.gather(*(worker() for _ in range(5)))
        assert min(times) >= down + 0.95 * acc.window  # nothing for a window
        assert max_in_window(times, 0.5) <= 5  # a quarter of 20 per 0.5 s
        assert len(times) >= 10  # but it does send
        assert acc.fallback_acquired == len(times)
        # Redis is back: once a window has passed since the last local request, Redis counts.
        redis_server.start()
        last_local = max(times)
        times.clear()
        end = loop.time() + 2.5
        await asyncio.gather(*(worker() for _ in range(5)))
        shared = acc.acquired - 1
        assert shared > 0
        assert acc.fallback_acquired < 40
        redis_times = times[-shared:]
        assert min(redis_times) >= last_local + 0.95 * acc.window
    finally:
        await limiter.aclose()


# -- through the clients (limiter=) ---------------------------------------------------------------


async def test_clients_in_two_processes_share_the_limit_and_its_429s(
    redis_url: str, redis_prefix: str
) -> None:
    """Two SpeedSMS clients, each with its own RedisLimiter (as two processes would have),
    against the simulator enforcing 40 per second: no 429 from its window, never more than 40
    accepted in any second; a forced 429 answered to one pauses the other too."""
    limit = RateLimit(requests=40, period=1.0)
    loop = asyncio.get_running_loop()
    answered_429: list[float] = []
    departed: list[float] = []

    def on_response(info: AttemptInfo) -> None:
        if info.status == 429:
            answered_429.append(time.time())

    hooks = Hooks(on_request=lambda info: departed.append(time.time()), on_response=on_response)
    async with (
        RedisLimiter(redis_url, prefix=redis_prefix) as a,
        RedisLimiter(redis_url, prefix=redis_prefix) as b,
        Sandbox(speedsms_rate_limit=limit) as sb,
        sb.client("speedsms", limiter=a, hooks=hooks) as sms_a,
        sb.client("speedsms", limiter=b, hooks=hooks) as sms_b,
    ):

        async def worker(sms: SpeedSMS) -> None:
            while loop.time() < end:
                await sms.send("0912345678", "Xin chao")

        end = loop.time() + 1.5
        await asyncio.gather(*(worker(s) for s in (sms_a, sms_b) for _ in range(8)))
        assert sb.stats.rate_limited == 0
        accepted = [r.accepted_at for r in sb.outbox]
        assert max_in_window(accepted, 1.0) <= 40
        assert len(accepted) >= 0.8 * 40 * 1.5
        assert a.acquired > 0
        assert b.acquired > 0
        departed.clear()

        # One 429 (wait 0.4 s) to whichever sends next: neither client sends during it.
        sb.faults.add(
            Fault(kind="rate_limit", provider="speedsms", route="send", times=1, seconds=0.4)
        )
        # When each limiter heard of the pause (the 429'd one at once, the other by pub/sub):
        # until then a limiter may use the turns it holds, however slow the machine.
        heard: dict[int, float] = {}
        for limiter in (a, b):
            (acc,) = limiter._accounts.values()

            def hearing(
                seconds: float, key: int = id(limiter), inner: Any = acc.pause_locally
            ) -> None:
                heard.setdefault(key, time.time())
                inner(seconds)

            acc.pause_locally = hearing  # type: ignore[method-assign]
        before = len(sb.outbox)
        end = loop.time() + 1.0
        await asyncio.gather(*(worker(s) for s in (sms_a, sms_b) for _ in range(4)))
        assert sb.stats.rate_limited == 1
        (at,) = answered_429
        assert len(heard) == 2
        both = max(heard.values())
        assert both - at < 0.2
        # No request leaves once both know of the pause; requests already on their way may
        # still arrive (this loop also runs the simulator, so allow them longer).
        assert [t for t in departed if both < t < at + 0.39] == []
        later = [r.accepted_at for r in sb.outbox[before:]]
        assert [t for t in later if both + 0.04 < t < at + 0.39] == []
        assert any(t >= at + 0.4 for t in later)


async def test_a_client_with_max_wait_fails_fast_with_nothing_sent(
    redis_url: str, redis_prefix: str
) -> None:
    limit = RateLimit(requests=5, period=2.0, burst=5)
    loop = asyncio.get_running_loop()
    async with (
        # A wide margin: a warm-up send whose turn is answered a few ms late must not meet
        # max_wait on its retry.
        RedisLimiter(redis_url, prefix=redis_prefix, margin=0.5) as shared,
        Sandbox(speedsms_rate_limit=limit) as sb,
        sb.client("speedsms", limiter=shared, max_wait=0.2) as sms,
    ):
        for _ in range(5):
            await sms.send("0912345678", "Xin chao")
        started = loop.time()
        with pytest.raises(RateLimited):
            await sms.send("0912345678", "Xin chao")
        assert loop.time() - started < 0.1
        assert len(sb.outbox) == 5
        assert sb.stats.rate_limited == 0


async def test_a_client_whose_redis_is_away_sends_nothing(closed_port: int) -> None:
    """on_unavailable="raise": the client's call raises a ConnectError before anything leaves."""
    async with (
        RedisLimiter(f"redis://127.0.0.1:{closed_port}/0", on_unavailable="raise") as shared,
        Sandbox() as sb,
        sb.client("speedsms", limiter=shared) as sms,
    ):
        with pytest.raises(ConnectError):
            await sms.send("0912345678", "Xin chao")
        assert len(sb.outbox) == 0
        assert sum(sb.requests.values()) == 0


def _chain(exc: BaseException) -> str:
    """Every message and argument of ``exc`` and what it was raised from or during."""
    seen: list[str] = []
    at: BaseException | None = exc
    while at is not None:
        seen.append(f"{type(at).__name__}: {at} {at.args!r}")
        at = at.__cause__ or at.__context__
    return " <- ".join(seen)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:S3/CRETPWX@127.0.0.1:6379/0",
        "redis://:S3?CRETPWX@127.0.0.1:6379/0",
        "redis://:S3#CRETPWX@127.0.0.1:6379/0",
        "redis://:S3CRETPWX@127.0.0.1:abc/0",
    ],
)
def test_a_malformed_url_is_refused_without_quoting_it(url: str) -> None:
    """redis-py's parse errors quote pieces of the URL (a password's head as the "port"): the
    limiter raises a ValidationError of its own, with nothing chained."""
    with pytest.raises(ValidationError) as caught:
        RedisLimiter(url)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    chain = _chain(caught.value)
    assert "S3" not in chain and "CRETPWX" not in chain and "abc" not in chain
