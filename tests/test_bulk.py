"""The bulk engine: batching, streaming, accounting, abort-and-resume, cancellation, progress."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from smsvn import bulk, errors
from smsvn.bulk import BulkOutcome, BulkProgress, BulkReport, Outcome
from smsvn.models import Message, SendResult
from smsvn.providers.speedsms import SpeedSMS
from smsvn.transport import departure
from tests.conftest import FAST_RETRY, SENTINEL_TOKEN, payload_bytes, sent_body, taken_count

SEND = "https://api.speedsms.vn/index.php/sms/send"


def number(i: int) -> str:
    return f"0912{i:06d}"


class FakeProvider:
    """A scripted batch sender: records batches and answers by a rule per batch.

    Like the transport, it marks the caller's ``departure`` as the request leaves: after
    ``wait`` seconds (a wait for the account's limiter), then the answer takes ``delay``."""

    def __init__(self, rule: Any = None, delay: float = 0.0, wait: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.rule = rule
        self.delay = delay
        self.wait = wait
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(
        self, numbers: list[str], content: str, request_id: str | None
    ) -> SendResult:
        if self.wait:
            await asyncio.sleep(self.wait)
        mark = departure.get()
        if mark is not None:
            mark.left = True
        index = len(self.batches)
        self.batches.append(list(numbers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.rule is not None:
                error = self.rule(index, numbers)
                if error is not None:
                    raise error
            return SendResult(
                provider="fake",
                message_id=str(len(self.batches)),
                recipients=tuple(numbers),
                segments=len(numbers),
                cost=250.0 * len(numbers),
                request_id=request_id,
            )
        finally:
            self.in_flight -= 1


async def run(source: Any, fake: FakeProvider, **kwargs: Any) -> BulkReport:
    kwargs.setdefault("batch_size", 100)
    kwargs.setdefault("content", "hello")
    return await bulk.run(source, provider="fake", send_batch=fake, **kwargs)


async def test_batches_of_100_from_a_generator() -> None:
    fake = FakeProvider()
    report = await run((number(i) for i in range(250)), fake)
    assert [len(b) for b in fake.batches] == [100, 100, 50]
    assert report.accepted == 250
    assert report.requests == 3
    assert report.cost == 250.0 * 250
    assert report.taken == 250 == taken_count(report)
    assert report.aborted is None


async def test_streams_from_an_async_iterable() -> None:
    async def numbers() -> AsyncIterator[str]:
        for i in range(30):
            await asyncio.sleep(0)
            yield number(i)

    fake = FakeProvider()
    report = await run(numbers(), fake, batch_size=7)
    assert [len(b) for b in fake.batches] == [7, 7, 7, 7, 2]
    assert report.accepted == 30


async def test_invalid_and_duplicates_are_reported_and_not_sent() -> None:
    fake = FakeProvider()
    source = ["0912345678", "+84 912 345 678", "123", "0241234567", "01623456789", "0323456789"]
    results: list[BulkOutcome] = []
    report = await run(source, fake, on_result=results.append)
    assert fake.batches == [["0912345678", "0323456789"]]
    assert report.duplicates == 2  # +84 form and the old 11-digit form of 0323456789
    assert [str(n) for n in report.invalid] == ["123", "0241234567"]
    assert all(n.reason for n in report.invalid)
    assert report.taken == 6 == taken_count(report)
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes == ["duplicate", "duplicate", "invalid", "invalid", "sent"]


async def test_dedupe_can_be_turned_off() -> None:
    fake = FakeProvider()
    report = await run(["0912345678", "0912345678"], fake, dedupe=False, batch_size=1)
    assert report.accepted == 2
    assert report.duplicates == 0


async def test_concurrency_bounds_batches_in_flight_and_memory() -> None:
    fake = FakeProvider(delay=0.005)
    taken_before_first_answer: list[int] = []
    count = 0

    def numbers() -> Iterator[str]:
        nonlocal count
        for i in range(2000):
            count += 1
            if not fake.batches or len(fake.batches) == 1:
                taken_before_first_answer.append(count)
            yield number(i)

    report = await run(numbers(), fake, batch_size=10, concurrency=4)
    assert fake.max_in_flight == 4
    assert report.accepted == 2000
    # The input is pulled only as slots free up: never more than concurrency batches ahead.
    assert max(taken_before_first_answer) <= 4 * 10 + 10


async def test_account_wide_error_aborts_and_leaves_the_rest_in_the_iterator() -> None:
    def rule(i: int, numbers: list[str]) -> errors.SmsError | None:
        return errors.InsufficientBalance("balance not enough", provider="fake") if i == 2 else None

    fake = FakeProvider(rule)
    source = iter([number(i) for i in range(1000)])
    report = await run(source, fake, batch_size=100, concurrency=1)
    assert isinstance(report.aborted, errors.InsufficientBalance)
    assert report.accepted == 200
    assert report.failed_count == 100
    assert report.taken == 300 == taken_count(report)
    rest = list(source)
    assert rest[0] == number(300)
    assert len(rest) == 700
    # Resuming with the untaken rest sends each number once overall.
    fake2 = FakeProvider()
    again = await run(iter(rest), fake2)
    assert again.accepted == 700
    sent = [n for b in fake.batches[:2] for n in b] + [n for b in fake2.batches for n in b]
    assert len(sent) == len(set(sent)) == 900


async def test_abort_with_several_in_flight_lets_them_finish() -> None:
    def rule(i: int, numbers: list[str]) -> errors.SmsError | None:
        return errors.AuthenticationError("bad key", provider="fake") if i == 0 else None

    fake = FakeProvider(rule, delay=0.01)
    source = iter([number(i) for i in range(100)])
    report = await run(source, fake, batch_size=1, concurrency=5)
    assert isinstance(report.aborted, errors.AuthenticationError)
    assert report.accepted == 4  # the other in-flight batches finished
    assert report.taken == taken_count(report)
    assert len(list(source)) == 100 - report.taken


async def test_unknown_outcomes_are_kept_apart_and_not_resent() -> None:
    def rule(i: int, numbers: list[str]) -> errors.SmsError | None:
        return errors.OutcomeUnknown("timeout", provider="fake") if i == 1 else None

    fake = FakeProvider(rule)
    report = await run([number(i) for i in range(300)], fake)
    assert report.unknown_count == 100
    assert report.aborted is None
    assert len(fake.batches) == 3


async def test_keep_results_false_keeps_counts_only() -> None:
    fake = FakeProvider()
    report = await run([number(i) for i in range(500)], fake, keep_results=False)
    assert report.sent == []
    assert report.accepted == 500
    assert report.segments == 500


async def test_progress_snapshots_are_throttled_and_final() -> None:
    fake = FakeProvider(delay=0.001)
    snapshots: list[BulkProgress] = []
    await run([number(i) for i in range(3000)], fake, batch_size=10, on_progress=snapshots.append)
    assert snapshots[-1].accepted == 3000
    assert snapshots[-1].done == 3000
    assert snapshots[-1].rate > 0
    assert len(snapshots) < 300  # throttled, not one per batch
    assert [s.accepted for s in snapshots] == sorted(s.accepted for s in snapshots)


async def test_cancellation_files_in_flight_as_unknown_and_leaks_nothing() -> None:
    fake = FakeProvider(delay=10)
    results: list[BulkOutcome] = []
    task = asyncio.create_task(
        run(
            [number(i) for i in range(1000)],
            fake,
            batch_size=10,
            concurrency=3,
            on_result=results.append,
        )
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.in_flight == 0
    unknown = [r for r in results if r.outcome is Outcome.UNKNOWN]
    assert sum(len(r.recipients) for r in unknown) == 30
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_defect_in_a_batch_is_filed_unknown_and_stops_the_run() -> None:
    def rule(i: int, numbers: list[str]) -> Exception | None:
        return KeyError("bug") if i == 0 else None

    fake = FakeProvider(rule)
    report = await run([number(i) for i in range(300)], fake, concurrency=1)
    assert report.unknown_count == 100
    assert isinstance(report.aborted, errors.OutcomeUnknown)
    assert report.taken == taken_count(report)


async def test_send_many_personalised_messages() -> None:
    fake = FakeProvider()
    messages = [Message(number(i), f"OTP {i}", request_id=f"r{i}") for i in range(5)]
    results: list[BulkOutcome] = []
    report = await bulk.run(
        messages,
        provider="fake",
        send_batch=fake,
        content=None,
        batch_size=1,
        on_result=results.append,
    )
    assert report.accepted == 5
    assert [r.content for r in results] == [f"OTP {i}" for i in range(5)]
    assert [r.result.request_id for r in results if r.result] == [f"r{i}" for i in range(5)]


async def test_non_string_inputs_are_invalid_not_crashes() -> None:
    fake = FakeProvider()
    report = await run([912345678, None, "0912345678"], fake)
    assert report.accepted == 1
    assert len(report.invalid) == 2


_KINDS = st.sampled_from(["ok", "ok", "ok", "failed", "unknown", "abort"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.lists(
        st.one_of(
            st.integers(0, 60).map(number),
            st.sampled_from(["123", "0241234567", "+84 912 000 001"]),
        ),
        max_size=120,
    ),
    kinds=st.lists(_KINDS, min_size=1, max_size=20),
    batch_size=st.integers(1, 12),
    concurrency=st.integers(1, 4),
)
def test_every_input_is_counted_exactly_once(
    inputs: list[str], kinds: list[str], batch_size: int, concurrency: int
) -> None:
    def rule(i: int, numbers: list[str]) -> errors.SmsError | None:
        kind = kinds[i % len(kinds)]
        if kind == "failed":
            return errors.InvalidRequest("no", provider="fake")
        if kind == "unknown":
            return errors.OutcomeUnknown("timeout", provider="fake")
        if kind == "abort":
            return errors.AuthenticationError("locked", provider="fake")
        return None

    async def scenario() -> None:
        fake = FakeProvider(rule)
        source = iter(inputs)
        report = await run(source, fake, batch_size=batch_size, concurrency=concurrency)
        left = list(source)
        assert report.taken + len(left) == len(inputs)
        assert report.taken == taken_count(report)
        sent = [n for b in fake.batches for n in b]
        assert len(sent) == len(set(sent))  # nothing sent twice

    asyncio.run(scenario())


# -- through a real client (aioresponses) ------------------------------------------------------


def speedsms_answer(url: URL, **kwargs: Any) -> CallbackResult:
    body = json.loads(payload_bytes(kwargs["data"]))
    data = {"tranId": random.randint(1, 10**9), "totalSMS": len(body["to"]), "totalPrice": 250}
    return CallbackResult(payload={"status": "success", "code": "00", "data": data})


async def test_speedsms_send_bulk_packs_100_numbers_a_request(mocked: aioresponses) -> None:
    mocked.post(SEND, callback=speedsms_answer, repeat=True)
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, retry=FAST_RETRY) as sms:
        report = await sms.send_bulk(
            (number(i) for i in range(250)), "Khuyen mai", sms_type=3, sender="BRAND"
        )
    calls = mocked.requests[("POST", URL(SEND))]
    bodies = [json.loads(sent_body(c)) for c in calls]
    assert sorted(len(b["to"]) for b in bodies) == [50, 100, 100]
    assert {b["sender"] for b in bodies} == {"BRAND"}
    assert all(n.startswith("84") for b in bodies for n in b["to"])
    assert report.accepted == 250
    assert report.segments == 250


async def test_send_bulk_checks_options_before_any_request(mocked: aioresponses) -> None:
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None) as sms:
        with pytest.raises(errors.ValidationError, match="needs a sender"):
            await sms.send_bulk([number(1)], "hi", sms_type=3)
        with pytest.raises(TypeError):
            await sms.send_bulk([number(1)], "hi", brandname="X")
    assert not mocked.requests


async def test_a_failing_progress_callback_stops_the_run_and_is_raised() -> None:
    fake = FakeProvider(delay=0.001)

    def broken(snapshot: BulkProgress) -> None:
        raise RuntimeError("dashboard down")

    source = iter([number(i) for i in range(5000)])
    with pytest.raises(RuntimeError, match="dashboard down"):
        await run(source, fake, batch_size=10, concurrency=2, on_progress=broken)
    assert fake.in_flight == 0
    assert len(list(source)) > 4000  # it stopped taking input


async def test_an_input_that_raises_lets_batches_in_flight_end_then_raises() -> None:
    fake = FakeProvider(delay=0.01)

    def numbers() -> Iterator[str]:
        yield from (number(i) for i in range(30))
        raise OSError("cursor lost")

    with pytest.raises(OSError, match="cursor lost"):
        await run(numbers(), fake, batch_size=10, concurrency=4)
    assert fake.in_flight == 0
    assert [len(b) for b in fake.batches] == [10, 10, 10]
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []
