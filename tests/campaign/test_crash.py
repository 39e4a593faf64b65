"""Campaigns survive SIGKILL: three runner processes on one campaign, each killed at random
moments and started again until the campaign is done; the simulator, in this process, is the
ground truth. For each store (a real SQLite file, a real PostgreSQL) and each provider:

- each number reaches the simulator at most once (eSMS, which deduplicates by ``RequestId``:
  exactly once, with the batches in flight at a kill resent under their id);
- every input ends in exactly one state, none pending or in flight, invalid entries and
  repeats recorded as such;
- what the journal says was sent was accepted, with the message id the simulator gave it;
- ``unknown`` holds only batches of runners that were killed, at most as many of a runner as
  it could have in flight (its concurrency);
- running the finished campaign again sends nothing.

Runners die by SIGKILL from this test at random times and by their own hand at random steps of
their work (batches reserved; a batch marked in flight before its request; an answer received
before its outcome is recorded; an outcome recorded: see ``tests.campaign.runner``).

Size: ``SMSVN_CAMPAIGN_RECIPIENTS`` (default 20,000 for SpeedSMS, 100 numbers a request, and
1,000 for eSMS and Fibo, one a request, to keep ``make test`` short). The full-size proof:
``SMSVN_CAMPAIGN_RECIPIENTS=20000 .venv/bin/pytest tests/campaign``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter

import pytest

import smsvn
from smsvn.journal._store import State
from smsvn.sandbox import Sandbox
from tests.campaign.fleet import CONTENT, Fleet, Runner, campaign_input
from tests.campaign.journals import rows, store_of

SIZE = os.environ.get("SMSVN_CAMPAIGN_RECIPIENTS")
RUNNERS = 3
KILLS = 6
"""Kills the runners inflict on themselves in a run, about (the test adds its own, one every
1 to 2 s). Each kill costs a runner start (an interpreter and smsvn's imports): the kills,
more than the numbers, are what ``make test`` spends its time on here."""
BATCH = {"speedsms": 100, "esms": 1, "fibo": 1}
CONCURRENCY = {"speedsms": 2, "esms": 4, "fibo": 4}
RATE = {"speedsms": "20/1", "esms": "off", "fibo": "off"}


def size(provider: str) -> int:
    if SIZE:
        return int(SIZE)
    return 20_000 if BATCH[provider] > 1 else 1_000


async def run_to_the_end(
    fleet: Fleet, campaign: smsvn.journal.Campaign, *, batches: int, seed: int
) -> tuple[set[int], int]:
    """Keep ``RUNNERS`` runners working, killing them at random, until the campaign is done.
    Returns the runner ids that were killed and the number of kills."""
    rng = random.Random(seed)
    chance = KILLS / (batches * 4)
    live: list[Runner] = []
    killed: set[int] = set()
    kills = 0
    next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline, "the campaign did not finish in time"
        for runner in list(live):
            if runner.process.returncode is None:
                continue
            live.remove(runner)
            code = await runner.ended()
            if code == -signal.SIGKILL:
                kills += 1
                if runner.owner is not None:
                    killed.add(runner.owner)
            else:
                assert code in (0, 1), f"runner exit {code}: {list(runner.stderr)}"
        counts = await campaign.counts()
        if not counts.unsettled and not live:
            return killed, kills
        while counts.unsettled and len(live) < RUNNERS:
            live.append(await fleet.start(kill=chance))
        if live and time.monotonic() >= next_kill:
            victim = rng.choice(live)
            if victim.process.returncode is None:
                victim.process.send_signal(signal.SIGKILL)
            next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("provider", ["speedsms", "esms", "fibo"])
async def test_three_runners_killed_at_random_until_done(provider: str, journal_url: str) -> None:
    n = size(provider)
    inputs, valid, invalid, repeats = campaign_input(n)
    name = f"crash-{provider}"
    async with (
        Sandbox(speedsms_rate_limit=None, latency=0.01, delivery_delay=0.01) as sb,
        smsvn.Journal(journal_url) as journal,
    ):
        campaign = await journal.campaign(name)
        added = await campaign.add(inputs, content=CONTENT)
        assert (added.added, added.invalid, added.duplicates) == (n, invalid, repeats)
        fleet = Fleet(
            sb,
            journal=journal_url,
            campaign=name,
            provider=provider,
            concurrency=CONCURRENCY[provider],
            rate_limit=RATE[provider],
        )
        started = time.monotonic()
        killed, kills = await run_to_the_end(
            fleet, campaign, batches=max(1, n // BATCH[provider]), seed=n
        )
        elapsed = time.monotonic() - started
        assert kills >= 3, f"only {kills} kills: the run did not exercise crashes"

        # Each number reached the simulator at most once (eSMS: exactly once).
        accepted = Counter(r.phone for r in sb.outbox.for_provider(provider))
        assert accepted and max(accepted.values()) == 1, "a number was accepted twice"
        assert set(accepted) <= valid
        table = await rows(journal_url, name)
        by_state = Counter(State(r.state) for r in table)
        # Every input ends in exactly one state.
        assert len(table) == len(inputs)
        assert by_state[State.PENDING] == by_state[State.IN_FLIGHT] == 0
        assert by_state[State.INVALID] == invalid and by_state[State.DUPLICATE] == repeats
        assert by_state[State.SENT] + by_state[State.UNKNOWN] + by_state[State.FAILED] == n
        assert by_state[State.FAILED] == 0  # the simulator refuses none of these
        # What the journal says was sent was accepted, under the id of that very request (the
        # provider's, or the one the client sent: Fibo's smsGUID).
        ids = {r.phone: (r.message_id, r.request_id) for r in sb.outbox.for_provider(provider)}
        for row in table:
            if row.state == State.SENT:
                assert row.phone in accepted, f"{row.phone}: sent, yet never accepted"
                if row.message_id is not None:
                    assert row.message_id in ids[row.phone]
        # Unknown: only batches of killed runners, at most a runner's concurrency each.
        unknown = [r for r in table if r.state == State.UNKNOWN]
        batches_of: dict[int | None, set[int | None]] = {}
        for row in unknown:
            batches_of.setdefault(row.owner, set()).add(row.batch)
        for owner, held in batches_of.items():
            assert owner in killed, f"runner {owner} was not killed, yet left unknowns"
            assert len(held) <= CONCURRENCY[provider]
        if provider == "esms":
            assert not unknown, "eSMS resends under the RequestId: nothing stays unknown"
            assert set(accepted) == valid
            assert any(r.attempts > 1 for r in table), "no batch in flight at a kill was resent"

        # The finished campaign, run again, sends nothing.
        before, counts = len(sb.outbox), await campaign.counts()
        again = await fleet.start()
        assert await again.ended() == (1 if unknown else 0), list(again.stderr)
        assert len(sb.outbox) == before
        assert await campaign.counts() == counts
    print(
        f"{store_of(journal_url)} {provider}: {n:,} numbers, {kills} kills, "
        f"{len(unknown)} unknown, {fleet.started} runner starts, {elapsed:.1f} s"
    )
