"""Cancellation at random points: ``send``, ``send_bulk`` and the webhook handler, cancelled
anywhere (waiting for the limiter, connecting, writing, waiting for the answer, reading a slow
body, sleeping between retries), leak nothing (tasks, sockets, sessions: the suite turns their
warnings into errors) and misreport nothing: what a result or a bulk outcome says was sent was
accepted exactly once, what it says failed was not accepted, and everything accepted is
accounted for as sent or unknown.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from smsvn import errors, webhooks
from smsvn.bulk import BulkOutcome, Outcome
from smsvn.limits import RateLimit
from smsvn.models import DeliveryReport, DeliveryState
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.faults.conftest import (
    accounted,
    assert_no_leaks,
    leak_check,
    no_duplicates,
    sb,
    socket_count,
)

__all__ = ["leak_check", "sb"]

RETRY = RetryPolicy(max_retries=2, backoff_base=0.005, backoff_max=0.01)
PROVIDERS = ["speedsms", "esms", "fibo"]


def _misbehave(sb: Sandbox, provider: str, rng: random.Random) -> None:
    """Slow, dribbled, dropped and lost answers now and then, so cancels land everywhere."""
    sb.faults.add(Fault(kind="latency", provider=provider, seconds=0.004))
    sb.faults.add(Fault(kind="dribble", provider=provider, probability=0.2, seconds=0.001))
    sb.faults.add(Fault(kind="drop_before", provider=provider, probability=0.1))
    sb.faults.add(Fault(kind="drop_after", provider=provider, probability=0.1))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancelled_sends_leak_nothing_and_misreport_nothing(
    provider: str, sb: Sandbox
) -> None:
    rng = random.Random(f"send-{provider}")
    _misbehave(sb, provider, rng)
    returned: list[str] = []
    cancelled: list[str] = []
    unknown: list[str] = []
    async with sb.client(provider, retry=RETRY, timeout=2.0) as client:  # type: ignore[call-overload]
        for i in range(40):
            number = f"09123{i:05d}"
            task = asyncio.create_task(client.send(number, "hi"))
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            task.cancel()
            try:
                result = await task
            except asyncio.CancelledError:
                cancelled.append(number)
            except errors.OutcomeUnknown:
                unknown.append(number)  # a fault ended it before the cancel did
            else:
                returned.append(number)
                assert result.recipients == (number,)
        sb.faults.clear()
        final = await client.send("0987654321", "after the cancellations")  # still works
        assert final.recipients == ("0987654321",)
    assert cancelled, "no cancel landed mid-flight: widen the sleeps"
    no_duplicates(sb)
    accepted = Counter(sb.outbox.phones(provider))
    assert all(accepted[n] == 1 for n in returned), "a returned send was not accepted once"
    assert set(accepted) <= {*returned, *cancelled, *unknown, "0987654321"}


async def test_cancel_while_waiting_for_the_limiter(sb: Sandbox) -> None:
    limit = RateLimit(requests=4, period=0.4)
    async with sb.client("speedsms", rate_limit=limit, retry=RETRY) as sms:
        tasks = [asyncio.create_task(sms.send(f"09123{i:05d}", "hi")) for i in range(12)]
        await asyncio.sleep(0.05)
        for task in tasks[4:]:
            task.cancel()  # these wait in the limiter: nothing of them may leave
        results = await asyncio.gather(*tasks, return_exceptions=True)
        sent = [r for r in results if not isinstance(r, BaseException)]
        assert all(isinstance(r, asyncio.CancelledError) for r in results[4:])
        # The limiter still works for later sends, and keeps its rate.
        after = await asyncio.gather(*(sms.send(f"09888{i:05d}", "hi") for i in range(3)))
    assert len(sent) == 4 and len(after) == 3
    assert len(sb.outbox) == 7
    no_duplicates(sb)


# -- send_bulk -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("source", ["list", "async"])
async def test_cancelled_bulk_accounts_for_everything_it_took(
    provider: str, source: str, sb: Sandbox
) -> None:
    rng = random.Random(f"bulk-{provider}-{source}")
    _misbehave(sb, provider, rng)
    numbers = [f"09123{i:05d}" for i in range(600)]

    async def slow_source() -> AsyncIterator[str]:
        for i, number in enumerate(numbers):
            if i % 50 == 0:
                await asyncio.sleep(0.001)
            yield number

    # SpeedSMS packs 100 numbers a request: it is done in a few requests, so cancel sooner.
    window = 0.012 if provider == "speedsms" else 0.08
    cancelled = 0
    for round_ in range(4):
        sb.outbox.clear()
        outcomes: list[BulkOutcome] = []
        async with sb.client(provider, retry=RETRY, timeout=2.0) as client:  # type: ignore[call-overload]
            run = client.send_bulk(
                slow_source() if source == "async" else numbers,
                "hi",
                concurrency=8,
                on_result=outcomes.append,
                keep_results=False,
            )
            task = asyncio.create_task(run)
            await asyncio.sleep(rng.uniform(0.001, window))
            task.cancel()
            try:
                report = await task
            except asyncio.CancelledError:
                cancelled += 1
            else:  # it finished first: then its report must agree too
                accounted(report, numbers)
        _check_outcomes(outcomes, sb, provider, f"round {round_}")
    assert cancelled >= 2, "the cancels came too late to land mid-run"


def _check_outcomes(outcomes: list[BulkOutcome], sb: Sandbox, provider: str, where: str) -> None:
    """Every number reported once; sent = accepted once; failed = not accepted; everything
    accepted was reported sent or unknown (an in-flight batch cancelled is unknown)."""
    fate: dict[str, Outcome] = {}
    for outcome in outcomes:
        for number in outcome.recipients:
            assert number not in fate, f"{where}: {number} reported twice"
            fate[number] = outcome.outcome
    accepted = Counter(sb.outbox.phones(provider))
    assert all(n == 1 for n in accepted.values()), f"{where}: accepted twice"
    for number, outcome in fate.items():
        if outcome is Outcome.SENT:
            assert accepted[number] == 1, f"{where}: {number} reported sent, not accepted"
        elif outcome in (Outcome.FAILED, Outcome.SKIPPED):
            assert number not in accepted, f"{where}: {number} reported {outcome}, but accepted"
    lost = [n for n in accepted if fate.get(n) not in (Outcome.SENT, Outcome.UNKNOWN)]
    assert not lost, f"{where}: accepted but reported {[(n, fate.get(n)) for n in lost[:3]]}"


# -- the webhook handler ---------------------------------------------------------------------------


class Receiver:
    """The webhook application on a real socket, with a handler that takes its time."""

    SECRET = "cancellation-test-secret-0123456789"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.tracker = webhooks.DeliveryTracker()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handler(self, event: webhooks.Event) -> None:
        assert isinstance(event, DeliveryReport)
        self.started[event.message_id] += 1
        await asyncio.sleep(self.delay)
        self.completed[event.message_id] += 1

    async def __aenter__(self) -> Receiver:
        application = webhooks.app(self.handler, secret=self.SECRET, store=self.tracker)
        self.runner = web.AppRunner(application, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/speedsms/{self.SECRET}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def _report(tran_id: int) -> bytes:
    return json.dumps(
        {"type": "report", "tranId": tran_id, "phone": "0912345678", "status": 0}
    ).encode()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, wait: float) -> int:
    """POST a callback as a provider would; 0 when it gave up waiting (it then retries)."""
    try:
        async with session.post(url, data=body, timeout=aiohttp.ClientTimeout(total=wait)) as resp:
            await resp.read()
            return resp.status
    except TimeoutError:
        return 0


async def test_webhook_handler_cancelled_at_random_points_is_retried_and_counted_once() -> None:
    rng = random.Random("webhook")
    before = socket_count()
    async with Receiver(delay=0.03) as receiver, aiohttp.ClientSession() as session:
        for tran_id in range(12):
            body = _report(tran_id)
            # The provider gives up mid-handler: the server cancels the handler.
            status = await _post(session, receiver.url, body, rng.uniform(0.001, 0.025))
            assert status in (0, 200)
            # ... and retries until it gets 200.
            for _ in range(5):
                if status == 200:
                    break
                status = await _post(session, receiver.url, body, 5.0)
            assert status == 200
            # A late duplicate is acknowledged without running the handler again.
            assert await _post(session, receiver.url, body, 5.0) == 200
        for tran_id in range(12):
            key = str(tran_id)
            assert receiver.completed[key] == 1, f"{key}: handled {receiver.completed[key]} times"
            state = receiver.tracker.state("speedsms", key, "0912345678")
            assert state is DeliveryState.DELIVERED
        assert sum(receiver.started.values()) > 12, "no handler was ever cancelled mid-way"
    await assert_no_leaks(before)


async def test_webhook_duplicate_waiting_on_a_cancelled_first_is_processed() -> None:
    before = socket_count()
    async with Receiver(delay=0.2) as receiver, aiohttp.ClientSession() as session:
        body = _report(77)
        first = asyncio.create_task(_post(session, receiver.url, body, 0.05))  # gives up
        await asyncio.sleep(0.01)
        second = asyncio.create_task(_post(session, receiver.url, body, 5.0))  # waits on first
        assert await first == 0
        assert await second == 200
        assert receiver.completed["77"] == 1
        assert receiver.started["77"] == 2  # the cancelled run, then the waiting duplicate's
    await assert_no_leaks(before)


# -- a shutdown: the caller's task and every batch task cancelled at once -------------------------


def _batch_tasks() -> list[asyncio.Task[object]]:
    """The bulk engine's batch tasks now running (the sandbox's own tasks are left alone)."""
    return [
        t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "_Run._send"
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_shutdown_cancelling_the_run_and_its_batches_at_once_loses_nothing(
    provider: str, sb: Sandbox
) -> None:
    rng = random.Random(f"shutdown-{provider}")
    caught = 0
    for round_ in range(30):
        sb.outbox.clear()
        numbers = [f"09123{round_:02d}{i:03d}" for i in range(300)]
        source = iter(numbers)
        outcomes: list[BulkOutcome] = []
        async with sb.client(provider, retry=RETRY, timeout=2.0) as client:  # type: ignore[call-overload]
            task = asyncio.create_task(
                client.send_bulk(source, "hi", concurrency=8, on_result=outcomes.append)
            )
            # Half the rounds land within the first loop turns, as the first batches start.
            for _ in range(rng.randint(0, 3) if rng.random() < 0.5 else rng.randint(0, 120)):
                await asyncio.sleep(0)
            victims = [task, *_batch_tasks()]
            caught += sum(
                inspect.getcoroutinestate(t.get_coro()) == inspect.CORO_CREATED  # type: ignore[arg-type]
                for t in victims[1:]
            )
            for victim in victims:
                victim.cancel()
            await asyncio.wait(victims)
        where = f"round {round_}"
        _check_outcomes(outcomes, sb, provider, where)
        reported = {n for o in outcomes for n in o.recipients}
        rest = list(source)
        assert not reported & set(rest), f"{where}: reported and still in the iterator"
        missing = set(numbers) - reported - set(rest)
        assert not missing, f"{where}: {len(missing)} number(s) taken and reported nowhere"
    assert caught, "no batch task was cancelled before its first step: move the cancels"


async def test_a_cancel_scope_that_cancels_at_every_await_lets_the_clean_up_finish() -> None:
    """anyio's cancel scopes (taskiq's job timeout, Starlette's) cancel the task again at every
    await until it ends; ``cancelled_once`` passes one cancellation on and lets the work's
    clean-up (several awaits: handing batches back, retiring a runner) run to its end."""
    import anyio

    from smsvn._cancel import cancelled_once

    cleaned: list[int] = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            for step in range(5):
                await asyncio.sleep(0.001)
                cleaned.append(step)

    with anyio.move_on_after(0.01) as scope:
        await cancelled_once(work())
    assert scope.cancelled_caught
    assert cleaned == [0, 1, 2, 3, 4]
    # Without it, the scope's repeated cancellation stops the clean-up at its first await.
    cleaned.clear()
    with anyio.move_on_after(0.01):
        await work()
    assert cleaned == []
