"""Red-team probes of ``smsvn.Failover``: outcome-aware hand-over, the merged report, content
and sender rules that differ between providers, ``max_wait``, and the ``provider`` of results.

Each test whose docstring starts "Finding:" fails on the code it was written against and names
the promise it breaks; the others are regression guards of documented promises that no other
test covers this way. Everything runs on 127.0.0.1: the embedded simulator (its outbox is the
ground truth of what was sent) and, where a provider must misbehave in a way the simulator
cannot, a small hostile server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from aiohttp import web

from smsvn import errors, text
from smsvn.bulk import BulkOutcome, BulkReport, Outcome
from smsvn.failover import Failover
from smsvn.providers._base import BaseClient
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.conftest import taken_count

FAST = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002, max_rate_limit_wait=0.05)
NUMBER = "0912345678"


def _numbers(count: int, start: int = 0) -> list[str]:
    return [f"0912{i:06d}" for i in range(start, start + count)]


def _buckets(report: BulkReport) -> dict[str, Outcome]:
    """Where the merged report puts each number; a number in two places fails here."""
    where: dict[str, Outcome] = {}
    pairs: list[tuple[str, Outcome]] = [
        *((n, Outcome.SENT) for r in report.sent for n in r.recipients),
        *((n, Outcome.FAILED) for batch, _ in report.failed for n in batch),
        *((n, Outcome.UNKNOWN) for batch, _ in report.unknown for n in batch),
        *((str(n), Outcome.INVALID) for n in report.invalid),
        *((n, Outcome.SKIPPED) for n in report.skipped),
    ]
    for number, outcome in pairs:
        assert number not in where, f"{number} is both {where[number]} and {outcome}"
        where[number] = outcome
    return where


def _check_against_outbox(report: BulkReport, sb: Sandbox, given: int, left: int) -> None:
    """The merged report adds up, and agrees with the simulator about who sent what, once."""
    assert report.taken + left == given
    assert taken_count(report) == report.taken
    where = _buckets(report)
    assert sum(1 for o in where.values() if o is Outcome.SENT) == report.accepted
    senders = Counter(r.phone for r in sb.outbox)
    twice = {n: c for n, c in senders.items() if c > 1}
    assert not twice, f"sent more than once (across providers): {twice}"
    by_phone = {r.phone: r.provider for r in sb.outbox}
    claimed = {n: r.provider for r in report.sent for n in r.recipients}
    assert claimed == by_phone, "a result names a provider that did not send the number"


# -- findings --------------------------------------------------------------------------------------

LONG_VIETNAMESE = "Khuyến mãi đặc biệt cho quý khách hàng thân thiết. " * 8
"""408 UCS-2 characters, 7 segments: eSMS and Fibo take it; SpeedSMS refuses more than 5 (113)."""


@pytest.mark.parametrize("case", ["content-too-long-for-speedsms", "fibo-without-sender"])
async def test_a_fallback_that_refuses_the_campaign_locally_refuses_it_before_sending(
    case: str,
) -> None:
    """Finding: ``Failover.send_bulk`` checks a fallback's send options and content
    (``client.batch_sender(content=...)``) only when it hands over, after the primary has sent
    part of the campaign. A content valid for eSMS but too long for SpeedSMS (7 UCS-2 segments
    against SpeedSMS's 5), or a Fibo fallback with no sender, raises ``ValidationError`` out of
    ``send_bulk`` once eSMS's (SpeedSMS's) balance runs out mid-run: the primary's report (what
    it sent) is discarded, the numbers it handed on are neither sent, reported nor left in the
    caller's iterator, and a caller who retries on that "refused before any request" error
    sends the first part twice. Root cause: ``smsvn/failover.py`` ``Failover.send_bulk`` builds
    each client's ``batch_sender`` inside the loop instead of up front (as ``Campaign._run``
    does with ``source.prepare``). Broken: "Every input still ends exactly once: sent,
    reported, or left in the caller's iterator" (failover.py) and ``ValidationError`` = "raised
    before any request" (README, Errors). Fixed: every provider's sender is built before the
    first request, so such a campaign is a ``ValidationError`` with nothing sent and nothing
    taken from the caller's iterator."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        if case == "content-too-long-for-speedsms":
            content = LONG_VIETNAMESE
            assert text.segments(content).segments == 7
            sb.set_balance("esms", 5 * 7 * 350)  # five messages, then code 103
            primary: BaseClient = sb.client("esms", retry=FAST)
            fallback: BaseClient = sb.client("speedsms", rate_limit=None, retry=FAST)
            inputs = _numbers(20)
        else:
            content = "Thong bao lich hen"
            sb.set_balance("speedsms", 250 * 100)  # one batch of 100, then code 300
            primary = sb.client("speedsms", rate_limit=None, retry=FAST)
            fallback = sb.client("fibo", retry=FAST, sender=None)
            inputs = _numbers(300)
        source = iter(inputs)
        async with Failover(primary, fallback) as failover:
            with pytest.raises(errors.ValidationError):
                await failover.send_bulk(source, content, concurrency=1)
        assert len(sb.outbox) == 0, "refused after a part of the campaign went out"
        assert list(source) == inputs, "refused after taking from the caller's iterator"


async def test_on_result_tells_the_same_story_as_the_merged_report() -> None:
    """Finding: behind ``Failover.send_bulk``, numbers that a provider handed on and that no
    later provider took are ``skipped`` in the merged report, but ``on_result`` never streams
    them as skipped: the last (only) outcome it gave them is the primary's ``FAILED``
    (``InsufficientBalance``). A caller whose record is ``on_result`` (README: it receives
    "each invalid, duplicate or skipped number"; after a cancel "on_result is then the record")
    books 96 numbers as failed for want of balance that the report says were never sent and
    may be resumed. Root cause: ``smsvn/failover.py`` ``Failover.send_bulk`` / ``_merge`` move
    hand-ons between runs and into ``skipped`` without emitting an outcome for them."""
    seen: list[BulkOutcome] = []
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        sb.set_balance("speedsms", 250 * 150)  # one batch of 100; the second meets code 300
        sb.set_balance("fibo", 3)  # three messages, then code 14
        primary = sb.client("speedsms", rate_limit=None, retry=FAST)
        fallback = sb.client("fibo", retry=FAST)
        inputs = _numbers(400)
        source = iter(inputs)
        async with Failover(primary, fallback) as failover:
            report = await failover.send_bulk(
                source, "Thong bao", concurrency=2, on_result=seen.append
            )
        _check_against_outbox(report, sb, len(inputs), len(list(source)))
    assert report.skipped, "the scenario must leave handed-on numbers untaken"
    last: dict[str, Outcome] = {}
    for outcome in seen:
        for number in outcome.recipients:
            last[number] = outcome.outcome
    disagree = Counter(
        (last.get(n), bucket) for n, bucket in _buckets(report).items() if last.get(n) != bucket
    )
    assert not disagree, f"(streamed last, reported) for numbers they disagree on: {disagree}"


async def test_max_wait_moves_on_at_once_from_a_429_whose_reset_is_too_far() -> None:
    """Finding: a primary built with ``max_wait=0.5`` and ``rate_limit=None`` meets a 429 whose
    reset hint is 3 s away. Its turn is further than ``max_wait``, so the call should raise
    ``RateLimited`` at once and ``Failover`` move on (with the default limiter it does, in
    0.0 s); instead the transport sleeps the hint and sends again, 429 after 429, until
    ``max_rate_limit_wait`` (120 s by default) is spent: the web request behind it hangs for
    two minutes before the fallback sends. Root cause: ``smsvn/transport.py``
    ``Transport.call``, the ``RateLimited`` branch: without a limiter it sets ``delay = hint``
    and sleeps it without comparing it to ``max_wait``. Broken: "max_wait ... past it
    RateLimited is raised at once, before anything is sent, and Failover moves on" (README,
    Timeouts) and "A web request never waits minutes" (DESIGN, principle 8)."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        sb.faults.add(Fault(kind="rate_limit", provider="esms", route="send", seconds=3.0))
        primary = sb.client("esms", rate_limit=None, max_wait=0.5)
        fallback = sb.client("speedsms", rate_limit=None, retry=FAST)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with Failover(primary, fallback) as failover:
            try:
                async with asyncio.timeout(2.0):
                    result = await failover.send(NUMBER, "Ma OTP cua ban la 4821")
            except TimeoutError:
                pytest.fail(
                    f"still waiting out eSMS's 429 after {loop.time() - started:.1f} s "
                    f"({sb.requests[('esms', 'send')]} requests) despite max_wait=0.5"
                )
        assert result.provider == "speedsms"
        assert [type(f.error) for f in result.failovers] == [errors.RateLimited]
        assert [(r.provider, r.phone) for r in sb.outbox] == [("speedsms", NUMBER)]


# -- guards that held ------------------------------------------------------------------------------


async def test_three_providers_running_out_mid_run_send_each_number_once_and_name_the_sender() -> (
    None
):
    """passes: regression guard. SpeedSMS (100 a request) runs out of balance after two
    batches while more are in flight, eSMS (one a request) after 40 messages, Fibo takes the
    rest; the input is an async iterator with repeats in other written forms and bad numbers.
    Against the simulator's outbox: no number goes out through two providers, every result's
    ``provider`` is the one whose outbox holds its numbers, and every input ends in exactly
    one place of the merged report."""
    inputs = _numbers(700)
    inputs[50:50] = ["+84 912 000 003", "84912000640", "not a number", "0123"]
    inputs.append("0912 000 199")

    async def numbers() -> AsyncIterator[str]:
        for number in inputs:
            await asyncio.sleep(0)
            yield number

    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        sb.set_balance("speedsms", 250 * 200)
        sb.set_balance("esms", 350 * 40)
        clients = [
            sb.client("speedsms", rate_limit=None, retry=FAST),
            sb.client("esms", retry=FAST),
            sb.client("fibo", retry=FAST),
        ]
        async with Failover(*clients) as failover:
            report = await failover.send_bulk(numbers(), "Thong bao", concurrency=4)
        _check_against_outbox(report, sb, len(inputs), 0)
        per_provider = Counter(r.provider for r in sb.outbox)
    assert report.aborted is None and report.skipped == []
    assert per_provider == {"speedsms": 200, "esms": 40, "fibo": 700 - 240}
    assert report.duplicates == 3 and len(report.invalid) == 2
    assert [p.provider for p in report.parts] == ["speedsms", "esms", "fibo"]


class _PartialSpeedSMS:
    """A hostile SpeedSMS: accepts each batch except the numbers ending in 7, which it lists in
    ``invalidPhone`` (refused, not sent), until its balance runs out after ``batches``."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.sent: list[str] = []
        self.requests = 0

    async def send(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = msgspec.json.decode(await request.read())
        numbers = [str(n) for n in body["to"]]
        if self.requests > self.batches:
            answer: dict[str, object] = {
                "status": "error",
                "code": "300",
                "message": "Your account balance not enough to send sms",
            }
        else:
            refused = [n for n in numbers if n.endswith("7")]
            taken = [n for n in numbers if not n.endswith("7")]
            self.sent.extend("0" + n[2:] for n in taken)
            answer = {
                "status": "success",
                "code": "00",
                "data": {
                    "tranId": self.requests,
                    "totalSMS": len(taken),
                    "totalPrice": 250 * len(taken),
                    "invalidPhone": refused,
                },
            }
        return web.json_response(answer)


async def test_numbers_refused_in_a_partly_accepted_batch_are_never_handed_on() -> None:
    """passes: regression guard. A SpeedSMS that accepts each batch of 100 but refuses some of
    its numbers (``invalidPhone``), then runs out of balance, in front of eSMS: the refused
    numbers are ``invalid`` once and never reach eSMS, the refused batch goes to eSMS whole,
    nothing goes out twice, and the merged report names the sender of every number."""
    hostile = _PartialSpeedSMS(batches=2)
    app = web.Application()
    app.router.add_post("/speedsms/index.php/sms/send", hostile.send)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
            primary = SpeedSMS(
                "hostile-token-1",
                base_url=f"http://127.0.0.1:{port}/speedsms/index.php",
                rate_limit=None,
                retry=FAST,
            )
            inputs = _numbers(250)
            source: Iterator[str] = iter(inputs)
            async with Failover(primary, sb.client("esms", retry=FAST)) as failover:
                report = await failover.send_bulk(source, "Thong bao", concurrency=1)
            esms = sb.outbox.phones("esms")
    finally:
        await runner.cleanup()
    refused = {n for n in inputs[:200] if n.endswith("7")}
    assert {str(n) for n in report.invalid} == refused
    assert not refused & set(esms), "a number SpeedSMS refused was handed to eSMS"
    assert len(hostile.sent) + len(esms) == report.accepted == 250 - len(refused)
    assert not set(hostile.sent) & set(esms), "a number went out through both providers"
    claimed = Counter(r.provider for r in report.sent for _ in r.recipients)
    assert claimed == {"speedsms": len(hostile.sent), "esms": len(esms)}
    assert report.taken == 250 and taken_count(report) == 250
    assert isinstance(report.parts[0].aborted, errors.InsufficientBalance)
    assert report.aborted is None
