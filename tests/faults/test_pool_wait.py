"""A request still waiting for a pooled connection when time runs out never left.

Defect found (fixed in ``smsvn/transport.py``): with a whole-request ``timeout`` shorter than
``connect_timeout`` (5 s by default), a request queued behind a busy connection pool hit the
total timeout before the connect one and was reported ``OutcomeUnknown``: never retried, never
failed over, filed as "may have been sent" although it never reached the provider. The connect
timeout (which covers the pool wait) is now at most half the total, so it always fires first
and the request is a ``ConnectError``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from smsvn import errors
from smsvn.failover import Failover
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.faults.conftest import FAST_RETRY, accounted, agrees_with_outbox

NO_RETRY = RetryPolicy(max_retries=0)


async def test_a_request_that_never_got_a_connection_is_a_connect_error(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="latency", provider="fibo", seconds=0.3))
    numbers = [f"091234567{i}" for i in range(3)]
    async with sb.client("fibo", retry=NO_RETRY, timeout=0.5, max_connections=1) as fibo:
        results = await asyncio.gather(
            *(fibo.send(n, "hi") for n in numbers), return_exceptions=True
        )
    kinds = Counter(type(r).__name__ for r in results)
    # One got the connection and was answered; the others timed out in the pool's queue.
    assert kinds["SendResult"] >= 1
    assert kinds["OutcomeUnknown"] == 0, results
    for number, result in zip(numbers, results, strict=True):
        if isinstance(result, errors.ConnectError):
            assert number not in sb.outbox.phones("fibo")
    assert sb.requests[("fibo", "send")] == kinds["SendResult"]


async def test_bulk_beyond_the_pool_fails_over_what_never_left(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="latency", provider="fibo", seconds=0.2))
    numbers = [f"09123456{i:02d}" for i in range(12)]
    primary = sb.client("fibo", retry=NO_RETRY, timeout=0.3, max_connections=2)
    async with Failover(primary, sb.client("speedsms", retry=FAST_RETRY)) as failover:
        report = await failover.send_bulk(numbers, "hi", concurrency=12)
    accounted(report, numbers)
    assert report.accepted == len(numbers) and not report.unknown
    per_number = Counter(r.phone for r in sb.outbox)
    assert sorted(per_number) == sorted(numbers) and set(per_number.values()) == {1}
    fibo, speedsms = report.parts
    assert fibo.failed and all(isinstance(e, errors.ConnectError) for _, e in fibo.failed)
    agrees_with_outbox(speedsms, sb, "speedsms")
