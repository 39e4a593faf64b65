"""``Records`` in a journal's SQLite file, shared by every process of the machine that opens it.

The tables (``smsvn_ad_*``) sit next to the journal's, and every statement runs in the
journal's own worker thread (``SqliteStore._call``): one connection per process, never a second
one that would queue for the file's write lock behind the first. A reservation is one ``BEGIN
IMMEDIATE`` transaction (per ``_RESERVE_SLICE`` numbers), which holds the file's write lock
from its first count to its last insert: two processes reserving the same number take turns,
so together they never pass a cap.

A Do-Not-Call list holds millions of numbers and arrives in chunks, some perhaps awaited: it
cannot be one transaction (the worker serves the journal between chunks, and the journal commits
whatever is open before its next statement). So each load writes its numbers under a *load* id
of its own, in batches, invisible to readers (who read the channel's *current* load only), and
a last short transaction makes it current: readers see the old list or the new one, never a
part. The old load's rows are deleted afterwards, in batches.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

from smsvn.advertising._records import AdEvent, Channel, Kind
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
from smsvn.journal._sqlite import SqliteStore, _transaction

__all__ = ["SqliteRecords"]

_T = TypeVar("_T")

_PARAMS: Final = 500
"""Numbers bound to one ``IN (...)`` (well under SQLite's 999-variable floor)."""
_RESERVE_SLICE: Final = 1000
"""Numbers per reservation transaction (a number's places are reserved atomically, not a whole
call's): a reservation of many numbers does not hold the file's write lock for long."""
_DELETE_BATCH: Final = 10_000
"""Events ``prune`` looks at (and at most deletes) per transaction: the write lock is never
held long, however many old records are kept (an old Do-Not-Call list goes ``DNC_BATCH``
numbers at a time)."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS smsvn_ad_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    advertiser TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    phone INTEGER NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS smsvn_ad_events_key
    ON smsvn_ad_events (advertiser, channel, phone, kind, at);
CREATE INDEX IF NOT EXISTS smsvn_ad_events_prune ON smsvn_ad_events (advertiser, at);
CREATE TABLE IF NOT EXISTS smsvn_ad_dnc_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    started REAL NOT NULL,
    done REAL
);
CREATE TABLE IF NOT EXISTS smsvn_ad_dnc (
    channel TEXT NOT NULL,
    load INTEGER NOT NULL,
    phone INTEGER NOT NULL,
    PRIMARY KEY (channel, load, phone)
) WITHOUT ROWID;
"""
# ``AUTOINCREMENT``: an id is never given twice, so a ``forget`` repeated after a crash cannot
# delete a later event, and an export's ``after`` cursor never skips one. ``key`` serves
# ``reserve`` and ``latest`` (and ``prune``'s search for a later consent or refusal); ``prune``
# walks one advertiser's old events in (at, id) order along ``prune`` (the rowid, the id, ends
# every index). ``dnc_snapshots`` holds one row per load: the channel's current list is its
# latest finished one (``done``); loads still under way (or cut short) have no ``done``, and
# their rows in ``dnc`` are invisible.

_COUNT: Final = """
SELECT COUNT(*) FROM (
    SELECT 1 FROM smsvn_ad_events
    WHERE advertiser = ? AND channel = ? AND phone = ? AND kind = ? {since}
    LIMIT ?
)
"""
_INSERT: Final = (
    "INSERT INTO smsvn_ad_events (advertiser, kind, channel, phone, at, detail) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_PRUNE_WINDOW: Final = """
SELECT at, id FROM smsvn_ad_events
WHERE advertiser = ? AND at < ? AND (at, id) > (?, ?)
ORDER BY at, id LIMIT 1 OFFSET ?
"""
"""The last of the next ``_DELETE_BATCH`` old events of an advertiser after a (at, id) cursor:
where ``prune``'s window ends (none: the rest is the last window)."""
_PRUNE: Final = f"""
DELETE FROM smsvn_ad_events WHERE id IN (
    SELECT e.id FROM smsvn_ad_events e
    WHERE e.advertiser = ? AND e.at < ? AND (e.at, e.id) > (?, ?) {{upper}}
    AND {PRUNABLE_SQL}
)
"""
_CURRENT: Final = (
    "SELECT id, snapshot FROM smsvn_ad_dnc_snapshots WHERE channel = ? AND done IS NOT NULL "
    "ORDER BY id DESC LIMIT 1"
)


class SqliteRecords:
    """Records in the SQLite file of an open journal's ``store`` (see the module's docstring).
    ``close`` leaves the journal open: it is the journal's."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"SqliteRecords({self._store!r})"

    async def _call(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._store._call(job)

    async def open(self) -> None:
        def job(db: sqlite3.Connection) -> None:
            with _transaction(db):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                _migrate(db)

        await self._call(job)

    async def close(self) -> None:
        """Nothing of its own to close (the connection is the journal's)."""

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
        when = float(at)
        count = _COUNT.format(since="" if since is None else "AND at > ?")
        bounds: tuple[float, ...] = () if since is None else (float(since),)

        def job(part: Sequence[int], db: sqlite3.Connection) -> list[int | None]:
            ids: list[int | None] = []
            with _transaction(db):
                for phone in part:
                    params = (advertiser, channel, phone, kind, *bounds, cap)
                    (held,) = db.execute(count, params).fetchone()
                    if held < cap:
                        row = (advertiser, kind, channel, phone, when, detail)
                        ids.append(_rowid(db.execute(_INSERT, row)))
                    else:
                        ids.append(None)
            return ids

        # A transaction per slice: other processes get the write lock in between.
        ids: list[int | None] = []
        for start in range(0, len(numbers), _RESERVE_SLICE):
            part = numbers[start : start + _RESERVE_SLICE]
            ids += await self._call(functools.partial(job, part))
        return ids

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
        kept = optional_detail(detail)
        numbers = phone_ints(phones)
        if not numbers:
            return []
        when = float(at)

        def job(db: sqlite3.Connection) -> list[int]:
            with _transaction(db):
                return [
                    _rowid(db.execute(_INSERT, (advertiser, kind, channel, p, when, kept)))
                    for p in numbers
                ]

        return await self._call(job)

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
        bounds: tuple[float, ...] = () if since is None else (float(since),)

        def job(db: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for part in _parts(numbers):
                query = (
                    "SELECT phone, COUNT(*) FROM smsvn_ad_events "
                    f"WHERE advertiser = ? AND channel = ? AND phone IN ({_marks(part)}) "
                    f"AND kind = ? {'' if since is None else 'AND at > ?'} GROUP BY phone"
                )
                params = (advertiser, channel, *part, kind, *bounds)
                found.update((phone_str(p), int(n)) for p, n in db.execute(query, params))
            return found

        return await self._call(job)

    async def forget(self, ids: Sequence[int]) -> None:
        idents = [int(i) for i in ids]
        if not idents:
            return

        def job(db: sqlite3.Connection) -> None:
            with _transaction(db):
                for part in _parts(idents):
                    db.execute(f"DELETE FROM smsvn_ad_events WHERE id IN ({_marks(part)})", part)

        await self._call(job)

    async def annotate(self, ids: Sequence[int], detail: str) -> None:
        text = check_detail(detail)
        idents = [int(i) for i in ids]
        if not idents:
            return

        def job(db: sqlite3.Connection) -> None:
            with _transaction(db):
                for part in _parts(idents):
                    db.execute(
                        f"UPDATE smsvn_ad_events SET detail = ? WHERE id IN ({_marks(part)})",
                        (text, *part),
                    )

        await self._call(job)

    async def latest(
        self, advertiser: str, channel: Channel, kinds: Sequence[Kind], phones: Sequence[str]
    ) -> dict[tuple[str, Kind], float]:
        advertiser = check_advertiser(advertiser)
        check_channel(channel)
        wanted = check_kinds(kinds)
        numbers = sorted(set(phone_ints(phones)))
        if not numbers or not wanted:
            return {}

        def job(db: sqlite3.Connection) -> dict[tuple[str, Kind], float]:
            found: dict[tuple[str, Kind], float] = {}
            for part in _parts(numbers):
                query = (
                    "SELECT phone, kind, MAX(at) FROM smsvn_ad_events "
                    f"WHERE advertiser = ? AND channel = ? AND phone IN ({_marks(part)}) "
                    f"AND kind IN ({_marks(wanted)}) GROUP BY phone, kind"
                )
                for phone, kind, last in db.execute(query, (advertiser, channel, *part, *wanted)):
                    found[phone_str(phone), kind] = float(last)
            return found

        return await self._call(job)

    async def events(
        self,
        *,
        advertiser: str | None = None,
        kind: Kind | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[AdEvent]:
        where: list[str] = ["id > ?"]
        params: list[object] = [int(after)]
        if advertiser is not None:
            where.append("advertiser = ?")
            params.append(check_advertiser(advertiser))
        if kind is not None:
            where.append("kind = ?")
            params.append(check_kind(kind))
        query = (
            "SELECT id, advertiser, kind, channel, phone, at, detail FROM smsvn_ad_events "
            f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
        )

        def job(db: sqlite3.Connection) -> list[AdEvent]:
            return [
                AdEvent(
                    id=ident,
                    advertiser=who,
                    kind=what,
                    channel=how,
                    phone=phone_str(phone),
                    at=float(when),
                    detail=detail,
                )
                for ident, who, what, how, phone, when, detail in db.execute(
                    query, (*params, max(0, int(limit)))
                )
            ]

        return await self._call(job)

    async def prune(self, advertiser: str, before: float) -> int:
        advertiser = check_advertiser(advertiser)
        bound = float(before)

        def job(after: tuple[float, int], db: sqlite3.Connection) -> tuple[int, Any]:
            """One window: up to ``_DELETE_BATCH`` old events after ``after``, what of them may
            go deleted, in one transaction; how many, and where the window ended (None: the
            last one)."""
            with _transaction(db):
                end = db.execute(
                    _PRUNE_WINDOW, (advertiser, bound, *after, _DELETE_BATCH - 1)
                ).fetchone()
                if end is None:
                    query, upto = _PRUNE.format(upper=""), ()
                else:
                    query, upto = _PRUNE.format(upper="AND (e.at, e.id) <= (?, ?)"), tuple(end)
                deleted = db.execute(query, (advertiser, bound, *after, *upto)).rowcount
                return deleted, end

        pruned = 0
        after: tuple[float, int] = (float("-inf"), 0)
        while True:
            deleted, end = await self._call(functools.partial(job, after))
            pruned += deleted
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

        def begin(db: sqlite3.Connection) -> int:
            with _transaction(db):
                return _rowid(
                    db.execute(
                        "INSERT INTO smsvn_ad_dnc_snapshots (channel, snapshot, started) "
                        "VALUES (?, ?, ?)",
                        (channel, snapshot, time.time()),
                    )
                )

        load = await self._call(begin)
        loaded = 0
        try:
            async for batch in phone_batches(phones, DNC_BATCH):
                loaded += await self._call(_writer(channel, load, batch))
            await self._call(_finisher(channel, load))
        except BaseException:
            # Unless it became current before the failure (a cancel while the last step was
            # committing), the load's rows are invisible: delete them now (or the next load of
            # the channel will).
            with contextlib.suppress(Exception):
                await self._sweep(channel, load)
            raise
        await self._sweep(channel, None)
        return loaded

    async def _sweep(self, channel: Channel, load: int | None) -> None:
        """Delete the Do-Not-Call rows of ``channel``'s ``load`` (a load cut short), or (None)
        of every load before the current one: a range of one load's numbers per transaction."""

        def job(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                if load is not None:
                    mark = db.execute(
                        "SELECT done FROM smsvn_ad_dnc_snapshots WHERE id = ?", (load,)
                    ).fetchone()
                    if mark is not None and mark[0] is not None:
                        return False  # it became current before the failure: it stays
                    db.execute("DELETE FROM smsvn_ad_dnc_snapshots WHERE id = ?", (load,))
                    doomed = load
                else:
                    current = db.execute(_CURRENT, (channel,)).fetchone()
                    if current is None:
                        return False
                    oldest = db.execute(
                        "SELECT load FROM smsvn_ad_dnc WHERE channel = ? AND load < ? "
                        "ORDER BY load LIMIT 1",
                        (channel, current[0]),
                    ).fetchone()
                    if oldest is None:
                        return False
                    doomed = int(oldest[0])
                last = db.execute(
                    "SELECT phone FROM smsvn_ad_dnc WHERE channel = ? AND load = ? "
                    "ORDER BY phone LIMIT 1 OFFSET ?",
                    (channel, doomed, DNC_BATCH - 1),
                ).fetchone()
                if last is None:  # the load's last batch
                    db.execute(
                        "DELETE FROM smsvn_ad_dnc WHERE channel = ? AND load = ?", (channel, doomed)
                    )
                    return load is None  # then the next old load, if any
                db.execute(
                    "DELETE FROM smsvn_ad_dnc WHERE channel = ? AND load = ? AND phone <= ?",
                    (channel, doomed, last[0]),
                )
                return True

        while await self._call(job):
            pass

    async def do_not_call(
        self, channel: Channel, phones: Sequence[str]
    ) -> tuple[str | None, set[str]]:
        check_channel(channel)
        numbers = sorted(set(phone_ints(phones)))

        def job(db: sqlite3.Connection) -> tuple[str | None, set[str]]:
            # One read transaction: the current load and its rows from the same snapshot of the
            # file, though a new load may become current (and the old rows go) meanwhile.
            db.execute("BEGIN")
            try:
                current = db.execute(_CURRENT, (channel,)).fetchone()
                if current is None:
                    return None, set()
                load, snapshot = current
                listed: set[str] = set()
                for part in _parts(numbers):
                    query = (
                        "SELECT phone FROM smsvn_ad_dnc WHERE channel = ? AND load = ? "
                        f"AND phone IN ({_marks(part)})"
                    )
                    listed.update(
                        phone_str(p) for (p,) in db.execute(query, (channel, load, *part))
                    )
                return str(snapshot), listed
            finally:
                db.execute("COMMIT")

        return await self._call(job)


def _writer(channel: Channel, load: int, batch: list[int]) -> Callable[[sqlite3.Connection], int]:
    """The job writing ``batch`` into ``load``: how many numbers were new to it."""
    batch.sort()  # b-tree pages filled in order: a few times faster than random inserts

    def job(db: sqlite3.Connection) -> int:
        with _transaction(db):
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO smsvn_ad_dnc (channel, load, phone) VALUES (?, ?, ?)",
                ((channel, load, phone) for phone in batch),
            )
            return db.total_changes - before

    return job


def _finisher(channel: Channel, load: int) -> Callable[[sqlite3.Connection], None]:
    """The job making ``load`` the channel's current list, in one short transaction. If a load
    started later has already finished, that one stays current (this one's rows are swept)."""

    def job(db: sqlite3.Connection) -> None:
        with _transaction(db):
            current = db.execute(_CURRENT, (channel,)).fetchone()
            if current is not None and int(current[0]) > load:
                return
            db.execute(
                "UPDATE smsvn_ad_dnc_snapshots SET done = ? WHERE id = ?", (time.time(), load)
            )
            # Loads started before this one can no longer become current: their bookkeeping
            # goes (their rows go with the sweep that follows).
            db.execute(
                "DELETE FROM smsvn_ad_dnc_snapshots WHERE channel = ? AND id < ?", (channel, load)
            )

    return job


def _migrate(db: sqlite3.Connection) -> None:
    """Records of an older version, kept under advertisers' names as given ("Shop ABC"), go to
    their normal form ("shop abc"), where they count again. Inside the schema's transaction
    (``BEGIN IMMEDIATE``): one process at a time does it, and a second finds nothing left; each
    open looks again (one index seek per advertiser), so rows that a process of the older
    version wrote meanwhile are brought over by the next open."""
    names = [name for (name,) in db.execute(ADVERTISERS_SQL) if isinstance(name, str)]
    for normal, name in renames(names):
        db.execute(RENAME_SQL.format(new="?", old="?"), (normal, name))


def _check(advertiser: str, kind: Kind, channel: Channel) -> str:
    """``advertiser``'s normal form, ``kind`` and ``channel`` checked."""
    normal = check_advertiser(advertiser)
    check_kind(kind)
    check_channel(channel)
    return normal


def _rowid(cursor: sqlite3.Cursor) -> int:
    ident = cursor.lastrowid
    assert ident is not None
    return ident


def _parts(values: Sequence[_T]) -> Iterable[Sequence[_T]]:
    """``values`` in slices of at most ``_PARAMS``."""
    return (values[i : i + _PARAMS] for i in range(0, len(values), _PARAMS))


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))
