"""Red-team probes of ``smsvn.Journal`` campaigns, through the public API, on a real SQLite file
and a real PostgreSQL, with the simulator's outbox as the ground truth.

Each test asserts a promise of the README's "Campaigns that survive crashes" (or of the public
docstrings). Each was a finding (it failed on the code before its fix), unless marked "passes:
regression guard": those cover something no other test does and held when they were written.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import smsvn
from smsvn import errors
from smsvn.journal import _sqlite
from smsvn.models import DeliveryReport, DeliveryState, Message
from smsvn.phone import normalize
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.campaign.fleet import CONTENT, campaign_input, number
from tests.campaign.journals import (
    expire_resends,
    in_transaction,
    journal_url,
    outbox,
    postgres_dsn,
)
from tests.services import postgres_schema

__all__ = ["journal_url", "postgres_dsn"]

FAST = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)
LONE_SURROGATE: str = json.loads('"\\ud800"')
"""What ``json.loads`` makes of a JSON string holding ``"\\ud800"`` (a web form, an API)."""


async def _write_lock_free(path: str, after: float) -> bool:
    """Whether another process can take the SQLite file's write lock ``after`` seconds from
    now (time for the journal's thread to finish what it was doing)."""
    await asyncio.sleep(after)
    return not await in_transaction(path, "any")


# -- findings: SQLite's open add transaction ------------------------------------------------------


async def test_a_cancelled_add_leaves_the_journal_file_unlocked(tmp_path: Path) -> None:
    """An ``add`` cancelled (a request timeout, a task cancelled) while one of its segments is
    being written must not keep the journal's write lock: SQLite "serves any number of runner
    processes on one machine", and an add "streams" with a chunk per transaction.

    Another process holds the write lock for a moment (a runner's commit), so the add's first
    segment waits for it; the add is cancelled meanwhile. Its segment is then written in the
    journal's thread and the transaction left open for "the next segment" that never comes:
    the file stays locked for as long as the journal is open (every other runner waits 60 s,
    then fails with "database is locked"), and closing the journal rolls the segment back."""
    path = str(tmp_path / "campaigns.db")
    async with smsvn.Journal(path) as journal:
        campaign = await journal.campaign("cancelled-add")
        await campaign.add([], content=CONTENT)  # the text is recorded: no write before the rows
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's commit under way
            adding = asyncio.create_task(
                campaign.add([number(i) for i in range(40_001)], content=CONTENT)
            )
            await asyncio.sleep(0.5)  # the first segment waits for the lock in the thread
            adding.cancel()
            with pytest.raises(asyncio.CancelledError):
                await adding
            other.execute("ROLLBACK")  # the other process's commit ends
        finally:
            other.close()
        assert await _write_lock_free(path, after=1.5), (
            "a cancelled add keeps the journal file's write lock: every other runner is stuck"
        )


async def test_an_add_waiting_for_its_input_does_not_stall_other_runners(
    tmp_path: Path, sb: Sandbox
) -> None:
    """``add`` takes async iterables (a database cursor, a network stream). While it waits for
    the next items of its input, runners of the same journal file (other processes; here a
    second ``Journal`` of this process) must still be able to send.

    The add keeps its write transaction open from one segment to the next (up to five) "for the
    next segment": with a slow input the file's write lock is held for as long as the input
    takes, and every runner on the machine stops (past 60 s: "database is locked")."""
    path = str(tmp_path / "campaigns.db")
    more = asyncio.Event()

    async def slow_input() -> AsyncIterator[str]:
        for i in range(40_001):
            yield number(i)
        await more.wait()  # the source is slow for a while
        yield number(50_000)

    async with (
        smsvn.Journal(path) as importing,
        smsvn.Journal(path) as running,
        sb.client("fibo") as client,
    ):
        big = await importing.campaign("big-import")
        small = await running.campaign("small-run")
        await small.add([number(i) for i in range(5)], content=CONTENT)
        adding = asyncio.create_task(big.add(slow_input(), content=CONTENT))
        try:
            await asyncio.sleep(1.0)  # two segments read, the third is waiting for its input
            started = time.monotonic()
            run = asyncio.create_task(small.run(client))
            done, _ = await asyncio.wait({run}, timeout=4.0)
            waited = time.monotonic() - started
        finally:
            more.set()
            added = await adding
        report = await run
        assert added.added == 40_002
        assert report.accepted == 5
        assert done, f"a runner of another campaign waited {waited:.1f} s for an add's input"


async def test_a_failing_add_does_not_undo_what_another_add_reported_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two adds at once on one journal (an async web app adding for two requests): one fails
    (when written, a number no store could encode; now that one is recorded invalid, so the
    failure of a segment's rows -- a full disk, a constraint -- is made here), the other
    completes and reports every row added. What it reported added must be in the journal.

    The SQLite store shares one connection and keeps an add's transaction open across
    segments; the failing add's error rolls back that transaction, with the other add's
    segments written since its last commit. The other add still returns ``added=60,000``,
    and 20,000 of them are not there (nothing says so; the same input again adds them)."""
    path = str(tmp_path / "campaigns.db")
    more = asyncio.Event()

    async def numbers() -> AsyncIterator[str]:
        for i in range(40_001):
            yield number(i)
        await more.wait()
        for i in range(40_001, 60_000):
            yield number(i)

    async with smsvn.Journal(path) as journal:
        big = await journal.campaign("big")
        otp = await journal.campaign("otp")
        await big.add([], content=CONTENT)
        adding = asyncio.create_task(big.add(numbers(), content=CONTENT))
        try:
            await asyncio.sleep(1.0)
            write = _sqlite._add

            def failing(db: Any, campaign: int, *args: Any) -> Any:
                if campaign == otp_id:
                    raise sqlite3.OperationalError("database or disk is full")
                return write(db, campaign, *args)

            otp_id = otp._id
            monkeypatch.setattr(_sqlite, "_add", failing)
            with pytest.raises(sqlite3.OperationalError):
                await otp.add([Message("0912345678", "Ma OTP 1234")])
            monkeypatch.setattr(_sqlite, "_add", write)
        finally:
            more.set()
            added = await adding
        assert added.added == 60_000
        counts = await big.counts()
        assert counts.pending == added.added, (
            f"add reported {added.added} added; the journal has {counts.pending}"
        )


# -- findings: inputs and names a store cannot keep -----------------------------------------------


@pytest.mark.parametrize(
    "bad", ["0912\x00345678", LONE_SURROGATE], ids=["nul-byte", "lone-surrogate"]
)
async def test_an_input_that_is_not_a_number_is_recorded_invalid_on_every_store(
    journal_url: str, bad: str
) -> None:
    """ "invalid numbers and duplicates are recorded with their reason" and "every input ends in
    one state": a str that is not a number is ``invalid``, whatever characters it holds, and
    the numbers around it are added, on SQLite and PostgreSQL alike.

    A NUL byte: SQLite records it invalid, PostgreSQL fails the whole add (asyncpg
    ``CharacterNotInRepertoireError``), nothing of the segment added. A lone surrogate (what
    ``json.loads`` gives for ``"\\ud800"``): both stores fail with ``UnicodeEncodeError``, though
    the intake keys it (``surrogatepass``) and ``normalize`` refuses it cleanly."""
    with pytest.raises(errors.ValidationError):
        normalize(bad)
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("odd-input")
        added = await campaign.add([number(1), bad, number(2)], content=CONTENT)
        assert (added.read, added.added, added.invalid) == (3, 2, 1)
        invalid = [r async for r in campaign.recipients(state="invalid")]
        assert len(invalid) == 1 and invalid[0].error


@pytest.mark.parametrize("name", ["promo\x002026", f"promo{LONE_SURROGATE}"], ids=["nul", "lone"])
async def test_a_campaign_name_works_or_is_refused_alike_on_every_store(
    journal_url: str, name: str
) -> None:
    """``Journal.campaign(name)``: a name that passes its one check (``check_name``: a non-empty
    str of at most 200 characters) is a campaign on every store, or a ``ValidationError`` on
    every store. A NUL makes a campaign on SQLite and an asyncpg error on PostgreSQL; a lone
    surrogate a ``UnicodeEncodeError`` (SQLite) or asyncpg ``DataError`` (PostgreSQL)."""
    async with smsvn.Journal(journal_url) as journal:
        try:
            campaign = await journal.campaign(name)
        except errors.ValidationError:
            return
        assert campaign.name in await journal.campaigns()


# -- findings: reconciliation ---------------------------------------------------------------------


async def test_reconcile_settles_an_unknown_sent_with_diacritics_stripped(
    journal_url: str, sb: Sandbox
) -> None:
    """``campaign.reconcile(esms)`` "looks [unknowns] up in GetSmsSentData by number and
    text". A campaign run with ``strip_diacritics=True`` (an option of the eSMS client, and
    ``--strip-diacritics`` of ``smsvn campaign run``) sends the text without its diacritics;
    eSMS lists what it sent. reconcile compares the list with the journal's text, as added,
    so it never finds the message: the input stays ``unknown`` for good although eSMS lists
    it as sent."""
    text = "Khuyến mãi 20% cho khách hàng thân thiết"
    sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=3))
    async with smsvn.Journal(journal_url) as journal, sb.client("esms", retry=FAST) as esms:
        campaign = await journal.campaign("stripped")
        await campaign.add([number(i) for i in range(5)], content=text)
        await campaign.run(esms, concurrency=1, strip_diacritics=True)
        await expire_resends(journal_url)  # 18 hours later, nobody resent it
        await campaign.run(esms, strip_diacritics=True)
        unknown = [r.phone async for r in campaign.recipients(state="unknown")]
        assert len(unknown) == 1
        today = datetime.now(UTC)
        listed = {m.phone for m in await esms.sent_messages(today, today)}
        assert unknown[0] in listed  # eSMS lists it: it was sent
        assert await campaign.reconcile(esms) == 1
        assert (await campaign.counts()).unknown == 0


# -- findings: what recipients() lists -------------------------------------------------------------


async def test_recipients_are_listed_in_the_order_added(journal_url: str) -> None:
    """``campaign.recipients()`` (what ``smsvn campaign export`` writes) promised "every input,
    in the order added"; a repeated number (``duplicate``) is listed after the inputs of its
    segment instead, at another place on each store (SQLite: after the 8-to-128-row piece it
    was written with; PostgreSQL: at the end of its 20,000-row segment). The promise now says
    so; everything else is listed in the order added, on both stores."""
    inputs, _, _, _ = campaign_input(200)
    expected = []
    for item in inputs:
        try:
            expected.append(normalize(item))
        except errors.ValidationError:
            expected.append(item)
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("ordered")
        await campaign.add(inputs, content=CONTENT)
        listed = [(r.phone, r.state) async for r in campaign.recipients()]
    assert sorted(phone for phone, _ in listed) == sorted(expected)
    duplicates = Counter(phone for phone, state in listed if state == "duplicate")
    assert duplicates, "the input has repeated numbers"
    kept = [phone for phone, state in listed if state != "duplicate"]
    first_seen = []
    left = Counter(duplicates)
    for phone in reversed(expected):  # a duplicate is a later occurrence: drop those
        if left[phone]:
            left[phone] -= 1
        else:
            first_seen.append(phone)
    assert kept == list(reversed(first_seen))


# -- regression guards ----------------------------------------------------------------------------


async def _scripted(url: str) -> tuple[list[object], list[tuple[object, ...]]]:
    """One sequence of operations (adds of every kind, a run that loses answers, resolve,
    apply, a second run): what each step answered, and every input as listed."""
    inputs, _, _, _ = campaign_input(300)
    messages = [Message(number(i), f"Ma OTP {i}") for i in range(0, 40, 3)]
    messages += [Message(number(3), "Ma OTP 3"), Message(number(4), CONTENT)]
    messages += [Message("12", "not a number"), Message(number(7), "")]
    steps: list[object] = []
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        sb.faults.add(Fault(kind="drop_after", provider="fibo", route="send", times=3))
        async with smsvn.Journal(url) as journal, sb.client("fibo", retry=FAST) as fibo:
            campaign = await journal.campaign("differential")
            steps.append(await campaign.add(inputs[:150], content=CONTENT))
            steps.append(await campaign.add(messages))
            steps.append(await campaign.add(inputs, content=CONTENT))
            steps.append(await campaign.add(inputs, content="Another text"))
            steps.append(await campaign.add(iter(messages)))
            report = await campaign.run(fibo, concurrency=1)
            steps.append((report.taken, report.accepted, report.unknown_count))
            unknown = [r.phone async for r in campaign.recipients(state="unknown")]
            steps.append(unknown)
            steps.append(await campaign.resolve("failed", phones=unknown[:1]))
            steps.append(await campaign.resolve("pending", phones=unknown[1:2]))
            delivered = DeliveryReport(
                provider="fibo",
                message_id="m-1",
                phone=unknown[2],
                state=DeliveryState.DELIVERED,
                raw_status="0",
            )
            steps.append(await campaign.apply(delivered))
            report = await campaign.run(fibo)
            steps.append((report.taken, report.accepted))
            steps.append(await campaign.counts())
            listed = [
                (r.phone, r.state, r.content, r.attempts, r.error, r.provider)
                async for r in campaign.recipients()
            ]
            steps.append(sorted(outbox(sb, "fibo").items()))
    return steps, listed


async def test_sqlite_and_postgresql_answer_one_sequence_alike(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """passes: regression guard. The same scripted sequence on both stores gives the same
    answer at every step, the same counts, the same inputs in the same states (as a set: the
    order is the finding above) and the same outbox."""
    on_sqlite = await _scripted(str(tmp_path / "campaigns.db"))
    async with postgres_schema(postgres_dsn) as url:
        on_postgres = await _scripted(url)
    assert on_sqlite[0] == on_postgres[0]
    assert sorted(on_sqlite[1], key=repr) == sorted(on_postgres[1], key=repr)


async def test_inputs_added_while_two_journals_run_are_sent_once(
    journal_url: str, sb: Sandbox
) -> None:
    """passes: regression guard. Two runners (two ``Journal``s of one process, on one SQLite
    file or one PostgreSQL) run a campaign while the input is appended to (through one) and
    added again (through the other): each new input is picked up, and sent once."""
    sb.faults.add(Fault(kind="latency", provider="fibo", route="send", seconds=0.01))
    async with (
        smsvn.Journal(journal_url) as one,
        smsvn.Journal(journal_url) as two,
        sb.client("fibo") as fibo,
    ):
        first, second = await one.campaign("growing"), await two.campaign("growing")
        await first.add([number(i) for i in range(200)], content=CONTENT)
        runs = [asyncio.create_task(c.run(fibo, concurrency=4)) for c in (first, second)]
        await asyncio.sleep(0.1)
        appended = await second.add([number(i) for i in range(400)], content=CONTENT)
        again = await first.add([number(i) for i in range(400)], content=CONTENT)
        await asyncio.gather(*runs)
        await first.run(fibo)  # anything added after both had finished
        assert (appended.already, appended.added, again.added) == (200, 200, 0)
        assert outbox(sb, "fibo") == Counter({number(i): 1 for i in range(400)})
        assert (await first.counts()).sent == 400


@pytest.mark.parametrize("delay", [0.03, 0.09, 0.2])
async def test_an_esms_run_cancelled_while_marking_ahead_loses_and_repeats_nothing(
    journal_url: str, sb: Sandbox, delay: float
) -> None:
    """passes: regression guard. An eSMS run marks batches in flight ahead of a free slot;
    cancelled at any moment (between a mark and its slot, during a request, during a
    settle), it leaves nothing in flight, nothing ``sent`` that eSMS did not accept, and the
    resumed campaign sends each number exactly once."""
    sb.faults.add(Fault(kind="latency", provider="esms", route="send", seconds=0.02))
    async with smsvn.Journal(journal_url) as journal, sb.client("esms") as esms:
        campaign = await journal.campaign("cancel-ahead")
        await campaign.add([number(i) for i in range(300)], content=CONTENT)
        run = asyncio.create_task(campaign.run(esms, concurrency=8))
        await asyncio.sleep(delay)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        counts = await campaign.counts()
        assert counts.in_flight == 0 and counts.unknown == 0
        accepted = outbox(sb, "esms")
        sent = [r.phone async for r in campaign.recipients(state="sent")]
        assert all(phone in accepted for phone in sent)
        sb.faults.clear()
        await campaign.run(esms)
        assert outbox(sb, "esms") == Counter({number(i): 1 for i in range(300)})
        assert (await campaign.counts()).sent == 300


async def test_a_failed_add_lets_the_write_lock_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: a segment that failed (a full disk) was undone to its savepoint, but
    the write transaction stayed open until this journal's next call: every other runner of
    the file waited, then failed with "database is locked"."""
    path = str(tmp_path / "campaigns.db")
    async with smsvn.Journal(path) as journal:
        campaign = await journal.campaign("full-disk")

        def failing(*args: Any) -> Any:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(_sqlite, "_add", failing)
        with pytest.raises(sqlite3.OperationalError):
            await campaign.add([number(1), number(2)], content=CONTENT)
        other = sqlite3.connect(path, timeout=1.0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if it is held
            other.execute("ROLLBACK")
        finally:
            other.close()
