"""Red-team probes of the non-journal sending paths: bulk accounting, Failover, cancellation.

Each test names a promise (README "Bulk sending", "Reliability") that the code broke when it
was written, and failed until the fix; a test whose docstring says "passes: regression guard"
is a probe that held and covers something no other test does. Everything runs against the
embedded simulator on 127.0.0.1, whose outbox is the ground truth of what was sent.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsvn.bulk import BulkOutcome, BulkReport, Outcome
from smsvn.failover import Failover
from smsvn.sandbox import Sandbox
from smsvn.sandbox.faults import Fault
from smsvn.transport import RetryPolicy
from tests.conftest import taken_count

PROVIDERS = ("speedsms", "esms", "fibo")
FAST = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002, max_rate_limit_wait=0.05)
PATIENT = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002, max_rate_limit_wait=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _cancel_after(task: asyncio.Task[Any], seconds: float) -> None:
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- findings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_batch_cancelled_while_waiting_out_a_429_is_skipped_not_unknown(name: str) -> None:
    """A batch whose only request was answered 429 (not processed: README, Reliability) is
    waiting in the account's limiter for the provider's reset when the run is cancelled. Nothing
    was sent, so it must be ``skipped`` (a resume sends it), as a batch cancelled in the limiter
    is. It is filed ``unknown`` ("may have been sent", never resent automatically): the
    transport marks the batch ``left`` before the first attempt and never takes that back after
    an attempt that proves nothing was processed."""
    seen: list[BulkOutcome] = []
    async with Sandbox(speedsms_rate_limit=None) as sb:
        sb.faults.add(Fault(kind="rate_limit", provider=name, route="send", seconds=5.0))
        async with sb.client(name, rate_limit=None, retry=PATIENT) as client:
            run = asyncio.create_task(
                client.send_bulk(["0912345601"], "Thong bao", concurrency=1, on_result=seen.append)
            )
            await _cancel_after(run, 0.4)
        assert sb.requests[(name, "send")] >= 1  # the request met the 429
        assert list(sb.outbox) == []  # ... and nothing was sent
    outcomes = [(o.outcome, o.recipients) for o in seen]
    assert outcomes == [(Outcome.SKIPPED, ("0912345601",))], outcomes


async def test_a_batch_cancelled_in_its_backoff_after_a_connect_error_is_skipped_not_unknown() -> (
    None
):
    """The request never left (``ConnectError``: the port refuses connections) and the batch
    is sleeping in its backoff before the next attempt when the run is cancelled. Nothing was
    sent: it must be ``skipped``; it is filed ``unknown``."""
    seen: list[BulkOutcome] = []
    slow = RetryPolicy(max_retries=2, backoff_base=3.0, backoff_max=3.0)
    async with Sandbox(speedsms_rate_limit=None) as sb:
        dead = f"http://127.0.0.1:{_free_port()}/speedsms/index.php"
        async with sb.client("speedsms", rate_limit=None, retry=slow, base_url=dead) as client:
            run = asyncio.create_task(
                client.send_bulk(["0912345603"], "Thong bao", concurrency=1, on_result=seen.append)
            )
            await _cancel_after(run, 0.4)
    outcomes = [(o.outcome, o.recipients) for o in seen]
    assert outcomes == [(Outcome.SKIPPED, ("0912345603",))], outcomes


async def test_speedsms_dedupe_false_repeats_are_counted_as_sent_messages() -> None:
    """``dedupe=False`` keeps repeats (README: "dedupe=False keeps them"), so the caller asked
    for three messages to one number. The engine packs the three written forms (0…, 0…, +84…)
    into one SpeedSMS request, which SpeedSMS sends once (the simulator: "repeats once"), and
    the report counts ``accepted == 3`` while the outbox holds one message: the report
    claims two sends that never happened. (eSMS and Fibo send one number a request and do
    send three.)"""
    async with Sandbox(speedsms_rate_limit=None) as sb:
        async with sb.client("speedsms", rate_limit=None, retry=FAST) as client:
            report = await client.send_bulk(
                ["0912345672", "0912345672", "+84912345672"], "Thong bao", dedupe=False
            )
        sent = len(list(sb.outbox))
    assert report.taken == 3
    assert report.accepted == sent, (report.accepted, sent, report.segments)


# -- probes that held -----------------------------------------------------------------------------

_KINDS = ("drop_before", "drop_after", "status_5xx", "garbage", "empty", "truncate", "rate_limit")
_FORMS = ("{n}", "+84{t}", "84{t}", "{h} {r}", "x{t}")


def _written(number: str, form: str) -> str:
    return form.format(n=number, t=number[1:], h=number[:4], r=number[4:])


def _check_report(report: BulkReport, given: int, left: int, outbox: Counter[str]) -> None:
    counted = taken_count(report)
    assert counted == report.taken, (counted, report.taken)
    assert report.taken + left == given, (report.taken, left, given)
    sent = Counter(n for r in report.sent for n in r.recipients)
    unknown = Counter(n for numbers, _ in report.unknown for n in numbers)
    failed = {n for numbers, _ in report.failed for n in numbers}
    twice = {n: c for n, c in outbox.items() if c > sent[n] + unknown[n]}
    assert not twice, f"in the outbox more often than sent or unknown: {twice}"
    lost = {n for n in sent if outbox[n] < sent[n]}
    assert not lost, f"reported sent, not in the outbox: {lost}"
    lied = {n for n in failed if outbox[n]}
    assert not lied, f"reported failed, yet sent: {lied}"


_fault = st.tuples(
    st.sampled_from(_KINDS),
    st.sampled_from(PROVIDERS),
    st.sampled_from((0.3, 1.0)),
    st.sampled_from((None, 1, 3)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    faults=st.lists(_fault, max_size=3),
    pool=st.integers(min_value=1, max_value=25),
    picks=st.lists(st.tuples(st.integers(0, 24), st.sampled_from(_FORMS)), max_size=40),
    order=st.permutations(PROVIDERS),
    failover=st.booleans(),
    concurrency=st.sampled_from((1, 3, 8)),
    seed=st.integers(0, 1000),
)
def test_random_faults_keep_every_input_accounted_and_none_sent_twice(
    faults: list[tuple[str, str, float, int | None]],
    pool: int,
    picks: list[tuple[int, str]],
    order: list[str],
    failover: bool,
    concurrency: int,
    seed: int,
) -> None:
    """passes: regression guard. For random inputs (one number in several written forms,
    invalid ones) and random fault schedules on every provider's send route, through one client
    or a ``Failover`` of two: the report's categories add up to ``taken``, what was not taken is
    still in the caller's iterator, and the outbox holds no number more often than the report
    has it sent or unknown, none reported sent is missing, none reported failed was sent."""
    numbers = [f"0912{i:06d}" for i in range(pool)]
    inputs = [_written(numbers[i % pool], form) for i, form in picks]

    async def scenario() -> None:
        async with Sandbox(speedsms_rate_limit=None, seed=seed) as sb:
            for kind, provider, probability, times in faults:
                sb.faults.add(
                    Fault(
                        kind=kind,  # type: ignore[arg-type]
                        provider=provider,
                        route="send",
                        probability=probability,
                        times=times,
                        seconds=0.01,
                    )
                )
            names = order[:2] if failover else order[:1]
            clients = [sb.client(n, rate_limit=None, retry=FAST, timeout=1.0) for n in names]
            source = iter(inputs)
            if failover:
                async with Failover(*clients) as sms:
                    report = await sms.send_bulk(source, "Thong bao", concurrency=concurrency)
            else:
                async with clients[0] as client:
                    report = await client.send_bulk(source, "Thong bao", concurrency=concurrency)
            outbox = Counter(r.phone for r in sb.outbox)
        _check_report(report, len(inputs), len(list(source)), outbox)

    asyncio.run(scenario())


async def test_failover_bulk_after_a_429_storm_at_concurrency_one_sends_each_number_once() -> None:
    """passes: regression guard. SpeedSMS answers every send 429 beyond the wait budget,
    one batch at a time: the run stops (``RateLimited`` is account-wide and proves nothing was
    sent), and ``Failover`` hands the batch and the untaken input, including a later repeat
    of a handed-on number in another written form, to eSMS: each number once, and the repeat
    counted a duplicate."""
    inputs = [f"0912{i:06d}" for i in range(150)] + ["+84912000007", "84912000149"]
    random.Random(7).shuffle(inputs)
    async with Sandbox(speedsms_rate_limit=None) as sb:
        sb.faults.add(Fault(kind="rate_limit", provider="speedsms", route="send", seconds=0.02))
        primary = sb.client("speedsms", rate_limit=None, retry=FAST)
        backup = sb.client("esms", rate_limit=None, retry=FAST)
        async with Failover(primary, backup) as sms:
            report = await sms.send_bulk(iter(inputs), "Thong bao", concurrency=1)
        outbox = Counter((r.provider, r.phone) for r in sb.outbox)
    assert {p for p, _ in outbox} == {"esms"}
    assert len(outbox) == 150 and set(outbox.values()) == {1}
    assert report.accepted == 150 and report.duplicates == 2 and report.taken == 152
    assert not report.failed and not report.unknown and not report.skipped
