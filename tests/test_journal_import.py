"""``campaign.add``, segment by segment, on a real SQLite file and a real PostgreSQL (each test
runs on both unless it is about SQLite's own records): an input added again, appended to,
continued another way after a common beginning (within a segment and past one), repeats within
a statement, a segment and across segments, ``Message`` items mixed with plain numbers, two
processes adding one input at once, and what SQLite does with a journal made before its
segment records and with a commit that fails.

A segment is ``CHUNK`` (20,000) inputs; SQLite writes plain numbers in statements of up to
``PIECE`` (128) rows, and commits every ``ADD_COMMIT_EVERY`` (5) segments.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Final

import pytest

import smsvn
from smsvn.journal import Added, Counts
from smsvn.journal import _sqlite as sqlite_store
from smsvn.journal._intake import CHUNK, Intake
from smsvn.models import Message
from tests.campaign.fleet import CONTENT, ROOT, campaign_input, number
from tests.campaign.journals import journal_url, postgres_dsn, store_of

__all__ = ["journal_url", "postgres_dsn"]


async def pending_phones(campaign: Any) -> list[str]:
    return [r.phone async for r in campaign.recipients(state="pending")]


async def in_order(items: Iterable[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


# -- the keys ------------------------------------------------------------------------------------


def test_the_keys_of_an_input_are_those_journals_already_hold() -> None:
    """The hash chain is what journals hold as keys: an input added again must get the same
    ones from any version (these were computed before segment records)."""
    items = ["0912345678", "+84 91 234 5678", "not a number", "x" * 100, "0912345678", "số", ""]
    chunk = Intake("Khuyen mai").chunk(items)
    assert chunk.segment == 7654116782691412756
    assert chunk.chains == [
        1561014531745558204, -9211607914242429387, -3248011880937552340, -6545013533143289049,
        2636651051954856327, 2836647755045717604, -1847376998093778741,
    ]  # fmt: skip
    assert [row[0] for run in chunk.runs for row in run.rows] == chunk.chains
    messages = [Message("0912345678", "Ma OTP 1234", request_id="r-1"), "a number without text", 7]
    chunk = Intake(None).chunk(messages)
    assert chunk.segment == -8223325896774863514
    assert chunk.chains == [5623874431184744293, 8350713449142775728, 8471890892213481455]


# -- the same input again --------------------------------------------------------------------------


SMALL: Final = 2_000
"""A segment's size in the tests that take it smaller (``small_segments``): the same cases
in a tenth of the rows (on PostgreSQL they took 9 and 8 s at 20,000 a segment)."""


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> int:
    """Segments of ``SMALL`` inputs for this test; their size."""
    monkeypatch.setattr("smsvn.journal._intake.CHUNK", SMALL)
    monkeypatch.setattr("smsvn.journal._campaign.CHUNK", SMALL)
    return SMALL


async def test_an_input_added_again_adds_nothing(journal_url: str, small_segments: int) -> None:
    size = small_segments * 9 // 4
    inputs, valid, invalid, repeats = campaign_input(size)  # three segments
    assert 2 * small_segments < len(inputs) < 3 * small_segments
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("again")
        first = await campaign.add(inputs, content=CONTENT)
        assert first == Added(
            read=len(inputs), added=len(valid), invalid=invalid, duplicates=repeats
        )
        if store_of(journal_url) == "sqlite":  # the segments were the small ones
            with sqlite3.connect(journal_url) as db:
                assert db.execute("SELECT count(*) FROM smsvn_segments").fetchone() == (3,)
        nothing = Added(read=len(inputs), already=len(inputs))
        assert await campaign.add(inputs, content=CONTENT) == nothing
        assert await campaign.add(iter(inputs), content=CONTENT) == nothing
        assert await campaign.add(in_order(inputs), content=CONTENT) == nothing  # type: ignore[arg-type]
        assert await campaign.counts() == Counts(
            pending=len(valid), invalid=invalid, duplicate=repeats
        )
        # The same numbers with another text start another chain: all of them again.
        other = await campaign.add(inputs, content="Another text")
        assert other == Added(
            read=len(inputs), added=len(valid), invalid=invalid, duplicates=repeats
        )
        assert (await campaign.counts()).pending == 2 * len(valid)
        phones = await pending_phones(campaign)
        assert phones == 2 * [number(i) for i in range(size)]


# -- appended to -----------------------------------------------------------------------------------


async def test_an_appended_input_adds_only_what_is_new(
    journal_url: str, small_segments: int
) -> None:
    seg = small_segments
    numbers = [number(i) for i in range(3 * seg)]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("appended")
        # Its last segment partial (a quarter of one), then longer, then the same, then a
        # prefix of it, then longer again past a segment boundary.
        steps = [
            (seg * 5 // 4, Added(read=seg * 5 // 4, added=seg * 5 // 4)),
            (seg * 3 // 2, Added(read=seg * 3 // 2, added=seg // 4, already=seg * 5 // 4)),
            (seg * 3 // 2, Added(read=seg * 3 // 2, already=seg * 3 // 2)),
            (seg, Added(read=seg, already=seg)),
            (seg + 1, Added(read=seg + 1, already=seg + 1)),
            (seg * 3 // 2 + 1, Added(read=seg * 3 // 2 + 1, added=1, already=seg * 3 // 2)),
            (3 * seg, Added(read=3 * seg, added=seg * 3 // 2 - 1, already=seg * 3 // 2 + 1)),
        ]
        for size, expected in steps:
            assert await campaign.add(numbers[:size], content=CONTENT) == expected, size
        assert await pending_phones(campaign) == numbers
        # Appended with numbers it has already: duplicates, and only those appended.
        more = [*numbers, number(10), "84" + number(3 * seg - 1)[1:], number(4 * seg)]
        assert await campaign.add(more, content=CONTENT) == Added(
            read=3 * seg + 3, added=1, duplicates=2, already=3 * seg
        )
        assert await campaign.add(more, content=CONTENT) == Added(
            read=3 * seg + 3, already=3 * seg + 3
        )
        assert await campaign.counts() == Counts(pending=3 * seg + 1, duplicate=2)


# -- a common beginning, continued another way -------------------------------------------------


async def test_another_continuation_of_a_beginning_adds_its_own_rows(journal_url: str) -> None:
    """A, B, C then A, B, D, E: D and E are added, C stays. The rows an input shares with one
    added before are its first ones, however the inputs went on."""
    n = [number(i) for i in range(10)]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("continued")
        steps = [
            ([n[0], n[1], n[2]], Added(read=3, added=3)),
            ([n[0], n[1], n[3], n[4]], Added(read=4, added=2, already=2)),
            ([n[0], n[1], n[2], n[5]], Added(read=4, added=1, already=3)),
            ([n[0], n[1], n[3], n[4], n[6]], Added(read=5, added=1, already=4)),
            ([n[0], n[1]], Added(read=2, already=2)),
            ([n[0], n[1], n[3]], Added(read=3, already=3)),
            ([n[0], n[1], n[2], n[5]], Added(read=4, already=4)),
            ([n[0], n[1], n[7]], Added(read=3, added=1, already=2)),
            ([n[0], n[8]], Added(read=2, added=1, already=1)),
            # Another continuation that repeats a number written another way: a new row, and
            # a duplicate; then the same again: nothing.
            ([n[0], n[1], "84" + n[2][1:]], Added(read=3, duplicates=1, already=2)),
            ([n[0], n[1], "84" + n[2][1:]], Added(read=3, already=3)),
            ([n[9], n[0], n[1]], Added(read=3, added=1, duplicates=2)),  # another beginning
        ]
        for items, expected in steps:
            assert await campaign.add(items, content=CONTENT) == expected, items
        assert await campaign.counts() == Counts(pending=10, duplicate=3)
        assert await pending_phones(campaign) == [
            n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9],
        ]  # fmt: skip


async def test_many_inputs_of_one_text_each_added_again(journal_url: str) -> None:
    """Every input of one text begins the same segment (its first chain is the text's): many
    inputs, each added again, add nothing, and one that begins as another did adds its own."""
    inputs = [[number(100 * k + i) for i in range(k % 7 + 1)] for k in range(200)]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("many")
        for items in inputs:
            assert await campaign.add(items, content=CONTENT) == Added(
                read=len(items), added=len(items)
            )
        for items in reversed(inputs):
            assert await campaign.add(items, content=CONTENT) == Added(
                read=len(items), already=len(items)
            )
        longer = [*inputs[99], *inputs[100]]
        assert await campaign.add(longer, content=CONTENT) == Added(
            read=len(longer), duplicates=len(inputs[100]), already=len(inputs[99])
        )
        assert await campaign.counts() == Counts(
            pending=sum(map(len, inputs)), duplicate=len(inputs[100])
        )


async def test_a_beginning_longer_than_a_segment_continued_another_way(journal_url: str) -> None:
    common = [number(i) for i in range(CHUNK + 100)]
    one = [number(100_000 + i) for i in range(600)]
    two = [number(200_000 + i) for i in range(700)]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("long")
        assert await campaign.add(common + one[:500], content=CONTENT) == Added(
            read=CHUNK + 600, added=CHUNK + 600
        )
        assert await campaign.add(common + two, content=CONTENT) == Added(
            read=CHUNK + 800, added=700, already=CHUNK + 100
        )
        assert await campaign.add(common + one, content=CONTENT) == Added(
            read=CHUNK + 700, added=100, already=CHUNK + 600
        )
        assert await campaign.add(common[: CHUNK - 5], content=CONTENT) == Added(
            read=CHUNK - 5, already=CHUNK - 5
        )
        assert await campaign.add(common + two + one, content=CONTENT) == Added(
            read=CHUNK + 1_400, duplicates=600, already=CHUNK + 800
        )
        assert await campaign.counts() == Counts(pending=CHUNK + 1_400, duplicate=600)
        assert await pending_phones(campaign) == common + one[:500] + two + one[500:]


# -- duplicates ------------------------------------------------------------------------------------


async def test_duplicates_within_and_across_segments(journal_url: str) -> None:
    first = [number(i) for i in range(15_000)]
    later = [number(i) for i in range(15_000, 30_000)]
    inputs = [
        *first,
        *first[:300],  # within segment 0, over three statements
        *first[7:8] * 3,  # the same number three times in a row
        *later,  # the rest of segment 0, and segment 1
        *first[:10],  # across segments
        "84" + number(20_500)[1:],  # within segment 1, written another way
        "not a number",
        number(20_500),
    ]
    repeated = Counter([*first[:300], *first[7:8] * 3, *first[:10], number(20_500), number(20_500)])
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("repeats")
        added = await campaign.add(inputs, content=CONTENT)
        assert added == Added(read=len(inputs), added=30_000, invalid=1, duplicates=315)
        assert await campaign.add(inputs, content=CONTENT) == Added(
            read=len(inputs), already=len(inputs)
        )
        dupes = [r async for r in campaign.recipients(state="duplicate")]
        assert Counter(r.phone for r in dupes) == repeated
        assert all(r.content == CONTENT and "duplicate" in (r.error or "") for r in dupes)
        assert await pending_phones(campaign) == first + later
        # The first of each number is the one sent: a run sends each number once.
        assert await campaign.counts() == Counts(pending=30_000, invalid=1, duplicate=315)


async def test_a_segment_of_nothing_but_duplicates(journal_url: str) -> None:
    numbers = [number(i) for i in range(CHUNK)]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("all repeats")
        assert await campaign.add(numbers + numbers, content=CONTENT) == Added(
            read=2 * CHUNK, added=CHUNK, duplicates=CHUNK
        )
        assert await campaign.add(numbers + numbers, content=CONTENT) == Added(
            read=2 * CHUNK, already=2 * CHUNK
        )
        assert await campaign.add(numbers + numbers + numbers[:1], content=CONTENT) == Added(
            read=2 * CHUNK + 1, duplicates=1, already=2 * CHUNK
        )


async def test_messages_and_numbers_of_one_text_the_first_of_each_is_kept(
    journal_url: str,
) -> None:
    """``Message`` items and plain numbers in one input: a number with the campaign's text is
    one message whichever way it came; the first one in the input is kept."""
    items: list[object] = [
        Message(number(1), CONTENT, request_id="m-1"),
        number(1),
        number(2),
        Message(number(2), CONTENT, request_id="m-2"),
        Message(number(3), "Its own text"),
        Message(number(3), "Its own text"),
        Message(number(4), CONTENT),
        Message("123", CONTENT),
        *[Message(number(i), f"text {i % 3}") for i in range(10, 310)],
        *[Message(number(i), f"text {i % 3}") for i in range(10, 60)],
        *[number(i) for i in range(10, 400)],  # with the campaign's text: new
    ]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("mixed")
        added = await campaign.add(items, content=CONTENT)  # type: ignore[arg-type]
        assert added == Added(read=len(items), added=4 + 300 + 390, invalid=1, duplicates=53)
        again = await campaign.add(items, content=CONTENT)  # type: ignore[arg-type]
        assert again == Added(read=len(items), already=len(items))
        dupes = [r.phone async for r in campaign.recipients(state="duplicate")]
        assert Counter(dupes) == Counter(
            [number(1), number(2), number(3), *(number(i) for i in range(10, 60))]
        )
    # The Message came first for number 1, the plain number for number 2.
    assert await request_ids(journal_url, number(1)) == [(0, "m-1"), (6, None)]
    assert await request_ids(journal_url, number(2)) == [(0, None), (6, "m-2")]


async def request_ids(url: str, phone: str) -> list[tuple[int, str | None]]:
    """(state, the request id it was given) of each row of ``phone``, in id order."""
    query = "SELECT state, given_id FROM smsvn_recipients WHERE phone = {} ORDER BY id"
    if store_of(url) == "sqlite":
        with sqlite3.connect(url) as db:
            return [(int(s), g) for s, g in db.execute(query.format("?"), (int(phone),))]
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        return [(int(s), g) for s, g in await db.fetch(query.format("$1"), int(phone))]
    finally:
        await db.close()


# -- two processes at once -------------------------------------------------------------------------


async def test_two_processes_adding_one_input_at_once_add_it_once(journal_url: str) -> None:
    """Each process adds the same input (three segments); between them, each input once."""
    await _race(journal_url, 5 * SMALL // 2)


async def test_two_sqlite_processes_taking_turns_between_commits_add_it_once(
    tmp_path: Path,
) -> None:
    """SQLite commits an add every five segments: with more than five the two processes may
    take turns between commits. Between them, each input once."""
    await _race(str(tmp_path / "campaigns.db"), 11 * SMALL // 2)


async def _race(journal_url: str, size: int) -> None:
    """Two processes add the same ``size`` inputs at once, in segments of ``SMALL``."""
    async with smsvn.Journal(journal_url) as journal:
        await journal.campaign("at once")  # the tables exist before the two race
    command = [
        sys.executable, "-m", "tests.campaign.adder", journal_url, "at once", str(size),
        str(SMALL),
    ]  # fmt: skip
    processes = [
        await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [(await p.communicate())[0].decode().split() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    inputs, valid, invalid, repeats = campaign_input(size)
    added, invalids, duplicates, already = ([int(out[i]) for out in outputs] for i in range(4))
    assert sum(added) == len(valid)
    assert sum(invalids) == invalid and sum(duplicates) == repeats
    assert sum(already) == len(inputs)  # what one added, the other found
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("at once")
        assert await campaign.counts() == Counts(
            pending=len(valid), invalid=invalid, duplicate=repeats
        )
        assert await pending_phones(campaign) == [number(i) for i in range(size)]


# -- SQLite's own --------------------------------------------------------------------------------


def _as_before_segment_records(path: Path) -> None:
    """Make a journal file as a journal before segment records made it: no records, a unique
    index of every row's segment and chain."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE smsvn_segments")
        db.execute("DROP TABLE smsvn_segments_before")
        db.execute(
            "CREATE UNIQUE INDEX smsvn_recipients_key ON smsvn_recipients (campaign, seg, chain)"
        )


async def test_a_journal_made_before_segment_records_stays_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "before.db"
    inputs, valid, invalid, repeats = campaign_input(30_000)
    async with smsvn.Journal(str(path)) as journal:
        campaign = await journal.campaign("before")
        await campaign.add(inputs[:25_000], content=CONTENT)
        await campaign.add([number(i) for i in range(5)], content="Another text")
    _as_before_segment_records(path)
    async with smsvn.Journal(str(path)) as journal:
        campaign = await journal.campaign("before")
        assert await campaign.add(inputs[:25_000], content=CONTENT) == Added(
            read=25_000, already=25_000
        )
        appended = await campaign.add(inputs, content=CONTENT)
        assert appended.already == 25_000 and appended.read == len(inputs)
        assert await campaign.add(inputs, content=CONTENT) == Added(
            read=len(inputs), already=len(inputs)
        )
        assert await campaign.add([number(i) for i in range(6)], content="Another text") == (
            Added(read=6, added=1, already=5)
        )
        assert await campaign.counts() == Counts(
            pending=len(valid) + 6, invalid=invalid, duplicate=repeats
        )
    with sqlite3.connect(path) as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "smsvn_recipients_key" not in indexes


async def test_a_failed_commit_fails_the_add_and_the_same_add_again_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit after every ``ADD_COMMIT_EVERY`` segments goes on while the next segment is
    read: when it fails (a full disk), what it held is gone and the add raises; the same add
    again adds what is missing."""
    submit = sqlite_store._Worker.submit

    def full_disk(self: Any, job: Callable[[sqlite3.Connection], Any], urgent: bool = False) -> Any:
        if job.__name__ != "commit":  # an add's commit, queued on its own
            return submit(self, job, urgent)
        return submit(self, lambda db: job(_FullDisk(db)), urgent)

    every = sqlite_store.ADD_COMMIT_EVERY
    numbers = [number(i) for i in range((every + 1) * CHUNK + 10)]
    async with smsvn.Journal(str(tmp_path / "full.db")) as journal:
        campaign = await journal.campaign("full")
        monkeypatch.setattr(sqlite_store._Worker, "submit", full_disk)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await campaign.add(numbers, content=CONTENT)
        monkeypatch.undo()
        # The failed commit held the first segments, and the add stopped at the next.
        assert await campaign.counts() == Counts()
        assert await campaign.add(numbers, content=CONTENT) == Added(
            read=len(numbers), added=len(numbers)
        )
        assert await campaign.add(numbers, content=CONTENT) == Added(
            read=len(numbers), already=len(numbers)
        )
        assert await pending_phones(campaign) == numbers


class _FullDisk:
    """A connection whose commit fails as on a full disk: rolled back."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)
