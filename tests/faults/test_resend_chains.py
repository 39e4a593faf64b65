"""Faults that meet one another within one call: a resend after an unknown outcome that then
meets a refusal, and 429 storms whose hints say "now" (or nothing).

Defects these found (fixed in ``smsvn/transport.py``):

- An eSMS send resent after an unknown outcome whose last attempt was refused (429 past the
  budget, code 99 every time) raised that refusal: ``RateLimited`` / ``ProviderUnavailable``
  say "nothing was sent", so ``Failover`` sent the message again through the next provider,
  and ``send_bulk`` filed an accepted message as failed. It is now ``OutcomeUnknown``.
- A 429 storm with a wait hint of 0 (or none) was resent at once, again and again, until the
  wait budget (120 s by default) was spent: thousands of requests a second without a limiter.
  From the second 429 of a call on, the wait is now at least the backoff.
- ``Retry-After`` as an HTTP-date (RFC 9110) was ignored by the eSMS and Fibo clients.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from email.utils import formatdate

import pytest
from aioresponses import aioresponses

from smsvn import errors
from smsvn.failover import Failover
from smsvn.providers.esms import ESMS
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy, retry_after_seconds
from tests.faults.conftest import FAST_RETRY, accounted

NUMBER = "0912345678"
NO_BUDGET = RetryPolicy(
    max_retries=2, backoff_base=0.001, backoff_max=0.002, max_rate_limit_wait=0.5
)


def _lost_answer_then_429(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=1))
    sb.faults.add(Fault(kind="rate_limit", provider="esms", route="send", seconds=5.0))


async def test_resend_that_meets_a_429_stays_unknown(sb: Sandbox) -> None:
    _lost_answer_then_429(sb)
    async with sb.client("esms", retry=NO_BUDGET) as esms:
        with pytest.raises(errors.OutcomeUnknown) as caught:
            await esms.send(NUMBER, "hi")
    assert not isinstance(caught.value, errors.RateLimited)
    assert caught.value.attempts == 2 and caught.value.http_status == 429
    assert isinstance(caught.value.__cause__, errors.RateLimited)
    assert "earlier attempt may have been processed" in str(caught.value)
    assert len(sb.outbox) == 1


async def test_failover_never_sends_twice_after_an_unknown_resend(sb: Sandbox) -> None:
    _lost_answer_then_429(sb)
    primary = sb.client("esms", retry=NO_BUDGET)
    async with Failover(primary, sb.client("speedsms", retry=FAST_RETRY)) as failover:
        with pytest.raises(errors.OutcomeUnknown):
            await failover.send(NUMBER, "hi")
    assert [(r.provider, r.phone) for r in sb.outbox] == [("esms", NUMBER)]


async def test_failover_bulk_hands_on_only_what_provably_was_not_sent(sb: Sandbox) -> None:
    numbers = [f"09123456{i:02d}" for i in range(20)]
    _lost_answer_then_429(sb)
    primary = sb.client("esms", retry=NO_BUDGET)
    async with Failover(primary, sb.client("speedsms", retry=FAST_RETRY)) as failover:
        report = await failover.send_bulk(numbers, "hi", concurrency=1)
    accounted(report, numbers)
    per_number = Counter(r.phone for r in sb.outbox)
    assert all(n == 1 for n in per_number.values()), "a number went through two providers"
    [(batch, error)] = report.unknown
    assert batch == (numbers[0],) and isinstance(error, errors.OutcomeUnknown)
    assert [r.provider for r in sb.outbox if r.phone == numbers[0]] == ["esms"]
    assert report.accepted == len(numbers) - 1  # the rest went through SpeedSMS


async def test_resend_that_meets_99_every_time_stays_unknown(mocked: aioresponses) -> None:
    send = re.compile(r"^https://rest\.esms\.vn/.*SendMultipleMessage_V4_post_json/?.*$")
    mocked.post(send, exception=TimeoutError())
    mocked.post(send, payload={"CodeResult": "99", "ErrorMessage": "retry later"}, repeat=True)
    async with ESMS(
        "esms-key-123", "esms-secret-456", rate_limit=None, brandname="B", retry=FAST_RETRY
    ) as esms:
        with pytest.raises(errors.OutcomeUnknown) as caught:
            await esms.send(NUMBER, "hi")
    assert caught.value.code == "99" and caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, errors.ProviderUnavailable)


async def test_a_refusal_with_nothing_unknown_before_keeps_its_class(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="rate_limit", provider="esms", route="send", seconds=5.0))
    async with sb.client("esms", retry=NO_BUDGET) as esms:
        with pytest.raises(errors.RateLimited):
            await esms.send(NUMBER, "hi")
    assert len(sb.outbox) == 0


# -- 429 storms ------------------------------------------------------------------------------------


async def test_429_storm_with_zero_hints_backs_off(sb: Sandbox) -> None:
    # seconds=0 makes the sandbox's SpeedSMS answer its smallest hint, 1 ms.
    provider = "speedsms"
    sb.faults.add(Fault(kind="rate_limit", provider=provider, route="balance", seconds=0.0))
    policy = RetryPolicy(backoff_base=0.02, backoff_max=0.08, max_rate_limit_wait=0.6)
    async with sb.client(provider, retry=policy) as client:
        with pytest.raises(errors.RateLimited):
            await client.balance()
    # Without the floor: 0.6 s / 1 ms = 600 requests; with it about 11.
    assert sb.requests[(provider, "balance")] <= 20, "a 429 storm was hammered"


async def test_429_without_any_hint_backs_off_exponentially(mocked: aioresponses) -> None:
    balance = re.compile(r"^https://rest\.esms\.vn/.*GetBalance/.*$")
    mocked.get(balance, status=429, body=b"", repeat=True)
    policy = RetryPolicy(backoff_base=0.02, backoff_max=0.08, max_rate_limit_wait=0.6)
    async with ESMS("esms-key-123", "esms-secret-456", rate_limit=None, retry=policy) as esms:
        with pytest.raises(errors.RateLimited):
            await esms.balance()
    requests = sum(len(calls) for calls in mocked.requests.values())
    # Backoff growing to 0.04-0.08 s: about 11 requests; without growth, 0.6 s / 15 ms = 40.
    assert 4 <= requests <= 20


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0.25 ") == 0.25
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    later = retry_after_seconds(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_esms_honours_an_http_date_retry_after(mocked: aioresponses) -> None:
    balance = re.compile(r"^https://rest\.esms\.vn/.*GetBalance/.*$")
    when = formatdate(time.time() + 60, usegmt=True)
    mocked.get(balance, status=429, body=b"", headers={"Retry-After": when}, repeat=True)
    async with ESMS("esms-key-123", "esms-secret-456", rate_limit=None, retry=NO_BUDGET) as esms:
        with pytest.raises(errors.RateLimited) as caught:
            await esms.balance()
    assert caught.value.retry_after is not None and caught.value.retry_after > 50
    assert caught.value.attempts == 1  # 60 s is past the 0.5 s budget: not waited for
