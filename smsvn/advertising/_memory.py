"""``Records`` in this process's memory: for tests, demos and a single process.

Nothing survives the process and no other process sees it: a guard shared by several processes
keeps its records in a journal (``_sqlite``, ``_postgres``). Every change happens under one
lock and never awaits in between, so a reservation is atomic for the tasks (and threads) of the
process.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import AsyncIterable, Iterable, Sequence

import msgspec

from smsvn.advertising._records import AdEvent, Channel, Kind
from smsvn.advertising._stores import (
    PRUNED_KINDS,
    RULE_KINDS,
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
    rule_order,
)

__all__ = ["MemoryRecords"]

_Key = tuple[str, Channel, str, Kind]
"""(advertiser, channel, phone, kind): the events that ``reserve`` counts."""


class MemoryRecords:
    """Records in memory (see the module's docstring): events by id and by (advertiser,
    channel, phone, kind), and each channel's Do-Not-Call snapshot as a set of integers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_id = 1
        self._events: dict[int, AdEvent] = {}
        """Every event by id; ids only grow, so the dict is in id order."""
        self._ids: list[int] = []
        """The ids given, ascending, for paging; forgotten ones stay until ``_compact``."""
        self._by_key: dict[_Key, list[AdEvent]] = {}
        self._do_not_call: dict[Channel, tuple[str, set[int]]] = {}
        """channel -> (snapshot date, its numbers); a load replaces the pair, never mutates it."""

    def __repr__(self) -> str:
        return f"MemoryRecords({len(self._events)} events)"

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect (the records stay until the object goes)."""

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
        advertiser = self._check(advertiser, kind, channel)
        check_cap(cap)
        detail = optional_detail(detail)
        numbers = [phone_str(n) for n in phone_ints(phones)]
        result: list[int | None] = []
        with self._lock:
            for phone in numbers:
                held = self._by_key.get((advertiser, channel, phone, kind), ())
                count = len(held) if since is None else sum(1 for e in held if e.at > since)
                if count < cap:
                    result.append(self._add(advertiser, kind, channel, phone, at, detail))
                else:
                    result.append(None)
        return result

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
        advertiser = self._check(advertiser, kind, channel)
        detail = optional_detail(detail)
        numbers = [phone_str(n) for n in phone_ints(phones)]
        with self._lock:
            return [self._add(advertiser, kind, channel, p, at, detail) for p in numbers]

    async def count(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        phones: Sequence[str],
        *,
        since: float | None,
    ) -> dict[str, int]:
        advertiser = self._check(advertiser, kind, channel)
        numbers = dict.fromkeys(phone_str(n) for n in phone_ints(phones))
        found: dict[str, int] = {}
        with self._lock:
            for phone in numbers:
                held = self._by_key.get((advertiser, channel, phone, kind), ())
                count = len(held) if since is None else sum(1 for e in held if e.at > since)
                if count:
                    found[phone] = count
        return found

    async def forget(self, ids: Sequence[int]) -> None:
        with self._lock:
            for ident in ids:
                event = self._events.pop(ident, None)
                if event is not None:
                    self._unindex(event)
            self._compact()

    async def annotate(self, ids: Sequence[int], detail: str) -> None:
        detail = check_detail(detail)
        idents = [int(i) for i in ids]
        with self._lock:
            for ident in idents:
                old = self._events.get(ident)
                if old is None:
                    continue
                new = msgspec.structs.replace(old, detail=detail)
                self._events[ident] = new
                key = (old.advertiser, old.channel, old.phone, old.kind)
                self._by_key[key] = [new if e is old else e for e in self._by_key[key]]

    async def latest(
        self, advertiser: str, channel: Channel, kinds: Sequence[Kind], phones: Sequence[str]
    ) -> dict[tuple[str, Kind], float]:
        advertiser = check_advertiser(advertiser)
        check_channel(channel)
        wanted = check_kinds(kinds)
        numbers = [phone_str(n) for n in phone_ints(phones)]
        found: dict[tuple[str, Kind], float] = {}
        with self._lock:
            for phone in numbers:
                for kind in wanted:
                    held = self._by_key.get((advertiser, channel, phone, kind))
                    if held:
                        found[phone, kind] = max(e.at for e in held)
        return found

    async def load_do_not_call(
        self,
        channel: Channel,
        snapshot: str,
        phones: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]],
    ) -> int:
        check_channel(channel)
        check_snapshot(snapshot)
        numbers: set[int] = set()
        async for batch in phone_batches(phones):
            numbers.update(batch)
        with self._lock:
            self._do_not_call[channel] = (snapshot, numbers)
        return len(numbers)

    async def do_not_call(
        self, channel: Channel, phones: Sequence[str]
    ) -> tuple[str | None, set[str]]:
        check_channel(channel)
        numbers = phone_ints(phones)
        with self._lock:
            loaded = self._do_not_call.get(channel)
        if loaded is None:
            return None, set()
        snapshot, listed = loaded
        return snapshot, {phone_str(n) for n in numbers if n in listed}

    async def events(
        self,
        *,
        advertiser: str | None = None,
        kind: Kind | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[AdEvent]:
        if advertiser is not None:
            advertiser = check_advertiser(advertiser)
        if kind is not None:
            check_kind(kind)
        page: list[AdEvent] = []
        with self._lock:
            start = bisect.bisect_right(self._ids, after)
            for ident in self._ids[start:]:
                if len(page) >= limit:
                    break
                event = self._events.get(ident)
                if (
                    event is not None
                    and (advertiser is None or event.advertiser == advertiser)
                    and (kind is None or event.kind == kind)
                ):
                    page.append(event)
        return page

    async def prune(self, advertiser: str, before: float) -> int:
        advertiser = check_advertiser(advertiser)
        bound = float(before)
        with self._lock:
            mine = [event for event in self._events.values() if event.advertiser == advertiser]
            ruling: dict[tuple[Channel, str], tuple[float, bool]] = {}
            for event in mine:
                if event.kind in RULE_KINDS:
                    order = rule_order(event)
                    place = (event.channel, event.phone)
                    if place not in ruling or order > ruling[place]:
                        ruling[place] = order
            old = [
                event
                for event in mine
                if event.at < bound
                and (
                    event.kind in PRUNED_KINDS
                    or (
                        event.kind in RULE_KINDS
                        and rule_order(event) < ruling[event.channel, event.phone]
                    )
                )
            ]
            for event in old:
                del self._events[event.id]
                self._unindex(event)
            self._compact()
        return len(old)

    # -- helpers (called under the lock) -----------------------------------------------------

    @staticmethod
    def _check(advertiser: str, kind: Kind, channel: Channel) -> str:
        """``advertiser``'s normal form, ``kind`` and ``channel`` checked."""
        normal = check_advertiser(advertiser)
        check_kind(kind)
        check_channel(channel)
        return normal

    def _add(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        phone: str,
        at: float,
        detail: str | None,
    ) -> int:
        ident = self._next_id
        self._next_id += 1
        event = AdEvent(
            id=ident,
            advertiser=advertiser,
            kind=kind,
            channel=channel,
            phone=phone,
            at=float(at),
            detail=detail,
        )
        self._events[ident] = event
        self._ids.append(ident)
        self._by_key.setdefault((advertiser, channel, phone, kind), []).append(event)
        return ident

    def _unindex(self, event: AdEvent) -> None:
        key = (event.advertiser, event.channel, event.phone, event.kind)
        held = [e for e in self._by_key[key] if e is not event]
        if held:
            self._by_key[key] = held
        else:
            del self._by_key[key]

    def _compact(self) -> None:
        """Drop forgotten ids from the paging list once they are most of it."""
        if len(self._ids) > 2 * len(self._events) + 64:
            self._ids = list(self._events)
