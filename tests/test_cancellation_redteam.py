"""Red-team probes of "impatient web requests": calls cancelled at their await points, and
deadlines that run out part-way.

Each test whose docstring starts "Finding:" failed on the code it was written against; the others
are guards of a promise a fix of those findings could break. Ground truth is the embedded
simulator on 127.0.0.1 (its ``requests`` counters and outbox) and, for the OTP store, the Redis
of ``tests.services`` reached through ``SlowProxy`` (a loopback relay that holds back one of
Redis's answers: "the answer is in flight").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Literal
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsvn import errors, otp
from smsvn.bulk import BulkOutcome, Outcome
from smsvn.limits import RateLimit
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import Hooks, bounded
from tests.conftest import FAST_RETRY
from tests.faults.conftest import leak_check, no_duplicates, sb
from tests.test_otp import PHONE, SECRET, TEMPLATE, Clock, last_code, sent_codes, wrong
from tests.test_otp_attacks import SlowProxy

__all__ = ["leak_check", "sb"]

OTHER = "0987654321"


@pytest.fixture
async def held_redis(redis_url: str) -> AsyncIterator[SlowProxy]:
    """A relay to the test Redis that, once armed, holds back the answer to the next script."""
    parts = urlsplit(redis_url)
    async with SlowProxy(parts.hostname or "127.0.0.1", parts.port or 6379, delay=0.5) as proxy:
        yield proxy


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait (polling) until ``condition()`` is true."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a counter of the simulator's, no event
            await asyncio.sleep(0.002)


async def _cancelled(task: asyncio.Task[object]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _verifier(client: SpeedSMS, store: otp.Store, clock: Clock) -> otp.Verifier:
    return otp.Verifier(client, store=store, secret=SECRET, template=TEMPLATE, clock=clock)


async def _stranded(verifier: otp.Verifier, code: str) -> str | None:
    """None when the user can still get in: the code they were sent works, or a new one can be
    sent now; otherwise how they are stranded."""
    checked = await verifier.check(PHONE, code)
    if checked.approved:
        return None
    try:
        await verifier.start(PHONE)
    except otp.OtpError as exc:
        return (
            f"the code that was sent is refused ({checked.reason.value}) and a new one is "
            f"refused too ({type(exc).__name__}, for {exc.retry_after:.0f} s)"
        )
    return None


# -- the account's limiter -------------------------------------------------------------------------


@pytest.mark.serial  # timing: run alone, as tests/conftest.py's _SERIAL
async def test_waiters_cancelled_in_the_limiter_give_their_turns_back(sb: Sandbox) -> None:
    """Finding: a campaign cancelled (Ctrl-C, a deploy) while its batches wait in the in-process
    limiter leaves every one of their reservations booked. The account has sent two requests,
    yet the next web request on it (``max_wait=1.5``; its turn is ~1 s away) is refused
    ``RateLimited`` for the eight cancelled batches' turns, ~8 s; at SpeedSMS's 60 a minute, 31
    cancelled batches starve every OTP of the account for half a minute.
    Root cause: ``smsvn/limits.py`` ``AccountLimiter.acquire`` books the turn (``_reserve``
    moves ``_tat``, ``_last`` and ``_reserved``) and then sleeps; a ``CancelledError`` in that
    sleep (or in the window-rule sleep) gives nothing back. ``RedisAccountLimit.acquire`` hands
    a cancelled waiter's turn on (``_give_back``); the default limiter does not.
    Promise broken: "a cancelled waiter must not leave the limiter's turns consumed: later
    calls keep the rate and are not starved"; README "max_wait ... a web request never waits
    minutes" turned into "is refused although the account is idle"."""
    limit = RateLimit(requests=2, period=1.0)
    numbers = [f"09123{i:05d}" for i in range(1000)]
    outcomes: list[BulkOutcome] = []
    two_sent = asyncio.Event()

    def record(outcome: BulkOutcome) -> None:
        outcomes.append(outcome)
        if sum(o.outcome is Outcome.SENT for o in outcomes) >= 2:
            two_sent.set()

    async with sb.client("speedsms", rate_limit=limit, retry=FAST_RETRY) as sms:
        run = asyncio.create_task(
            sms.send_bulk(numbers, "Khuyen mai", concurrency=10, on_result=record)
        )
        async with asyncio.timeout(5):
            await two_sent.wait()  # two batches went at once; eight wait for their turns
        await _cancelled(run)
        assert sb.requests[("speedsms", "send")] == 2
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with bounded(max_wait=1.5):
                result = await sms.send(OTHER, "Ma OTP 4821")
        except errors.RateLimited as exc:
            pytest.fail(
                f"the account sent 2 requests and its next turn is ~1 s away, yet the call was "
                f"refused: 'next turn {exc.retry_after:.1f} s away' (the cancelled batches' turns)"
            )
        waited = loop.time() - started
    assert result.recipients == (OTHER,)
    assert waited < 1.5
    assert sb.requests[("speedsms", "send")] == 3


@pytest.mark.serial  # timing: run alone, as tests/conftest.py's _SERIAL
async def test_cancelled_waiters_never_let_more_than_the_limit_through(sb: Sandbox) -> None:
    """Guard (passes): whatever gives cancelled waiters' turns back must keep the account's
    limit. Sends are cancelled at random moments while they wait (in the reservation sleep and
    in the window rule's), and new ones arrive meanwhile: no window of ``period`` seconds ever
    holds more than ``requests`` requests leaving for the provider."""
    limit = RateLimit(requests=3, period=0.15)
    loop = asyncio.get_running_loop()
    left: list[float] = []
    hooks = Hooks(on_request=lambda info: left.append(loop.time()))
    rng = random.Random("limiter-guard")
    async with sb.client("speedsms", rate_limit=limit, retry=FAST_RETRY, hooks=hooks) as sms:
        tasks = [asyncio.create_task(sms.send(f"09124{i:05d}", "hi")) for i in range(14)]
        for i in range(10):
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            rng.choice(tasks).cancel()
            tasks.append(asyncio.create_task(sms.send(f"09125{i:05d}", "hi")))
        results = await asyncio.gather(*tasks, return_exceptions=True)
    sent = [r for r in results if not isinstance(r, BaseException)]
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
    assert len(left) == len(sent) == sb.requests[("speedsms", "send")]
    for i in range(limit.requests, len(left)):
        gap = left[i] - left[i - limit.requests]
        assert gap >= limit.period, f"{limit.requests + 1} requests within {gap:.3f} s"
    no_duplicates(sb)


# -- deadlines -------------------------------------------------------------------------------------


@pytest.mark.serial  # timing: run alone, as tests/conftest.py's _SERIAL
async def test_a_deadline_bounds_the_call_after_a_wait_for_the_turn(sb: Sandbox) -> None:
    """Finding: ``deadline=0.6`` on a call that first waits ~0.5 s for the account's turn and
    then meets a provider that does not answer ends after ~1.1 s, nearly twice its bound (with
    the default ``timeout=30`` the overshoot is the whole turn wait: ``max_wait=3`` plus
    ``deadline=15`` gives an OTP request up to 18 s).
    Root cause: ``smsvn/transport.py`` ``Transport.call`` computes the attempt's aiohttp
    timeout (``_attempt_timeout(left)``) from the time left *before* ``await limiter.acquire``,
    and never shrinks it by the time spent waiting for the turn.
    Promise broken: DESIGN "deadline: a bound on the whole call, attempts and backoff
    included"; README "Use from an async web app"."""
    deadline = 0.6
    async with sb.client(
        "speedsms",
        rate_limit=RateLimit(requests=1, period=0.5),
        retry=FAST_RETRY,
        deadline=deadline,
    ) as sms:
        await sms.send(PHONE, "one")
        sb.faults.add(Fault(kind="hang", provider="speedsms", route="send"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(errors.SmsError) as caught:
            await sms.send(OTHER, "two")
        elapsed = loop.time() - started
    if isinstance(caught.value, errors.RateLimited):
        assert sb.requests[("speedsms", "send")] == 1, "RateLimited says nothing was sent"
    assert elapsed < deadline + 0.15, f"deadline={deadline} s, but the call took {elapsed:.2f} s"


# -- send_bulk -------------------------------------------------------------------------------------


async def test_a_batch_cancelled_while_waiting_for_a_connection_is_skipped_not_unknown(
    sb: Sandbox,
) -> None:
    """Finding: a bulk run cancelled while batches wait for a connection of the client's pool
    (``max_connections=1``; the same holds during a TCP or TLS handshake, which over a WAN is a
    good part of a first request's time) files those batches ``unknown`` -- "may have been sent,
    never resent automatically: reconcile them" -- though their request never reached the
    provider (the simulator saw one request for four batches).
    Root cause: ``smsvn/transport.py`` ``Transport.call`` sets ``Departure.left = True`` before
    ``session.request(...)``, whose first step is getting a connection; a cancel there is taken
    for one after the request left (``bulk._Run._file_stopped``). The transport itself files a
    connect *timeout* in the same place as ``ConnectError`` (nothing sent).
    Promise broken: README Reliability "A batch cancelled before its request left ... is
    ``skipped``"; BulkReport "unknown: the request left and no answer came"."""
    sb.faults.add(Fault(kind="latency", provider="fibo", route="send", seconds=0.5))
    numbers = [f"09123456{i:02d}" for i in range(4)]
    outcomes: list[BulkOutcome] = []
    async with sb.client("fibo", rate_limit=None, retry=FAST_RETRY, max_connections=1) as fibo:
        run = asyncio.create_task(
            fibo.send_bulk(numbers, "Thong bao", concurrency=4, on_result=outcomes.append)
        )
        await _until(lambda: sb.requests[("fibo", "send")] == 1)
        await asyncio.sleep(0.05)  # one request at the provider; three batches wait for the pool
        await _cancelled(run)
    reached = sb.requests[("fibo", "send")]
    fate = {n: o.outcome for o in outcomes for n in o.recipients}
    assert sorted(fate) == numbers
    unknown = sorted(n for n, o in fate.items() if o is Outcome.UNKNOWN)
    assert len(unknown) <= reached, (
        f"{len(unknown)} batches filed unknown, but only {reached} request(s) reached the "
        f"provider: {unknown}"
    )
    assert sum(o is Outcome.SKIPPED for o in fate.values()) == len(numbers) - reached


# -- one-time codes --------------------------------------------------------------------------------


async def test_a_start_cancelled_while_waiting_for_the_turn_leaves_the_user_a_way_in(
    sb: Sandbox,
) -> None:
    """Finding: a resend whose web request is cancelled (the user closed the page, the
    framework's request timeout) while ``Verifier.start`` waits for the account's turn sent
    nothing, yet the user is stranded: the code they hold is refused (``wrong_code``, an
    attempt counted) and a new one is refused ``TooSoon`` for ``resend_after`` (60 s), and the
    send is counted in the caps.
    Root cause: ``smsvn/otp/_verifier.py`` ``Verifier.start`` grants first (the new, unsent
    code replaces the live one) and undoes the grant only for an ``SmsError`` proving nothing
    was sent; a ``CancelledError`` leaves it in place whether or not the request left, although
    the transport tells the two apart (``transport.Departure``, as ``send_bulk`` uses it).
    Promise broken: README One-time codes "Nothing sent, nothing charged ... the previous code
    works again; no cooldown, no cap counted"; a cancelled start must leave the user able to
    verify the code that was sent or to get a new one."""
    clock = Clock()
    limit = RateLimit(requests=1, period=0.6)
    async with sb.client("speedsms", rate_limit=limit, retry=FAST_RETRY) as sms:
        verifier = _verifier(sms, otp.MemoryStore(), clock)
        await verifier.start(PHONE)
        code = last_code(sb)
        clock.advance(61.0)  # past resend_after: the user asks for another code
        resend = asyncio.create_task(verifier.start(PHONE))
        await asyncio.sleep(0.15)  # it waits for the account's turn, ~0.6 s away
        await _cancelled(resend)
        assert sb.requests[("speedsms", "send")] == 1, "nothing of the resend left"
        stranded = await _stranded(verifier, code)
    assert stranded is None, stranded


async def test_a_start_cancelled_with_its_grant_in_flight_leaves_the_user_a_way_in(
    sb: Sandbox, held_redis: SlowProxy, redis_prefix: str
) -> None:
    """Finding: ``Verifier.start`` on ``RedisStore`` cancelled while Redis's answer to its
    ``BEGIN`` is on its way (the script ran: the grant is recorded) returns nothing, sends
    nothing and undoes nothing: the user's code is replaced by one never sent, and a new one is
    refused ``TooSoon`` for 60 s. (A ``StoreError`` after the script ran -- the answer lost
    twice -- strands the user the same way, though ``start`` documents it as "nothing sent".)
    Root cause: ``smsvn/otp/_verifier.py`` ``Verifier.start`` awaits ``store.begin`` with no
    cleanup: on a cancel (or a ``StoreError``) it should ``rollback`` its token, shielded
    (``rollback`` of a token ``begin`` never recorded changes nothing).
    Promise broken: a cancelled start leaves the user able to verify the code that was sent or
    to get a new one (README One-time codes: "Nothing sent, nothing charged")."""
    clock = Clock()
    async with (
        otp.RedisStore(held_redis.url, prefix=redis_prefix) as store,
        sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as sms,
    ):
        verifier = _verifier(sms, store, clock)
        await verifier.start(PHONE)  # also loads the BEGIN script into Redis
        code = last_code(sb)
        clock.advance(61.0)
        held_redis.arm()
        resend = asyncio.create_task(verifier.start(PHONE))
        await _until(lambda: held_redis.scripts >= 1)
        await asyncio.sleep(0.05)  # Redis has run BEGIN; its answer waits in the relay
        await _cancelled(resend)
        assert sb.requests[("speedsms", "send")] == 1, "nothing of the resend left"
        stranded = await _stranded(verifier, code)
    assert stranded is None, stranded


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["latency", "dribble"]),
    delay=st.floats(min_value=0.0, max_value=0.1),
)
def test_a_start_cancelled_after_its_code_left_keeps_that_code_working(
    kind: Literal["latency", "dribble"], delay: float
) -> None:
    """Guard (passes): the other side of the two findings above. A start cancelled once its
    request has reached the provider (while the answer is delayed, or being read a few bytes
    at a time) may have sent the code: the code the provider accepted must be the one that
    works, and no other code may be sent before ``resend_at`` (a fix that undid the grant on
    every cancel would lock out a user holding a delivered code, and let a retry loop pump
    SMS)."""

    async def scenario() -> None:
        clock = Clock()
        async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
            seconds = 0.15 if kind == "latency" else 0.02
            sb.faults.add(Fault(kind=kind, provider="speedsms", route="send", seconds=seconds))
            async with sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as sms:
                verifier = _verifier(sms, otp.MemoryStore(), clock)
                start = asyncio.create_task(verifier.start(PHONE))
                await _until(lambda: len(sb.outbox) == 1)  # the provider accepted it
                await asyncio.sleep(delay)
                start.cancel()
                try:
                    verification = await start
                except asyncio.CancelledError:
                    pass
                else:  # it finished first: then it says so
                    assert verification.outcome == "sent"
                with pytest.raises(otp.TooSoon):
                    await verifier.start(PHONE)
                code = last_code(sb)
                assert not (await verifier.check(PHONE, wrong(code))).approved
                assert (await verifier.check(PHONE, code)).approved
            assert sent_codes(sb) == [code]

    asyncio.run(scenario())


async def test_a_check_cancelled_with_its_answer_in_flight_counts_one_attempt(
    sb: Sandbox, held_redis: SlowProxy, redis_prefix: str
) -> None:
    """Guard (passes): a ``check`` on ``RedisStore`` cancelled while Redis's answer is on its
    way counts at most the one attempt its script made: it is not run again, and no later call
    reads its answer (a connection handed back to the pool with that answer unread would give
    the next check the cancelled one's attempts count, or its verdict)."""
    clock = Clock()
    async with (
        otp.RedisStore(held_redis.url, prefix=redis_prefix) as store,
        sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as sms,
    ):
        verifier = _verifier(sms, store, clock)
        await verifier.start(PHONE)
        code = last_code(sb)
        first = await verifier.check(PHONE, wrong(code))  # also loads the CHECK script
        assert first.attempts_left == 4
        held_redis.arm()
        check = asyncio.create_task(verifier.check(PHONE, wrong(code)))
        await _until(lambda: held_redis.scripts >= 1)
        await asyncio.sleep(0.05)  # Redis has counted it; its answer waits in the relay
        await _cancelled(check)
        runs = held_redis.scripts
        after = await verifier.check(PHONE, wrong(code))
        assert after.attempts_left == 2, (
            f"three wrong checks (one cancelled, its script run {runs} time(s)) left "
            f"{after.attempts_left} of 5 attempts"
        )
        assert (await verifier.check(PHONE, code)).approved
