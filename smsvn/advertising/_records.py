"""What the advertising rules must remember, and where: the ``Records`` protocol.

Decree 91/2020/ND-CP asks an advertiser to keep registration, consent, refusal and confirmation
records for at least a year (Art. 11), to cap advertising per number per 24 hours (Art. 13(5))
and to honour the Do-Not-Call list (Art. 7(3), 11(1), 13(1)). Everything the guard needs to
remember is an *event* of one advertiser about one number on one channel, so one table of
events (plus the Do-Not-Call snapshot) serves every rule:

- ``sent``: an advertising message or call that was (or may have been) sent: the 24-hour cap
  counts these;
- ``registration``: the one registration message (``DKQC ...``) a number may ever get;
- ``consent`` and ``refusal``: the latest of the two decides whether advertising may go to a
  number;
- ``confirmation``: the one message that confirms a refusal.

Records live in memory (``MemoryRecords``: one process, tests) or in a journal's store (SQLite
or PostgreSQL, shared by every process that opens the same journal). Numbers are canonical
national numbers (``0912345678``); times are Unix seconds. Advertisers are kept and compared in
their normal form (``normal_advertiser``): "Shop ABC" and " shop  abc" are one advertiser, with
one cap and one set of records.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Final, Literal, Protocol

import msgspec

__all__ = ["CHANNELS", "KINDS", "AdEvent", "Channel", "Kind", "Records", "normal_advertiser"]

Kind = Literal["sent", "registration", "consent", "refusal", "confirmation"]
KINDS: Final[tuple[Kind, ...]] = ("sent", "registration", "consent", "refusal", "confirmation")
Channel = Literal["sms", "call"]
CHANNELS: Final[tuple[Channel, ...]] = ("sms", "call")


def normal_advertiser(name: str) -> str:
    """The normal form of an advertiser's name, under which its caps and records are kept:
    Unicode NFC, case folded, surrounding whitespace stripped and inner runs of whitespace made
    one space. Two services configured as "Shop ABC" and " shop  abc", or "Công ty" typed
    composed and decomposed, are one advertiser (Art. 13(5) caps per advertiser, and a refusal
    recorded under one spelling stops the other's advertising). Idempotent; '' when ``name``
    is nothing but whitespace.

    Case folding is done on the decomposed form and the result composed again (Unicode's
    canonical caseless matching): ``NFC(casefold(NFD(name)))``, then the whitespace."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())
    return " ".join(folded.split())


class AdEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One record: what happened (``kind``) between ``advertiser`` (its normal form,
    ``normal_advertiser``) and ``phone`` on ``channel`` at ``at`` (Unix seconds). ``detail``
    says more: how a consent was given, the text of a refusal, the campaign or message id of a
    send."""

    id: int
    advertiser: str
    kind: Kind
    channel: Channel
    phone: str
    at: float
    detail: str | None = None


class Records(Protocol):
    """The guard's memory. Every method is safe to call from many tasks at once; the stores
    shared by processes (a journal's SQLite file, PostgreSQL) make ``reserve`` atomic across
    processes too. An ``advertiser`` is taken in any spelling and kept, compared and given back
    in its normal form (``normal_advertiser``); one that is empty in it is a
    ``ValidationError``. ``open`` brings records kept under other spellings (by an older
    version) to the normal form."""

    async def open(self) -> None:
        """Connect and create the tables if they are not there; rewrite the advertisers of
        records kept by an older version to their normal form (idempotent)."""
        ...

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        ...

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
        """For each phone, atomically: count its ``kind`` events (this advertiser, channel)
        later than ``since`` (all of them when None); below ``cap``, record one more at ``at``
        and give its id; else None. Two processes reserving the same phone at once never both
        pass the cap."""
        ...

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
        """Record one ``kind`` event per phone, unconditionally (a consent, a refusal); the
        new ids."""
        ...

    async def count(
        self,
        advertiser: str,
        kind: Kind,
        channel: Channel,
        phones: Sequence[str],
        *,
        since: float | None,
    ) -> dict[str, int]:
        """phone -> how many ``kind`` events it has later than ``since`` (all when None), for
        the phones that have any (a read: what ``reserve`` would count)."""
        ...

    async def forget(self, ids: Sequence[int]) -> None:
        """Delete reservations whose message certainly was not sent (the cap gets them back)."""
        ...

    async def latest(
        self, advertiser: str, channel: Channel, kinds: Sequence[Kind], phones: Sequence[str]
    ) -> dict[tuple[str, Kind], float]:
        """(phone, kind) -> the time of its latest event, for the phones and kinds that have
        one."""
        ...

    async def load_do_not_call(
        self,
        channel: Channel,
        snapshot: str,
        phones: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]],
    ) -> int:
        """Replace ``channel``'s Do-Not-Call snapshot with ``phones`` (given in chunks) taken on
        ``snapshot`` (an ISO date), in one transaction: readers see the old list or the new
        one, never a part. The count of distinct numbers loaded."""
        ...

    async def do_not_call(
        self, channel: Channel, phones: Sequence[str]
    ) -> tuple[str | None, set[str]]:
        """``channel``'s snapshot date (None when none was loaded) and which of ``phones`` are
        on it."""
        ...

    async def events(
        self,
        *,
        advertiser: str | None = None,
        kind: Kind | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[AdEvent]:
        """Up to ``limit`` events with an id above ``after``, oldest first (a page of an
        export)."""
        ...

    async def annotate(self, ids: Sequence[int], detail: str) -> None:
        """Set the ``detail`` of the events with these ids (a provider's message id added to a
        ``sent`` record after the send); unknown ids are ignored. ``detail`` is kept as
        ``record`` keeps it (a str, clipped to 500 characters)."""
        ...

    async def prune(self, advertiser: str, before: float) -> int:
        """Delete ``advertiser``'s events older than ``before`` that no rule depends on; how
        many. Never lifts a rule:

        - ``sent`` and ``confirmation`` events older than ``before`` go;
        - ``registration`` events never go (one registration message per number, ever);
        - a ``consent`` or ``refusal`` older than ``before`` goes only when a later consent or
          refusal of the same (channel, phone) supersedes it: the latest of the two is the
          rule in force and its proof, kept however old. On equal times the refusal is the
          later (a consent tied with a refusal goes, the refusal stays); two of one kind at
          the same time are both kept;
        - other advertisers' events are untouched.

        The stores delete in bounded batches (short transactions). The guard never asks for
        less than a year (Art. 11)."""
        ...
