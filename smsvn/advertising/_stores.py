"""The checks and conversions every record store shares (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Final

from smsvn.advertising._records import CHANNELS, KINDS, AdEvent, Channel, Kind, normal_advertiser
from smsvn.errors import ValidationError

if TYPE_CHECKING:
    pass


DNC_BATCH: Final = 50_000
"""Do-Not-Call numbers written at a time: a load holds at most this many (plus the caller's
chunk) in memory, however long the list."""
DETAIL_MAX: Final = 500
"""Characters a record's ``detail`` keeps: a longer one is clipped (ending ``...``)."""

# -- what ``prune`` may delete ---------------------------------------------------------------

PRUNED_KINDS: Final[tuple[Kind, ...]] = ("sent", "confirmation")
"""Kinds ``prune`` deletes once old: the cap counts sends for 24 hours, and a confirmation
answers one refusal (at worst, a number that refuses again after its confirmation was pruned
is confirmed again)."""
RULE_KINDS: Final[tuple[Kind, ...]] = ("consent", "refusal")
"""Kinds of which the latest (per advertiser, channel, number) is the rule in force and its
proof: ``prune`` deletes an old one only when a later one supersedes it. ``registration`` is
in neither tuple: one registration message per number, ever, so its record is never pruned."""


def rule_order(event: AdEvent) -> tuple[float, bool]:
    """Orders the ``RULE_KINDS`` events of one number: by time, and on a tie the refusal is the
    later (a tie never lets advertising through, as in the guard)."""
    return event.at, event.kind == "refusal"


def _quoted(kinds: Sequence[Kind]) -> str:
    return ", ".join(f"'{kind}'" for kind in kinds)


PRUNABLE_SQL: Final = f"""(
    e.kind IN ({_quoted(PRUNED_KINDS)})
    OR (e.kind IN ({_quoted(RULE_KINDS)}) AND EXISTS (
        SELECT 1 FROM smsvn_ad_events l
        WHERE l.advertiser = e.advertiser AND l.channel = e.channel AND l.phone = e.phone
        AND l.kind IN ({_quoted(RULE_KINDS)})
        AND l.at >= e.at
        AND (l.at > e.at OR (l.at = e.at AND l.kind = 'refusal' AND e.kind = 'consent'))
    ))
)"""
"""The events (``e``, of ``smsvn_ad_events``) that ``prune`` may delete once old: SQLite's and
PostgreSQL's form of ``PRUNED_KINDS``, ``RULE_KINDS`` and ``rule_order`` (no parameters)."""

# -- the checks and conversions the stores share ---------------------------------------------


def phone_int(phone: object) -> int:
    """A canonical national number (``0912345678``; an 11-digit landline ``02438261234`` too)
    as the integer a store keeps, or ``ValidationError``. ``phone_str`` gives it back."""
    if (
        isinstance(phone, str)
        and 10 <= len(phone) <= 11
        and phone.isascii()
        and phone.isdigit()
        and phone[0] == "0"
        and phone[1] != "0"
    ):
        return int(phone)
    raise ValidationError(
        "advertising records take canonical national numbers (0912345678: "
        "smsvn.phone.normalize gives them), not "
        + (repr(phone[:16]) if isinstance(phone, str) else type(phone).__name__)
    )


def phone_ints(phones: Sequence[str]) -> list[int]:
    """``phone_int`` of each of ``phones`` (a sequence, not one str)."""
    if isinstance(phones, str | bytes):
        raise ValidationError("phones are a sequence of numbers, not one str")
    return [phone_int(phone) for phone in phones]


def phone_str(value: int) -> str:
    """The integer a store keeps back to the canonical national number."""
    return f"0{value:09d}"


def check_kind(kind: object) -> Kind:
    """``kind``, or ``ValidationError`` if it is not one of ``KINDS``."""
    if kind not in KINDS:
        raise ValidationError(f"an advertising record's kind is one of {KINDS}, not {kind!r}")
    return kind


def check_kinds(kinds: Sequence[Kind]) -> list[Kind]:
    """``kinds`` without repeats, each checked."""
    if isinstance(kinds, str):
        raise ValidationError("kinds are a sequence of kinds, not one str")
    return list(dict.fromkeys(check_kind(kind) for kind in kinds))


def check_channel(channel: object) -> Channel:
    """``channel``, or ``ValidationError`` if it is not one of ``CHANNELS``."""
    if channel not in CHANNELS:
        raise ValidationError(f"an advertising channel is one of {CHANNELS}, not {channel!r}")
    return channel


def check_advertiser(advertiser: object) -> str:
    """``advertiser``'s normal form (``normal_advertiser``): how every store keeps, compares
    and gives it back; or ``ValidationError`` when it is not a str or is empty in it (nothing
    but whitespace)."""
    normal = normal_advertiser(advertiser) if isinstance(advertiser, str) else ""
    if not normal:
        raise ValidationError("an advertiser is a non-empty str (not only whitespace)")
    return normal


# -- advertisers kept by an older version ----------------------------------------------------

ADVERTISERS_SQL: Final = """
WITH RECURSIVE names(name) AS (
    SELECT (SELECT advertiser FROM smsvn_ad_events ORDER BY advertiser LIMIT 1)
    UNION ALL
    SELECT (
        SELECT advertiser FROM smsvn_ad_events WHERE advertiser > n.name
        ORDER BY advertiser LIMIT 1
    ) FROM names n WHERE n.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL
"""
"""The distinct advertisers of ``smsvn_ad_events`` (SQLite and PostgreSQL, no parameters): one
seek per advertiser along an index that starts with it (``key`` or ``prune``: a loose index
scan), not a read of every event, so each ``open`` can afford it."""
RENAME_SQL: Final = "UPDATE smsvn_ad_events SET advertiser = {new} WHERE advertiser = {old}"
"""Rewrites one spelling to its normal form (``{new}`` and ``{old}``: the store's placeholders)."""


def renames(names: Iterable[str]) -> list[tuple[str, str]]:
    """(normal form, name) for each of ``names`` (the advertisers a store holds) that is not in
    its normal form: what ``open`` rewrites. Records of older versions written under a name
    that is only whitespace (which no guard could have made) are left alone: no advertiser
    can ask for them, and none is theirs to merge into."""
    found = []
    for name in names:
        normal = normal_advertiser(name)
        if normal and normal != name:
            found.append((normal, name))
    return found


def check_detail(detail: object) -> str:
    """``detail`` (a str) as a store keeps it: clipped to ``DETAIL_MAX`` characters, NUL and
    lone surrogates replaced (PostgreSQL's text refuses NUL, UTF-8 refuses surrogates, and a
    record must not fail over its detail: a refusal's is the text the number sent); or
    ``ValidationError`` when it is not a str."""
    if not isinstance(detail, str):
        raise ValidationError(f"a record's detail is a str, not {type(detail).__name__}")
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 3] + "..."
    if not detail.isascii():
        detail = detail.encode("utf-8", "replace").decode("utf-8")
    return detail.replace("\x00", "\ufffd")


def optional_detail(detail: object) -> str | None:
    """``check_detail`` of ``detail``, or None."""
    return None if detail is None else check_detail(detail)


def check_cap(cap: object) -> int:
    """``cap`` (an int, not a bool, 0 or more), or ``ValidationError``."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValidationError("a cap is an int, 0 or more")
    return cap


def check_snapshot(snapshot: object) -> str:
    """``snapshot`` (an ISO date, ``2026-01-31``), or ``ValidationError``."""
    if isinstance(snapshot, str):
        with contextlib.suppress(ValueError):
            date.fromisoformat(snapshot)
            return snapshot
    raise ValidationError(
        f"a Do-Not-Call snapshot is an ISO date (2026-01-31), not {snapshot!r:.40}"
    )


async def phone_batches(
    chunks: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]], size: int = DNC_BATCH
) -> AsyncIterator[list[int]]:
    """The numbers of ``chunks`` (sync or async) as ``phone_int`` lists of about ``size``:
    a caller's small chunks are gathered (fewer, larger writes) and the memory held stays
    bounded."""
    batch: list[int] = []
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            batch.extend(phone_ints(chunk))
            if len(batch) >= size:
                yield batch
                batch = []
    else:
        if isinstance(chunks, str | bytes):
            raise ValidationError("Do-Not-Call numbers come in chunks (sequences of numbers)")
        for chunk in chunks:
            batch.extend(phone_ints(chunk))
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch
