"""Fencing: a runner paused past its lease (SIGSTOP) can neither resend nor overwrite.

Runner A works slowly (the simulator answers after 0.4 s), so that when it is paused it holds
batches in flight (their requests at the simulator) and batches reserved but not yet sent. Its
lease runs out; runner B starts, takes over (what A had in flight becomes ``unknown``, or for
eSMS a resend under the same ``RequestId``; what A had reserved is B's to send) and finishes the
campaign. Then A is woken (SIGCONT): its requests' answers arrive, but its outcomes are refused
(the rows are no longer held by A's claim), it sends none of the batches it had reserved (B
took them), and it stops with "lease ran out". The simulator shows each number accepted at most
once (eSMS: exactly once: A's and B's copies carry one ``RequestId``), and the journal keeps
B's account, not A's.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

import smsvn
from smsvn.journal._store import State
from smsvn.sandbox import Fault, Sandbox
from tests.campaign.fleet import CONTENT, Fleet, campaign_input
from tests.campaign.journals import in_transaction, rows, tagged

LEASE = 1.5
SIZE = {"speedsms": 1_500, "esms": 150}
CONCURRENCY = {"speedsms": 3, "esms": 6}


@pytest.mark.parametrize("provider", ["speedsms", "esms"])
async def test_a_paused_runner_can_neither_resend_nor_overwrite(
    provider: str, journal_url: str
) -> None:
    inputs, valid, _, _ = campaign_input(SIZE[provider])
    name = f"fence-{provider}"
    async with (
        Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb,
        smsvn.Journal(journal_url) as journal,
    ):
        campaign = await journal.campaign(name)
        await campaign.add(inputs, content=CONTENT)
        slow = sb.faults.add(Fault(kind="latency", provider=provider, route="send", seconds=0.4))
        fleet = Fleet(
            sb,
            journal=journal_url,
            campaign=name,
            provider=provider,
            concurrency=CONCURRENCY[provider],
            lease=LEASE,
        )
        a = await fleet.start(journal=tagged(journal_url, "fence-a"))
        owner = await a.registered()
        # Pause A while it holds batches in flight (requests at the simulator), but not inside
        # one of its ~1 ms writes: paused there, it would hold the journal's write lock (the
        # file's, SQLite; its rows', PostgreSQL) and every other runner would wait for it.
        async with asyncio.timeout(20):
            while True:
                held = [r for r in await rows(journal_url, name) if r.owner == owner]
                if any(r.state == State.IN_FLIGHT for r in held) and len(sb.outbox) > 0:
                    a.process.send_signal(signal.SIGSTOP)
                    await asyncio.sleep(0.05)
                    if not await in_transaction(journal_url, "fence-a"):
                        break
                    a.process.send_signal(signal.SIGCONT)
                await asyncio.sleep(0.01)
        paused = time.monotonic()
        held = [r for r in await rows(journal_url, name) if r.owner == owner]
        in_flight = {r.phone for r in held if r.state == State.IN_FLIGHT}
        reserved = {r.phone for r in held if r.state == State.PENDING}
        assert None not in in_flight | reserved
        assert in_flight
        await asyncio.sleep(max(0.0, LEASE + 0.3 - (time.monotonic() - paused)))
        sb.faults.remove(slow)

        b = await fleet.start()
        assert await b.ended() in (0, 1), list(b.stderr)
        assert not [line for line in b.stderr if "rror" in line], list(b.stderr)
        after_b = await rows(journal_url, name)
        a.process.send_signal(signal.SIGCONT)
        assert await a.ended() == 1, list(a.stderr)
        assert any("lease ran out" in line for line in a.stderr), list(a.stderr)
        await sb.settle()

        accepted = Counter(r.phone for r in sb.outbox.for_provider(provider))
        assert max(accepted.values()) == 1, "a number was accepted twice"
        final = await rows(journal_url, name)
        # A overwrote nothing: the journal is as B left it.
        assert final == after_b
        state = {r.phone: State(r.state) for r in final if r.state != State.DUPLICATE}
        assert not any(s in (State.PENDING, State.IN_FLIGHT) for s in state.values())
        if provider == "esms":
            # A's batches in flight were resent by B under the same RequestId: once each.
            assert set(accepted) == valid
            assert all(state[p] == State.SENT for p in in_flight)
        else:
            # A's batches in flight are unknown, though A's requests got through and A got
            # their answers: its outcome came after its claim had lapsed.
            assert all(state[p] == State.UNKNOWN for p in in_flight)
            assert in_flight & set(accepted), "A's requests in flight never reached the simulator"
        # What A had reserved, B sent (A did not send it when it woke).
        assert all(state[p] == State.SENT for p in reserved)
        sender = {r.owner for r in final if r.phone in reserved and r.state != State.DUPLICATE}
        assert sender <= {await b.registered()}
