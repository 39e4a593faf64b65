"""The fan-out engine behind every client's ``send_bulk`` and ``send_many``.

It streams its input: each number is normalised as it arrives (invalid ones are reported with
the reason), duplicates within the campaign are dropped, numbers are packed into provider-sized
batches (SpeedSMS: 100 of one content; eSMS and Fibo: one), and at most ``concurrency`` batches
are in flight, so memory is bounded by the concurrency, not by the input. The account's rate
limiter, inside the client, is the only brake.

Every input taken is counted exactly once: accepted, refused by the provider (``invalid``),
failed, unknown, invalid, duplicate, or skipped (taken but never sent because the run stopped).
An account-wide refusal (authentication, balance, sender) stops the run from taking more input
and drops the batches whose request has not left yet (skipped): what the caller's iterator still
holds was not taken, so a resumed campaign sends nothing twice.

A batch is registered with the run before its task exists and is filed however the task ends,
even cancelled before its first step (a shutdown cancelling every task). A batch stopped by a
cancellation is ``unknown`` only if its request may have left (the transport's ``Departure``);
one still waiting, say in the account's rate limiter, is ``skipped``: it was not sent.

**Journaled mode** (``run_claims``, behind ``smsvn.Journal``): the same engine takes pre-formed
batches from a durable ``BatchSource`` instead of an iterator. Each batch is claimed (reserved
for this runner), then *departs*: the source records it in flight, durably, before its request
may leave; then its outcome is *settled*, fenced on the claim (a runner whose claim lapsed
changes nothing). Few batches are between departing and their request leaving (the
transport's ``Departure``): one while requests wait for the account's turn (a rate-limited
account); while they leave at once, any (the marks of many then share one commit).
So the batches a crash leaves in flight are the requests that had left plus one waiting. For a
provider that deduplicates by request id (eSMS), a few batches are marked *ahead*, while every
slot is busy (``ahead``): a crash leaves them resends under their id, and the mark's commit is
off the request's path. A batch
cancelled before its request left is handed back to the source (``release``); one that may have
left stays in flight for the source to settle as unknown or to resend under its request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from itertools import chain, islice
from typing import Final, Protocol, TypeVar, cast

import msgspec

from smsvn._checks import checked_int
from smsvn.errors import (
    AuthenticationError,
    InsufficientBalance,
    OutcomeUnknown,
    RateLimited,
    SenderNotRegistered,
    SmsError,
    ValidationError,
)
from smsvn.models import InvalidNumber, Message, SendResult
from smsvn.phone import _all_canonical, normalize
from smsvn.text import segments as count_segments
from smsvn.transport import Departure, departure

__all__ = [
    "ACCOUNT_WIDE",
    "DEFAULT_CONCURRENCY",
    "BatchSender",
    "BatchSource",
    "BulkOutcome",
    "BulkProgress",
    "BulkReport",
    "Claim",
    "Outcome",
    "Withheld",
    "check_callback",
    "check_concurrency",
    "check_source",
    "run",
    "run_claims",
]

_log = logging.getLogger("smsvn")

DEFAULT_CONCURRENCY: Final = 32
"""Batches in flight at once: enough to keep a pool of 64 connections busy over a WAN."""
_SLOW_DEPARTURE: Final = 0.002
"""Seconds from a batch's mark to its request leaving above which requests are waiting for the
account's turn (an event loop turn and a few calls take microseconds)."""
_PROGRESS_INTERVAL: Final = 0.1
_V = TypeVar("_V")

ACCOUNT_WIDE: Final[tuple[type[SmsError], ...]] = (
    AuthenticationError,
    InsufficientBalance,
    SenderNotRegistered,
    RateLimited,
)
"""Errors that every further request of the account would meet too: they stop a bulk run."""


class Withheld(OutcomeUnknown):
    """A batch's request for part of its numbers has an unknown outcome, and ``kept`` (its
    other numbers, each with its reason) were kept out of it, never sent: a screen of a
    journaled run raises it (``smsvn.advertising``), so that those are recorded ``invalid``
    and only the others ``unknown``."""

    def __init__(self, error: OutcomeUnknown, kept: Sequence[InvalidNumber]) -> None:
        super().__init__(
            error.message,
            provider=error.provider,
            code=error.code,
            http_status=error.http_status,
            endpoint=error.endpoint,
            attempts=error.attempts,
        )
        self.kept = tuple(kept)


BatchSender = Callable[[list[str], str, str | None], Awaitable[SendResult]]
"""Sends one batch: canonical numbers, content, request id (eSMS) -> the provider's result."""


class Claim(Protocol):
    """A batch a ``BatchSource`` hands the engine: reserved for this run, not yet in flight."""

    @property
    def numbers(self) -> list[str]:
        """Canonical numbers."""
        ...

    @property
    def content(self) -> str: ...

    @property
    def request_id(self) -> str | None:
        """The id the batch goes under (eSMS ``RequestId``), if any."""
        ...


_C = TypeVar("_C", bound=Claim)


class BatchSource(Protocol[_C]):
    """Where a journaled run takes its batches, and where it records them (``run_claims``)."""

    async def claim(self, count: int) -> Sequence[_C]:
        """Up to ``count`` batches reserved for this run; none when nothing is left for it (a
        source may wait until work held elsewhere comes back or is settled)."""
        ...

    async def depart(self, claim: _C) -> bool:
        """Record the batch in flight, durably, before its request leaves; False when it must
        not be sent: the claim has lapsed (another runner has the batch), or the source handed
        it back (its time is up)."""
        ...

    async def settle(
        self, claim: _C, result: SendResult | None, error: SmsError | None
    ) -> Outcome | None:
        """Record the batch's outcome, fenced on the claim; the outcome recorded: SENT, FAILED,
        UNKNOWN, or SKIPPED (handed back: nothing was sent); None when the claim had lapsed and
        nothing was recorded."""
        ...

    async def release(self, claims: Sequence[_C]) -> None:
        """Hand back batches whose request certainly never left (the run was stopped)."""
        ...

    def closed(self) -> bool:
        """Whether the source takes no more batches out (its time is up, its claims lapsed): a
        batch marked ahead that has not left yet is handed back instead of sent."""
        ...


class Outcome(enum.Enum):
    """What became of one batch or one input number."""

    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"


class BulkOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One outcome streamed to ``on_result``: a sent, failed or unknown batch, or one number
    that was invalid, a duplicate, or skipped."""

    outcome: Outcome
    recipients: tuple[str, ...]
    content: str
    result: SendResult | None = None
    error: SmsError | None = None
    reason: str | None = None


class BulkProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a running bulk send, for progress bars (throttled to ~10 a second)."""

    taken: int
    accepted: int
    failed: int
    unknown: int
    invalid: int
    duplicates: int
    in_flight: int
    requests: int
    elapsed: float

    @property
    def done(self) -> int:
        """Inputs whose fate is settled."""
        return self.accepted + self.failed + self.unknown + self.invalid + self.duplicates

    @property
    def rate(self) -> float:
        """Accepted recipients per second so far."""
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0


class BulkReport(msgspec.Struct, frozen=True, kw_only=True):
    """The per-recipient account of a bulk send.

    ``sent`` holds every SendResult unless ``keep_results=False``; ``failed`` and ``unknown`` hold
    ``(recipients, error)`` pairs (``unknown``: the request left and no answer came; never resent
    automatically); ``invalid`` the numbers refused locally or by the provider, with reasons;
    ``skipped`` the numbers taken from the input and certainly not sent: the run stopped (an
    account-wide error, a cancellation) before their request left, or, in a ``Failover`` report,
    a provider handed them on and no later one took them. A resume may send them.
    ``requests`` counts the batches handed to the provider, less those stopped before leaving.

    ``cost`` is what the provider reported for the accepted sends (SpeedSMS's ``totalPrice``);
    ``estimated_cost`` the cost of the accepted sends it reported none for (eSMS, Fibo),
    estimated as their segments times the client's price per segment (``BaseClient.price``),
    or None when nothing had to be estimated; ``unit`` is the currency of both (``"VND"``, or
    ``"messages"`` for an account counted in messages; None for a client that declares none).
    So ``cost + (estimated_cost or 0)`` prices the whole run, and a report with an estimate
    says so.
    """

    provider: str
    sent: list[SendResult]
    failed: list[tuple[tuple[str, ...], SmsError]]
    unknown: list[tuple[tuple[str, ...], SmsError]]
    invalid: list[InvalidNumber]
    skipped: list[str]
    duplicates: int
    accepted: int
    cost: float
    segments: int
    requests: int
    taken: int
    elapsed: float
    aborted: SmsError | None = None
    parts: tuple[BulkReport, ...] = ()
    """For a ``Failover`` run: the report of each provider it used, in order."""
    estimated_cost: float | None = None
    """The estimated cost of the accepted sends whose provider reported no price, in ``unit``."""
    unit: str | None = None
    """The currency of ``cost`` and ``estimated_cost``: the provider's registered ``unit``."""

    def __post_init__(self) -> None:
        """A report merged from ``parts`` and given no estimate or unit takes its parts':
        their estimates summed, where they share one unit."""
        if not self.parts or self.estimated_cost is not None or self.unit is not None:
            return
        units = {part.unit for part in self.parts}
        if len(units) != 1:
            return
        estimates = [p.estimated_cost for p in self.parts if p.estimated_cost is not None]
        msgspec.structs.force_setattr(self, "unit", units.pop())
        if estimates:
            msgspec.structs.force_setattr(self, "estimated_cost", sum(estimates))

    @property
    def failed_count(self) -> int:
        """Recipients in failed batches."""
        return sum(len(r) for r, _ in self.failed)

    @property
    def unknown_count(self) -> int:
        """Recipients in batches whose outcome is unknown."""
        return sum(len(r) for r, _ in self.unknown)


class _End:
    """Marks the end of the input."""


_END: Final = _End()


class _Failure:
    """An exception the input raised, kept to be raised again where it occurred."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _HandedBack:
    """Items taken from the input and handed back: iterated again, raising a ``_Failure``
    where it comes; ``rest()`` drains what was not read (failures left out)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[object]) -> None:
        self._items = iter(items)

    def __iter__(self) -> Iterator[object]:
        return self

    def __next__(self) -> object:
        item = next(self._items)
        if isinstance(item, _Failure):
            raise item.exc
        return item

    def rest(self) -> list[object]:
        return [item for item in self._items if not isinstance(item, _Failure)]


_NOTHING_BACK: Final[list[object]] = []


class _Batch(Departure):
    """One batch handed to a task. It is registered with the run before the task is created,
    so that it is filed whatever becomes of the task. It is its own ``Departure``: ``left``
    tells whether its request may have left (the transport sets it); ``filed`` whether its
    outcome has been recorded."""

    __slots__ = ("content", "filed", "numbers", "request_id", "started")

    def __init__(self, numbers: list[str], content: str, request_id: str | None) -> None:
        # A campaign waits for its turns: max_wait and deadline bound one call, not a batch.
        super().__init__(unbounded=True)
        self.numbers = numbers
        self.content = content
        self.request_id = request_id
        self.started = False
        self.filed = False


_NOT_DEPARTED: Final = (
    "not sent: its claim lapsed (another runner has it) or the run's claim_for time was up"
)


class _NeverLeft(Exception):
    """A journaled batch stopped by a defect before its request left (nothing was sent)."""


class _Departing(_Batch):
    """A journaled batch. The transport marks ``left`` as its request leaves: the batch then
    gives up its place among those recorded in flight and not yet gone."""

    __slots__ = ("_gone", "_run", "claim", "holding", "marked")

    def __init__(self, claim: Claim, run: _Run) -> None:
        self._gone = False
        self._run = run
        super().__init__(list(claim.numbers), claim.content, claim.request_id)
        self.claim = claim
        self.holding = False
        """It holds a place among the batches marked in flight whose request has not left."""
        self.marked = 0.0
        """When its mark in flight was recorded (the loop's clock)."""

    @property
    def left(self) -> bool:
        """Whether its request may have left."""
        return self._gone

    @left.setter
    def left(self, value: bool) -> None:
        if value and not self._gone:
            self._gone = True
            self._run.let_go(self)
        elif not value:
            # Its attempt was refused unprocessed (a 429, a refused connection): nothing has
            # left while it waits to try again (it keeps no place among those marked ahead).
            self._gone = False


class _Run:
    """One bulk send in progress: counters, in-flight tasks and the input being consumed."""

    def __init__(
        self,
        *,
        provider: str,
        send_batch: BatchSender,
        batch_size: int,
        concurrency: int,
        dedupe: bool,
        keep_results: bool,
        abort_on: tuple[type[SmsError], ...],
        on_result: Callable[[BulkOutcome], object] | None,
        on_progress: Callable[[BulkProgress], object] | None,
        seen: set[int] | None,
        source: BatchSource[Claim] | None = None,
        price: float | None = None,
        unit: str | None = None,
    ) -> None:
        self.provider = provider
        self.source = source
        self.departing = 0
        """Journaled batches holding a place: marked (or being marked), not left yet."""
        self.room = asyncio.Event()
        self.settling = asyncio.Semaphore(concurrency)
        """Journaled batches whose outcome is being recorded (their slots already free)."""
        self.waited = 1.0
        """A running average of the seconds from mark to departure: waits for the account's
        turn. It starts high: until requests are seen leaving at once, one place."""
        self.unsent: list[Claim] = []
        """Journaled batches stopped before their request left: handed back at the end."""
        self.journal_error: Exception | None = None
        self.send_batch = send_batch
        self.batch_size = batch_size
        self.dedupe = dedupe
        self.keep_results = keep_results
        self.abort_on = abort_on
        self.on_result = on_result
        self.on_progress = on_progress
        self.slots = asyncio.Semaphore(concurrency)
        """Batches whose request is under way (at most ``concurrency``)."""
        self.places = self.slots
        """Batch tasks at once: the slots themselves, except for a journaled run that marks
        batches ahead (``ahead``), which gets ``ahead`` places more."""
        self.ahead = 0
        """The most batches marked ahead of a slot (journaled runs of a deduplicating provider)."""
        self.early = 0
        """Batches being marked or marked, without a slot yet (marking ahead)."""
        self.early_room = asyncio.Event()
        self.mark_time = 0.0
        """A running average of a mark's seconds (marking ahead)."""
        self.trip_time = 0.0
        """A running average of a request's seconds (marking ahead)."""
        self.concurrency = concurrency
        self.in_flight: dict[asyncio.Task[None], _Batch] = {}
        self.seen: set[int] = set() if seen is None else seen
        self.carry: str | None = None
        """With ``dedupe`` off, a number repeated within the batch being filled: it opens the
        next batch (a provider sends a number once per request, however often it is listed)."""
        self.handed = _HandedBack(_NOTHING_BACK)
        """Items the fast path handed back that the batch closed by ``carry`` did not read:
        the next batch reads them first."""
        self.started = time.monotonic()
        self.last_progress = 0.0
        self.sent: list[SendResult] = []
        self.failed: list[tuple[tuple[str, ...], SmsError]] = []
        self.unknown: list[tuple[tuple[str, ...], SmsError]] = []
        self.invalid: list[InvalidNumber] = []
        self.skipped: list[str] = []
        self.duplicates = 0
        self.accepted = 0
        self.failed_n = 0
        self.unknown_n = 0
        self.cost = 0.0
        self.segments = 0
        self.estimated_cost: float | None = None
        self.price = price
        self.unit = unit
        self.content_segments: tuple[str, int] = ("", 1)
        """The last content whose segments were counted for an estimate, and its count."""
        self.requests = 0
        self.taken = 0
        self.aborted: SmsError | None = None
        self.callback_error: Exception | None = None

    # -- input -------------------------------------------------------------------------------

    async def consume(
        self,
        sync: Iterator[object] | None,
        source: AsyncIterator[object] | None,
        content: str | None,
    ) -> None:
        """Take input batch by batch, each only once a slot is free, until the end or an abort."""
        try:
            await self._consume(sync, source, content)
        finally:
            # What was taken from the input for a next batch that never came (the run stopped):
            # never sent.
            if self.carry is not None:
                self._skip([self.carry], content or "")
                self.carry = None
            left = [str(item) for item in self.handed.rest()]
            self.taken += len(left)
            self.skipped.extend(left)

    async def _consume(
        self,
        sync: Iterator[object] | None,
        source: AsyncIterator[object] | None,
        content: str | None,
    ) -> None:
        exhausted = False
        while not exhausted and self.aborted is None and self.callback_error is None:
            await self.slots.acquire()
            if self.aborted is not None or self.callback_error is not None:
                # Decided while we waited for the slot: take nothing more.
                self.slots.release()
                break
            numbers: list[str] = []
            text = content
            number: object
            request_id: str | None = None
            batch_input = sync
            taken_back, self.handed = self.handed, _HandedBack(_NOTHING_BACK)
            in_batch: set[str] | None = None if self.dedupe else set()
            try:
                if self.carry is not None:
                    numbers.append(self.carry)
                    self.carry = None
                    if sync is not None:
                        batch_input = chain(taken_back, sync)
                elif sync is not None and content is not None and self.batch_size > 1:
                    numbers, taken_back = self._take_batch(sync)
                    batch_input = chain(taken_back, sync)
                if in_batch is not None:
                    in_batch.update(numbers)
                while len(numbers) < self.batch_size:
                    if batch_input is not None:
                        item = next(batch_input, _END)
                    elif source is not None:
                        item = await anext(source, _END)
                    if item is _END:
                        exhausted = True
                        break
                    self.taken += 1
                    if isinstance(item, Message):
                        number, text, request_id = item.to, item.content, item.request_id
                    else:
                        number = item
                    canonical = self._admit(number, text or "")
                    if canonical is None:
                        continue
                    if in_batch is not None:
                        if canonical in in_batch:
                            self.carry = canonical  # a repeat goes in a request of its own
                            self.handed = taken_back
                            break
                        in_batch.add(canonical)
                    numbers.append(canonical)
            except BaseException:
                self.slots.release()
                self._skip(numbers, text or "")
                # Taken from the input by the fast path, not yet admitted: never sent either.
                left = [str(item) for item in taken_back.rest()]
                self.taken += len(left)
                self.skipped.extend(left)
                raise
            if not numbers or self.aborted is not None or self.callback_error is not None:
                self.slots.release()
                self._skip(numbers, text or "")
                continue
            batch = _Batch(numbers, text or "", request_id)
            task = asyncio.create_task(self._send(batch))
            self.in_flight[task] = batch
            task.add_done_callback(self._ended)
            self.requests += 1

    def _take_batch(self, sync: Iterator[object]) -> tuple[list[str], _HandedBack]:
        """The fast path of a ``send_bulk`` from a plain iterator: take a whole batch at once.

        When the ``batch_size`` items taken are all canonical numbers, none seen before, they
        are the batch, checked and deduplicated at C speed (``phone._all_canonical``, set
        operations) instead of one ``_admit`` each. Otherwise nothing is admitted here: the
        items are handed back, to go ahead of the rest of the input through the one-by-one
        loop, which accounts for each as if this path did not exist (an exception the input
        raised comes after the items it yielded before it).
        Returns the batch (or nothing) and the items handed back (or none).
        """
        size = self.batch_size
        chunk: list[object] = []
        append = chunk.append
        try:
            for item in islice(sync, size):
                append(item)
        except BaseException as exc:
            append(_Failure(exc))
            return [], _HandedBack(chunk)
        if len(chunk) == size and _all_canonical(chunk):
            numbers = cast("list[str]", chunk)
            if not self.dedupe:
                if len(set(numbers)) < size:  # a repeat: the one-by-one loop splits the batch
                    return [], _HandedBack(chunk)
                self.taken += size
                return numbers, _HandedBack(_NOTHING_BACK)
            keys = set(map(int, numbers))
            if len(keys) == size and self.seen.isdisjoint(keys):
                self.seen |= keys
                self.taken += size
                return numbers, _HandedBack(_NOTHING_BACK)
        return [], _HandedBack(chunk)

    def _admit(self, number: object, content: str) -> str | None:
        """The canonical number, or None after recording it as invalid or a duplicate."""
        try:
            if not isinstance(number, str):
                raise ValidationError(f"not a phone number string: {type(number).__name__}")
            canonical = normalize(number)
        except ValidationError as exc:
            self.invalid.append(InvalidNumber(str(number), exc.message))
            self._emit(Outcome.INVALID, (str(number),), content, reason=exc.message)
            return None
        if self.dedupe:
            key = int(canonical)  # an int costs less memory than the string in a huge set
            if key in self.seen:
                self.duplicates += 1
                self._emit(Outcome.DUPLICATE, (canonical,), content, reason="duplicate")
                return None
            self.seen.add(key)
        return canonical

    def _skip(self, numbers: list[str], content: str, reason: str = "run stopped") -> None:
        if numbers:
            self.skipped.extend(numbers)
            self._emit(Outcome.SKIPPED, tuple(numbers), content, reason=reason)

    # -- batches -----------------------------------------------------------------------------

    async def _send(self, batch: _Batch) -> None:
        """Send one batch and file its outcome; a slot is held until it ends."""
        batch.started = True
        departure.set(batch)  # the transport marks it as the request leaves
        content = batch.content
        try:
            result = await self.send_batch(batch.numbers, content, batch.request_id)
        except asyncio.CancelledError:
            self._file_stopped(batch)
            raise
        except OutcomeUnknown as exc:
            self._file_unknown(batch, exc)
        except SmsError as exc:
            batch.filed = True
            recipients = tuple(batch.numbers)
            self.failed.append((recipients, exc))
            self.failed_n += len(recipients)
            self._emit(Outcome.FAILED, recipients, content, error=exc)
            if isinstance(exc, self.abort_on) and self.aborted is None:
                self.aborted = exc
                _log.warning("%s bulk send stopped: %s", self.provider, exc)
                self._drop_unsent()
        except Exception as exc:
            # A defect: unknown if the request may have left, skipped if it never did.
            self._defect(exc, batch)
            self._file_stopped(batch, f"unexpected {type(exc).__name__}")
        else:
            batch.filed = True
            self._file_sent(result, content)
        finally:
            self.slots.release()
            self._progress()

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A batch task ended (done callback). One cancelled before its first step never ran
        its body: release its slot and file its batch here, so its numbers are never lost."""
        batch = self.in_flight.pop(task)
        if not batch.started:
            self.places.release()
        if not batch.filed:
            self._file_stopped(batch)
            self._progress()
        if isinstance(batch, _Departing):
            self.give_place(batch)

    def _drop_unsent(self) -> None:
        """After an account-wide error: cancel the batches whose request has not left (waiting
        for the limiter or not yet started); they are filed skipped. Those that may have left
        finish by themselves."""
        current = asyncio.current_task()
        for task, batch in self.in_flight.items():
            if task is not current and not batch.left:
                task.cancel()

    def _file_stopped(self, batch: _Batch, why: str = "cancelled") -> None:
        """File a batch whose task was stopped (cancelled, or ``why``) before it got an outcome:
        unknown if its request may have left, otherwise skipped (nothing was sent: a resume
        sends it)."""
        if batch.left:
            error = OutcomeUnknown(
                f"{why} while in flight; it may have been sent", provider=self.provider
            )
            self._file_unknown(batch, error)
        else:
            batch.filed = True
            self.requests -= 1
            self._skip(batch.numbers, batch.content, f"{why} before the request left")
            if isinstance(batch, _Departing):
                self.unsent.append(batch.claim)

    def _file_sent(self, result: SendResult, content: str) -> None:
        self.accepted += len(result.recipients)
        if result.cost is not None:
            self.cost += result.cost
        elif self.price is not None:
            self._estimate(result, content)
        if result.segments is not None:
            self.segments += result.segments
        if self.keep_results:
            self.sent.append(result)
        self._emit(Outcome.SENT, result.recipients, content, result=result)
        for bad in result.invalid:
            self.invalid.append(bad)
            self._emit(Outcome.INVALID, (str(bad),), content, reason=bad.reason)

    def _estimate(self, result: SendResult, content: str) -> None:
        """Add a send the provider gave no price for to ``estimated_cost``: its segments (or
        the content's, times its recipients) at the registered price."""
        segments = result.segments
        if segments is None:
            if self.content_segments[0] != content:
                self.content_segments = (content, count_segments(content).segments)
            segments = self.content_segments[1] * len(result.recipients)
        self.estimated_cost = (self.estimated_cost or 0.0) + segments * (self.price or 0.0)

    def _file_unknown(self, batch: _Batch, error: SmsError) -> None:
        batch.filed = True
        recipients = tuple(batch.numbers)
        if isinstance(error, Withheld) and error.kept:
            kept = {str(n) for n in error.kept}
            recipients = tuple(n for n in recipients if n not in kept)
            for bad in error.kept:
                self.invalid.append(bad)
                self._emit(Outcome.INVALID, (str(bad),), batch.content, reason=bad.reason)
        self.unknown.append((recipients, error))
        self.unknown_n += len(recipients)
        self._emit(Outcome.UNKNOWN, recipients, batch.content, error=error)

    # -- journaled batches --------------------------------------------------------------------

    def stopping(self) -> bool:
        """Whether the run takes no more work (an abort, a failed callback or journal)."""
        return (
            self.aborted is not None
            or self.callback_error is not None
            or self.journal_error is not None
        )

    async def consume_claims(self, source: BatchSource[Claim], prefetch: int) -> None:
        """Take claimed batches from ``source``, up to ``prefetch`` at a time (a reservation
        costs a transaction: many share one), and start each when a slot is free, until the
        source has none left or the run stops. The next reservation is made while half the
        current one is still to start, so no slot waits for it. Reserved batches never started
        are handed back."""
        places = self.places
        reserved: deque[Claim] = deque()
        upcoming: asyncio.Task[Sequence[Claim]] | None = None
        exhausted = False
        try:
            while not self.stopping():
                await places.acquire()
                try:
                    if not reserved and not exhausted and not self.stopping():
                        claiming = upcoming if upcoming is not None else source.claim(prefetch)
                        upcoming = None
                        found = await claiming
                        reserved.extend(found)
                        exhausted = not found
                except BaseException:
                    places.release()
                    raise
                if not reserved or self.stopping():
                    places.release()
                    break
                batch = _Departing(reserved.popleft(), self)
                task = asyncio.create_task(self._send_claimed(source, batch))
                self.in_flight[task] = batch
                task.add_done_callback(self._ended)
                self.requests += 1
                self.taken += len(batch.numbers)
                if upcoming is None and not exhausted and len(reserved) <= prefetch // 2:
                    upcoming = asyncio.create_task(source.claim(prefetch))
        finally:
            try:
                if upcoming is not None:
                    # Stopped with a reservation under way: what it reserved is handed back
                    # too (one cut short hands back its own: the source's ``claim`` does).
                    # A cancel of this run arriving meanwhile is not swallowed.
                    upcoming.cancel()
                    await asyncio.wait({upcoming})
                    if not upcoming.cancelled() and upcoming.exception() is None:
                        reserved.extend(upcoming.result())
            finally:
                self.unsent.extend(reserved)

    def let_go(self, batch: _Departing) -> None:
        """``batch``'s request is leaving: learn how long it waited; its place is free."""
        if batch.holding and batch.marked:
            waited = asyncio.get_running_loop().time() - batch.marked
            self.waited = 0.75 * self.waited + 0.25 * waited
        self.give_place(batch)

    async def take_place(self, batch: _Departing) -> None:
        """Wait for a place among the batches marked in flight whose request has not left."""
        while self.waited > _SLOW_DEPARTURE and self.departing >= 1:
            self.room.clear()
            await self.room.wait()
        self.departing += 1
        batch.holding = True

    def give_place(self, batch: _Departing) -> None:
        if batch.holding:
            batch.holding = False
            self.departing -= 1
            self.room.set()

    async def _send_claimed(self, source: BatchSource[Claim], batch: _Departing) -> None:
        """Depart (durably in flight), send, and settle one journaled batch. Its place is free
        once the answer is in and its outcome is being recorded (the next batch need not wait
        for that commit); at most ``concurrency`` outcomes are being recorded at once, so a run
        never holds more than twice its places in flight.

        Marking ahead (``ahead`` > 0), a batch is marked before it has a slot and then waits for
        one: a slot freed by an answer goes to a batch already marked, so the mark's commit is
        not on the request's path. Only for a provider that deduplicates by request id: a crash
        leaves such a batch a resend under its id, never ``unknown``."""
        batch.started = True
        step = "depart"
        slotted = True
        slot = False
        try:
            await self.take_place(batch)
            if self.stopping():
                self._file_stopped(batch)  # decided while it waited: it never left
                return
            if self.ahead:
                slot = await self._slot_after_mark(source, batch)
                if not slot:
                    return
            elif not await self._depart(source, batch):
                return
            loop = asyncio.get_running_loop()
            batch.marked = loop.time()
            step = "send"
            result, error = await self._attempt(batch)
            if self.ahead:
                self.trip_time += 0.1 * (loop.time() - batch.marked - self.trip_time)
            step = "settle"
            async with self.settling:
                self.give_place(batch)
                self._free(slot)
                slotted = slot = False
                outcome = await self._settle(source, batch, result, error)
            self._file_claimed(batch, outcome, result, error)
        except asyncio.CancelledError:
            if not batch.filed:
                self._file_stopped(batch)
            raise
        except _NeverLeft:  # a defect before the request left: handed back, nothing sent
            self._file_stopped(batch, "an unexpected error")
        except Exception as exc:  # the journal failed: stop, and keep the batch accounted for
            if self.journal_error is None:
                self.journal_error = exc
                _log.error("%s journaled run stopping: the journal failed: %r", self.provider, exc)
            if not batch.filed:
                if step == "depart":
                    self._file_stopped(batch)
                else:
                    error = OutcomeUnknown(
                        "the journal failed before the outcome was recorded; it may have been sent",
                        provider=self.provider,
                    )
                    self._file_unknown(batch, error)
        finally:
            self.give_place(batch)
            if slotted:
                self._free(slot)
            self._progress()

    async def _depart(self, source: BatchSource[Claim], batch: _Departing) -> bool:
        """Record the batch in flight; when the source refuses (its claim lapsed, or its time
        is up), file it skipped, never sent, and say False."""
        if await source.depart(batch.claim):
            return True
        batch.filed = True
        self.requests -= 1
        self._skip(batch.numbers, batch.content, _NOT_DEPARTED)
        return False

    async def _slot_after_mark(self, source: BatchSource[Claim], batch: _Departing) -> bool:
        """Marking ahead: wait until fewer batches are marked without a slot than cover a
        mark's time (``concurrency`` x mark / request, plus one), mark the batch, then wait for
        a slot. False when the batch was filed instead (its claim lapsed, or the source closed
        while it waited: then it is handed back, never having left)."""
        loop = asyncio.get_running_loop()
        while self.early >= self._ahead_now():
            self.early_room.clear()
            await self.early_room.wait()
        self.early += 1
        try:
            started = loop.time()
            if not await self._depart(source, batch):
                return False
            self.mark_time += 0.1 * (loop.time() - started - self.mark_time)
            await self.slots.acquire()
        finally:
            self.early -= 1
            self.early_room.set()
        try:
            stopped = self.stopping()
            closed = not stopped and source.closed()
        except BaseException:
            self.slots.release()
            raise
        if stopped or closed:
            self.slots.release()
            self._file_stopped(batch, "the run stopped" if stopped else "the source closed")
            return False
        return True

    def _ahead_now(self) -> int:
        """How many batches may be marked ahead of a slot now."""
        if self.trip_time <= 0.0:
            return 1
        need = math.ceil(self.concurrency * self.mark_time / self.trip_time) + 1
        return min(self.ahead, need)

    def _free(self, slot: bool) -> None:
        """A journaled batch gives back its place (and its slot, marking ahead)."""
        self.places.release()
        if slot:
            self.slots.release()

    async def _attempt(self, batch: _Departing) -> tuple[SendResult | None, SmsError | None]:
        """Send one departed batch: its result, or the error that ended it. ``_NeverLeft``
        when a defect stopped it before its request left."""
        departure.set(batch)  # the transport marks it as the request leaves
        try:
            return await self.send_batch(batch.numbers, batch.content, batch.request_id), None
        except SmsError as exc:
            return None, exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A defect: settled as unknown if the request may have left; handed back if not.
            error = self._defect(exc, batch)
            if not batch.left:
                raise _NeverLeft from None
            return None, error

    def _defect(self, exc: Exception, batch: _Batch) -> SmsError:
        """Log an unexpected error of one batch and stop the run with it (a defect recurs):
        ``OutcomeUnknown`` if the batch's request may have left, else an ``SmsError`` saying
        nothing was sent."""
        _log.exception("%s bulk send: unexpected error in a batch", self.provider)
        name = type(exc).__name__
        error: SmsError
        if batch.left:
            error = OutcomeUnknown(f"unexpected {name}", provider=self.provider)
        else:
            error = SmsError(
                f"unexpected {name} before the request left; nothing was sent",
                provider=self.provider,
            )
        if self.aborted is None:
            self.aborted = error
        return error

    async def _settle(
        self,
        source: BatchSource[Claim],
        batch: _Departing,
        result: SendResult | None,
        error: SmsError | None,
    ) -> Outcome | None:
        """Record the outcome. A cancellation arriving meanwhile waits for the record (the
        request has ended: its outcome is known and must not be lost), then goes on."""
        recording = asyncio.ensure_future(source.settle(batch.claim, result, error))
        try:
            return await asyncio.shield(recording)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._file_claimed(batch, await recording, result, error)
            raise

    def _file_claimed(
        self,
        batch: _Departing,
        outcome: Outcome | None,
        result: SendResult | None,
        error: SmsError | None,
    ) -> None:
        """File a journaled batch as its source recorded it."""
        if batch.filed:
            return
        batch.filed = True
        content = batch.content
        recipients = tuple(batch.numbers)
        if outcome is Outcome.SENT and result is not None:
            self._file_sent(result, content)
        elif outcome is Outcome.FAILED and error is not None:
            self.failed.append((recipients, error))
            self.failed_n += len(recipients)
            self._emit(Outcome.FAILED, recipients, content, error=error)
        elif outcome is Outcome.SKIPPED:
            self._skip(batch.numbers, content, str(error) if error else "handed back")
        else:
            if outcome is None:
                _log.warning("%s: a claim lapsed before its outcome was recorded", self.provider)
                error = OutcomeUnknown(
                    "its claim lapsed (the lease ran out) before the outcome was recorded",
                    provider=self.provider,
                )
            elif not isinstance(error, OutcomeUnknown):
                error = OutcomeUnknown(
                    f"it may have been sent ({error})" if error else "it may have been sent",
                    provider=self.provider,
                )
            self._file_unknown(batch, error)
        if error is not None and isinstance(error, self.abort_on) and self.aborted is None:
            self.aborted = error
            _log.warning("%s journaled run stopped: %s", self.provider, error)
            self._drop_unsent()

    async def drain(self) -> None:
        """Wait until every batch in flight has ended."""
        while self.in_flight:
            await asyncio.wait(set(self.in_flight))

    async def wind_down(self, exc: BaseException) -> None:
        """After the input raised or the run was cancelled (``exc``): no task may outlive the
        call. Batches in flight end by themselves, unless this is a cancellation (or one comes
        meanwhile): then they are cancelled, and waited for."""
        if not isinstance(exc, asyncio.CancelledError):
            with contextlib.suppress(asyncio.CancelledError):
                await self.drain()
        for task in self.in_flight:
            task.cancel()
        if self.in_flight:
            await asyncio.wait(set(self.in_flight))

    async def release_unsent(self) -> None:
        """Hand the batches that never left back to the source (best effort: what it cannot
        take back stays in flight there, and a later sweep settles it)."""
        if self.source is None or not self.unsent:
            return
        unsent, self.unsent = self.unsent, []
        try:
            await asyncio.shield(self.source.release(unsent))
        except Exception as exc:
            _log.warning("%s: %d batch(es) not handed back: %r", self.provider, len(unsent), exc)
        # A cancel arriving meanwhile goes on (the shielded release finishes by itself).

    # -- reporting ---------------------------------------------------------------------------

    def _emit(
        self,
        outcome: Outcome,
        recipients: tuple[str, ...],
        content: str,
        *,
        result: SendResult | None = None,
        error: SmsError | None = None,
        reason: str | None = None,
    ) -> None:
        if self.on_result is not None:
            self._callback(
                self.on_result,
                BulkOutcome(
                    outcome=outcome,
                    recipients=recipients,
                    content=content,
                    result=result,
                    error=error,
                    reason=reason,
                ),
            )

    def _progress(self, final: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not final and now - self.last_progress < _PROGRESS_INTERVAL:
            return
        self.last_progress = now
        self._callback(self.on_progress, self.snapshot())

    def _callback(self, callback: Callable[[_V], object], value: _V) -> None:
        """Call the caller's ``on_result`` / ``on_progress``; if it fails (a sink that went
        down), keep the first error: the run takes no more input and ``run`` raises it once the
        batches in flight have ended, so the caller's record never silently has holes."""
        try:
            callback(value)
        except Exception as exc:
            if self.callback_error is None:
                self.callback_error = exc
                _log.warning("%s bulk send stopping: a callback raised %r", self.provider, exc)

    def snapshot(self) -> BulkProgress:
        """The counters as they stand."""
        return BulkProgress(
            taken=self.taken,
            accepted=self.accepted,
            failed=self.failed_n,
            unknown=self.unknown_n,
            invalid=len(self.invalid),
            duplicates=self.duplicates,
            in_flight=len(self.in_flight),
            requests=self.requests,
            elapsed=time.monotonic() - self.started,
        )

    def report(self) -> BulkReport:
        """The final report."""
        return BulkReport(
            provider=self.provider,
            sent=self.sent,
            failed=self.failed,
            unknown=self.unknown,
            invalid=self.invalid,
            skipped=self.skipped,
            duplicates=self.duplicates,
            accepted=self.accepted,
            cost=self.cost,
            segments=self.segments,
            requests=self.requests,
            taken=self.taken,
            elapsed=time.monotonic() - self.started,
            aborted=self.aborted,
            estimated_cost=self.estimated_cost,
            unit=self.unit,
        )


def check_concurrency(concurrency: object, provider: str | None = None) -> int:
    """How many batches a run sends at once (a positive int, not a bool), or
    ``ValidationError``: the one check of ``send_bulk``, ``Campaign.run`` and a task that
    carries it (a float or a str would otherwise fail at the first comparison, a bare
    ``TypeError``)."""
    return checked_int(concurrency, "concurrency", low=1, provider=provider)


def check_callback(callback: object, name: str, provider: str | None = None) -> None:
    """Refuse an ``on_result`` / ``on_progress`` that is neither callable nor None, before
    anything is taken: called only once a batch is answered, it would stop the run after a
    send with a bare ``TypeError``, the caller's record of it lost. Raises ``ValidationError``
    naming the option."""
    if callback is not None and not callable(callback):
        raise ValidationError(
            f"{name} must be a callable or None, not {type(callback).__name__}",
            provider=provider,
        )


def check_source(source: object, provider: str | None = None) -> None:
    """Refuse one string (or bytes) where an iterable of numbers is expected: iterating
    ``"0912345678"`` would take each character as a number. Raises ``ValidationError``."""
    if isinstance(source, str | bytes | bytearray | memoryview):
        raise ValidationError(
            "recipients must be an iterable of numbers (a list, a generator, a cursor), "
            f"not one {type(source).__name__}",
            provider=provider,
        )


async def run(
    source: Iterable[str] | AsyncIterable[str] | Iterable[Message] | AsyncIterable[Message],
    *,
    provider: str,
    send_batch: BatchSender,
    content: str | None,
    batch_size: int,
    concurrency: int | None = None,
    dedupe: bool = True,
    keep_results: bool = True,
    abort_on: tuple[type[SmsError], ...] = ACCOUNT_WIDE,
    on_result: Callable[[BulkOutcome], object] | None = None,
    on_progress: Callable[[BulkProgress], object] | None = None,
    seen: set[int] | None = None,
    price: float | None = None,
    unit: str | None = None,
) -> BulkReport:
    """Send everything ``source`` yields through ``send_batch`` and account for each input.

    ``content`` is the one text of a ``send_bulk`` (``source`` yields numbers) or None for a
    ``send_many`` (``source`` yields ``Message``s); one ``str`` or ``bytes`` is refused with
    ``ValidationError`` before anything is taken. Cancelling the call cancels the batches in
    flight (filed as unknown if their request may have left, otherwise skipped) and re-raises
    once every task has ended; ``on_result`` is then the record.
    ``seen`` shares duplicate detection between runs (``Failover`` uses it); it holds the
    numbers as ints: 60 to 95 bytes per distinct number (a 32-byte int and its share of the
    set's table, which grows by doubling); 1,000,000 numbers take 63 MiB, 67 MiB at the peak.
    ``price`` (per segment, in ``unit``): what ``estimated_cost`` counts for the sends the
    provider reports no price for (the client's ``price`` and ``unit``); None, no estimate.
    """
    check_source(source, provider)
    check_callback(on_result, "on_result", provider)
    check_callback(on_progress, "on_progress", provider)
    concurrency = check_concurrency(
        DEFAULT_CONCURRENCY if concurrency is None else concurrency, provider
    )
    state = _Run(
        provider=provider,
        send_batch=send_batch,
        batch_size=batch_size,
        concurrency=concurrency,
        dedupe=dedupe,
        keep_results=keep_results,
        abort_on=abort_on,
        on_result=on_result,
        on_progress=on_progress,
        seen=seen,
        price=price,
        unit=unit,
    )
    sync: Iterator[object] | None = None
    aiter_: AsyncIterator[object] | None = None
    if isinstance(source, AsyncIterable):
        aiter_ = aiter(source)
    else:
        sync = iter(source)
    try:
        await state.consume(sync, aiter_, content)
        await state.drain()
    except BaseException as exc:
        await state.wind_down(exc)
        raise
    state._progress(final=True)
    if state.callback_error is not None:
        raise state.callback_error
    return state.report()


async def run_claims(
    source: BatchSource[_C],
    *,
    provider: str,
    send_batch: BatchSender,
    concurrency: int | None = None,
    keep_results: bool = False,
    abort_on: tuple[type[SmsError], ...] = ACCOUNT_WIDE,
    on_result: Callable[[BulkOutcome], object] | None = None,
    on_progress: Callable[[BulkProgress], object] | None = None,
    price: float | None = None,
    unit: str | None = None,
    ahead: int = 0,
    prefetch: int | None = None,
) -> BulkReport:
    """The journaled mode: send the batches ``source`` hands out, each recorded in flight before
    its request leaves and settled after, and account for each as ``run`` does.

    ``ahead``: the most batches that may be marked in flight while waiting for a slot (as many
    as cover a mark's time, measured), so that marks are not on the requests' path; only for a
    provider that deduplicates by request id (a batch a crash leaves in flight is resent under
    its id). A source that ``closed()`` meanwhile takes such a batch back unsent.

    ``prefetch``: how many batches one ``claim`` asks for (default ``concurrency``); the next
    claim is made while half of them are still to start.

    ``taken`` counts the numbers claimed; ``skipped`` holds those handed back (nothing sent:
    a later run sends them). Cancelling the call hands back the batches that never left and
    waits for the outcomes of those that were answered to be recorded. A failure of the
    journal stops the run from claiming more and is raised once the batches in flight ended.
    """
    check_callback(on_result, "on_result", provider)
    check_callback(on_progress, "on_progress", provider)
    concurrency = check_concurrency(
        DEFAULT_CONCURRENCY if concurrency is None else concurrency, provider
    )
    if ahead < 0:
        raise ValidationError("ahead must be 0 or more", provider=provider)
    if prefetch is not None:
        prefetch = checked_int(prefetch, "prefetch", low=1, provider=provider)
    plain = cast("BatchSource[Claim]", source)
    state = _Run(
        provider=provider,
        send_batch=send_batch,
        batch_size=0,
        concurrency=concurrency,
        dedupe=False,
        keep_results=keep_results,
        abort_on=abort_on,
        on_result=on_result,
        on_progress=on_progress,
        seen=None,
        source=plain,
        price=price,
        unit=unit,
    )
    if ahead:
        state.ahead = ahead
        state.places = asyncio.Semaphore(concurrency + ahead)
    try:
        await state.consume_claims(plain, prefetch or concurrency)
        await state.drain()
    except BaseException as exc:
        await state.wind_down(exc)
        await state.release_unsent()
        raise
    await state.release_unsent()
    state._progress(final=True)
    if state.journal_error is not None:
        raise state.journal_error
    if state.callback_error is not None:
        raise state.callback_error
    return state.report()
