"""``Records`` in a journal's PostgreSQL database, shared by processes on several machines.

The tables (``smsvn_ad_*``) sit next to the journal's and use its connection pool (asyncpg is
imported by the journal, never here). A reservation is one transaction (per ``_RESERVE_SLICE``
numbers) that first takes a transaction-scoped advisory lock per (advertiser, channel, number),
in ascending order (two reservations never wait for each other in a cycle), then counts and
inserts: whoever reserves the same number meanwhile waits for the commit, and its count (a new
snapshot: ``READ COMMITTED``) includes what was just inserted.

A Do-Not-Call load is one transaction: the numbers are copied into a temporary table as they
come (``COPY``, in bounded batches), then the channel's rows are brought to it (the numbers gone
are deleted, the new ones inserted); readers see the old list until the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any, Final

from smsvn.advertising._records import CHANNELS, AdEvent, Channel, Kind
from smsvn.advertising._stores import (
    ADVERTISERS_SQL,
    DNC_BATCH,
    PRUNABLE_SQL,
    RENAME_SQL,
    check_advertiser,
    check_cap,
    check_channel,
    check_detail,
    check_kind,
    check_kinds,
    check_snapshot,
    optional_detail,
    phone_batches,
    phone_ints,
    phone_str,
    renames,
)
from smsvn.journal._postgres import PostgresStore, _changed

__all__ = ["PostgresRecords"]

_NUMBER_LOCKS: Final = 0x534D41
"""The advisory-lock namespace of reservations ("SMA"): (it, a hash of advertiser, channel and
number). A collision only makes two reservations take turns."""
_TABLE_LOCKS: Final = 0x534D44
"""The namespace ("SMD") of the schema's creation (0) and of each channel's Do-Not-Call
replacement (1 + the channel's index)."""
_RESERVE_SLICE: Final = 256
"""Numbers per reservation transaction: each takes an advisory lock, and PostgreSQL's lock
table holds ``max_locks_per_transaction`` (64 by default) times ``max_connections`` locks for
the whole server. A number's places are reserved atomically, not a whole call's."""
_DELETE_BATCH: Final = 10_000
"""Events ``prune`` looks at (and at most deletes) per transaction, however many old records
are kept."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS smsvn_ad_events (
    id BIGSERIAL PRIMARY KEY,
    advertiser TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    phone BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS smsvn_ad_events_key
    ON smsvn_ad_events (advertiser, channel, phone, kind, at);
CREATE INDEX IF NOT EXISTS smsvn_ad_events_prune ON smsvn_ad_events (advertiser, at, id);
CREATE TABLE IF NOT EXISTS smsvn_ad_dnc_snapshots (
    channel TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    loaded DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS smsvn_ad_dnc (
    channel TEXT NOT NULL,
    phone BIGINT NOT NULL,
    PRIMARY KEY (channel, phone)
);
"""
# ``key`` serves ``reserve``, ``count`` and ``latest`` (and ``prune``'s search for a later
# consent or refusal); ``prune`` walks one advertiser's old events in (at, id) order along
# ``prune``.

_LOCK_ALL: Final = "SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k"
"""Takes the locks one by one, in the array's order (``unnest`` gives its items in order)."""
_COUNT: Final = """
SELECT phone, count(*) FROM smsvn_ad_events
WHERE advertiser = $1 AND channel = $2 AND kind = $3 AND phone = ANY($4::int8[]) {since}
GROUP BY phone
"""
_INSERT: Final = """
INSERT INTO smsvn_ad_events (advertiser, kind, channel, phone, at, detail)
SELECT $1, $2, $3, p, $5, $6 FROM unnest($4::int8[]) AS p
RETURNING id, phone
"""
_PRUNE_WINDOW: Final = """
SELECT at, id FROM smsvn_ad_events
WHERE advertiser = $1 AND at < $2 AND (at, id) > ($3::float8, $4::int8)
ORDER BY at, id LIMIT 1 OFFSET $5
"""
"""The last of the next ``_DELETE_BATCH`` old events of an advertiser after a (at, id) cursor:
where ``prune``'s window ends (none: the rest is the last window)."""
_PRUNE: Final = f"""
DELETE FROM smsvn_ad_events e
WHERE e.advertiser = $1 AND e.at < $2 AND (e.at, e.id) > ($3::float8, $4::int8) {{upper}}
AND {PRUNABLE_SQL}
"""
_STAGE: Final = "CREATE TEMP TABLE smsvn_ad_dnc_stage (phone BIGINT NOT NULL) ON COMMIT DROP"


class PostgresRecords:
    """Records in the PostgreSQL database of an open journal's ``store`` (see the module's
    docstring). ``close`` leaves the journal open: it is the journal's."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "PostgresRecords()"

    def _db(self) -> Any:
        """A connection from the journal's pool (``async with``)."""
        return self._store._db()

    async def open(self) -> None:
        async with self._db() as db, db.transaction():
            # Processes starting together would race to create the tables: one at a time.
            await db.execute("SELECT pg_advisory_xact_lock($1, 0)", _TABLE_LOCKS)
            await db.execute(_SCHEMA)
            # Records of an older version, kept under advertisers' names as given ("Shop
            # ABC"), go to their normal form ("shop abc"), where they count again: under the
            # same lock (one process at a time; the next finds nothing left), at every open
            # (one index seek per advertiser), so that rows a process of the older version
            # wrote meanwhile are brought over by the next open.
            names = [row[0] for row in await db.fetch(ADVERTISERS_SQL)]
            for normal, name in renames(names):
                await db.execute(RENAME_SQL.format(new="$1", old="$2"), normal, name)

    async def close(self) -> None:
        """Nothing of its own to close (the pool is the journal's)."""

    # -- events ------------------------------------------------------------------------------

    async def reserve(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        phones: Sequence[str],
        *,
        at: float,
        since: float | None,
        cap: int,
        detail: str | None = None,
    ) -> list[int | None]:
        advertiser = _check(advertiser, kind, channel)
        check_cap(cap)
        detail = optional_detail(detail)
        numbers = phone_ints(phones)
        if not numbers:
            return []
        places: dict[int, list[int]] = {}
        for place, phone in enumerate(numbers):
            places.setdefault(phone, []).append(place)
        distinct = sorted(places)
        ids: list[int | None] = [None] * len(numbers)
        for start in range(0, len(distinct), _RESERVE_SLICE):
            wanted = {
                phone: len(places[phone]) for phone in distinct[start : start + _RESERVE_SLICE]
            }
            got = await self._reserve(advertiser, kind, channel, wanted, at, since, cap, detail)
            for phone, won in got.items():
                for place, ident in zip(places[phone], won, strict=False):
                    ids[place] = ident
        return ids

    async def _reserve(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        wanted: dict[int, int],
        at: float,
        since: float | None,
        cap: int,
        detail: str | None,
    ) -> dict[int, list[int]]:
        """One transaction of ``reserve``: up to ``wanted[phone]`` places for each phone (at
        most ``_RESERVE_SLICE`` phones); the ids won, by phone, oldest first."""
        locks = sorted({_lock_key(advertiser, channel, phone) for phone in wanted})
        count = _COUNT.format(since="" if since is None else "AND at > $5")
        bounds: tuple[float, ...] = () if since is None else (float(since),)
        async with self._db() as db, db.transaction(isolation="read_committed"):
            await db.execute(_LOCK_ALL, _NUMBER_LOCKS, locks)
            rows = await db.fetch(count, advertiser, channel, kind, list(wanted), *bounds)
            held = {int(phone): int(n) for phone, n in rows}
            taken = [
                phone
                for phone, times in wanted.items()
                for _ in range(max(0, min(times, cap - held.get(phone, 0))))
            ]
            if not taken:
                return {}
            rows = await db.fetch(_INSERT, advertiser, kind, channel, taken, float(at), detail)
        return _ids_by_phone(rows)

    async def record(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        phones: Sequence[str],
        *,
        at: float,
        detail: str | None = None,
    ) -> list[int]:
        advertiser = _check(advertiser, kind, channel)
        detail = optional_detail(detail)
        numbers = phone_ints(phones)
        if not numbers:
            return []
        async with self._db() as db:
            rows = await db.fetch(_INSERT, advertiser, kind, channel, numbers, float(at), detail)
        ids = _ids_by_phone(rows)
        return [ids[phone].pop(0) for phone in numbers]

    async def count(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        phones: Sequence[str],
        *,
        since: float | None,
    ) -> dict[str, int]:
        advertiser = _check(advertiser, kind, channel)
        numbers = sorted(set(phone_ints(phones)))
        if not numbers:
            return {}
        query = _COUNT.format(since="" if since is None else "AND at > $5")
        bounds: tuple[float, ...] = () if since is None else (float(since),)
        async with self._db() as db:
            rows = await db.fetch(query, advertiser, channel, kind, numbers, *bounds)
        return {phone_str(phone): int(n) for phone, n in rows}

    async def forget(self, ids: Sequence[int]) -> None:
        idents = [int(i) for i in ids]
        if idents:
            async with self._db() as db:
                await db.execute("DELETE FROM smsvn_ad_events WHERE id = ANY($1::int8[])", idents)

    async def annotate(self, ids: Sequence[int], detail: str) -> None:
        text = check_detail(detail)
        idents = [int(i) for i in ids]
        if idents:
            async with self._db() as db:
                await db.execute(
                    "UPDATE smsvn_ad_events SET detail = $1 WHERE id = ANY($2::int8[])",
                    text,
                    idents,
                )

    async def latest(
        self, advertiser: str, channel: Channel, kinds: Sequence[Kind], phones: Sequence[str]
    ) -> dict[tuple[str, Kind], float]:
        advertiser = check_advertiser(advertiser)
        check_channel(channel)
        wanted = check_kinds(kinds)
        numbers = sorted(set(phone_ints(phones)))
        if not numbers or not wanted:
            return {}
        async with self._db() as db:
            rows = await db.fetch(
                "SELECT phone, kind, max(at) FROM smsvn_ad_events "
                "WHERE advertiser = $1 AND channel = $2 AND phone = ANY($3::int8[]) "
                "AND kind = ANY($4::text[]) GROUP BY phone, kind",
                advertiser,
                channel,
                numbers,
                wanted,
            )
        return {(phone_str(phone), kind): float(last) for phone, kind, last in rows}

    async def events(
        self,
        *,
        advertiser: str | None = None,
        kind: Kind | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[AdEvent]:
        where: list[str] = ["id > $1"]
        params: list[object] = [int(after)]
        if advertiser is not None:
            params.append(check_advertiser(advertiser))
            where.append(f"advertiser = ${len(params)}")
        if kind is not None:
            params.append(check_kind(kind))
            where.append(f"kind = ${len(params)}")
        params.append(max(0, int(limit)))
        query = (
            "SELECT id, advertiser, kind, channel, phone, at, detail FROM smsvn_ad_events "
            f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ${len(params)}"
        )
        async with self._db() as db:
            rows = await db.fetch(query, *params)
        return [
            AdEvent(
                id=int(ident),
                advertiser=who,
                kind=what,
                channel=how,
                phone=phone_str(phone),
                at=float(when),
                detail=detail,
            )
            for ident, who, what, how, phone, when, detail in rows
        ]

    async def prune(self, advertiser: str, before: float) -> int:
        advertiser = check_advertiser(advertiser)
        bound = float(before)
        pruned = 0
        after: tuple[float, int] = (float("-inf"), 0)
        async with self._db() as db:
            while True:
                # One window per transaction: up to ``_DELETE_BATCH`` old events after
                # ``after``, what of them may go deleted.
                async with db.transaction():
                    end = await db.fetchrow(
                        _PRUNE_WINDOW, advertiser, bound, *after, _DELETE_BATCH - 1
                    )
                    if end is None:
                        status = await db.execute(
                            _PRUNE.format(upper=""), advertiser, bound, *after
                        )
                    else:
                        status = await db.execute(
                            _PRUNE.format(upper="AND (e.at, e.id) <= ($5::float8, $6::int8)"),
                            advertiser,
                            bound,
                            *after,
                            float(end[0]),
                            int(end[1]),
                        )
                pruned += _changed(status)
                if end is None:
                    return pruned
                after = (float(end[0]), int(end[1]))

    # -- the Do-Not-Call list ----------------------------------------------------------------

    async def load_do_not_call(
        self,
        channel: Channel,
        snapshot: str,
        phones: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]],
    ) -> int:
        check_channel(channel)
        check_snapshot(snapshot)
        async with self._db() as db, db.transaction():
            await db.execute(_STAGE)
            async for batch in phone_batches(phones, DNC_BATCH):
                await db.copy_records_to_table(
                    "smsvn_ad_dnc_stage", records=((n,) for n in batch), columns=("phone",)
                )
            # Two loads of one channel replace its rows one after the other (the later wins).
            await db.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                _TABLE_LOCKS,
                1 + CHANNELS.index(channel),
            )
            # Only the difference is written: a day's snapshot differs little from the last.
            await db.execute("ANALYZE smsvn_ad_dnc_stage")
            await db.execute(
                "DELETE FROM smsvn_ad_dnc d WHERE d.channel = $1 AND NOT EXISTS "
                "(SELECT 1 FROM smsvn_ad_dnc_stage s WHERE s.phone = d.phone)",
                channel,
            )
            await db.execute(
                "INSERT INTO smsvn_ad_dnc (channel, phone) "
                "SELECT DISTINCT $1::text, s.phone FROM smsvn_ad_dnc_stage s WHERE NOT EXISTS "
                "(SELECT 1 FROM smsvn_ad_dnc d WHERE d.channel = $1 AND d.phone = s.phone) "
                "ORDER BY 2",
                channel,
            )
            # Fresh statistics: without them the planner may scan the whole list for a lookup.
            await db.execute("ANALYZE smsvn_ad_dnc")
            loaded: int = await db.fetchval(
                "SELECT count(*) FROM smsvn_ad_dnc WHERE channel = $1", channel
            )
            await db.execute(
                "INSERT INTO smsvn_ad_dnc_snapshots (channel, snapshot, loaded) "
                "VALUES ($1, $2, extract(epoch from clock_timestamp())) "
                "ON CONFLICT (channel) DO UPDATE "
                "SET snapshot = EXCLUDED.snapshot, loaded = EXCLUDED.loaded",
                channel,
                snapshot,
            )
        return loaded

    async def do_not_call(
        self, channel: Channel, phones: Sequence[str]
    ) -> tuple[str | None, set[str]]:
        check_channel(channel)
        numbers = sorted(set(phone_ints(phones)))
        async with self._db() as db:
            # One statement, one snapshot: the date and the numbers of the same list.
            row = await db.fetchrow(
                "SELECT s.snapshot, ARRAY(SELECT d.phone FROM smsvn_ad_dnc d "
                "WHERE d.channel = $1 AND d.phone = ANY($2::int8[])) "
                "FROM smsvn_ad_dnc_snapshots s WHERE s.channel = $1",
                channel,
                numbers,
            )
        if row is None:
            return None, set()
        return str(row[0]), {phone_str(n) for n in row[1]}


def _check(advertiser: str, kind: Kind, channel: Channel) -> str:
    """``advertiser``'s normal form, ``kind`` and ``channel`` checked."""
    normal = check_advertiser(advertiser)
    check_kind(kind)
    check_channel(channel)
    return normal


def _ids_by_phone(rows: Iterable[Any]) -> dict[int, list[int]]:
    """The ids an insert returned, by number, ascending. The rows of one number in one insert
    are alike, so any of its ids serves any of its places."""
    ids: dict[int, list[int]] = {}
    for ident, phone in rows:
        ids.setdefault(int(phone), []).append(int(ident))
    for found in ids.values():
        found.sort()
    return ids


def _lock_key(advertiser: str, channel: Channel, phone: int) -> int:
    """The advisory lock (an int4, in ``_NUMBER_LOCKS``) of one number's reservations."""
    digest = hashlib.blake2b(
        f"{advertiser}\x00{channel}\x00{phone}".encode(), digest_size=4
    ).digest()
    return int.from_bytes(digest, "big", signed=True)
