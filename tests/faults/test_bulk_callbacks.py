"""A caller's ``on_result`` / ``on_progress`` that raises (a database sink that went down) must
not be lost: the run stops taking input, lets the batches in flight end, and raises it.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from smsvn.bulk import BulkOutcome, Outcome
from smsvn.sandbox import Fault, Sandbox

NUMBERS = [f"09123456{i:02d}" for i in range(20)]


class Sink:
    """An ``on_result`` that fails on the first outcome of ``kind``."""

    def __init__(self, kind: Outcome) -> None:
        self.kind = kind
        self.seen: list[BulkOutcome] = []

    def __call__(self, outcome: BulkOutcome) -> None:
        self.seen.append(outcome)
        if outcome.outcome is self.kind and sum(o.outcome is self.kind for o in self.seen) == 1:
            raise RuntimeError("the sink is down")


def _collect_loop_errors() -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    return errors


async def test_on_result_error_in_a_batch_is_raised_not_swallowed(sb: Sandbox) -> None:
    lost = _collect_loop_errors()
    raised: BaseException | None = None
    async with sb.client("fibo") as fibo:
        try:
            await fibo.send_bulk(NUMBERS, "hi", concurrency=4, on_result=Sink(Outcome.SENT))
        except RuntimeError as exc:
            raised = exc
    gc.collect()
    await asyncio.sleep(0)
    assert not lost, f"unretrieved task errors: {[c.get('message') for c in lost]}"
    assert raised is not None and "sink is down" in str(raised)


async def test_on_result_error_while_taking_input_leaves_no_batch_running(sb: Sandbox) -> None:
    # The first request hangs, so it is still in flight when the bad number is taken.
    sb.faults.add(Fault(kind="hang", provider="fibo", times=1))
    inputs = [*NUMBERS[:8], "not-a-number", *NUMBERS[8:]]
    async with sb.client("fibo", timeout=5.0) as fibo:
        with pytest.raises(RuntimeError, match="sink is down"):
            await fibo.send_bulk(inputs, "hi", concurrency=4, on_result=Sink(Outcome.INVALID))
        running = [t for t in asyncio.all_tasks() if "_send" in repr(t.get_coro())]
        for task in running:  # clean up before asserting, so the failure is the only effect
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    assert not running, f"{len(running)} batch task(s) still running after send_bulk raised"
