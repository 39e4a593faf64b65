"""Campaigns on real taskiq workers: ``taskiq worker tests.taskiq.app:broker`` processes on a real
taskiq-redis broker (``RedisStreamBroker`` on the machine's Redis), sending through one shared
``RedisLimiter`` to the simulator in a process of its own, whose outbox is the ground truth.

- a campaign spread over two workers: each number accepted exactly once, both workers took
  part, and their summaries add up;
- the same task delivered twice (two identical messages, one task id) sends once, and a third
  delivery after the end sends nothing;
- a worker that SIGKILLs itself mid-task (after an answer arrived, before its outcome was
  recorded): its batches follow the journal's rules (what it had in flight is ``unknown``, never
  resent; the rest is sent by the surviving worker), and the broker hands its unacknowledged
  message to the survivor, where it sends nothing;
- the account's limit holds across the workers: no 1 s window over the limit in the requests
  their limiters let go, no window of the simulator's (0.95 s: the rest is for the trip) over it
  and no 429, and the limit is used (not merely respected by sending slowly).

The SpeedSMS limit is compressed to 10 requests a second (batches of 100 numbers).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from taskiq import AsyncTaskiqTask
from taskiq_redis import RedisStreamBroker

import smsvn
import smsvn.taskiq
from smsvn.journal._store import State
from smsvn.taskiq import CampaignWork
from tests.campaign.fleet import CONTENT, campaign_input
from tests.campaign.journals import rows
from tests.multiprocess.harness import max_in_window
from tests.taskiq.harness import (
    PERIOD,
    REQUESTS,
    SIMULATOR_WINDOW,
    Config,
    Simulator,
    Worker,
    arrivals,
    cleanup,
    drained,
    executing,
    listening,
    new_config,
    producer,
    stop_all,
    worker_env,
)

SIZE = 1_500
"""Numbers of a campaign (15 requests: about 1.5 s at the compressed limit)."""


async def new_campaign(journal: str, name: str, n: int = SIZE) -> tuple[set[str], int, int]:
    """A campaign of ``n`` distinct numbers (some invalid and repeated entries among them):
    (the valid numbers, invalid entries, repeats)."""
    inputs, valid, invalid, repeats = campaign_input(n)
    async with smsvn.Journal(journal) as book:
        campaign = await book.campaign(name)
        added = await campaign.add(inputs, content=CONTENT)
    assert (added.added, added.invalid, added.duplicates) == (n, invalid, repeats)
    return valid, invalid, repeats


async def results(broker: RedisStreamBroker, ids: list[str]) -> list[CampaignWork]:
    """Each task's summary, from the broker's result backend (typed again on the way back)."""
    found: list[CampaignWork] = []
    for task_id in ids:
        waiting = AsyncTaskiqTask(task_id, broker.result_backend, CampaignWork)
        # 60 s: a redelivered message waits out taskiq-redis's idle time and the survivor's
        # current task; a loaded CI machine once took longer than 30 s.
        result = await waiting.wait_result(check_interval=0.05, timeout=60)
        assert not result.is_err, result.error
        assert isinstance(result.return_value, CampaignWork)
        found.append(result.return_value)
    return found


def outbox_since(simulator: Simulator, before: int) -> Counter[str]:
    """How often each number was accepted since the outbox held ``before`` records."""
    return Counter(phone for phone, _, _ in simulator.report()["outbox"][before:])


async def counts(journal: str, name: str) -> smsvn.journal.Counts:
    async with smsvn.Journal(journal) as book:
        return await (await book.campaign(name, create=False)).counts()


async def test_a_campaign_spread_over_two_workers_sends_each_number_once(
    pool: list[Worker], pool_config: Config, simulator: Simulator, tmp_path: Path
) -> None:
    journal = str(tmp_path / "campaigns.db")
    valid, invalid, repeats = await new_campaign(journal, "spread")
    await listening(pool)
    before = len(simulator.report()["outbox"])
    async with producer(pool_config) as (broker, task):
        ids = await smsvn.taskiq.enqueue(
            task, campaign="spread", provider="speedsms", journal=journal, workers=2,
            concurrency=2, lease=5.0,
        )  # fmt: skip
        summaries = await results(broker, ids)
    await drained(pool_config)

    accepted = outbox_since(simulator, before)
    assert set(accepted) == valid
    assert max(accepted.values()) == 1, "a number was accepted twice"
    # Each message went to a different worker, and both sent part of the campaign.
    ran = {task_id: [w.name for w in pool if task_id in w.executed] for task_id in ids}
    assert sorted(name for names in ran.values() for name in names) == ["worker-0", "worker-1"]
    assert all(s.taken > 0 and s.sent > 0 for s in summaries), summaries
    assert sum(s.sent for s in summaries) == len(valid)
    assert all(s.finished and s.aborted is None for s in summaries), summaries
    assert sum(s.failed + s.unknown + s.skipped for s in summaries) == 0
    total = await counts(journal, "spread")
    assert (total.sent, total.invalid, total.duplicate, total.unsettled) == (
        len(valid), invalid, repeats, 0,
    )  # fmt: skip
    assert simulator.report()["rate_limited"] == 0


@pytest.mark.parametrize("journal_url", ["postgres"], indirect=True)
async def test_the_same_task_delivered_twice_sends_once(
    pool: list[Worker], pool_config: Config, simulator: Simulator, journal_url: str
) -> None:
    valid, _, _ = await new_campaign(journal_url, "twice")
    await listening(pool)
    before = len(simulator.report()["outbox"])
    task_id = uuid.uuid4().hex
    arguments = {
        "campaign": "twice", "provider": "speedsms", "journal": journal_url, "options": {},
        "concurrency": 2, "lease": 5.0, "claim_for": None,
    }  # fmt: skip
    async with producer(pool_config) as (broker, task):
        # Two identical messages (one task id), each taken by a worker: two runs at once.
        for _ in range(2):
            await task.kicker().with_task_id(task_id).kiq(**arguments)
        await drained(pool_config)
        assert [w.executed.count(task_id) for w in pool] == [1, 1]
        accepted = outbox_since(simulator, before)
        assert set(accepted) == valid
        assert max(accepted.values()) == 1, "a number was accepted twice"

        # Delivered once more after the end (a redelivery, a retry): it sends nothing.
        await task.kicker().with_task_id(task_id).kiq(**arguments)
        await drained(pool_config)
        (late,) = await results(broker, [task_id])
    assert sum(w.executed.count(task_id) for w in pool) == 3
    assert (late.taken, late.sent, late.requests, late.left) == (0, 0, 0, 0)
    assert outbox_since(simulator, before) == accepted
    assert (await counts(journal_url, "twice")).sent == len(valid)
    assert simulator.report()["rate_limited"] == 0


async def test_a_worker_killed_mid_task_leaves_its_batches_to_the_journal(
    redis_url: str, limiter_prefix: str, simulator: Simulator, tmp_path: Path
) -> None:
    journal = str(tmp_path / "campaigns.db")
    valid, _, _ = await new_campaign(journal, "killed")
    options = simulator.client_options["speedsms"]
    config = new_config(redis_url, limiter_prefix, idle_ms=1_500)
    # Seed 0 at a chance of 0.3: the doomed worker dies at its 4th answer, the answer received
    # and not yet recorded (another batch of its may be in flight too).
    doomed_config = dataclasses.replace(config, kill=0.3, moments=("answered",), seed=0)
    doomed = Worker(worker_env(doomed_config, "speedsms", options), "doomed")
    survivor = Worker(worker_env(config, "speedsms", options), "survivor")
    before = len(simulator.report()["outbox"])
    try:
        await listening([doomed, survivor])
        async with producer(config) as (broker, task):
            ids = await smsvn.taskiq.enqueue(
                task, campaign="killed", provider="speedsms", journal=journal, workers=2,
                concurrency=2, lease=5.0,
            )  # fmt: skip
            # The survivor finishes the campaign: its own task ends once nothing is left.
            started = time.monotonic()
            await executing([doomed, survivor])
            (lost,) = doomed.executed
            (own,) = [i for i in ids if i != lost]
            (mine,) = await results(broker, [own])
            finished = time.monotonic() - started
            # A rerun (say, a scheduled one) also lets taskiq-redis hand the dead worker's
            # unacknowledged message (idle for 1.5 s) to the survivor: both send nothing.
            (rerun,) = await smsvn.taskiq.enqueue(
                task, campaign="killed", provider="speedsms", journal=journal, workers=1,
                concurrency=2, lease=5.0,
            )  # fmt: skip
            again, redelivered = await results(broker, [rerun, lost])
            await drained(config)
            settled = time.monotonic() - started
        assert doomed.child_gone, doomed.tail()  # (--max-fails 1: its manager restarts none)
    finally:
        stop_all([doomed, survivor])
        cleanup(config)

    (owner,) = doomed.runners
    assert survivor.executed == [own, rerun, lost] or survivor.executed == [own, lost, rerun]
    table = await rows(journal, "killed")
    by_state = Counter(State(r.state) for r in table)
    assert by_state[State.PENDING] == by_state[State.IN_FLIGHT] == 0
    unknown = [r for r in table if r.state == State.UNKNOWN]
    sent = {r.phone for r in table if r.state == State.SENT}
    # What the dead worker had in flight is unknown (at most its concurrency in batches), and
    # only that: everything else was sent, by it before it died or by the survivor.
    assert unknown, "the worker died after an answer: that batch must be unknown"
    assert {r.owner for r in unknown} == {owner}
    assert len({r.batch for r in unknown}) <= 2
    assert sent | {r.phone for r in unknown} == valid
    # Nothing was accepted twice; the batch whose answer the dead worker never recorded was
    # accepted once and not resent; what it had not sent yet was not sent by anyone.
    accepted = outbox_since(simulator, before)
    assert max(accepted.values()) == 1, "a number was accepted twice"
    assert sent <= set(accepted)
    assert any(r.phone in accepted for r in unknown)
    assert set(accepted) - sent <= {r.phone for r in unknown}
    assert mine.finished and mine.unknown == 0 and mine.taken > 0
    assert (again.taken, redelivered.taken) == (0, 0)
    assert again.finished and redelivered.finished
    assert simulator.report()["rate_limited"] == 0
    print(
        f"{len(unknown)} unknown; the survivor finished after {finished:.1f} s, the rerun and "
        f"the redelivered message ended after {settled:.1f} s"
    )


async def test_the_account_limit_holds_across_workers(
    pool: list[Worker], pool_config: Config, simulator: Simulator, tmp_path: Path
) -> None:
    journal = str(tmp_path / "campaigns.db")
    valid, _, _ = await new_campaign(journal, "limit", 3_000)
    await listening(pool)
    before = len(simulator.report()["outbox"])
    async with producer(pool_config) as (broker, task):
        ids = await smsvn.taskiq.enqueue(
            task, campaign="limit", provider="speedsms", journal=journal, workers=2,
            concurrency=4, lease=5.0,
        )  # fmt: skip
        summaries = await results(broker, ids)
    await drained(pool_config)

    report = simulator.report()
    assert report["rate_limited"] == 0, "the simulator answered 429 for its window"
    # Every request the pool's limiters let go in the module's run (all tests that use the
    # pool, both workers) within the limit; every arrival (all workers) within the simulator's.
    taken = [t for w in pool for t in w.taken]
    assert len(taken) >= len(valid) // 100
    assert max_in_window(taken, PERIOD) <= REQUESTS
    assert max_in_window(arrivals(report["outbox"]), SIMULATOR_WINDOW) <= REQUESTS
    times = arrivals(report["outbox"][before:])
    assert len(times) == len(valid) // 100
    assert all(s.sent > 0 for s in summaries), "both workers sent"
    # And the limit is used, not merely respected by sending slowly.
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(f"{len(times)} requests at {rate:.1f} a second")
    assert rate >= 0.75 * REQUESTS / PERIOD, f"{rate:.1f} requests a second"
