"""Shared pieces of the fault, keep-alive and soak suites: the ``soak`` marker, leak checks and
the outbox invariants every run must keep ("never send twice, never lose track")."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterable

import pytest

from smsvn.bulk import BulkReport
from smsvn.errors import OutcomeUnknown
from smsvn.sandbox import Sandbox
from smsvn.transport import RetryPolicy
from tests.conftest import taken_count

FAST_RETRY = RetryPolicy(
    max_retries=2, backoff_base=0.001, backoff_max=0.002, max_rate_limit_wait=10.0
)
"""Fast backoff; a 429 budget wide enough for a storm of a few 1-second Retry-After hints."""


# -- leak checks -----------------------------------------------------------------------------------


def socket_count() -> int:
    """Open sockets of this process (Linux /proc; -1 elsewhere, which disables the check)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    count = 0
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


async def assert_no_leaks(sockets_before: int, *, within: float = 2.0) -> None:
    """No task but the current one is alive and the socket count is back to ``sockets_before``
    (closing transports takes a few loop iterations, so wait up to ``within`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        tasks = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        sockets = socket_count()
        if not tasks and (sockets_before < 0 or sockets <= sockets_before):
            return
        if loop.time() > deadline:
            names = sorted(repr(t.get_coro()) for t in tasks)
            raise AssertionError(
                f"leaked: {len(tasks)} task(s) {names[:5]}; sockets {sockets} > {sockets_before}"
            )
        await asyncio.sleep(0.01)


@pytest.fixture
async def leak_check() -> AsyncIterator[None]:
    """Fails the test if it leaves a task running or a socket open."""
    before = socket_count()
    yield
    await assert_no_leaks(before)


@pytest.fixture
async def sb(leak_check: None) -> AsyncIterator[Sandbox]:
    """A sandbox with no SpeedSMS limit and quick deliveries (leak-checked after closing)."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sandbox:
        yield sandbox


# -- outbox invariants -----------------------------------------------------------------------------


def no_duplicates(sb: Sandbox) -> None:
    """Never sent twice: no (provider, kind, phone, content) was accepted more than once."""
    seen = Counter((r.provider, r.kind, r.phone, r.content) for r in sb.outbox)
    twice = {key: n for key, n in seen.items() if n > 1}
    assert not twice, f"accepted more than once: {twice}"


def accounted(report: BulkReport, inputs: Iterable[str]) -> None:
    """Never lose track: every input is in exactly one of the report's lists, and the counters
    agree with the lists."""
    given = list(inputs)
    sent = [n for r in report.sent for n in r.recipients]
    failed = [n for batch, _ in report.failed for n in batch]
    unknown = [n for batch, _ in report.unknown for n in batch]
    invalid = [str(n) for n in report.invalid]
    everything = Counter(sent + failed + unknown + invalid + list(report.skipped))
    assert report.taken == len(given)
    assert taken_count(report) == report.taken
    if report.sent or report.accepted == 0:  # keep_results=False leaves ``sent`` empty
        assert len(sent) == report.accepted
        assert sum(everything.values()) + report.duplicates == len(given)
        assert all(n == 1 for n in everything.values()), "an input is in two lists"
    for _, error in report.unknown:
        assert isinstance(error, OutcomeUnknown)
    for _, error in report.failed:
        assert not isinstance(error, OutcomeUnknown)


def agrees_with_outbox(report: BulkReport, sb: Sandbox, provider: str) -> None:
    """The report and the simulator's ground truth agree: what is reported accepted was
    accepted once; what failed was not accepted; only ``unknown`` may be either."""
    outbox = Counter(sb.outbox.phones(provider))
    assert all(n == 1 for n in outbox.values()), "a number was accepted twice"
    sent = {n for r in report.sent for n in r.recipients}
    failed = {n for batch, _ in report.failed for n in batch}
    unknown = {n for batch, _ in report.unknown for n in batch}
    assert sent <= outbox.keys(), "reported sent but never accepted"
    assert not (failed & outbox.keys()), "reported failed but accepted"
    if report.sent or report.accepted == 0:
        assert outbox.keys() <= sent | unknown, "accepted but reported neither sent nor unknown"
