"""SQLite keeps a batch of new rows as one row of its own (``smsvn_batches``): a claim, its mark
in flight and its outcome write that row, not the batch's hundred rows. These tests pin that
layout and what it must not change: single-row reads (pages, exports, reconciliation) see every
row's state, the fence holds on a batch spread onto its rows, and a journal made before batch
rows (no ``again`` column, no claim cursor) upgrades and finishes its campaign without sending
anything twice.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import smsvn
from smsvn.bulk import Outcome
from smsvn.journal._runner import Runner, Source
from smsvn.journal._store import State
from smsvn.sandbox import Sandbox
from tests.campaign.fleet import CONTENT, number
from tests.campaign.journals import rows


def _table(path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(query))


async def _runner(journal: smsvn.Journal, campaign: Any, client: Any) -> tuple[Runner, Source]:
    """A started runner of ``campaign`` and its source of batches (one content, no Failover)."""
    runner = Runner(journal._store, campaign._id, lease=30)
    await runner.start()
    source = Source(runner, client, None, stage=0, fresh=True, options={})
    source.prepare([CONTENT])
    return runner, source


async def test_a_claimed_batch_is_one_row_and_its_rows_are_untouched(
    tmp_path: Path, sb: Sandbox
) -> None:
    path = tmp_path / "j.db"
    async with smsvn.Journal(str(path)) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("layout")
        await campaign.add([number(i) for i in range(250)], content=CONTENT)
        runner, source = await _runner(journal, campaign, client)
        claims = await source.claim(3)
        assert [c.size for c in claims] == [100, 100, 50]
        assert _table(path, "SELECT COUNT(*) FROM smsvn_batches") == [(3,)]
        # The rows themselves are as they were added: pending, held by nobody.
        assert _table(path, "SELECT state, COUNT(*) FROM smsvn_recipients WHERE owner IS NULL "
                      "GROUP BY state") == [(0, 250)]  # fmt: skip
        first = claims[0]
        assert await source.depart(first)
        result = await source.send(first.numbers, CONTENT, None)
        assert await source.settle(first, result, None) is Outcome.SENT
        assert _table(path, "SELECT COUNT(*) FROM smsvn_recipients WHERE state != 0") == [(0,)]
        counts = await campaign.counts()
        assert (counts.sent, counts.pending) == (100, 150)
        # A page of single rows spreads the batch rows (live ones too) onto their rows ...
        sent = [r.phone async for r in campaign.recipients(state="sent")]
        assert sorted(sent) == sorted(first.numbers)
        assert _table(path, "SELECT COUNT(*) FROM smsvn_batches") == [(0,)]
        # ... and the reserved batches go on through the rows, fenced as before.
        for claim in claims[1:]:
            assert await source.depart(claim)
            result = await source.send(claim.numbers, CONTENT, None)
            assert await source.settle(claim, result, None) is Outcome.SENT
        await runner.stop()
        assert (await campaign.counts()).sent == 250
    assert Counter(State(r.state) for r in await rows(str(path), "layout")) == {State.SENT: 250}
    assert max(Counter(m.phone for m in sb.outbox.for_provider("speedsms")).values()) == 1


async def test_a_batch_row_of_a_stopped_runner_is_swept_as_its_rows_would_be(
    tmp_path: Path, sb: Sandbox
) -> None:
    """A runner stops with one batch in flight and one reserved: the next sweep makes the first
    unknown and frees the second, which the next run sends; the unknown is never resent."""
    path = tmp_path / "j.db"
    async with smsvn.Journal(str(path)) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("swept")
        await campaign.add([number(i) for i in range(200)], content=CONTENT)
        runner, source = await _runner(journal, campaign, client)
        in_flight, reserved = await source.claim(2)
        assert await source.depart(in_flight)
        await runner.stop()  # as if killed: nothing settled, nothing handed back
        report = await campaign.run(client)
        assert report.accepted == 100
        counts = await campaign.counts()
        assert (counts.sent, counts.unknown, counts.pending) == (100, 100, 0)
        unknown = {r.phone async for r in campaign.recipients(state="unknown")}
        assert unknown == set(in_flight.numbers)
    assert {m.phone for m in sb.outbox.for_provider("speedsms")} == set(reserved.numbers)


def _downgrade(path: Path) -> None:
    """The journal file as a version before batch rows left it: batch rows spread onto their
    rows, no ``smsvn_batches``, no ``again`` column or index, no claim cursor."""
    from smsvn.journal._sqlite import spread

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        spread(db, None)
        db.execute("DROP TABLE smsvn_batches")
        db.execute("DROP INDEX smsvn_recipients_again")
        db.execute("ALTER TABLE smsvn_recipients DROP COLUMN again")
        db.execute("ALTER TABLE smsvn_campaigns DROP COLUMN claimed")
        db.execute("COMMIT")
    finally:
        db.close()


async def test_a_journal_made_before_batch_rows_finishes_its_campaign(
    tmp_path: Path, sb: Sandbox
) -> None:
    """Part of a campaign sent, one batch handed back (a refusal that proves nothing left) and
    one left in flight by a runner that died, in the old layout: the upgraded journal sends
    each number that was not sent exactly once and never resends the unknown batch."""
    path = tmp_path / "old.db"
    inputs = [number(i) for i in range(1_000)]
    async with smsvn.Journal(str(path)) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("old")
        await campaign.add(inputs, content=CONTENT)
        runner, source = await _runner(journal, campaign, client)
        sent, handed, lost = await source.claim(3)
        assert await source.depart(sent)
        result = await source.send(sent.numbers, CONTENT, None)
        assert await source.settle(sent, result, None) is Outcome.SENT
        await source.release([handed])
        assert await source.depart(lost)
        await runner.stop()
    _downgrade(path)
    columns = {c[1] for c in _table(path, "PRAGMA table_info(smsvn_recipients)")}
    assert "again" not in columns
    async with smsvn.Journal(str(path)) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("old")
        report = await campaign.run(client)
        assert report.accepted == 800
        counts = await campaign.counts()
        assert (counts.sent, counts.unknown, counts.pending, counts.in_flight) == (900, 100, 0, 0)
        assert {r.phone async for r in campaign.recipients(state="unknown")} == set(lost.numbers)
        assert (await campaign.run(client)).accepted == 0
    accepted = Counter(m.phone for m in sb.outbox.for_provider("speedsms"))
    assert max(accepted.values()) == 1
    assert set(accepted) == set(inputs) - set(lost.numbers)


OTHER = "Uu dai rieng cho thanh vien: giam 10% den het thang. Tu choi: TC"


async def _mixed(journal: smsvn.Journal) -> tuple[Any, list[tuple[str, list[str]]]]:
    """A campaign whose input switches content and holds messages of their own text; and the
    batches (of 100 at most) a claim must make of it, in order, as (text, numbers)."""
    campaign = await journal.campaign("mixed")
    parts: list[tuple[str, list[str]]] = []
    at = 0

    async def shared(count: int, text: str) -> None:
        nonlocal at
        numbers = [number(at + i) for i in range(count)]
        at += count
        await campaign.add(numbers, content=text)
        parts.extend((text, numbers[i : i + 100]) for i in range(0, count, 100))

    async def own(count: int) -> None:
        nonlocal at
        messages = [smsvn.Message(number(at + i), f"Ma cua ban: {i}") for i in range(count)]
        at += count
        await campaign.add(messages)
        parts.extend((m.content, [m.to]) for m in messages)

    await shared(150, CONTENT)
    await own(3)
    await shared(30, OTHER)
    await shared(120, CONTENT)
    await own(2)
    await shared(100, OTHER)
    return campaign, parts


async def _claimed(source: Source, per_claim: int) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    while claims := await source.claim(per_claim):
        found += [(c.content, c.numbers) for c in claims]
    return found


async def test_a_claim_cuts_new_rows_into_runs_of_one_content(
    tmp_path: Path, sb: Sandbox, monkeypatch: Any
) -> None:
    """Runs of one shared content up to a batch each, a message of its own text alone, in input
    order; every number once, with its text, when the rows were freed and are claimed again;
    and the same batches when new rows are read row by row (the path taken if SQLite's
    concatenation ever lost the rows' order)."""
    from smsvn.journal import _sqlite

    for row_by_row in (False, True):
        if row_by_row:
            monkeypatch.setattr(_sqlite, "_fresh_run", lambda *args: None)
        path = tmp_path / f"{row_by_row}.db"
        async with smsvn.Journal(str(path)) as journal, sb.client("speedsms") as client:
            campaign, expected = await _mixed(journal)
            for per_claim in (1, 3, 50):
                runner, source = await _runner(journal, campaign, client)
                found = await _claimed(source, per_claim)
                if per_claim == 1:  # new rows: batch rows, in input order
                    assert found == expected
                    sizes = _table(path, "SELECT size FROM smsvn_batches ORDER BY lo")
                    assert [len(n) for _, n in expected] == [s for (s,) in sizes]
                else:  # freed rows, claimed again row by row (grouped by content)
                    assert all(len(n) <= 100 for _, n in found)
                    assert sorted((t, x) for t, n in found for x in n) == sorted(
                        (t, x) for t, n in expected for x in n
                    )
                await runner.stop()  # its reserved batches are freed for the next runner
                await runner.sweep()
                assert (await campaign.counts()).pending == 405


async def test_a_stored_number_of_fewer_digits_keeps_its_canonical_text(
    tmp_path: Path, sb: Sandbox
) -> None:
    """The claim's fast text ("0" and the stored digits) holds only for nine-digit numbers;
    another (say, a future numbering plan stored by another version) keeps ``phone_text``."""
    path = tmp_path / "j.db"
    async with smsvn.Journal(str(path)) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("short")
        await campaign.add([number(i) for i in range(3)], content=CONTENT)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE smsvn_recipients SET phone = 12345 WHERE id = (SELECT MIN(id) "
                       "FROM smsvn_recipients)")  # fmt: skip
        runner, source = await _runner(journal, campaign, client)
        (claim,) = await source.claim(1)
        assert claim.numbers == ["0000012345", number(1), number(2)]
        await runner.stop()


_KEEP_ENDS = (
    "CASE id WHEN MIN(id) OVER () THEN 0 WHEN MAX(id) OVER () THEN 2 ELSE 1 END, id % 7, id "
    "LIMIT -1)"
)
"""An order that keeps a run's first and last rows where they are and shuffles the rest."""


async def test_a_concatenation_out_of_id_order_is_read_row_by_row(
    tmp_path: Path, sb: Sandbox, monkeypatch: Any
) -> None:
    """The claim checks that SQLite concatenated a run in id order (else a batch row's range
    would not be its rows): a run read in another order, even one with its first and last rows
    in place, is read again row by row, and the batches are the same."""
    from smsvn.journal import _sqlite

    shuffled = _sqlite._FRESH_RUN.replace(
        "FROM (\n  SELECT id, phone, content", "FROM (SELECT * FROM (\n  SELECT id, phone, content"
    ).replace("  ORDER BY id LIMIT :limit)", "  ORDER BY id LIMIT :limit) ORDER BY " + _KEEP_ENDS)
    assert shuffled != _sqlite._FRESH_RUN
    seen: list[bool] = []
    fresh_run = _sqlite._fresh_run

    def checked(*args: Any) -> Any:
        run = fresh_run(*args)
        seen.append(run is None)
        return run

    monkeypatch.setattr(_sqlite, "_FRESH_RUN", shuffled)
    monkeypatch.setattr(_sqlite, "_fresh_run", checked)
    async with smsvn.Journal(str(tmp_path / "j.db")) as journal, sb.client("speedsms") as client:
        campaign, expected = await _mixed(journal)
        runner, source = await _runner(journal, campaign, client)
        # A claim of no batches, or of batches of no numbers, reserves nothing.
        for size, count in ((100, 0), (0, 3)):
            assert await journal._store.claim(
                campaign._id, runner.id, batch_size=size, batches=count, first_token=10**6,
                provider="speedsms", tier=0, fresh=True,
            ) == []  # fmt: skip
        assert await _claimed(source, 1) == expected
        assert seen and all(seen)  # every run's concatenation was refused
        await runner.stop()
