"""Attacks on the bulk engine's promise (issue #13): every input ends exactly once as sent,
reported (failed / unknown / invalid / duplicate / skipped), or still in the caller's iterator.

- a shutdown that cancels every task of the loop at once, batch tasks not yet started included;
- a cancellation while batches wait in smsvn's own rate limiter: they never left, so they are
  skipped (a resume sends them), never "unknown";
- an account-wide error (a wrong token) drops the batches that have not left yet instead of
  pacing every one of them through the limiter to the same refusal;
- one string given where an iterable of numbers belongs.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple

import pytest
from aioresponses import aioresponses

from smsvn import bulk, errors
from smsvn.bulk import BulkOutcome, Outcome
from smsvn.limits import RateLimit
from smsvn.models import Message, SendResult
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from smsvn.transport import Hooks, departure
from tests.conftest import SENTINEL_TOKEN
from tests.faults.conftest import (
    FAST_RETRY,
    accounted,
    leak_check,
    no_duplicates,
    sb,
)
from tests.test_bulk import FakeProvider

__all__ = ["leak_check", "sb"]


def number(i: int) -> str:
    return f"0912{i:06d}"


def fates(outcomes: list[BulkOutcome]) -> dict[str, Outcome]:
    """Each number's outcome in the ``on_result`` stream; a number reported twice fails."""
    fate: dict[str, Outcome] = {}
    for outcome in outcomes:
        for n in outcome.recipients:
            assert n not in fate, f"{n} reported twice: {fate[n]} and {outcome.outcome}"
            fate[n] = outcome.outcome
    return fate


def assert_stream_accounts(
    fate: dict[str, Outcome], inputs: list[str], rest: list[str], left: set[str]
) -> None:
    """The ``on_result`` stream is the record of a cancelled run (no report comes back):
    every input is reported once or still in the caller's iterator (the untaken suffix), never
    both and never neither; ``left`` (what reached the provider) is reported sent or unknown,
    and nothing reported skipped or failed reached it."""
    taken = inputs[: len(inputs) - len(rest)]
    assert inputs[len(taken) :] == rest
    assert not set(fate) & set(rest), "reported, yet still in the caller's iterator"
    lost = set(taken) - set(fate)
    assert not lost, f"{len(lost)} taken number(s) reported nowhere, e.g. {sorted(lost)[:3]}"
    assert len(fate) == len(taken)
    for n in left:
        assert fate.get(n) in (Outcome.SENT, Outcome.UNKNOWN), f"{n} left, reported {fate.get(n)}"
    not_sent = {n for n, o in fate.items() if o in (Outcome.SKIPPED, Outcome.FAILED)}
    assert not not_sent & left, "reported not sent, yet it reached the provider"


# -- a shutdown cancels every task (item 3) --------------------------------------------------------


class Hops:
    """A batch sender that takes a few loop turns to leave (a limiter wait, a connection) and a
    few more to be answered; it marks ``departure`` as the request leaves, as the transport
    does, and records what entered it, what left and what was answered."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.entered: list[str] = []
        self.left: list[str] = []
        self.answered: list[str] = []

    async def __call__(
        self, numbers: list[str], content: str, request_id: str | None
    ) -> SendResult:
        self.entered.extend(numbers)
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)
        mark = departure.get()
        if mark is not None:
            mark.left = True
        self.left.extend(numbers)
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)
        self.answered.extend(numbers)
        return SendResult(provider="fake", message_id="m", recipients=tuple(numbers))


class Feed:
    """The caller's input, sync or async (a loop turn every ``pause`` items, 0: never); its
    untaken rest can be read back after a cancellation (an async generator cancelled
    mid-``anext`` would be dead)."""

    def __init__(self, numbers: list[str], pause: int = 1) -> None:
        self.numbers = numbers
        self.pause = pause
        self.index = 0

    def __iter__(self) -> Iterator[str]:
        while self.index < len(self.numbers):
            self.index += 1
            yield self.numbers[self.index - 1]

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self.pause and self.index % self.pause == 0:
            await asyncio.sleep(0)
        if self.index >= len(self.numbers):
            raise StopAsyncIteration
        self.index += 1
        return self.numbers[self.index - 1]

    def rest(self) -> list[str]:
        return self.numbers[self.index :]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_shutdown_cancelling_every_task_loses_no_number(kind: str) -> None:
    rng = random.Random(f"shutdown-{kind}")
    never_started = 0
    for round_ in range(60):
        inputs = [number(i) for i in range(rng.randint(20, 400))]
        feed = Feed(inputs, pause=rng.choice([0, 1, 5, 50]))
        fake = Hops(rng)
        outcomes: list[BulkOutcome] = []
        source = iter(feed) if kind == "sync" else feed
        task = asyncio.create_task(
            bulk.run(
                source,
                provider="fake",
                send_batch=fake,
                content="hi",
                batch_size=rng.choice([1, 7, 100]),
                concurrency=rng.choice([1, 3, 8, 32]),
                on_result=outcomes.append,
            )
        )
        for _ in range(rng.randint(0, 30)):
            await asyncio.sleep(0)
        # SIGTERM: the server cancels every task of the loop at once.
        victims = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for victim in victims:
            victim.cancel()
        if victims:
            await asyncio.wait(victims)
        fate = fates(outcomes)
        assert_stream_accounts(fate, inputs, feed.rest(), set(fake.left))
        assert set(fake.answered) >= {n for n, o in fate.items() if o is Outcome.SENT}
        if not task.cancelled():
            accounted(task.result(), inputs[: len(inputs) - len(feed.rest())])
        # Batches whose task was cancelled before its first step: reported, never entered.
        stopped = {
            n
            for o in outcomes
            if o.outcome is Outcome.SKIPPED and o.reason == "cancelled before the request left"
            for n in o.recipients
        }
        if stopped - set(fake.entered):
            never_started += 1
        assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()], round_
    assert never_started >= 3, "the cancels never caught a batch task before its first step"


# -- cancelled while waiting in the limiter (item 4) -----------------------------------------------


class Record(list[BulkOutcome]):
    """An ``on_result`` that keeps the stream and tells when two batches were answered sent."""

    def __init__(self) -> None:
        super().__init__()
        self.two_sent = asyncio.Event()

    def __call__(self, outcome: BulkOutcome) -> None:
        self.append(outcome)
        if sum(o.outcome is Outcome.SENT for o in self) >= 2:
            self.two_sent.set()


@pytest.mark.parametrize("when", ["after two answers", "as the first request leaves"])
async def test_batches_cancelled_in_the_limiter_are_skipped_not_unknown(
    when: str, sb: Sandbox
) -> None:
    # 2 requests a 10 s: two batches go at once, the other eight wait in smsvn's limiter.
    numbers = [number(i) for i in range(1000)]
    source = iter(numbers)
    outcomes = Record()
    limit = RateLimit(requests=2, period=10)
    leaving = asyncio.Event()
    hooks = Hooks(on_request=lambda info: leaving.set())
    async with sb.client("speedsms", rate_limit=limit, retry=FAST_RETRY, hooks=hooks) as sms:
        task = asyncio.create_task(sms.send_bulk(source, "hi", on_result=outcomes))
        if when == "as the first request leaves":
            async with asyncio.timeout(5):
                await leaving.wait()
        else:
            async with asyncio.timeout(5):
                await outcomes.two_sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    fate = fates(outcomes)
    outbox = set(sb.outbox.phones("speedsms"))
    assert_stream_accounts(fate, numbers, list(source), outbox)
    skipped = {n for n, o in fate.items() if o is Outcome.SKIPPED}
    sent = {n for n, o in fate.items() if o is Outcome.SENT}
    assert len(skipped) >= 800, "the batches waiting in the limiter are skipped"
    assert not skipped & outbox
    assert sent <= outbox
    assert sb.requests[("speedsms", "send")] <= 2
    no_duplicates(sb)


async def test_a_resume_after_a_cancel_in_the_limiter_sends_each_number_once(sb: Sandbox) -> None:
    numbers = [number(i) for i in range(600)]
    source = iter(numbers)
    outcomes = Record()
    limit = RateLimit(requests=2, period=10)
    async with sb.client("speedsms", rate_limit=limit, retry=FAST_RETRY) as sms:
        task = asyncio.create_task(sms.send_bulk(source, "hi", on_result=outcomes))
        async with asyncio.timeout(5):
            await outcomes.two_sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    fate = fates(outcomes)
    resume = [n for n, o in fate.items() if o is Outcome.SKIPPED] + list(source)
    async with sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as sms:
        again = await sms.send_bulk(resume, "hi")
    assert again.accepted == len(resume) == 400
    assert Counter(sb.outbox.phones("speedsms")) == Counter(numbers)


# -- an account-wide error drops what has not left (item 10) ---------------------------------------


@pytest.mark.parametrize("source_kind", ["list", "async"])
async def test_a_wrong_token_stops_the_batches_still_waiting(source_kind: str, sb: Sandbox) -> None:
    numbers = [number(i) for i in range(2000)]  # 20 batches

    async def stream() -> AsyncIterator[str]:
        for n in numbers:
            yield n

    limit = RateLimit(requests=5, period=1.0)
    outcomes: list[BulkOutcome] = []
    async with sb.client(
        "speedsms", token="not-the-token", rate_limit=limit, retry=FAST_RETRY
    ) as sms:
        report = await sms.send_bulk(
            numbers if source_kind == "list" else stream(), "hi", on_result=outcomes.append
        )
    assert isinstance(report.aborted, errors.AuthenticationError)
    reached = sb.requests[("speedsms", "send")]
    assert 1 <= reached <= 3, f"{reached} requests reached the provider after the first 401"
    assert report.failed_count == 100 * reached
    assert len(report.skipped) == 2000 - report.failed_count
    assert report.requests == reached
    accounted(report, numbers)
    assert {n for n, o in fates(outcomes).items() if o is Outcome.SKIPPED} == set(report.skipped)
    assert len(sb.outbox) == 0


async def test_an_account_wide_error_lets_batches_in_flight_finish() -> None:
    # Batch 0 is refused; batches 1-3 had left already and are answered; batches waiting to
    # leave are dropped, not sent to the same refusal.
    def rule(i: int, numbers: list[str]) -> errors.SmsError | None:
        return errors.InsufficientBalance("empty", provider="fake") if i == 0 else None

    fake = FakeProvider(rule, delay=0.02)
    gate = FakeProvider(delay=0.02, wait=0.2)
    calls = 0

    async def send_batch(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        nonlocal calls
        calls += 1
        # The first four leave at once; the rest wait (in a limiter) before leaving.
        return await (fake if calls <= 4 else gate)(numbers, content, request_id)

    source = iter([number(i) for i in range(100)])
    report = await bulk.run(
        source, provider="fake", send_batch=send_batch, content="hi", batch_size=1, concurrency=8
    )
    assert isinstance(report.aborted, errors.InsufficientBalance)
    assert report.failed_count == 1
    assert report.accepted == 3
    assert gate.batches == [], "a batch that had not left was sent after the refusal"
    assert len(report.skipped) == 4
    assert report.taken == 8 and len(list(source)) == 92


# -- one string is not a list of numbers (item 9) --------------------------------------------------


@pytest.mark.parametrize("recipients", ["0912345678", b"0912345678"])
async def test_send_bulk_refuses_one_string(recipients: str, mocked: aioresponses) -> None:
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, sms_type=3, sender="BRAND") as sms:
        with pytest.raises(errors.ValidationError, match="not one"):
            await sms.send_bulk(recipients, "hi")
        with pytest.raises(errors.ValidationError, match="not one"):
            await sms.send_many(recipients, sms_type=3)  # type: ignore[arg-type]
    assert not mocked.requests


async def test_bulk_run_takes_nothing_from_a_string() -> None:
    taken: list[str] = []

    async def send_batch(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        taken.extend(numbers)
        return SendResult(provider="fake", message_id="m", recipients=tuple(numbers))

    with pytest.raises(errors.ValidationError):
        await bulk.run(
            "0912345678", provider="fake", send_batch=send_batch, content="hi", batch_size=1
        )
    messages = [Message("0912345678", "hi")]
    report = await bulk.run(
        messages, provider="fake", send_batch=send_batch, content=None, batch_size=1
    )
    assert report.accepted == 1 and taken == ["0912345678"]


LIMIT = RateLimit(requests=1000, period=1)


class _BrokenLimiter:
    """A limiter backend with a defect: every account's ``acquire`` raises AttributeError, as a
    wrong object given as ``limiter=`` does, before any request can leave."""

    def for_account(self, provider: str, account: str, limit: RateLimit) -> _BrokenLimiter:
        return self

    async def acquire(self, max_wait: float | None = None) -> None:
        raise AttributeError("'object' has no attribute 'reserve'")

    async def pause(self, seconds: float) -> None:
        return None


async def test_a_defect_before_the_request_left_is_skipped_not_unknown(sb: Sandbox) -> None:
    """A defect (not an SmsError) that stops a batch before its request left sent nothing:
    the batch is skipped (a resume sends it) and the run stops, never 'may have been sent'."""
    numbers = [number(i) for i in range(250)]
    source = iter(numbers)
    async with sb.client(
        "speedsms", limiter=_BrokenLimiter(), rate_limit=LIMIT, retry=FAST_RETRY
    ) as sms:
        report = await sms.send_bulk(source, "hi")
    assert report.unknown == [] and report.accepted == 0
    assert isinstance(report.aborted, errors.SmsError)
    assert not isinstance(report.aborted, errors.OutcomeUnknown)
    assert "nothing was sent" in str(report.aborted)
    assert sorted([*report.skipped, *source]) == numbers  # each input skipped or never taken
    assert sb.outbox.phones("speedsms") == []


async def test_a_defect_after_the_request_left_is_unknown(sb: Sandbox) -> None:
    def broken(info: object) -> None:
        raise RuntimeError("metrics exporter down")

    numbers = [number(i) for i in range(100)]
    async with sb.client("speedsms", hooks=Hooks(on_response=broken), retry=FAST_RETRY) as sms:
        report = await sms.send_bulk(numbers, "hi")
    assert isinstance(report.aborted, errors.OutcomeUnknown)
    assert [n for batch, _ in report.unknown for n in batch] == numbers
    assert sorted(sb.outbox.phones("speedsms")) == numbers  # it did leave


async def test_a_journaled_defect_before_the_request_left_hands_the_batch_back(
    tmp_path: object, sb: Sandbox
) -> None:
    import smsvn

    numbers = [number(i) for i in range(250)]
    async with smsvn.Journal(str(tmp_path) + "/campaigns.db") as journal:
        campaign = await journal.campaign("defect")
        await campaign.add(numbers, content="hi")
        async with sb.client(
            "speedsms", limiter=_BrokenLimiter(), rate_limit=LIMIT, retry=FAST_RETRY
        ) as sms:
            report = await campaign.run(sms)
        assert report.unknown == [] and report.accepted == 0
        assert "nothing was sent" in str(report.aborted)
        counts = await campaign.counts()
        assert (counts.pending, counts.unknown, counts.in_flight) == (250, 0, 0)
        async with sb.client("speedsms", retry=FAST_RETRY) as sms:  # fixed: a rerun sends all
            report = await campaign.run(sms)
        assert report.accepted == 250
    assert sorted(sb.outbox.phones("speedsms")) == numbers


class _Reserved(NamedTuple):
    numbers: list[str]
    content: str
    request_id: str | None


class _ReservingSource:
    """A ``BatchSource`` of single-number batches whose reservations are slow (a transaction):
    it records how many batches had been started when each reservation was asked for."""

    def __init__(self, total: int) -> None:
        self.left = [f"09{i:08d}" for i in range(total)]
        self.started = 0
        self.asked_at: list[int] = []
        self.sent: list[str] = []

    async def claim(self, count: int) -> list[_Reserved]:
        self.asked_at.append(self.started)
        await asyncio.sleep(0.02)
        taken, self.left = self.left[:count], self.left[count:]
        return [_Reserved([n], "hi", None) for n in taken]

    async def depart(self, claim: _Reserved) -> bool:
        self.started += 1
        return True

    async def settle(
        self, claim: _Reserved, result: SendResult | None, error: errors.SmsError | None
    ) -> Outcome | None:
        return Outcome.SENT if result is not None else Outcome.UNKNOWN

    async def release(self, claims: object) -> None:
        raise AssertionError("nothing is handed back in a run that ends by itself")

    def closed(self) -> bool:
        return False


async def test_a_journaled_run_reserves_the_next_batches_before_the_slots_run_dry() -> None:
    """The next reservation is asked for while half the current one is still to start, so a
    free slot never waits for a reservation's transaction (only the first one does)."""
    source = _ReservingSource(64)

    async def send_batch(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        source.sent.extend(numbers)
        await asyncio.sleep(0.001)
        return SendResult(provider="fake", message_id="1", recipients=tuple(numbers))

    report = await bulk.run_claims(
        source, provider="fake", send_batch=send_batch, concurrency=8, keep_results=False
    )
    assert report.accepted == 64
    assert sorted(source.sent) == sorted(f"09{i:08d}" for i in range(64))
    # Each reservation after the first was asked for while batches of the one before it were
    # still waiting to start (with 8 a reservation: when 4 were left).
    assert source.asked_at[0] == 0
    for k, at in enumerate(source.asked_at[1:], start=1):
        assert at < 8 * k, source.asked_at


async def test_a_journaled_run_reserves_prefetch_batches_at_a_time() -> None:
    """``prefetch`` sets the size of each reservation (a store with one writer keeps them
    short); the next is still asked for while half the current one is to start. A prefetch
    that is not an int of at least 1 is refused before anything is claimed."""
    source = _ReservingSource(40)
    counts: list[int] = []
    claim = source.claim

    async def counted(count: int) -> list[_Reserved]:
        counts.append(count)
        return await claim(count)

    source.claim = counted  # type: ignore[method-assign]

    async def send_batch(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        source.sent.extend(numbers)
        await asyncio.sleep(0.001)
        return SendResult(provider="fake", message_id="1", recipients=tuple(numbers))

    report = await bulk.run_claims(
        source, provider="fake", send_batch=send_batch, concurrency=8, prefetch=2
    )
    assert report.accepted == 40 and set(counts) == {2}
    for k, at in enumerate(source.asked_at[1:], start=1):
        assert at < 2 * k, source.asked_at
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(errors.ValidationError, match="prefetch"):
            await bulk.run_claims(
                source,
                provider="fake",
                send_batch=send_batch,
                prefetch=bad,  # type: ignore[arg-type]
            )
    assert len(counts) == 21  # the 20 reservations of 2 and the last, empty


@pytest.mark.parametrize("ahead", [0, 4])
async def test_marking_ahead_takes_the_mark_off_the_requests_path(ahead: int) -> None:
    """With ``ahead``, batches are marked while every slot is busy, and a freed slot goes to a
    batch already marked; requests in flight never exceed ``concurrency``. Without it, a batch
    is marked only once it holds a slot."""
    source = _ReservingSource(60)
    sending = 0
    most = 0
    at_marks: list[int] = []
    depart = source.depart

    async def slow_depart(claim: _Reserved) -> bool:
        await asyncio.sleep(0.005)  # a commit
        at_marks.append(sending)
        return await depart(claim)

    async def send_batch(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        nonlocal sending, most
        mark = departure.get()
        assert mark is not None
        mark.left = True  # as the transport does when a request leaves
        sending += 1
        most = max(most, sending)
        await asyncio.sleep(0.02)
        sending -= 1
        return SendResult(provider="fake", message_id="1", recipients=tuple(numbers))

    source.depart = slow_depart  # type: ignore[method-assign]
    report = await bulk.run_claims(
        source, provider="fake", send_batch=send_batch, concurrency=4, ahead=ahead
    )
    assert report.accepted == 60
    assert most <= 4
    if ahead:
        assert max(at_marks) == 4  # marked while all four slots were sending
    else:
        assert max(at_marks) <= 3  # its own slot was held, not sending


async def test_ahead_must_not_be_negative() -> None:
    with pytest.raises(errors.ValidationError, match="ahead"):
        await bulk.run_claims(
            _ReservingSource(1),
            provider="fake",
            send_batch=_never_sent,
            ahead=-1,
        )


async def _never_sent(numbers: list[str], content: str, request_id: str | None) -> SendResult:
    raise AssertionError("nothing may be sent")


async def test_batches_marked_ahead_are_handed_back_when_the_source_closes() -> None:
    """A source whose time is up (``claim_for``) gets back the batches marked ahead that had no
    slot yet: after it closed, no request leaves."""
    released: list[str] = []

    class Closing(_ReservingSource):
        shut = False

        def closed(self) -> bool:
            return self.shut

        async def claim(self, count: int) -> list[_Reserved]:
            return [] if self.shut else await super().claim(count)

        async def release(self, claims: object) -> None:
            released.extend(n for c in claims for n in c.numbers)  # type: ignore[attr-defined]

    source = Closing(40)
    after_close: list[str] = []

    async def send_batch(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        mark = departure.get()
        assert mark is not None
        mark.left = True
        if source.shut:
            after_close.extend(numbers)
        source.sent.extend(numbers)
        if len(source.sent) == 6:
            source.shut = True
        await asyncio.sleep(0.01)
        return SendResult(provider="fake", message_id="1", recipients=tuple(numbers))

    report = await bulk.run_claims(
        source, provider="fake", send_batch=send_batch, concurrency=3, ahead=3
    )
    assert after_close == []
    assert released, "nothing was marked ahead and handed back"
    assert set(released).isdisjoint(source.sent)
    assert report.accepted == len(source.sent)
    assert sorted(report.skipped) == sorted(released)


async def test_a_cancel_while_a_stopped_run_waits_for_its_reservation_is_not_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run stops (as after an account-wide error) while its next reservation is under
    way; it cuts the reservation short and waits for it. A cancel of the run arriving in that
    wait must end the run with ``CancelledError``, not be swallowed (a Failover would go on to
    its next provider)."""
    outer: list[asyncio.Task[bulk.BulkReport]] = []
    calls = 0

    class Stuck(_ReservingSource):
        async def claim(self, count: int) -> list[_Reserved]:
            nonlocal calls
            calls += 1
            if calls == 1:
                return [_Reserved([n], "hi", None) for n in self.left[:count]]
            try:
                await asyncio.Event().wait()  # a reservation that takes its time
            except asyncio.CancelledError:
                outer[0].cancel()  # the caller's cancel, at that very moment
                raise
            return []

        async def release(self, claims: object) -> None:
            pass

    async def sent(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        mark = departure.get()
        assert mark is not None
        mark.left = True
        await asyncio.sleep(0.01)
        return SendResult(provider="fake", message_id="1", recipients=tuple(numbers))

    # The run stops (an abort, as far as the engine knows) once three batches have started
    # and the next reservation is under way.
    monkeypatch.setattr(bulk._Run, "stopping", lambda self: self.taken >= 3 and calls >= 2)
    run = asyncio.ensure_future(
        bulk.run_claims(Stuck(8), provider="fake", send_batch=sent, concurrency=4)
    )
    outer.append(run)
    with pytest.raises(asyncio.CancelledError):
        await run
    assert calls == 2


async def test_a_source_whose_closed_raises_leaks_no_slot() -> None:
    """Marking ahead, ``closed()`` is asked once a batch has its slot: if it raises, the slot
    is given back with the place (a run's semaphores balance whatever its source does)."""

    class Broken(_ReservingSource):
        def closed(self) -> bool:
            raise RuntimeError("broken source")

        async def release(self, claims: object) -> None:
            pass

    runs: list[bulk._Run] = []
    make = bulk._Run.__init__

    def record(self: bulk._Run, *args: object, **kwargs: object) -> None:
        make(self, *args, **kwargs)  # type: ignore[arg-type]
        runs.append(self)

    async def never(numbers: list[str], content: str, request_id: str | None) -> SendResult:
        raise AssertionError("nothing may be sent")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk._Run, "__init__", record)
        with pytest.raises(RuntimeError, match="broken source"):
            await bulk.run_claims(
                Broken(4), provider="fake", send_batch=never, concurrency=2, ahead=2
            )
    (run,) = runs
    assert run.slots._value == 2
    assert run.places._value == 4
