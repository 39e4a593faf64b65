"""One advertiser, however its name is spelled: caps, refusals and consent are kept per
advertiser (Decree 91/2020 Art. 13(5)), so two services of one company configured as "Shop ABC"
and " shop   abc" (or with "Công ty" typed composed and decomposed) must share them. Every
store keys records by the name's normal form (``normal_advertiser``: NFC, case folded,
whitespace collapsed), and a store of an older version, holding rows under names as given, is
brought to it when it opens.

Every test here failed before names were normalised: the refusal, the cap and the consent of one
spelling did not reach the other, and rows of an older version kept their spelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smsvn
import smsvn.advertising._postgres as postgres_records
import smsvn.advertising._sqlite as sqlite_records
from smsvn import advertising as ad
from smsvn.advertising import Blocked, Rule
from smsvn.advertising._memory import MemoryRecords
from smsvn.advertising._records import Records
from smsvn.advertising._sources import records_for
from smsvn.errors import ValidationError
from smsvn.models import InboundSms
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from tests.test_advertising import AD, A, B, Clock, vn
from tests.test_advertising_records import fresh_journal_url, open_records

STORES = ["memory", "sqlite", "postgres"]
COMPANY = "Công ty Cổ phần ABC"
COMPOSED = unicodedata.normalize("NFC", COMPANY)
DECOMPOSED = unicodedata.normalize("NFD", COMPANY)


@pytest.fixture
def clock() -> Clock:
    return Clock(vn(1, 10))


def rules(advertiser: str, **settings: Any) -> ad.Rules:
    return ad.Rules(advertiser=advertiser, brandname="SMSVN", **settings)


@contextlib.asynccontextmanager
async def guards(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, *given: ad.Rules
) -> AsyncIterator[list[ad.Guard]]:
    """A guard for each of ``given``, all on one store (in memory: one ``MemoryRecords``; else
    one journal), a Do-Not-Call snapshot (empty) loaded."""
    async with contextlib.AsyncExitStack() as stack:
        records: object
        if store == "memory":
            records = MemoryRecords()
        else:
            url = await stack.enter_async_context(fresh_journal_url(store, request, tmp_path))
            records = await stack.enter_async_context(smsvn.Journal(url))
        opened = [
            await stack.enter_async_context(ad.Guard(r, records, clock=clock, sleep=clock.sleep))
            for r in given
        ]
        await opened[0].load_do_not_call([], snapshot="2026-11-30")
        yield opened


def rules_of(error: Blocked) -> list[Rule]:
    return [n.rule for n in error.blocked]


# -- one advertiser, two spellings ----------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
async def test_a_refusal_under_one_spelling_blocks_the_other(
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: Clock,
    sms: SpeedSMS,
    sb: Sandbox,
) -> None:
    async with guards(store, request, tmp_path, clock, rules("Shop ABC"), rules(" shop   abc")) as (
        shop,
        other,
    ):
        # The consent goes in under one spelling, the refusal (later) under the other.
        await other.consent(A, how="form", at=vn(1, 8))
        await other.consent(B, how="form", at=vn(1, 8))
        await shop.refuse(A)
        with pytest.raises(Blocked) as caught:
            await other.send(sms, A, AD, purpose="advertising")
        assert rules_of(caught.value) == [Rule.REFUSED]
        result = await other.send(sms, [A, B], AD, purpose="advertising")
        assert result.recipients == (B,)
        # A refusal that came in as a reply is suppressed for the other spelling too.
        assert await shop.inbound(InboundSms(provider="speedsms", phone=B, content="TC"), sms)
        with pytest.raises(Blocked):
            await other.send(sms, B, AD, purpose="advertising")
        # The records are one advertiser's, kept under the normal form (the rules' name is
        # as given: the confirmation names it).
        mine = [(e.advertiser, e.kind, e.phone) async for e in other.records(kind="refusal")]
        assert {who for who, _, _ in mine} == {"shop abc"}
        assert {(kind, phone) for _, kind, phone in mine} == {("refusal", A), ("refusal", B)}
        assert shop.rules.advertiser == "Shop ABC"
    assert [r.phone for r in sb.outbox if r.content.startswith("[QC]")] == [B]


@pytest.mark.parametrize("store", STORES)
async def test_the_24_hour_cap_counts_both_spellings(
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: Clock,
    sms: SpeedSMS,
    sb: Sandbox,
) -> None:
    one, two = rules("Shop ABC", require_consent=False), rules("SHOP\tabc ", require_consent=False)
    async with guards(store, request, tmp_path, clock, one, two) as (shop, other):
        await shop.send(sms, A, AD, purpose="advertising")
        clock.at(vn(1, 11))
        await other.send(sms, A, AD, purpose="advertising")
        clock.at(vn(1, 12))
        await shop.send(sms, A, AD, purpose="advertising")
        clock.at(vn(1, 13))
        for guard in (other, shop):
            with pytest.raises(Blocked) as caught:
                await guard.send(sms, A, AD, purpose="advertising")
            assert rules_of(caught.value) == [Rule.CAP]
            assert (await guard.check(A, AD, purpose="advertising")).blocked[0].rule is Rule.CAP
        # 24 hours after the first: one is free again, for either spelling.
        clock.at(vn(2, 10, 0, 1))
        await other.send(sms, A, AD, purpose="advertising")
        with pytest.raises(Blocked):
            await shop.send(sms, A, AD, purpose="advertising")
        # Pruning under one spelling is pruning the advertiser's records.
        assert len([e async for e in shop.records(kind="sent")]) == 4
        clock.at(vn(1, 10).replace(year=2028))
        assert await other.prune() == 4
        assert [e async for e in shop.records()] == []
    assert [r.phone for r in sb.outbox] == [A] * 4


@pytest.mark.parametrize("store", STORES)
async def test_composed_and_decomposed_vietnamese_are_one_advertiser(
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: Clock,
    sms: SpeedSMS,
) -> None:
    assert COMPOSED != DECOMPOSED  # the same text, as two different strings
    async with guards(store, request, tmp_path, clock, rules(COMPOSED), rules(DECOMPOSED)) as (
        composed,
        decomposed,
    ):
        await composed.consent(A, how="form", at=vn(1, 8))
        await composed.consent(B, how="form", at=vn(1, 8))
        # The consent given under one form lets the other advertise...
        assert (await decomposed.check([A, B], AD, purpose="advertising")).allowed == (A, B)
        # ... and a refusal under the other stops the first.
        await decomposed.refuse(B)
        checked = await composed.check([A, B], AD, purpose="advertising")
        assert checked.allowed == (A,)
        assert [n.rule for n in checked.blocked] == [Rule.REFUSED]
        # One registration message ever, whichever form sent it.
        text = "DKQC Cong ty ABC: soan Y gui 8079"
        await composed.send(sms, "0701234567", text, purpose="registration")
        with pytest.raises(Blocked) as caught:
            await decomposed.send(sms, "0701234567", text, purpose="registration")
        assert rules_of(caught.value) == [Rule.REGISTERED]
        kinds = sorted([e.kind async for e in decomposed.records()])
        assert kinds == sorted(["consent", "consent", "refusal", "refusal", "registration"])


# -- names that are nothing ------------------------------------------------------------------


@pytest.fixture(params=STORES)
async def records(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Records]:
    async with open_records(request.param, request, tmp_path) as kept:
        yield kept


@pytest.mark.parametrize("name", [" ", "   ", "\t\n", "\u3000", " \u00a0 \u2003 "])
async def test_a_name_of_only_whitespace_is_refused(records: Records, name: str) -> None:
    with pytest.raises(ValidationError, match="advertiser"):
        ad.Rules(advertiser=name)
    phone = ["0912345678"]
    calls: dict[str, Callable[[], Awaitable[object]]] = {  # each store method taking one
        "record": lambda: records.record(name, "refusal", "sms", phone, at=1.0),
        "reserve": lambda: records.reserve(name, "sent", "sms", phone, at=1.0, since=None, cap=3),
        "count": lambda: records.count(name, "sent", "sms", phone, since=None),
        "latest": lambda: records.latest(name, "sms", ["refusal"], phone),
        "events": lambda: records.events(advertiser=name),
        "prune": lambda: records.prune(name, 1.0),
    }
    for call in calls.values():
        with pytest.raises(ValidationError, match="advertiser"):
            await call()
    assert await records.events() == []


# -- stores of an older version ---------------------------------------------------------------

OLD_ROWS = [
    # (advertiser as an older version kept it, kind, phone, Vietnam hour on Dec 1)
    ("Shop ABC", "consent", A, 8),
    ("Shop ABC", "sent", A, 9),
    ("  shop ABC ", "sent", A, 9),
    ("SHOP  ABC", "sent", A, 9),
    (DECOMPOSED, "consent", B, 8),
    (COMPOSED.upper(), "refusal", B, 9),
    ("   ", "sent", B, 9),  # no guard could write it, no guard can read it: left alone
]


def old_rows() -> list[tuple[str, str, str, int, float]]:
    """``OLD_ROWS`` as (advertiser, kind, channel, phone as kept, at)."""
    return [
        (who, kind, "sms", int(phone), vn(1, hour).timestamp())
        for who, kind, phone, hour in OLD_ROWS
    ]


async def connect(url: str) -> Any:
    """A raw asyncpg connection to ``url`` (the test's schema)."""
    import asyncpg  # type: ignore[import-untyped]

    return await asyncpg.connect(url)


async def write_old_rows(store: str, url: str) -> None:
    """The tables and ``OLD_ROWS``, written with raw SQL as an older version left them (names
    as given)."""
    insert = "INSERT INTO smsvn_ad_events (advertiser, kind, channel, phone, at) VALUES "
    if store == "sqlite":
        with contextlib.closing(sqlite3.connect(url)) as db, db:
            db.executescript(sqlite_records._SCHEMA)
            db.executemany(insert + "(?, ?, ?, ?, ?)", old_rows())
        return
    db = await connect(url)
    try:
        await db.execute(postgres_records._SCHEMA)
        await db.executemany(insert + "($1, $2, $3, $4, $5)", old_rows())
    finally:
        await db.close()


async def stored(store: str, url: str) -> list[tuple[int, str]]:
    """(id, advertiser) of every row, with raw SQL."""
    query = "SELECT id, advertiser FROM smsvn_ad_events ORDER BY id"
    if store == "sqlite":
        with contextlib.closing(sqlite3.connect(url)) as db:
            return [(int(i), str(a)) for i, a in db.execute(query)]
    db = await connect(url)
    try:
        return [(int(i), str(a)) for i, a in await db.fetch(query)]
    finally:
        await db.close()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_rows_of_an_older_version_are_migrated_on_open_and_count(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, sms: SpeedSMS
) -> None:
    async with fresh_journal_url(store, request, tmp_path) as url:
        await write_old_rows(store, url)
        before = await stored(store, url)
        # Opening migrates (the first open does it all; the second finds nothing left).
        async with (
            smsvn.Journal(url) as journal,
            smsvn.Journal(url) as journal_too,
            ad.Guard(rules(" shop   abc "), journal, clock=clock),
            ad.Guard(rules(COMPOSED.lower()), journal_too, clock=clock),
        ):
            pass
        after = await stored(store, url)
        assert [i for i, _ in after] == [i for i, _ in before]  # rewritten in place
        assert [who for _, who in after] == [
            "shop abc", "shop abc", "shop abc", "shop abc",
            COMPOSED.casefold(), COMPOSED.casefold(),
            "   ",
        ]  # fmt: skip
        # Opening again changes nothing (idempotent).
        async with smsvn.Journal(url) as journal, ad.Guard(rules("Shop ABC"), journal) as again:
            assert await stored(store, url) == after
            assert len([e async for e in again.records()]) == 4
        # The old rows count: the consent and three sends of A (its cap), B's refusal.
        async with (
            smsvn.Journal(url) as journal,
            ad.Guard(rules("SHOP ABC"), journal, clock=clock) as shop,
            ad.Guard(rules(DECOMPOSED), journal, clock=clock) as company,
        ):
            await shop.load_do_not_call([], snapshot="2026-11-30")
            checked = await shop.check([A], AD, purpose="advertising")
            assert [n.rule for n in checked.blocked] == [Rule.CAP]
            with pytest.raises(Blocked) as caught:
                await company.send(sms, B, AD, purpose="advertising")
            assert rules_of(caught.value) == [Rule.REFUSED]
            clock.at(vn(2, 9, 0, 1))  # a day after the old sends: A may have one again
            assert (await shop.check([A], AD, purpose="advertising")).allowed == (A,)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_many_processes_opening_an_older_store_at_once(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Several journals (connections) opening the records of an older store together: each
    open waits for the one migrating, and the rows are migrated once."""
    async with fresh_journal_url(store, request, tmp_path) as url:
        await write_old_rows(store, url)
        async with contextlib.AsyncExitStack() as stack:
            journals = [await stack.enter_async_context(smsvn.Journal(url)) for _ in range(4)]
            kept = [records_for(j) for j in journals]
            await asyncio.gather(*(r.open() for r in kept))
            counts = await asyncio.gather(
                *(r.count("Shop ABC", "sent", "sms", [A], since=None) for r in kept)
            )
            assert counts == [{A: 3}] * 4
        assert sorted({who for _, who in await stored(store, url)}) == sorted(
            ["shop abc", COMPOSED.casefold(), "   "]
        )


# -- the normal form -------------------------------------------------------------------------

WORDS = st.lists(
    st.text(
        alphabet=st.sampled_from(
            "abcdđeêoôơuưyAĐÔƯáàảãạắằẳẵặếềểễệốồổỗộớờởỡợứừửữựÝỲỶỸỴ0123456789&."
        ),
        min_size=1,
        max_size=8,
    ),
    min_size=1,
    max_size=5,
)
SPACES = st.text(alphabet=st.sampled_from(" \t\n\u00a0\u2003\u3000"), min_size=1, max_size=3)


@given(st.text())
def test_the_normal_form_is_idempotent(name: str) -> None:
    from smsvn.advertising._records import normal_advertiser

    once = normal_advertiser(name)
    assert normal_advertiser(once) == once
    assert once == once.strip() and "  " not in once
    assert unicodedata.normalize("NFC", once) == once


@given(st.text())
def test_composed_or_decomposed_is_one_name(name: str) -> None:
    from smsvn.advertising._records import normal_advertiser

    normal = normal_advertiser(name)
    for form in ("NFC", "NFD"):
        assert normal_advertiser(unicodedata.normalize(form, name)) == normal


@given(WORDS, st.lists(SPACES, min_size=6, max_size=6))
def test_case_and_whitespace_make_no_other_name(words: list[str], spaces: list[str]) -> None:
    from smsvn.advertising._records import normal_advertiser

    plain = " ".join(words)
    spaced = spaces[0] + "".join(w + spaces[i % 5 + 1] for i, w in enumerate(words))
    normal = normal_advertiser(plain)
    assert normal == normal_advertiser(spaced)
    for variant in (plain.upper(), plain.lower(), plain.swapcase(), spaced.upper()):
        assert normal_advertiser(variant) == normal
    assert normal_advertiser(unicodedata.normalize("NFD", spaced.upper())) == normal
