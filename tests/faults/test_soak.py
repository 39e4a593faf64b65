"""The soak: a large bulk send through each provider with a few percent of random faults, then
a memory check that runs the bulk engine at two sizes.

- Every input is accounted for exactly once (by the streamed outcomes and by the report's
  counters), the outbox never holds a duplicate, and the report agrees with the outbox.
- Memory does not grow with the input: the client's peak traced memory (tracemalloc; the
  simulator runs in a child process so that only the client is measured) at N and 2N differs
  by no more than noise.
- No task, socket or session is left behind (and the suite runs with warnings as errors).

Size: ``SMSVN_SOAK_RECIPIENTS`` (default 5,000 for ``make test``; ``make soak`` sets 100,000).
Select with ``-m soak``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from smsvn.bulk import BulkOutcome, Outcome
from smsvn.errors import OutcomeUnknown
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.conftest import PROVIDERS
from tests.faults.conftest import accounted, agrees_with_outbox, assert_no_leaks, socket_count

pytestmark = pytest.mark.soak

N = int(os.environ.get("SMSVN_SOAK_RECIPIENTS", "5000"))
RETRY = RetryPolicy(max_retries=2, backoff_base=0.005, backoff_max=0.02, max_rate_limit_wait=30)

# About 3 % of requests meet a fault, of every kind (hang costs one client timeout, 1 s).
FAULT_MIX = [
    ("drop_before", 0.005, None),
    ("drop_after", 0.005, None),
    ("status_5xx", 0.004, None),
    ("garbage", 0.003, None),
    ("empty", 0.003, None),
    ("truncate", 0.003, None),
    ("rate_limit", 0.003, 0.01),
    ("dribble", 0.003, 0.001),
    ("hang", 0.001, None),
    ("latency", 0.02, 0.005),
]

FATE = {Outcome.SENT: 1, Outcome.FAILED: 2, Outcome.UNKNOWN: 3, Outcome.INVALID: 4}
SKIPPED = 5


def number(i: int) -> str:
    return f"090{i:07d}"


def inputs(n: int) -> Iterator[str]:
    """``n`` distinct numbers, with an invalid entry every 53 and a repeat (written another
    way) every 47 mixed in: a generator, so the input itself takes no memory."""
    for i in range(n):
        yield number(i)
        if i % 53 == 0:
            yield f"not-a-number-{i}"
        if i % 47 == 1:
            yield "+84 90" + number(i - 1)[3:]


def expected_counts(n: int) -> tuple[int, int, int]:
    """(inputs, invalid inputs, repeated inputs) that ``inputs(n)`` yields."""
    invalid = len(range(0, n, 53))
    repeats = len(range(1, n, 47))
    return n + invalid + repeats, invalid, repeats


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_soak_with_random_faults(provider: str) -> None:
    sockets_before = socket_count()
    fate = bytearray(N)
    reported_invalid = 0
    twice: list[str] = []

    def on_result(outcome: BulkOutcome) -> None:
        nonlocal reported_invalid
        code = SKIPPED if outcome.outcome is Outcome.SKIPPED else FATE.get(outcome.outcome, 0)
        if outcome.outcome is Outcome.DUPLICATE:
            return
        if outcome.outcome is Outcome.INVALID and not outcome.recipients[0].startswith("0"):
            reported_invalid += 1
            return
        for n in outcome.recipients:
            i = int(n) - 900_000_000
            if fate[i]:
                twice.append(n)
            fate[i] = code

    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01, seed=N) as sb:
        for kind, probability, seconds in FAULT_MIX:
            sb.faults.add(
                Fault(
                    kind=kind,  # type: ignore[arg-type]
                    provider=provider,
                    route="send",
                    probability=probability,
                    seconds=seconds,
                )
            )
        async with sb.client(provider, retry=RETRY, timeout=1.0) as client:  # type: ignore[call-overload]
            report = await client.send_bulk(inputs(N), "Khuyen mai", on_result=on_result)
            session = client._transport._session
            assert session is not None and not session.connector._acquired  # all released
        total, invalid, repeats = expected_counts(N)
        # Every input accounted for exactly once, by the report and by the stream.
        accounted(report, inputs(N))
        assert report.taken == total and report.duplicates == repeats
        assert len(report.invalid) == invalid and reported_invalid == invalid
        assert not twice, f"reported twice: {twice[:5]}"
        assert all(fate), f"never reported: {[number(i) for i, f in enumerate(fate) if not f][:5]}"
        # Never sent twice; the report agrees with the ground truth.
        agrees_with_outbox(report, sb, provider)
        outbox = sb.outbox.phones(provider)
        assert len(outbox) == len(set(outbox))
        accepted = set(outbox)
        for i, code in enumerate(fate):
            if code == FATE[Outcome.SENT]:
                assert number(i) in accepted
            elif code in (FATE[Outcome.FAILED], SKIPPED):
                assert number(i) not in accepted
        assert report.aborted is None
        assert all(isinstance(e, OutcomeUnknown) for _, e in report.unknown)
        assert sum(sb.stats.faults.values()) > 0
    await assert_no_leaks(sockets_before)


# -- memory ----------------------------------------------------------------------------------------

_CHILD = """
import asyncio, sys
from smsvn.sandbox import Sandbox

async def main():
    async with Sandbox(speedsms_rate_limit=None, record_outbox=False, delivery_delay=0.01) as sb:
        print(sb.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def _remote_sandbox() -> AsyncIterator[int]:
    """A sandbox in a child process (so tracemalloc sees only the client); yields its port."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        yield int(line)
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()


def _client(provider: str, port: int) -> Any:
    """A client of ``provider`` for the sandbox served on ``port`` by the child process."""
    remote = Sandbox(port=port)  # never started: it only knows the clients' options
    return remote.client(provider, rate_limit=None, retry=RETRY, timeout=10.0)


def _plain(n: int) -> Iterator[str]:
    for i in range(n):
        yield number(i)


async def _peak(client: Any, n: int, dedupe: bool) -> int:
    """Peak traced bytes above the start while ``client`` bulk-sends ``n`` numbers."""
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    report = await client.send_bulk(_plain(n), "hi", keep_results=False, dedupe=dedupe)
    assert report.accepted == n
    return tracemalloc.get_traced_memory()[1] - base


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_memory_does_not_grow_with_the_input(provider: str) -> None:
    sockets_before = socket_count()
    # Sizes well past what the run holds in flight (32 batches: 32 numbers for eSMS and Fibo,
    # 3,200 for SpeedSMS's 100-number batches), so the peak is set by the concurrency alone.
    small = max(N, 10_000) if provider == "speedsms" else max(N // 5, 1000)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        async with _remote_sandbox() as port, _client(provider, port) as client:
            await _peak(client, 200, True)  # warm up: pool, limiter, caches
            flat_small = await _peak(client, small, False)
            flat_large = await _peak(client, 2 * small, False)
            dedupe_small = await _peak(client, small, True)
            dedupe_large = await _peak(client, 2 * small, True)
    finally:
        if not tracing:
            tracemalloc.stop()
    # Without duplicate detection nothing is kept per recipient: the peak is flat (noise is
    # the batches in flight). A leaked string per recipient would add ~60 B x small.
    allowance = max(256 * 1024, 8 * small)
    assert flat_large - flat_small < allowance, (flat_small, flat_large)
    # Duplicate detection keeps one int per distinct number in a set (~60 B, more while the set
    # resizes); nothing more.
    per_number = (dedupe_large - dedupe_small - allowance) / small
    assert per_number < 150, (dedupe_small, dedupe_large)
    await assert_no_leaks(sockets_before)
