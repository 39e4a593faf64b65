"""The guard: every advertising send and campaign checked against the rules before it leaves."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import inspect
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from smsvn import phone
from smsvn._checks import checked_path
from smsvn.advertising._records import Channel, Kind, Records, normal_advertiser
from smsvn.advertising._rules import (
    DAY,
    VIETNAM,
    Blocked,
    BlockedNumber,
    ComplianceError,
    OutsideWindow,
    Purpose,
    Rule,
    Rules,
    first_word,
    message_problems,
)
from smsvn.advertising._sources import records_for
from smsvn.bulk import Withheld
from smsvn.errors import OutcomeUnknown, SmsError, ValidationError
from smsvn.failover import Failover
from smsvn.journal._campaign import merge_reports
from smsvn.journal._runner import Screen
from smsvn.models import InboundSms, InvalidNumber, SendResult
from smsvn.providers._base import BaseClient, require_recipients, split_recipients
from smsvn.transport import Departure, departure

if TYPE_CHECKING:
    from smsvn.bulk import BulkReport
    from smsvn.journal import Campaign

__all__ = ["Checked", "DoNotCallLoaded", "Guard"]

_log = logging.getLogger("smsvn")

_CHUNK: Final = 10_000
"""Numbers of a Do-Not-Call file per write."""
_PAGE: Final = 1000
_LEAD: Final = 300.0
"""Seconds before a Do-Not-Call snapshot grows too old after which a campaign claims no batch
(those it holds go out meanwhile: a claim waits at most for the account's turn)."""
_SKEW: Final = 1.0
"""Seconds a record's date may be ahead of the guard's clock (clocks of two machines)."""
_RUN_OPTIONS: Final = frozenset(
    {"concurrency", "lease", "on_progress", "on_result", "keep_results", "claim_for"}
)
"""``Campaign.run``'s own options; the others are the client's send options."""
_CONSENT_WAYS: Final = ("reply", "form", "message", "software")
"""Art. 11(2): a reply to the registration SMS, a form, a message or call to the advertiser,
registration software."""


class Checked(msgspec.Struct, frozen=True, kw_only=True):
    """What a send would do now: the numbers that may get it, and those kept from it (with
    why); numbers that are not Vietnamese mobile numbers are in ``invalid``."""

    allowed: tuple[str, ...]
    blocked: tuple[BlockedNumber, ...] = ()
    invalid: tuple[InvalidNumber, ...] = ()


class DoNotCallLoaded(msgspec.Struct, frozen=True, kw_only=True):
    """A Do-Not-Call snapshot loaded: its date, the numbers on it, the lines that were not a
    number (skipped)."""

    channel: str
    snapshot: str
    numbers: int
    skipped: int


class Guard:
    """Keeps advertising within Decree 91/2020/ND-CP (see ``Rules`` for each rule).

    ``records``: a ``smsvn.Journal`` (records in its store, shared by every process using it),
    a ``Records`` implementation, or None (in memory, one process). ``clock`` gives Unix
    seconds and ``sleep`` waits (both replaceable, for tests and simulations). Use it as an
    async context manager (it opens the records' tables).
    """

    def __init__(
        self,
        rules: Rules,
        records: object = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not isinstance(rules, Rules):
            raise ValidationError("Guard needs advertising.Rules")
        self.rules = rules
        self._records: Records = records_for(records)
        self._clock = clock
        self._sleep = sleep
        self._opened = False
        self._snapshots: set[str] = set()
        """Channels seen with a Do-Not-Call snapshot (a snapshot is replaced, never removed)."""

    def __repr__(self) -> str:
        return f"Guard(advertiser={self.rules.advertiser!r})"

    @property
    def _advertiser(self) -> str:
        """``Rules.advertiser`` as every record is keyed (``normal_advertiser``): a ``Records``
        of the caller's own gets the normal form too."""
        return normal_advertiser(self.rules.advertiser)

    async def __aenter__(self) -> Guard:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Create the records' tables if they are not there."""
        await self._records.open()
        self._opened = True

    async def aclose(self) -> None:
        """Let go of the records (a journal stays open: it is its owner's)."""
        self._opened = False
        await self._records.close()

    def _ready(self) -> None:
        if not self._opened:
            raise ValidationError("the guard is not open: use `async with Guard(...)`")

    def now(self) -> datetime:
        """The guard's clock, in Vietnam time."""
        return datetime.fromtimestamp(self._clock(), VIETNAM)

    # -- checking ------------------------------------------------------------------------------

    async def check(
        self,
        to: str | Sequence[str],
        content: str,
        *,
        purpose: Purpose | str,
        channel: Channel = "sms",
        at: datetime | None = None,
    ) -> Checked:
        """What sending ``content`` to ``to`` for ``purpose`` would do at ``at`` (now when
        None; a scheduled send counts at its scheduled time), recording nothing.

        Raises ``ComplianceError`` when the message breaks a rule, ``OutsideWindow`` outside
        the hours allowed; numbers kept from it are in ``blocked`` with their reasons."""
        purpose = _purpose(purpose)
        recipients = split_recipients(to)
        if not _ruled(purpose):
            return Checked(allowed=tuple(recipients.valid), invalid=tuple(recipients.invalid))
        self._ready()
        when = self._when(at)
        await self._check_message(content, purpose, channel, when)
        allowed, blocked = await self._screen(list(recipients.valid), purpose, channel, when)
        if purpose is Purpose.ADVERTISING:
            counts = await self._records.count(
                self._advertiser, "sent", channel, allowed, since=when.timestamp() - DAY
            )
            cap = self.rules.per_day(channel)
            over = [n for n in allowed if counts.get(n, 0) >= cap]
            blocked += [self._capped(n, channel) for n in over]
            allowed = [n for n in allowed if counts.get(n, 0) < cap]
        elif purpose is Purpose.REGISTRATION:
            counts = await self._records.count(
                self._advertiser, "registration", channel, allowed, since=None
            )
            blocked += [_registered(n) for n in allowed if counts.get(n, 0)]
            allowed = [n for n in allowed if not counts.get(n, 0)]
        return Checked(
            allowed=tuple(_given(n, recipients.given) for n in allowed),
            blocked=tuple(_shown(b, recipients.given) for b in blocked),
            invalid=tuple(recipients.invalid),
        )

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        client: BaseClient,
        to: str | Sequence[str],
        content: str,
        *,
        purpose: Purpose | str,
        **options: Any,
    ) -> SendResult:
        """``client.send(to, content, **options)`` for ``purpose``, within the rules.

        Customer care and OTP go straight through. Advertising and registration messages are
        checked first (the message, the hour, then each number: Do-Not-Call list, refusals,
        consent, the 24-hour cap or the one registration); numbers kept from it come back in
        the result's ``invalid`` as ``BlockedNumber`` with their reasons, like invalid numbers.
        A scheduled send (eSMS ``send_date=``) is checked at the time it is delivered. The
        client must send under ``Rules.brandname`` (``ComplianceError`` otherwise). Raises
        ``ComplianceError``, ``OutsideWindow``, or ``Blocked`` when every number is kept from
        it; nothing is sent then."""
        if not isinstance(client, BaseClient):
            raise ValidationError(f"send needs a client, not {type(client).__name__}")
        purpose = _purpose(purpose)
        if not _ruled(purpose):
            return await client.send(to, content, **options)
        self._ready()
        _check_options(client, options)
        recipients = split_recipients(to)
        require_recipients(recipients, client.provider, "sms/send")
        self._check_sender(client, options, purpose)
        when = self._scheduled(options) or self.now()
        await self._check_message(content, purpose, "sms", when)

        async def deliver(allowed: list[str]) -> SendResult:
            return await client.send(allowed, content, **options)

        result = await self._admit(list(recipients.valid), purpose, "sms", when, deliver)
        if not recipients.given and not recipients.invalid:
            return result
        shown = tuple(
            _shown(n, recipients.given) if isinstance(n, BlockedNumber) else n
            for n in result.invalid
        )
        return msgspec.structs.replace(result, invalid=(*recipients.invalid, *shown))

    async def reserve_calls(self, to: str | Sequence[str]) -> Checked:
        """Take the day's advertising call (Art. 13(5): one a number) for each number of ``to``
        that may be called now: the hours for calls (08:00-17:00), the calls' Do-Not-Call list,
        refusals, consent. Place the calls in ``allowed`` yourself (the providers' voice
        endpoints read OTP codes); ``blocked`` says why the others may not be called. Raises
        ``OutsideWindow`` outside the hours, ``ComplianceError`` without a calls snapshot."""
        self._ready()
        recipients = split_recipients(to)
        when = self.now()
        await self._check_message("", Purpose.ADVERTISING, "call", when)
        numbers = list(dict.fromkeys(recipients.valid))
        allowed, blocked = await self._screen(numbers, Purpose.ADVERTISING, "call", when)
        stamp = when.timestamp()
        ids = await self._records.reserve(
            self._advertiser, "sent", "call", allowed,
            at=stamp, since=stamp - DAY, cap=self.rules.calls_per_day, detail="call",
        )  # fmt: skip
        blocked += [self._capped(n, "call") for n, i in zip(allowed, ids, strict=True) if i is None]
        return Checked(
            allowed=tuple(
                _given(n, recipients.given) for n, i in zip(allowed, ids, strict=True) if i
            ),
            blocked=tuple(_shown(b, recipients.given) for b in blocked),
            invalid=tuple(recipients.invalid),
        )

    def screen(
        self,
        purpose: Purpose | str = Purpose.ADVERTISING,
        *,
        scheduled: datetime | None = None,
        label: str | None = None,
    ) -> Screen:
        """How a campaign's batches pass this guard (``Campaign.run(..., guard=)`` uses it):
        each batch's text and hour are checked as it leaves (``OutsideWindow`` hands it back
        unsent), then its numbers one by one. ``scheduled``: the delivery time of a scheduled
        campaign; ``label`` names the campaign in the send records."""
        purpose = _purpose(purpose)
        passed: set[str] = set()

        async def screen(
            provider: str,
            numbers: list[str],
            content: str,
            resend: bool,
            send: Callable[[list[str]], Awaitable[SendResult]],
        ) -> SendResult:
            if not _ruled(purpose):
                return await send(numbers)
            when = scheduled or self.now()
            if content not in passed:
                # A ``Message`` item's own text is first seen here: a text that breaks a rule
                # fails its batch, unsent.
                await self._check_message(content, purpose, "sms", None)
                if len(passed) < _PAGE:
                    passed.add(content)
            self._check_hour(purpose, "sms", when)
            try:
                # A resend under its request id (eSMS) is screened and counted again, as a
                # message leaving now; if any of its numbers may no longer get it, none does
                # (the first attempt may have reached them: they stay ``unknown``).
                return await self._admit(
                    numbers, purpose, "sms", when, send, whole=resend, detail=label, withheld=True
                )
            except Blocked as exc:
                if resend:
                    raise
                # Nobody in the batch may get it: no request; each number is recorded
                # ``invalid`` with its reason, like a number the provider refused.
                return SendResult(
                    provider=provider, message_id=None, recipients=(), invalid=exc.blocked
                )

        return screen

    async def run(
        self,
        campaign: Campaign,
        client: BaseClient | Failover,
        *,
        purpose: Purpose | str = Purpose.ADVERTISING,
        **options: Any,
    ) -> BulkReport:
        """Run ``campaign`` through ``client`` within the rules: each shared text and each
        client's sender are checked first; outside the hours allowed the run waits (a campaign
        that reaches 22:00 pauses and goes on at 07:00 by itself), unless ``claim_for`` ends
        first; numbers kept from a message end ``invalid`` with their reasons. ``options`` are
        ``Campaign.run``'s (a scheduled campaign, ``send_date=``, is checked at that time)."""
        purpose = _purpose(purpose)
        if not _ruled(purpose):
            return await campaign._run(client, **options)
        self._ready()
        send_options = {k: v for k, v in options.items() if k not in _RUN_OPTIONS}
        clients = client.clients if isinstance(client, Failover) else (client,)
        for each in clients:
            self._check_sender(each, send_options, purpose)
        for text in await campaign.texts():
            await self._check_message(text, purpose, "sms", None)
        scheduled = self._scheduled(send_options)
        screen = self.screen(purpose, scheduled=scheduled, label=f"campaign {campaign.name}")
        window = self.rules.window("sms")
        parts: list[BulkReport] = []
        claim_for = options.pop("claim_for", None)
        started = time.monotonic()
        while True:
            left = None if claim_for is None else claim_for - (time.monotonic() - started)
            if left is not None and left <= 0:
                break
            now = self.now()
            if scheduled is not None:
                self._check_hour(purpose, "sms", scheduled)  # one time for every batch
            elif not window.contains(now):
                opens = window.opens_at(now)
                wait = (opens - now).total_seconds()
                if left is not None and wait >= left:
                    break  # it would be out of time before the hours open: all stays pending
                _log.info("%s: outside advertising hours; waiting until %s", campaign.name, opens)
                await self._sleep(wait)
                continue
            # Claim nothing after the Do-Not-Call snapshot grows too old (a margin before,
            # for the batches already claimed to go out): the rest stays pending, and the run
            # stops with why; a newer snapshot and a resume send it.
            snapshot, _ = await self._records.do_not_call("sms", [])
            ends = self._snapshot_ends(snapshot)
            fresh = None if ends is None else (ends - (scheduled or now)).total_seconds()
            if fresh is not None and (fresh <= 0 or (scheduled is None and fresh <= _LEAD)):
                stale = ComplianceError([_stale("sms", snapshot, ends or now)])
                if not parts:
                    raise stale
                return msgspec.structs.replace(merge_reports(parts), aborted=stale)
            bound = None if fresh is None or scheduled is not None else fresh - _LEAD
            began = time.monotonic()
            report = await campaign._run(
                client, screen=screen, claim_for=_tighter(left, bound), **options
            )
            parts.append(report)
            if isinstance(report.aborted, OutsideWindow) and scheduled is None:
                continue
            if (
                bound is not None
                and report.aborted is None
                and (left is None or bound < left)
                and time.monotonic() - began >= bound
                and (await campaign.counts()).pending
            ):
                continue  # it stopped claiming for the snapshot's age: the loop says so
            break
        if not parts:
            return _nothing(clients)
        return merge_reports(parts)

    # -- refusals, consent, Do-Not-Call ---------------------------------------------------------

    async def consent(
        self,
        number: str,
        *,
        how: str,
        channel: Channel = "sms",
        at: datetime | None = None,
        detail: str | None = None,
    ) -> None:
        """Record that ``number`` agreed to advertising (Art. 11(2)): ``how`` is one of
        ``reply`` (to the registration SMS), ``form``, ``message`` (or call, to the advertiser)
        or ``software``. A later refusal overrides it; a later consent overrides a refusal."""
        if how not in _CONSENT_WAYS:
            raise ValidationError(f"how is one of {', '.join(_CONSENT_WAYS)}, not {how!r}")
        self._ready()
        if detail is not None and not isinstance(detail, str):
            raise ValidationError(f"detail is a str, not {type(detail).__name__}")
        canonical = phone.normalize(number)
        await self._records.record(
            self._advertiser, "consent", _channel(channel), [canonical],
            at=self._past(at), detail=_clip(f"{how}: {detail}" if detail is not None else how),
        )  # fmt: skip

    async def import_consents(
        self,
        source: str | os.PathLike[str] | Iterable[str],
        *,
        how: str,
        channel: Channel = "sms",
        at: datetime | None = None,
    ) -> tuple[int, int]:
        """``consent`` for every number of ``source`` (a file: one number a line, or the first
        column of a CSV; or any iterable of strings): (recorded, lines skipped)."""
        if how not in _CONSENT_WAYS:
            raise ValidationError(f"how is one of {', '.join(_CONSENT_WAYS)}, not {how!r}")
        self._ready()
        stamp = self._past(at)
        numbers = _Numbers(source)
        recorded = 0
        async for chunk in numbers.chunks():
            await self._records.record(
                self._advertiser, "consent", _channel(channel), chunk, at=stamp, detail=how
            )
            recorded += len(chunk)
        return recorded, numbers.skipped

    async def refuse(
        self,
        number: str,
        *,
        channels: Sequence[Channel] = ("sms", "call"),
        at: datetime | None = None,
        detail: str | None = None,
    ) -> None:
        """Record that ``number`` refused advertising (on every channel by default): nothing
        more goes to it until it consents again (Art. 13(3)-(4))."""
        self._ready()
        if detail is not None and not isinstance(detail, str):
            raise ValidationError(f"detail is a str, not {type(detail).__name__}")
        canonical = phone.normalize(number)
        stamp = self._past(at)
        for channel in _channels(channels):
            await self._records.record(
                self._advertiser, "refusal", channel, [canonical],
                at=stamp, detail=_clip(str(detail)) if detail is not None else None,
            )  # fmt: skip

    async def inbound(
        self, event: InboundSms, client: BaseClient | None = None
    ) -> Literal["refusal", "consent"] | None:
        """Handle a reply (``smsvn.webhooks``). One that refuses (its first word is one of
        ``Rules.refusal_words``) is recorded at once, and ``client`` sends the one message that
        confirms it (Art. 13(4); no advertising in it). One that consents (``consent_words``),
        from a number that got the registration message, is recorded as its consent. What it
        was: ``"refusal"``, ``"consent"`` or None."""
        if not isinstance(event, InboundSms):
            return None
        word = first_word(event.content)
        refusal = word in {first_word(w) for w in self.rules.refusal_words}
        if not refusal and word not in {first_word(w) for w in self.rules.consent_words}:
            return None
        try:
            number = phone.normalize(event.phone)
        except ValidationError:
            # Not a Vietnamese mobile number (a short code, a foreign sender): nothing to
            # record, and a webhook retry would not change that.
            _log.warning("advertising: a reply from a number that is not a VN mobile number")
            return None
        self._ready()
        if not refusal:
            got = await self._records.count(
                self._advertiser, "registration", "sms", [number], since=None
            )
            if not got.get(number):
                return None  # a consent answers the registration message, which it never got
            await self.consent(number, how="reply", detail=f"inbound SMS: {event.content}")
            return "consent"
        stamp = self._clock()
        await self.refuse(number, detail=f"inbound SMS: {event.content}")
        if client is None:
            return "refusal"
        # One confirmation per refusal: none yet since the number's latest consent.
        latest = await self._records.latest(self._advertiser, "sms", ["consent"], [number])
        since = latest.get((number, "consent"))
        ids = await self._records.reserve(
            self._advertiser, "confirmation", "sms", [number],
            at=stamp, since=since, cap=1, detail=None,
        )  # fmt: skip
        if ids[0] is None:
            return "refusal"
        with _departure() as mark:
            try:
                await client.send(number, self.rules.confirmation_text())
            except BaseException as exc:
                if _nothing_sent(exc, mark):  # a retry of the webhook may confirm it
                    await asyncio.shield(self._records.forget([ids[0]]))
                raise
        return "refusal"

    def handler(
        self,
        client: BaseClient | None = None,
        then: Callable[[Any], Awaitable[None]] | None = None,
    ) -> Callable[[Any], Awaitable[None]]:
        """A ``smsvn.webhooks.app`` handler: replies go through ``inbound`` (confirmations sent
        by ``client``), then every event to ``then`` (if given)."""

        async def handle(event: Any) -> None:
            if isinstance(event, InboundSms):
                await self.inbound(event, client)
            if then is not None:
                await then(event)

        return handle

    async def load_do_not_call(
        self,
        source: str | os.PathLike[str] | Iterable[str],
        *,
        snapshot: date | str,
        channel: Channel = "sms",
    ) -> DoNotCallLoaded:
        """Replace ``channel``'s Do-Not-Call snapshot (Art. 7(3)) with the numbers of
        ``source`` (a file: one number per line, the first column of a CSV; or any iterable
        of strings), taken on ``snapshot``. Lines that are not a number are skipped and
        counted; the old snapshot stays until the new one is in."""
        self._ready()
        day = snapshot.isoformat() if isinstance(snapshot, date) else str(snapshot)
        try:
            taken = date.fromisoformat(day)
        except ValueError:
            raise ValidationError(f"snapshot is a date (YYYY-MM-DD), not {day!r}") from None
        if taken > self.now().date():
            # A mistyped year would keep a list "fresh" for ever (``snapshot_max_age``).
            raise ValidationError(f"snapshot {day} is after today (Vietnam time)")
        day = taken.isoformat()
        numbers = _Numbers(source, strict=True)
        count = await self._records.load_do_not_call(_channel(channel), day, numbers.chunks())
        return DoNotCallLoaded(
            channel=channel, snapshot=day, numbers=count, skipped=numbers.skipped
        )

    # -- records -------------------------------------------------------------------------------

    async def records(self, *, kind: Kind | None = None) -> AsyncIterator[Any]:
        """Every record of this advertiser (or those of ``kind``), oldest first: sends,
        registrations, consents, refusals, confirmations (``AdEvent``; its ``advertiser`` is
        the normal form of ``Rules.advertiser``, as the records key it)."""
        self._ready()
        after = 0
        while True:
            page = await self._records.events(
                advertiser=self._advertiser, kind=kind, after=after, limit=_PAGE
            )
            for event in page:
                after = event.id
                yield event
            if len(page) < _PAGE:
                return

    async def export_csv(self, path: str | os.PathLike[str], *, kind: Kind | None = None) -> int:
        """Write the records to a CSV file (id, time in Vietnam, kind, channel, phone, detail);
        how many. ``path`` is checked, and the guard open, before the file is created."""
        target = checked_path(path, "path")
        self._ready()
        count = 0
        handle = await asyncio.to_thread(open, target, "w", encoding="utf-8", newline="")
        try:
            writer = csv.writer(handle)
            rows: list[list[object]] = [
                ["id", "at", "advertiser", "kind", "channel", "phone", "detail"]
            ]
            async for event in self.records(kind=kind):
                at = datetime.fromtimestamp(event.at, VIETNAM).isoformat(timespec="seconds")
                rows.append(
                    [event.id, at, event.advertiser, event.kind, event.channel, event.phone,
                     event.detail or ""]
                )  # fmt: skip
                count += 1
                if len(rows) >= _PAGE:
                    await asyncio.to_thread(writer.writerows, rows)
                    rows = []
            await asyncio.to_thread(writer.writerows, rows)
        finally:
            await asyncio.to_thread(handle.close)
        return count

    async def prune(self) -> int:
        """Delete this advertiser's records older than ``Rules.keep_for`` (at least a year, Art.
        11) that no rule rests on: never a registration, nor the consent or refusal in force
        for a number."""
        self._ready()
        return await self._records.prune(self._advertiser, self._clock() - self.rules.keep_for)

    # -- inside --------------------------------------------------------------------------------

    def _when(self, at: datetime | None) -> datetime:
        if at is None:
            return self.now()
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValidationError("at is an aware datetime (with its time zone)")
        return _in_vietnam(at, "at")

    def _past(self, at: datetime | None) -> float:
        """``at`` (now when None) as Unix seconds: a record may be dated back, never ahead (a
        consent dated tomorrow would outrank a refusal made today)."""
        if at is None:
            return self._clock()
        stamp = self._when(at).timestamp()
        if stamp > self._clock() + _SKEW:
            raise ValidationError("a record cannot be dated in the future")
        return stamp

    def _scheduled(self, options: dict[str, Any]) -> datetime | None:
        """When a scheduled send (``send_date=``; naive: Vietnam time) is delivered: not before
        now."""
        when = options.get("send_date")
        if when is None:
            return None
        if not isinstance(when, datetime):
            raise ValidationError(f"send_date must be a datetime, not {type(when).__name__}")
        local = _in_vietnam(
            when.replace(tzinfo=VIETNAM) if when.tzinfo is None else when, "send_date"
        )
        return max(local, self.now())

    def _check_sender(self, client: BaseClient, options: dict[str, Any], purpose: Purpose) -> None:
        """Advertising goes under the rules' brandname (Art. 13(8)), never under another
        sender or none."""
        brandname = self.rules.brandname
        if brandname is None:
            return  # ``message_problems`` says so
        sender = client.sender_for(options)
        if sender != brandname:
            raise ComplianceError(
                [f"{purpose.value} goes under the brandname {brandname!r} (Art. 13(8)); this "
                 f"{client.provider} send goes under {repr(sender) if sender else 'none'}"]
            )  # fmt: skip

    def _snapshot_ends(self, snapshot: str | None) -> datetime | None:
        """When a Do-Not-Call snapshot taken on ``snapshot`` becomes too old to advertise under
        (``Rules.snapshot_max_age`` from the start of its day, Vietnam time); None: never."""
        age = self.rules.snapshot_max_age
        if age is None or snapshot is None:
            return None
        try:
            day = date.fromisoformat(snapshot)
        except ValueError:
            return datetime.min.replace(tzinfo=VIETNAM)  # unreadable: as old as can be
        return datetime.combine(day, datetime.min.time(), VIETNAM) + timedelta(seconds=age)

    def _check_snapshot(self, channel: str, snapshot: str | None, when: datetime) -> None:
        """``ComplianceError`` when ``channel``'s Do-Not-Call snapshot is too old at ``when``."""
        ends = self._snapshot_ends(snapshot)
        if ends is not None and when >= ends:
            raise ComplianceError([_stale(channel, snapshot, ends)])

    def _check_hour(self, purpose: Purpose, channel: str, when: datetime) -> None:
        window = self.rules.window(channel)
        if _ruled(purpose) and not window.contains(when):
            opens = window.opens_at(when)
            raise OutsideWindow(
                f"advertising {channel} is allowed from {window.start:%H:%M} to "
                f"{window.end:%H:%M} Vietnam time (Art. 13(6)); next at {opens:%Y-%m-%d %H:%M}",
                opens_at=opens,
                retry_after=max((opens - self.now()).total_seconds(), 0.0),
            )

    async def _check_message(
        self, content: str, purpose: Purpose, channel: str, when: datetime | None
    ) -> None:
        if not isinstance(content, str):
            raise ValidationError(f"content must be a str, not {type(content).__name__}")
        problems = message_problems(self.rules, content, purpose, channel)
        if problems:
            raise ComplianceError(problems)
        if channel not in self._snapshots:
            snapshot, _ = await self._records.do_not_call(_channel(channel), [])
            if snapshot is None:
                raise ComplianceError(
                    [f"no Do-Not-Call snapshot for {channel} is loaded (Art. 7(3)): "
                     "Guard.load_do_not_call(file, snapshot=date)"]
                )  # fmt: skip
            self._snapshots.add(channel)
        if when is not None:
            self._check_hour(purpose, channel, when)

    async def _screen(
        self, numbers: list[str], purpose: Purpose, channel: Channel, when: datetime
    ) -> tuple[list[str], list[BlockedNumber]]:
        """The numbers the Do-Not-Call list, refusals and consent let through, and the rest."""
        if not numbers:
            return [], []
        advertiser = self._advertiser
        snapshot, listed = await self._records.do_not_call(channel, numbers)
        self._check_snapshot(channel, snapshot, when)
        latest = await self._records.latest(advertiser, channel, ["consent", "refusal"], numbers)
        allowed: list[str] = []
        blocked: list[BlockedNumber] = []
        for number in numbers:
            consented = latest.get((number, "consent"))
            refused = latest.get((number, "refusal"))
            if number in listed:
                blocked.append(
                    BlockedNumber(
                        number,
                        f"blocked: Do-Not-Call list (snapshot of {snapshot})",
                        Rule.DO_NOT_CALL,
                    )
                )
            elif refused is not None and (consented is None or consented <= refused):
                day = datetime.fromtimestamp(refused, VIETNAM).date()
                blocked.append(
                    BlockedNumber(number, f"blocked: refused advertising on {day}", Rule.REFUSED)
                )
            elif purpose is Purpose.ADVERTISING and self.rules.require_consent and not consented:
                blocked.append(
                    BlockedNumber(number, "blocked: no consent recorded", Rule.NO_CONSENT)
                )
            else:
                allowed.append(number)
        return allowed, blocked

    async def _admit(
        self,
        numbers: list[str],
        purpose: Purpose,
        channel: Channel,
        when: datetime,
        send: Callable[[list[str]], Awaitable[SendResult]],
        *,
        whole: bool = False,
        detail: str | None = None,
        withheld: bool = False,
    ) -> SendResult:
        """Screen ``numbers``, take the cap (or the one registration) for those let through,
        send to them, and give back what certainly was not sent. ``whole``: all of them or
        none (``Blocked``); ``withheld``: an unknown outcome says which numbers were kept
        (``Withheld``, for a campaign's journal)."""
        allowed, blocked = await self._screen(numbers, purpose, channel, when)
        if whole and blocked:
            raise Blocked(tuple(blocked))
        kind: Kind = "sent" if purpose is Purpose.ADVERTISING else "registration"
        stamp = when.timestamp()
        since = stamp - DAY if purpose is Purpose.ADVERTISING else None
        cap = self.rules.per_day(channel) if purpose is Purpose.ADVERTISING else 1
        ids = await self._records.reserve(
            self._advertiser, kind, channel, allowed,
            at=stamp, since=since, cap=cap, detail=detail,
        )  # fmt: skip
        taken: dict[str, int] = {}
        for number, ident in zip(allowed, ids, strict=True):
            if ident is None:
                blocked.append(
                    self._capped(number, channel)
                    if purpose is Purpose.ADVERTISING
                    else _registered(number)
                )
            else:
                taken.setdefault(number, ident)
        if not taken or (whole and blocked):
            if taken:
                await self._records.forget(list(taken.values()))
            raise Blocked(tuple(blocked))
        with _departure() as mark:
            try:
                result = await send(list(taken))
            except BaseException as exc:
                if _nothing_sent(exc, mark):  # the cap gets its places back
                    await asyncio.shield(self._records.forget(list(taken.values())))
                elif withheld and blocked and isinstance(exc, OutcomeUnknown):
                    # A campaign's batch: its kept numbers are recorded invalid, not unknown.
                    raise Withheld(exc, blocked) from exc
                raise  # else it may have been sent: the cap keeps it
        refused = [taken[str(n)] for n in result.invalid if str(n) in taken]
        if refused:
            await self._records.forget(refused)
        if result.message_id is not None:
            note = f"{result.provider} message {result.message_id}"
            kept = [i for n, i in taken.items() if i not in refused]
            await self._records.annotate(kept, f"{detail}; {note}" if detail else note)
        return msgspec.structs.replace(result, invalid=(*result.invalid, *blocked))

    def _capped(self, number: str, channel: str) -> BlockedNumber:
        cap = self.rules.per_day(channel)
        what = "calls" if channel == "call" else "SMS"
        return BlockedNumber(
            number,
            f"blocked: {cap} advertising {what} to this number in the last 24 hours (Art. 13(5))",
            Rule.CAP,
        )


_SEPARATORS: Final = re.compile(r"[,;\t]")
"""Between a CSV's columns: Excel writes ``;`` in a Vietnamese locale, tabs as "Unicode Text"."""


def _number(value: str) -> str | None:
    """``value`` as a canonical number, also with its leading 0 lost (a spreadsheet's doing);
    None when it is not one."""
    try:
        return phone.normalize(value)
    except ValidationError:
        pass
    if len(value) == 9 and value.isascii() and value.isdigit():
        try:
            return phone.normalize("0" + value)
        except ValidationError:
            return None
    return None


class _Numbers:
    """The numbers of a file (one a line, or a CSV's first column) or of an iterable of strings,
    canonical, in chunks; ``skipped`` counts the lines that were not a number. A file is read
    in a thread, a chunk at a time: a Do-Not-Call list holds millions of lines, and the event
    loop never waits on it."""

    def __init__(
        self, source: str | os.PathLike[str] | Iterable[str], *, strict: bool = False
    ) -> None:
        if isinstance(source, bytes) or not isinstance(source, str | os.PathLike | Iterable):
            raise ValidationError("numbers come from a file path or an iterable of strings")
        if isinstance(source, str | os.PathLike):
            source = checked_path(source, "source")
        self.source: str | Iterable[str] = source
        self.strict = strict
        """Refuse (at the end, before the load is used) an input most of whose lines are not
        numbers: a Do-Not-Call list read wrong must never replace the right one."""
        self.read = 0
        self.skipped = 0

    async def chunks(self) -> AsyncIterator[list[str]]:
        source = self.source
        if not isinstance(source, str):
            for chunk in self._parse(source):
                yield chunk
            return
        handle = await asyncio.to_thread(open, source, encoding="utf-8-sig", newline="")
        try:
            parts = self._parse(handle)
            while True:
                try:
                    part = await asyncio.to_thread(next, parts, None)
                except UnicodeDecodeError:
                    raise ValidationError(
                        f"{os.fspath(source)!r} is not UTF-8 text (save it as UTF-8 or CSV UTF-8)"
                    ) from None
                if part is None:
                    break
                yield part
        finally:
            await asyncio.to_thread(handle.close)

    def _parse(self, lines: Iterable[str]) -> Iterator[list[str]]:
        chunk: list[str] = []
        for line in lines:
            if not isinstance(line, str):
                raise ValidationError(f"a number is a str, not {type(line).__name__}")
            value = _SEPARATORS.split(line, 1)[0].strip().strip('"').strip()
            if not value:
                continue
            number = _number(value)
            if number is None:
                self.skipped += 1
                continue
            chunk.append(number)
            self.read += 1
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if self.strict and self.skipped and self.skipped >= self.read:
            raise ValidationError(
                f"{self.skipped:,} of {self.read + self.skipped:,} lines are not phone numbers: "
                "is it the right file (one number a line, or in the first column)? Nothing "
                "was changed"
            )
        if chunk:
            yield chunk


def _check_options(client: BaseClient, options: dict[str, Any]) -> None:
    """The send options ``client.send`` takes, or a ``ValidationError`` naming the one it does
    not (before anything is recorded or sent)."""
    try:
        inspect.signature(client.send).bind("0912345678", "text", **options)
    except TypeError:
        taken = inspect.signature(client.send).parameters
        unknown = sorted(set(options) - set(taken))
        hint = ""
        if "at" in unknown:
            hint = " (a send leaves now; schedule it with the client's own option, eSMS send_date=)"
        raise ValidationError(
            f"{client.provider} send takes no option {', '.join(unknown) or '(of these)'}{hint}"
        ) from None


@contextlib.contextmanager
def _departure() -> Iterator[Departure]:
    """The running send's ``Departure`` (a bulk run's batch has one), else a fresh one for
    the duration: the transport marks it as the request leaves."""
    mark = departure.get()
    if mark is not None:
        yield mark
        return
    mark = Departure()
    token = departure.set(mark)
    try:
        yield mark
    finally:
        departure.reset(token)


def _nothing_sent(exc: BaseException, mark: Departure) -> bool:
    """Whether a send that raised ``exc`` certainly sent nothing: the provider refused it (an
    error other than ``OutcomeUnknown``), or it stopped before its request left."""
    if isinstance(exc, SmsError):
        return not isinstance(exc, OutcomeUnknown)
    return not mark.left


def _nothing(clients: Sequence[BaseClient]) -> BulkReport:
    """The report of a guarded run that sent nothing (out of time before the hours opened)."""
    from smsvn.bulk import BulkReport

    return BulkReport(
        provider=",".join(c.provider for c in clients), sent=[], failed=[], unknown=[],
        invalid=[], skipped=[], duplicates=0, accepted=0, cost=0.0, segments=0, requests=0,
        taken=0, elapsed=0.0,
    )  # fmt: skip


def _tighter(a: float | None, b: float | None) -> float | None:
    """The shorter of two optional bounds."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def _stale(channel: str, snapshot: str | None, ends: datetime) -> str:
    """Why nothing goes out under a Do-Not-Call snapshot that is too old."""
    return (
        f"the Do-Not-Call snapshot for {channel} (of {snapshot}) served until "
        f"{ends:%Y-%m-%d %H:%M} Vietnam time (Rules.snapshot_max_age): numbers join the list "
        "every day (Art. 7(3)); load a newer one (Guard.load_do_not_call)"
    )


def _registered(number: str) -> BlockedNumber:
    return BlockedNumber(
        number, "blocked: its one registration message was sent before", Rule.REGISTERED
    )


def _purpose(value: Purpose | str) -> Purpose:
    try:
        return Purpose(value)
    except ValueError:
        names = ", ".join(p.value for p in Purpose)
        raise ValidationError(f"purpose is one of {names}, not {value!r}") from None


def _channel(value: str) -> Channel:
    if value == "sms":
        return "sms"
    if value == "call":
        return "call"
    raise ValidationError(f"channel is 'sms' or 'call', not {value!r}")


_EARLIEST: Final = datetime.min.replace(tzinfo=VIETNAM) + timedelta(days=2)
_LATEST: Final = datetime.max.replace(tzinfo=VIETNAM) - timedelta(days=2)
"""The range of a date the guard takes (``at``, ``send_date``), in Vietnam time: the checks do
day arithmetic on it (the last 24 hours, the next opening of the sending hours), which would
overflow within a day of ``datetime``'s own range."""


def _in_vietnam(moment: datetime, name: str) -> datetime:
    """An aware ``moment`` in Vietnam time, or ``ValidationError`` naming it when it lies at the
    edge of ``datetime``'s range (``datetime.max`` in UTC is past it in Vietnam time)."""
    try:
        local: datetime | None = moment.astimezone(VIETNAM)
    except OverflowError:
        local = None
    if local is None or not _EARLIEST <= local <= _LATEST:
        raise ValidationError(f"{name} is out of range: a date from year 1 to 9999, Vietnam time")
    return local


def _channels(value: object) -> tuple[Channel, ...]:
    """``refuse``'s channels: one channel, or a non-empty list or tuple of them, each checked
    before any is recorded (a bad one after a good one must not leave half a refusal)."""
    if isinstance(value, str):
        return (_channel(value),)
    if not isinstance(value, list | tuple) or not value:
        given = "an empty one" if isinstance(value, list | tuple) else type(value).__name__
        raise ValidationError(f"channels is 'sms', 'call' or a non-empty list of them, not {given}")
    return tuple(dict.fromkeys(_channel(channel) for channel in value))


def _ruled(purpose: Purpose) -> bool:
    return purpose in (Purpose.ADVERTISING, Purpose.REGISTRATION)


def _given(number: str, given: dict[str, str] | Any) -> str:
    return str(given.get(number, number)) if given else number


def _shown(number: BlockedNumber, given: dict[str, str] | Any) -> BlockedNumber:
    """``number`` as the caller wrote it."""
    written = _given(str(number), given)
    if written == str(number):
        return number
    return BlockedNumber(written, number.reason, number.rule)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
