"""The advertising records (what ``smsvn.advertising``'s guard remembers): every test runs on
each store: in memory, in a journal's SQLite file and in a journal's PostgreSQL (a schema of
the test's own, dropped afterwards; skipped without PostgreSQL, a failure under ``CI``).

The caps are checked under contention: tasks of one process, and two real processes (spawned)
reserving the same numbers at once through one SQLite file or one PostgreSQL database, where a
reservation that is not atomic passes the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import sqlite3
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import smsvn
import smsvn.advertising._postgres as postgres_records
import smsvn.advertising._sqlite as sqlite_records
from smsvn.advertising._memory import MemoryRecords
from smsvn.advertising._postgres import PostgresRecords
from smsvn.advertising._records import CHANNELS, KINDS, AdEvent, Records
from smsvn.advertising._sources import records_for
from smsvn.advertising._sqlite import SqliteRecords
from smsvn.errors import ValidationError
from tests.services import postgres_schema

AD = "shop abc"
"""An advertiser in its normal form (as the stores keep it, and give it back in events)."""
CTX = multiprocessing.get_context("spawn")


def number(i: int) -> str:
    """The ``i``-th test number (canonical: ``09`` + 8 digits)."""
    return f"09{i:08d}"


@contextlib.asynccontextmanager
async def fresh_journal_url(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh journal of ``store``: a SQLite file, or a PostgreSQL schema of its own."""
    if store == "sqlite":
        yield str(tmp_path / "journal.db")
        return
    async with postgres_schema(request.getfixturevalue("postgres_dsn"), "smsvn_test_ad_") as url:
        yield url


@contextlib.asynccontextmanager
async def open_records(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Records]:
    """Open records of ``store`` (a journal's stay in its journal, open meanwhile)."""
    if store == "memory":
        memory = MemoryRecords()
        await memory.open()
        yield memory
        await memory.close()
        return
    async with (
        fresh_journal_url(store, request, tmp_path) as url,
        smsvn.Journal(url) as journal,
    ):
        kept = records_for(journal)
        await kept.open()
        yield kept
        await kept.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def records(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Records]:
    """Open records of each store."""
    async with open_records(request.param, request, tmp_path) as kept:
        yield kept


async def reserve(
    records: Records, phones: Sequence[str], *, cap: int, at: float = 1000.0, **more: Any
) -> list[int | None]:
    options: dict[str, Any] = {"since": None, **more}
    return await records.reserve(AD, "sent", "sms", phones, at=at, cap=cap, **options)


# -- reservations ---------------------------------------------------------------------------


async def test_reserve_gives_ids_up_to_the_cap_then_none(records: Records) -> None:
    phones = [number(1), number(2)]
    first = await reserve(records, phones, cap=2)
    second = await reserve(records, phones, cap=2)
    assert all(isinstance(i, int) for i in first + second)
    assert len(set(first + second)) == 4
    assert await reserve(records, phones, cap=2) == [None, None]
    # A higher cap lets more through; cap 0 lets nothing.
    assert None not in await reserve(records, phones, cap=3)
    assert await reserve(records, [number(3)], cap=0) == [None]
    assert await records.count(AD, "sent", "sms", [*phones, number(3)], since=None) == {
        number(1): 3,
        number(2): 3,
    }
    assert await reserve(records, [], cap=1) == []


async def test_a_number_repeated_in_one_reserve_counts_each_time(records: Records) -> None:
    ids = await reserve(records, [number(1), number(2), number(1), number(1)], cap=2)
    assert ids[3] is None and None not in ids[:3]
    assert len(set(ids[:3])) == 3
    assert await records.count(AD, "sent", "sms", [number(1)], since=None) == {number(1): 2}


async def test_a_large_reserve_is_right_for_every_number(records: Records) -> None:
    """More numbers than one transaction takes (the stores reserve in slices), each repeated
    far apart: every number gets its places, in the order given, and not one more."""
    phones = [number(i) for i in range(2_500)]
    given = [*phones, *reversed(phones), *phones[::3]]
    ids = await reserve(records, given, cap=2)
    won = [i for i in ids if i is not None]
    assert len(won) == len(set(won)) == 2 * len(phones)
    assert None not in ids[: 2 * len(phones)] and set(ids[2 * len(phones) :]) == {None}
    counts = await records.count(AD, "sent", "sms", phones, since=None)
    assert counts == dict.fromkeys(phones, 2)


async def test_only_events_later_than_since_count(records: Records) -> None:
    phone = [number(7)]
    await records.record(AD, "sent", "sms", phone, at=100.0)
    await records.record(AD, "sent", "sms", phone, at=200.0)
    # Both count from the start; from 150, one; at 200 exactly, none (later than since).
    assert await reserve(records, phone, cap=2, at=300.0) == [None]
    assert await reserve(records, phone, cap=1, at=300.0, since=150.0) == [None]
    assert await records.count(AD, "sent", "sms", phone, since=199.5) == {number(7): 1}
    assert await records.count(AD, "sent", "sms", phone, since=200.0) == {}
    assert await records.count(AD, "sent", "sms", phone, since=None) == {number(7): 2}
    ids = await reserve(records, phone, cap=1, at=400.0, since=200.0)
    assert ids != [None]
    assert await reserve(records, phone, cap=1, at=401.0, since=200.0) == [None]


async def test_caps_are_per_advertiser_channel_and_kind(records: Records) -> None:
    phone = [number(5)]
    assert await reserve(records, phone, cap=1) != [None]
    assert await reserve(records, phone, cap=1) == [None]
    assert await records.reserve("other", "sent", "sms", phone, at=1.0, since=None, cap=1) != [None]
    assert await records.reserve(AD, "sent", "call", phone, at=1.0, since=None, cap=1) != [None]
    assert await records.reserve(AD, "registration", "sms", phone, at=1.0, since=None, cap=1) != [
        None
    ]


async def test_forget_gives_a_reservation_back(records: Records) -> None:
    phones = [number(1), number(2)]
    ids = await reserve(records, phones, cap=1)
    assert await reserve(records, phones, cap=1) == [None, None]
    assert ids[0] is not None
    await records.forget([ids[0]])
    await records.forget([ids[0], 999_999])  # twice, and an unknown id: nothing happens
    again = await reserve(records, phones, cap=1)
    assert again[0] is not None and again[0] != ids[0] and again[1] is None
    await records.forget([])


async def test_concurrent_tasks_never_pass_the_cap(records: Records) -> None:
    phones = [number(i) for i in range(10)]

    async def one() -> list[int | None]:
        return await reserve(records, random.sample(phones, len(phones)), cap=3)

    results = await asyncio.gather(*(one() for _ in range(12)))
    taken = [i for ids in results for i in ids if i is not None]
    assert len(taken) == len(set(taken)) == 30
    counts = await records.count(AD, "sent", "sms", phones, since=None)
    assert counts == dict.fromkeys(phones, 3)


# -- record, latest, events, prune ----------------------------------------------------------


async def test_record_and_latest(records: Records) -> None:
    a, b, c = number(1), number(2), number(3)
    ids = await records.record(AD, "consent", "sms", [a, b, a], at=10.0, detail="form")
    assert len(set(ids)) == 3
    await records.record(AD, "refusal", "sms", [a], at=20.0, detail="TC")
    await records.record(AD, "consent", "sms", [a], at=15.0)  # the latest of two
    await records.record(AD, "refusal", "call", [b], at=30.0)
    await records.record("other", "refusal", "sms", [b], at=40.0)
    latest = await records.latest(AD, "sms", ["consent", "refusal"], [a, b, c, a])
    assert latest == {(a, "consent"): 15.0, (a, "refusal"): 20.0, (b, "consent"): 10.0}
    assert await records.latest(AD, "call", ["refusal"], [a, b]) == {(b, "refusal"): 30.0}
    assert await records.latest(AD, "sms", [], [a]) == {}
    assert await records.latest(AD, "sms", ["consent"], []) == {}
    assert await records.record(AD, "consent", "sms", [], at=1.0) == []


async def test_events_come_in_pages_oldest_first(records: Records) -> None:
    made: list[int] = []
    for i in range(25):
        who = AD if i % 3 else "other"
        kind = "consent" if i % 2 else "sent"
        made += await records.record(who, kind, "sms", [number(i)], at=float(i), detail=f"d{i}")
    assert made == sorted(made)

    async def every(**filters: Any) -> list[AdEvent]:
        found: list[AdEvent] = []
        after = 0
        while page := await records.events(after=after, limit=7, **filters):
            assert len(page) <= 7
            found += page
            after = page[-1].id
        return found

    everything = await every()
    assert [e.id for e in everything] == made
    assert everything[4] == AdEvent(
        id=made[4], advertiser=AD, kind="sent", channel="sms", phone=number(4), at=4.0, detail="d4"
    )
    mine = await every(advertiser=AD)
    assert [e.phone for e in mine] == [number(i) for i in range(25) if i % 3]
    consents = await every(advertiser=AD, kind="consent")
    assert [e.phone for e in consents] == [number(i) for i in range(25) if i % 3 and i % 2]
    assert await records.events(after=made[-1]) == []
    assert [e.id for e in await records.events(after=made[9], limit=2)] == made[10:12]


YEAR = 365 * 86_400.0
BEFORE = 10 * YEAR
"""``prune``'s bound in these tests: "a year ago" of a clock at 11 years."""
OLD = BEFORE - YEAR
"""Older than ``BEFORE``: two years ago."""


async def kept(records: Records) -> list[tuple[str, str, str, str, float]]:
    """Every event left, as (advertiser, channel, phone, kind, at), in id order."""
    return [(e.advertiser, e.channel, e.phone, e.kind, e.at) for e in await records.events()]


async def test_prune_deletes_old_sends_and_confirmations(records: Records) -> None:
    for i in range(30):
        await records.record(AD, "sent", "sms", [number(i)], at=float(i))
    await records.record(AD, "confirmation", "sms", [number(1)], at=5.0)
    await records.record(AD, "confirmation", "call", [number(2)], at=10.0)  # not older: stays
    assert await records.prune(AD, 10.0) == 11
    assert await records.prune(AD, 10.0) == 0
    left = await records.events()
    assert [e.at for e in left] == [*(float(i) for i in range(10, 30)), 10.0]
    assert await records.count(AD, "sent", "sms", [number(3), number(12)], since=None) == {
        number(12): 1
    }


async def test_prune_is_per_advertiser(records: Records) -> None:
    a, b = number(1), number(2)
    for who in (AD, "other"):
        await records.record(who, "sent", "sms", [a, b], at=OLD)
        await records.record(who, "consent", "sms", [a], at=OLD)
        await records.record(who, "refusal", "sms", [a], at=OLD + 1)  # supersedes the consent
    # Another advertiser's later refusal supersedes nothing of this one's: its consent stays.
    await records.record(AD, "consent", "call", [b], at=OLD)
    await records.record("other", "refusal", "call", [b], at=OLD + 1)
    others = [e for e in await kept(records) if e[0] == "other"]
    assert await records.prune(AD, BEFORE) == 3
    assert [e for e in await kept(records) if e[0] == "other"] == others
    assert [e for e in await kept(records) if e[0] == AD] == [
        (AD, "sms", a, "refusal", OLD + 1),
        (AD, "call", b, "consent", OLD),
    ]
    assert await records.prune("other", BEFORE) == 3
    assert sorted(await kept(records)) == sorted(
        [
            (AD, "call", b, "consent", OLD),
            (AD, "sms", a, "refusal", OLD + 1),
            ("other", "call", b, "refusal", OLD + 1),
            ("other", "sms", a, "refusal", OLD + 1),
        ]
    )
    with pytest.raises(ValidationError, match="advertiser"):
        await records.prune("", BEFORE)


async def test_prune_never_deletes_a_registration(records: Records) -> None:
    """One registration message per number, ever: its record is what "ever" counts from."""
    await records.record(AD, "registration", "sms", [number(1)], at=0.0)
    await records.record(AD, "registration", "call", [number(2)], at=OLD)
    await records.record(AD, "sent", "sms", [number(1)], at=OLD)
    assert await records.prune(AD, BEFORE) == 1
    assert await records.prune(AD, float("inf")) == 0
    assert await kept(records) == [
        (AD, "sms", number(1), "registration", 0.0),
        (AD, "call", number(2), "registration", OLD),
    ]
    # ... and the number's one registration message stays taken.
    taken = await records.reserve(
        AD, "registration", "sms", [number(1)], at=BEFORE, since=None, cap=1
    )
    assert taken == [None]


async def test_prune_keeps_the_latest_consent_or_refusal(records: Records) -> None:
    """The latest consent or refusal of a (channel, number) is the rule in force and its proof:
    kept however old. An old one goes only when a later one supersedes it."""
    a, b, c, d = (number(i) for i in range(1, 5))
    # a refused years ago and never consented since: the refusal stays (advertising stays
    # blocked); the consent it lifted goes.
    await records.record(AD, "consent", "sms", [a], at=OLD - YEAR)
    await records.record(AD, "refusal", "sms", [a], at=OLD)
    # b consented, then refused, both long ago: the consent goes, the refusal stays.
    await records.record(AD, "consent", "sms", [b], at=OLD)
    await records.record(AD, "refusal", "sms", [b], at=OLD + 86_400)
    # c refused, then consented, long ago: the consent is the latest and stays.
    await records.record(AD, "refusal", "sms", [c], at=OLD)
    await records.record(AD, "consent", "sms", [c], at=OLD + 86_400)
    # d's old consent is superseded by a refusal too recent to prune (which stays); its old
    # refusal on calls stays too (a channel's rule is its own: the later SMS consent is not a
    # consent to calls).
    await records.record(AD, "refusal", "call", [d], at=OLD - 1)
    await records.record(AD, "consent", "sms", [d], at=OLD)
    await records.record(AD, "refusal", "sms", [d], at=BEFORE + 1)
    phones = [a, b, c, d]
    before = {ch: await records.latest(AD, ch, ["consent", "refusal"], phones) for ch in CHANNELS}
    assert await records.prune(AD, BEFORE) == 4
    assert await records.prune(AD, BEFORE) == 0
    assert sorted(await kept(records)) == sorted(
        [
            (AD, "sms", a, "refusal", OLD),
            (AD, "sms", b, "refusal", OLD + 86_400),
            (AD, "sms", c, "consent", OLD + 86_400),
            (AD, "call", d, "refusal", OLD - 1),
            (AD, "sms", d, "refusal", BEFORE + 1),
        ]
    )
    after = {ch: await records.latest(AD, ch, ["consent", "refusal"], phones) for ch in CHANNELS}
    assert {ch: blocked(after[ch], phones) for ch in CHANNELS} == {
        ch: blocked(before[ch], phones) for ch in CHANNELS
    }
    assert blocked(after["sms"], phones) == {a, b, d}


async def test_prune_on_a_tie_keeps_the_refusal(records: Records) -> None:
    """A consent and a refusal at the same time: the refusal is the later (a tie never lets
    advertising through), whichever was recorded first. Two of one kind at the same time
    supersede neither each other: both stay."""
    a, b, c, d = (number(i) for i in range(1, 5))
    await records.record(AD, "consent", "sms", [a], at=OLD)
    await records.record(AD, "refusal", "sms", [a], at=OLD)
    await records.record(AD, "refusal", "sms", [b], at=OLD)
    await records.record(AD, "consent", "sms", [b], at=OLD)
    await records.record(AD, "refusal", "sms", [c, c], at=OLD)
    await records.record(AD, "consent", "sms", [d, d], at=OLD)
    assert await records.prune(AD, BEFORE) == 2
    assert sorted(await kept(records)) == sorted(
        [
            (AD, "sms", a, "refusal", OLD),
            (AD, "sms", b, "refusal", OLD),
            (AD, "sms", c, "refusal", OLD),
            (AD, "sms", c, "refusal", OLD),
            (AD, "sms", d, "consent", OLD),
            (AD, "sms", d, "consent", OLD),
        ]
    )


async def test_prune_in_small_batches_follows_the_rules(
    records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random records (many ties), pruned 3 events per transaction: what goes is what the rules
    say (checked against a model of them), and what the guard decides is unchanged."""
    monkeypatch.setattr(sqlite_records, "_DELETE_BATCH", 3)
    monkeypatch.setattr(postgres_records, "_DELETE_BATCH", 3)
    rng = random.Random(91)
    phones = [number(i) for i in range(12)]
    made: list[AdEvent] = []
    for _ in range(300):
        who, kind = rng.choice([AD, AD, "other"]), rng.choice(KINDS)
        channel, phone, at = rng.choice(CHANNELS), rng.choice(phones), float(rng.randrange(24))
        (ident,) = await records.record(who, kind, channel, [phone], at=at)
        made.append(
            AdEvent(id=ident, advertiser=who, kind=kind, channel=channel, phone=phone, at=at)
        )
    before = 16.0

    def later(one: AdEvent, other: AdEvent) -> bool:
        return (one.advertiser, one.channel, one.phone) == (
            other.advertiser,
            other.channel,
            other.phone,
        ) and (
            one.at > other.at
            or (one.at == other.at and one.kind == "refusal" and other.kind == "consent")
        )

    def goes(event: AdEvent) -> bool:
        if event.advertiser != AD or event.at >= before:
            return False
        if event.kind in ("sent", "confirmation"):
            return True
        rules = ("consent", "refusal")
        return event.kind in rules and any(e.kind in rules and later(e, event) for e in made)

    async def rules() -> list[object]:
        found: list[object] = []
        for who in (AD, "other"):
            for channel in CHANNELS:
                latest = await records.latest(who, channel, ["consent", "refusal"], phones)
                found.append(blocked(latest, phones))
                found.append(await records.count(who, "registration", channel, phones, since=None))
        return found

    decided = await rules()
    expected = [e for e in made if not goes(e)]
    assert 20 < len(made) - len(expected) < len(made) - 50  # a fair mix of both
    old_rules = [e for e in expected if e.advertiser == AD and e.at < before]
    assert len({e.kind for e in old_rules}) == 3 and len(old_rules) > 10  # and old ones kept
    assert await records.prune(AD, before) == len(made) - len(expected)
    assert await records.events() == expected
    assert await rules() == decided


def blocked(latest: dict[tuple[str, Any], float], phones: Sequence[str]) -> set[str]:
    """The numbers ``latest`` (consent and refusal times) blocks, as the guard decides: a
    refusal with no consent later (a tie blocks)."""
    return {
        p
        for p in phones
        if (p, "refusal") in latest
        and ((p, "consent") not in latest or latest[p, "consent"] <= latest[p, "refusal"])
    }


# -- annotate, and a record's detail --------------------------------------------------------


async def test_annotate_sets_the_detail_of_the_given_events(records: Records) -> None:
    sent = await records.record(AD, "sent", "sms", [number(1), number(2)], at=1.0, detail="promo")
    (consent,) = await records.record(AD, "consent", "sms", [number(1)], at=1.0, detail="form")
    await records.annotate([sent[0], 999_999], "promo; message 42")  # unknown ids: ignored
    await records.annotate([], "nothing")
    details = {e.id: e.detail for e in await records.events()}
    assert details == {sent[0]: "promo; message 42", sent[1]: "promo", consent: "form"}
    await records.annotate(sent, "x" * 600)  # clipped, as ``record`` clips
    (first, second, third) = await records.events()
    assert first.detail == second.detail == "x" * 497 + "..."
    assert third.detail == "form"
    # The event is otherwise the same, and still counts and pages as before.
    assert first == AdEvent(
        id=sent[0], advertiser=AD, kind="sent", channel="sms", phone=number(1), at=1.0,
        detail=first.detail,
    )  # fmt: skip
    assert await records.count(AD, "sent", "sms", [number(1)], since=None) == {number(1): 1}
    await records.forget([sent[0]])  # an annotated reservation is forgotten as any other
    assert [e.id for e in await records.events()] == [sent[1], consent]
    assert await records.count(AD, "sent", "sms", [number(1), number(2)], since=None) == {
        number(2): 1
    }
    for wrong in (None, 42, b"bytes"):
        with pytest.raises(ValidationError, match="detail"):
            await records.annotate(sent, wrong)  # type: ignore[arg-type]
    assert [e.detail for e in await records.events()] == ["x" * 497 + "...", "form"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("y" * 500, "y" * 500),
        ("y" * 501, "y" * 497 + "..."),
        ("TC\x00 qu\u1ea3ng c\u00e1o", "TC\ufffd qu\u1ea3ng c\u00e1o"),
        ("half \ud800 pair", "half ? pair"),
        ("", ""),
    ],
)
async def test_a_detail_is_kept_the_same_in_every_store(
    records: Records, given: str, stored: str
) -> None:
    """``record``, ``reserve`` and ``annotate`` keep a detail alike, whatever the store: at most
    500 characters, and no NUL or lone surrogate (which PostgreSQL or UTF-8 would refuse: a
    refusal must not fail to be recorded over the text the number sent)."""
    (recorded,) = await records.record(AD, "refusal", "sms", [number(1)], at=1.0, detail=given)
    (reserved,) = await reserve(records, [number(1)], cap=1, detail=given)
    (annotated,) = await records.record(AD, "sent", "call", [number(1)], at=1.0)
    await records.annotate([annotated], given)
    assert {e.id: e.detail for e in await records.events()} == {
        recorded: stored,
        reserved: stored,
        annotated: stored,
    }


async def test_a_detail_that_is_not_a_str_is_refused(records: Records) -> None:
    with pytest.raises(ValidationError, match="detail"):
        await records.record(AD, "consent", "sms", [number(1)], at=1.0, detail=42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="detail"):
        await reserve(records, [number(1)], cap=1, detail=b"id")
    assert await records.events() == []


# -- the Do-Not-Call list -------------------------------------------------------------------


async def test_do_not_call_load_replace_and_lookup(records: Records) -> None:
    a, b, c, d = (number(i) for i in range(4))
    assert await records.do_not_call("sms", [a]) == (None, set())
    loaded = await records.load_do_not_call("sms", "2026-11-01", [[a, b], [b, c], []])
    assert loaded == 3  # distinct numbers
    assert await records.do_not_call("sms", [a, b, d, a]) == ("2026-11-01", {a, b})
    assert await records.do_not_call("sms", []) == ("2026-11-01", set())
    assert await records.do_not_call("call", [a]) == (None, set())  # channels are apart

    async def chunks() -> AsyncIterator[list[str]]:
        for chunk in ([c], [d, d]):
            await asyncio.sleep(0)
            yield chunk

    assert await records.load_do_not_call("sms", "2026-12-01", chunks()) == 2
    assert await records.do_not_call("sms", [a, b, c, d]) == ("2026-12-01", {c, d})
    assert await records.load_do_not_call("call", "2026-12-02", iter([[a]])) == 1
    assert await records.do_not_call("call", [a, c]) == ("2026-12-02", {a})
    assert await records.do_not_call("sms", [a, c]) == ("2026-12-01", {c})
    # An empty list is a list: its date, no numbers.
    assert await records.load_do_not_call("sms", "2027-01-01", []) == 0
    assert await records.do_not_call("sms", [a, c, d]) == ("2027-01-01", set())


@pytest.mark.parametrize("failure", ["iterator", "number"])
async def test_a_load_that_fails_leaves_the_old_list(records: Records, failure: str) -> None:
    old = [number(i) for i in range(100)]
    await records.load_do_not_call("sms", "2026-11-01", [old])

    def chunks() -> Iterator[list[str]]:
        for start in range(1000, 200_000, 20_000):
            yield [number(i) for i in range(start, start + 20_000)]
        if failure == "number":
            yield [number(5), "+84912345678"]
        raise OSError("the file went away")

    expected = ValidationError if failure == "number" else OSError
    with pytest.raises(expected):
        await records.load_do_not_call("sms", "2026-12-01", chunks())
    assert await records.do_not_call("sms", [*old, number(1000), number(150_000)]) == (
        "2026-11-01",
        set(old),
    )
    # ... and what it wrote is gone (nothing left for the next load to clean up).
    assert tables(records).get("smsvn_ad_dnc", 100) == 100
    await records.load_do_not_call("sms", "2026-12-01", [[number(1)]])
    assert await records.do_not_call("sms", [number(1), number(2)]) == ("2026-12-01", {number(1)})


async def test_a_load_that_fails_once_current_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's load ends in several transactions: a failure (a cancel) that comes after the
    one making it current keeps it, rather than sweeping the rows of the current list."""
    finisher = sqlite_records._finisher

    def failing(channel: Any, load: int) -> Any:
        job = finisher(channel, load)

        def run(db: sqlite3.Connection) -> None:
            job(db)
            raise asyncio.CancelledError

        return run

    async with smsvn.Journal(str(tmp_path / "j.db")) as journal:
        kept = records_for(journal)
        await kept.open()
        await kept.load_do_not_call("sms", "2026-11-01", [[number(1)]])
        monkeypatch.setattr(sqlite_records, "_finisher", failing)
        with pytest.raises(asyncio.CancelledError):
            await kept.load_do_not_call("sms", "2026-12-01", [[number(2), number(3)]])
        monkeypatch.undo()
        assert await kept.do_not_call("sms", [number(i) for i in range(4)]) == (
            "2026-12-01",
            {number(2), number(3)},
        )
        await kept.load_do_not_call("sms", "2027-01-01", [[number(4)]])
        assert tables(kept) == {
            "smsvn_ad_events": 0,
            "smsvn_ad_dnc_snapshots": 1,
            "smsvn_ad_dnc": 1,
        }


async def test_readers_see_the_old_list_until_the_load_ends(records: Records) -> None:
    old, new = [number(i) for i in range(10)], [number(i) for i in range(5, 60_005)]
    await records.load_do_not_call("sms", "2026-11-01", [old])
    seen: list[tuple[str | None, set[str]]] = []

    async def chunks() -> AsyncIterator[list[str]]:
        for start in range(0, len(new), 20_000):
            seen.append(await records.do_not_call("sms", [number(0), number(20_000)]))
            yield new[start : start + 20_000]
        seen.append(await records.do_not_call("sms", [number(0), number(20_000)]))

    assert await records.load_do_not_call("sms", "2026-12-01", chunks()) == 60_000
    assert seen == [("2026-11-01", {number(0)})] * 4
    assert await records.do_not_call("sms", [number(0), number(20_000)]) == (
        "2026-12-01",
        {number(20_000)},
    )
    assert tables(records).get("smsvn_ad_dnc", 60_000) == 60_000  # the old rows are gone


async def test_a_large_list_loads_in_chunks_in_bounded_memory(records: Records) -> None:
    total, size = 120_000, 10_000  # three of the stores' batches (50,000)

    def chunks(offset: int) -> Iterator[list[str]]:
        for start in range(offset, offset + total, size):
            yield [number(i * 7 + 3) for i in range(start, start + size)]

    tracemalloc.start()
    try:
        assert await records.load_do_not_call("sms", "2026-11-01", chunks(0)) == total
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The whole list as str takes ~8 MiB, as ints ~5 MiB more: SQLite and PostgreSQL hold a
    # batch (50,000) at a time (a peak under 5 MiB here). Memory keeps the list itself: a set
    # of ints, ~12 MiB at its peak.
    limit = 20 if isinstance(records, MemoryRecords) else 6
    assert peak < limit * 2**20, f"peak {peak / 2**20:.1f} MiB"
    probe = [number(3), number(7 * (total - 1) + 3), number(4), number(7 * total + 3)]
    assert await records.do_not_call("sms", probe) == ("2026-11-01", set(probe[:2]))
    # Half of the next snapshot is new: the old half is gone, the new one is there.
    assert await records.load_do_not_call("sms", "2026-12-01", chunks(total // 2)) == total
    assert await records.do_not_call("sms", probe) == ("2026-12-01", {probe[1], probe[3]})
    assert tables(records).get("smsvn_ad_dnc", total) == total


# -- checks, and where records live -----------------------------------------------------------


@pytest.mark.parametrize(
    "phones",
    [["912345678"], ["+84912345678"], ["0012345678"], ["09123456789012"], [912345678], "09123"],
)
async def test_a_number_that_is_not_canonical_is_refused(records: Records, phones: Any) -> None:
    with pytest.raises(ValidationError):
        await reserve(records, phones, cap=1)
    with pytest.raises(ValidationError):
        await records.do_not_call("sms", phones)
    with pytest.raises(ValidationError):
        await records.load_do_not_call("sms", "2026-11-01", [phones])
    assert await records.events() == []


async def test_bad_arguments_are_refused(records: Records) -> None:
    phone = [number(1)]
    with pytest.raises(ValidationError, match="kind"):
        await records.record(AD, "spam", "sms", phone, at=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="channel"):
        await records.record(AD, "sent", "email", phone, at=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="advertiser"):
        await records.record("", "sent", "sms", phone, at=1.0)
    with pytest.raises(ValidationError, match="cap"):
        await reserve(records, phone, cap=-1)
    with pytest.raises(ValidationError, match="snapshot"):
        await records.load_do_not_call("sms", "yesterday", [phone])
    with pytest.raises(ValidationError, match="chunks"):
        await records.load_do_not_call("sms", "2026-11-01", "0912345678")  # type: ignore[arg-type]
    assert await records.events() == []
    assert await records.do_not_call("sms", phone) == (None, set())


async def test_records_for_each_source(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert isinstance(records_for(None), MemoryRecords)
    mine = MemoryRecords()
    assert records_for(mine) is mine
    for wrong in ("campaigns.db", 42, object()):
        with pytest.raises(ValidationError, match="Journal"):
            records_for(wrong)
    async with smsvn.Journal(str(tmp_path / "j.db")) as journal:
        kept = records_for(journal)
        assert isinstance(kept, SqliteRecords)
        await kept.open()
        await kept.open()  # twice: the tables are there
        await kept.record(AD, "consent", "sms", [number(1)], at=1.0)
        await kept.close()
        await kept.close()
        # The journal is still open: records close nothing of it.
        await journal.campaign("still-open")
        again = records_for(journal)
        await again.open()
        assert [e.phone for e in await again.events()] == [number(1)]


async def test_records_for_a_postgres_journal(postgres_dsn: str) -> None:
    async with postgres_schema(postgres_dsn) as url, smsvn.Journal(url) as journal:
        kept = records_for(journal)
        assert isinstance(kept, PostgresRecords)
        await kept.open()
        await kept.close()
        assert await journal.campaigns() == []
    assert "asyncpg" not in repr(kept)


async def test_records_need_an_open_journal(tmp_path: Path) -> None:
    journal = smsvn.Journal(str(tmp_path / "j.db"))
    with pytest.raises(RuntimeError, match="not open"):
        await records_for(journal).open()


# -- two processes --------------------------------------------------------------------------

PHONES = [number(i) for i in range(50)]
CAP = 3
TASKS = 3
PASSES = 2
RACES = ("Shop A", "Shop B", "Shop C")


def _racer(url: str, start: Any, results: Any) -> None:
    """One process of the race (``spawn``ed): see ``_race``."""
    results.put(asyncio.run(_race(url, start)))


async def _race(url: str, start: Any) -> list[tuple[list[int], float, float]]:
    """One race per advertiser of ``RACES``, each started with the other process (``start``, a
    barrier): ``TASKS`` tasks at once, each reserving the 50 numbers one by one, in the same
    order as every other task (so that the processes keep reaching the same number at the same
    time), ``PASSES`` times; then one reservation of all 50 at once. For each race, the ids
    won, and when it began and ended here."""
    raced: list[tuple[list[int], float, float]] = []
    async with smsvn.Journal(url) as journal:
        kept = records_for(journal)
        await kept.open()
        for advertiser in RACES:
            taken: list[int] = []

            async def task(advertiser: str = advertiser, taken: list[int] = taken) -> None:
                for _ in range(PASSES):
                    for phone in PHONES:
                        ids = await kept.reserve(
                            advertiser, "sent", "sms", [phone], at=1.0, since=None, cap=CAP
                        )
                        taken.extend(i for i in ids if i)

            await asyncio.to_thread(start.wait, 120)
            began = time.time()
            await asyncio.gather(*(task() for _ in range(TASKS)))
            ids = await kept.reserve(advertiser, "sent", "sms", PHONES, at=1.0, since=None, cap=CAP)
            taken.extend(i for i in ids if i)
            raced.append((taken, began, time.time()))
    return raced


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_two_processes_never_pass_the_cap(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with fresh_journal_url(store, request, tmp_path) as url, smsvn.Journal(url) as journal:
        kept = records_for(journal)
        await kept.open()  # the tables exist before the race: it is about the reservations
        start, results = CTX.Barrier(2), CTX.Queue()
        racers = [CTX.Process(target=_racer, args=(url, start, results)) for _ in range(2)]
        for racer in racers:
            racer.start()
        try:
            first, second = [await asyncio.to_thread(results.get, True, 120) for _ in racers]
        finally:
            for racer in racers:
                await asyncio.to_thread(racer.join, 30)
                if racer.is_alive():
                    racer.kill()
        assert [r.exitcode for r in racers] == [0, 0]
        for advertiser, (won, began, ended), (won_too, began_too, ended_too) in zip(
            RACES, first, second, strict=True
        ):
            # They raced at once (SQLite's write lock is not fair: one process often wins it
            # all while the other waits, which is why the count is the test, not who won).
            assert max(began, began_too) < min(ended, ended_too)
            ids = won + won_too
            assert len(ids) == len(set(ids)) == CAP * len(PHONES), advertiser
            counts = await kept.count(advertiser, "sent", "sms", PHONES, since=None)
            assert counts == dict.fromkeys(PHONES, CAP)
            page = await kept.events(advertiser=advertiser, limit=10_000)
            assert Counter(e.phone for e in page) == counts


# -- helpers --------------------------------------------------------------------------------


def tables(records: Records) -> dict[str, int]:
    """Rows per ``smsvn_ad_*`` table of a SQLite store (empty for the others: PostgreSQL's
    load is one transaction, nothing of a failed one stays)."""
    if not isinstance(records, SqliteRecords):
        return {}
    path = records._store.path
    with sqlite3.connect(path) as db:
        names = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'smsvn_ad_%'"
            )
        ]
        return {n: db.execute(f"SELECT COUNT(*) FROM {n}").fetchone()[0] for n in names}
