"""One runner of a campaign: its lease, its commits, and the batches it feeds the bulk engine.

- **Lease.** A runner registers (``enlist``) and renews its lease every quarter of it. A runner
  that stops renewing — killed, paused, cut off from the journal — is dead once the lease runs
  out; on Linux, one whose process is gone is dead at once (``_host``). Any runner sweeps the
  dead: what they reserved is free again; what they had in flight becomes ``unknown``, or, for
  a provider that deduplicates by request id (the registry's ``resend_window``), a pending
  resend under the same id. A runner that finds its own registration gone (others declared it
  dead while it was paused) stops: its claims are no longer its own.
- **Commits.** Marks and outcomes from every batch in flight are grouped: while one transaction
  commits, the next ones queue and go together in the following one.
- **Batches** (``Source``, the engine's ``BatchSource``): claimed from the journal, marked in
  flight before the request leaves (fenced: refused when the claim has lapsed), settled after.
  Only an error that proves nothing was sent hands a batch back (to this runner's next Failover
  provider); a resend under its original id that the provider answers "already received" was
  sent by the earlier attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeAlias

from smsvn._checks import checked_number
from smsvn.bulk import BatchSender, Outcome, Withheld
from smsvn.errors import OutcomeUnknown, SmsError, ValidationError
from smsvn.failover import NOTHING_SENT
from smsvn.journal import _host
from smsvn.journal._store import (
    ClaimedBatch,
    Settle,
    State,
    Store,
    Write,
    phone_int,
)
from smsvn.models import InvalidNumber, SendResult
from smsvn.phone import normalize
from smsvn.providers import Provider
from smsvn.providers._base import BaseClient

__all__ = [
    "CLAIM_FOR_MAX",
    "POLL",
    "RESEND_SHARE",
    "LeaseLost",
    "Runner",
    "Source",
    "check_claim_for",
    "check_lease",
]

_log = logging.getLogger("smsvn")

POLL: Final = 0.2
"""Seconds between looks at the journal while other runners hold the rest of the work."""
RESEND_SHARE: Final = 0.75
"""The share of a provider's deduplication window within which a batch is resent under its
request id (eSMS: 18 of its 24 hours): the rest is margin for clocks and slow runners."""


class LeaseLost(Exception):
    """This runner's lease ran out and others took over its claims (was it paused?): it stops,
    and a new run resumes the campaign."""


class Runner:
    """This process's registration on one campaign: lease, heartbeat, sweeps, commits."""

    def __init__(
        self, store: Store, campaign: int, lease: float, claim_until: float | None = None
    ) -> None:
        self.store = store
        self.campaign = campaign
        self.lease = lease
        self.claim_until = claim_until
        """The event loop's time after which this runner claims nothing more (``run``'s
        ``claim_for``); None: it claims until nothing is left."""
        self.id = 0
        self.lost: LeaseLost | None = None
        self._renewed = 0.0
        self._tokens = 0
        self._heartbeat: asyncio.Task[None] | None = None
        self._queue: list[tuple[Write | Settle, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register, sweep what dead runners left, and start renewing the lease."""
        self.id = await self.store.enlist(self.campaign, _host.me(), self.lease)
        self._renewed = asyncio.get_running_loop().time()
        await self.sweep()
        self._heartbeat = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """Stop renewing and retire: whatever this runner still holds is swept like a dead
        runner's (reserved rows freed; rows in flight unknown or pending a resend)."""
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        flusher = self._flusher
        if flusher is not None:
            with contextlib.suppress(Exception):
                await flusher
        if self.id:
            await self.store.sweep(self.campaign, [self.id])

    def out_of_time(self) -> bool:
        """Whether this runner is past ``claim_until``: it claims no more batches (those it
        holds still finish)."""
        until = self.claim_until
        return until is not None and asyncio.get_running_loop().time() >= until

    def tokens(self, count: int) -> int:
        """The first of ``count`` new batch tokens, unique to this runner."""
        first = self._tokens + 1
        self._tokens += count
        return first

    # -- lease -------------------------------------------------------------------------------

    async def _beat(self) -> None:
        """Renew the lease every quarter of it, and sweep the dead."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.lease / 4)
            try:
                await self.renew()
                if self.lost is not None:
                    return
                await self.sweep()
            except Exception as exc:
                _log.warning("journal: could not renew this runner's lease: %r", exc)
                if loop.time() - self._renewed > self.lease:
                    self.lost = LeaseLost(f"the lease could not be renewed: {exc!r}")
                    return

    async def renew(self) -> bool:
        """Renew the lease now; False (and ``lost`` set) when this runner was declared dead."""
        if self.lost is not None:
            return False
        if not await self.store.renew(self.id, self.lease):
            self.lost = LeaseLost(
                "this runner's lease ran out and others took over its claims (was the process "
                "paused?); run again to resume"
            )
            _log.error("journal: %s", self.lost)
            return False
        self._renewed = asyncio.get_running_loop().time()
        return True

    async def holds(self) -> bool:
        """Whether this runner may still send: its lease is current (renewed now if it looks
        stale, say after the process was paused)."""
        if self.lost is not None:
            return False
        if asyncio.get_running_loop().time() - self._renewed < self.lease * 0.75:
            return True
        return await self.renew()

    async def sweep(self) -> None:
        """Retire the dead runners of the campaign (lease run out, or process gone)."""
        dead = [
            r.id
            for r in await self.store.runners(self.campaign)
            if r.id != self.id and not r.expired and not _host.alive(r.machine, r.pid, r.started)
        ]
        swept = await self.store.sweep(self.campaign, dead)
        if swept.runners:
            _log.warning(
                "journal: %d stopped runner(s): %d reserved freed, %d to resend under their "
                "request id, %d now unknown",
                swept.runners,
                swept.freed,
                swept.resend,
                swept.unknown,
            )

    # -- commits -----------------------------------------------------------------------------

    async def commit(self, item: Write | Settle) -> bool:
        """Write one mark or outcome, grouped with those queued meanwhile; whether the batch
        was still held as expected."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue, []
                try:
                    results = await self.store.write([item for item, _ in group])
                except Exception as exc:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for _, future in group:
                        future.cancel()
                    raise
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flusher = None


class _Claim:
    """A batch of the journal, as the engine sees it (``bulk.Claim``)."""

    __slots__ = ("content", "numbers", "request_id", "resend", "size", "token")

    def __init__(self, batch: ClaimedBatch, request_id: str | None) -> None:
        self.token = batch.token
        self.numbers = batch.numbers
        self.content = batch.text
        self.request_id = request_id
        self.resend = batch.resend
        self.size = len(batch.numbers)


class Source:
    """One runner's batches through one client (one Failover stage): the engine's source."""

    def __init__(
        self,
        runner: Runner,
        client: BaseClient,
        entry: Provider | None,
        *,
        stage: int,
        fresh: bool,
        options: dict[str, Any],
        screen: Screen | None = None,
        owed: list[Settle] | None = None,
    ) -> None:
        self.runner = runner
        self._owed: list[Settle] = [] if owed is None else owed
        """Where a hand-back the journal could not take is kept (see ``release``)."""
        self.client = client
        self.provider = client.provider
        self.stage = stage
        self.fresh = fresh
        self.window = entry.resend_window if entry is not None else None
        self.resent_code = entry.resent_code if entry is not None else None
        self._options = options
        self._senders: dict[str, BatchSender] = {}
        self._generic: BatchSender | None = None
        self._resends: set[str] = set()
        self._screen = screen
        """A guard's check of each batch as it leaves (``smsvn.advertising``), or None."""

    def ahead(self, concurrency: int) -> int:
        """The most batches this source's run may mark in flight before they have a slot
        (``run_claims``'s ``ahead``; the engine uses as many as cover a mark's time):
        ``concurrency`` for a provider that deduplicates by request id, whose batches a crash
        leaves in flight are resent under their id; none for the others, where each would
        become ``unknown``. With a 20 ms provider, a mark's commit of a few ms would otherwise
        cost a tenth of the rate or more."""
        return concurrency if self.window is not None else 0

    def prefetch(self, concurrency: int) -> int:
        """How many batches one claim reserves (``run_claims``'s ``prefetch``): as many as the
        run has slots, within the store's ``claim_rows``; at least one."""
        rows = self.runner.store.claim_rows
        if rows is None:
            return concurrency
        return max(1, min(concurrency, rows // self.client.batch_size))

    def closed(self) -> bool:
        """Whether this runner is past ``claim_until`` or has lost its lease (the engine's
        ``BatchSource.closed``): a batch marked ahead is then handed back, not sent."""
        return self.runner.lost is not None or self.runner.out_of_time()

    def prepare(self, contents: Sequence[str]) -> None:
        """Check every shared content (and the send options) with the client before anything
        is sent: a content the provider cannot take, or an option it does not have, is a
        ``ValidationError`` now."""
        self.client.check_send_options(self._options)
        for content in contents:
            self._sender(content)
        self._generic = self.client.batch_sender(content=None, **self._options)

    def _sender(self, content: str) -> BatchSender:
        sender = self._senders.get(content)
        if sender is None:
            sender = self._senders[content] = self.client.batch_sender(
                content=content, **self._options
            )
        return sender

    # -- the engine's BatchSource ------------------------------------------------------------

    async def claim(self, count: int) -> list[_Claim]:
        """Up to ``count`` batches; waits while other runners hold work that may come back.
        An empty list once nothing is left for this runner, or once it is out of time
        (``claim_for``): its run then ends."""
        runner = self.runner
        store = runner.store
        while True:
            if runner.out_of_time():
                return []
            if not await runner.holds():  # a lease that ran out (say, paused) is lost now
                raise runner.lost or LeaseLost("this runner's lease ran out")
            reserving = asyncio.ensure_future(
                store.claim(
                    runner.campaign,
                    runner.id,
                    batch_size=self.client.batch_size,
                    batches=count,
                    first_token=runner.tokens(count),
                    provider=self.provider,
                    tier=self.stage,
                    fresh=self.fresh,
                )
            )
            try:
                found = await asyncio.shield(reserving)
            except asyncio.CancelledError:
                # The transaction goes on (in the store's thread or server): what it reserves
                # is handed back at once, not held by this runner until it stops.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    taken = await reserving
                    if taken:
                        await self.release([self._batch(batch) for batch in taken])
                raise
            if found is None:
                runner.lost = LeaseLost(
                    "this runner was declared dead (its lease ran out: was the process paused?) "
                    "and others took over its claims; run again to resume"
                )
                raise runner.lost
            if found:
                return [self._batch(batch) for batch in found]
            outlook = await store.outlook(runner.campaign, runner.id)
            if not outlook.held_by_others:
                return []
            await asyncio.sleep(POLL)
            await runner.sweep()

    def _batch(self, batch: ClaimedBatch) -> _Claim:
        request_id = batch.request_id
        if request_id is None and self.window is not None:
            request_id = uuid.uuid4().hex  # durable before it is used: written at departure
        claim = _Claim(batch, request_id)
        if claim.resend and request_id is not None:
            self._resends.add(request_id)
        return claim

    async def depart(self, claim: _Claim) -> bool:
        """Mark the batch in flight, durably; False when it must not be sent.

        Past ``claim_until`` a batch claimed earlier (the engine reserves up to ``concurrency``
        ahead) is handed back instead: then only the batches already in flight at the deadline,
        at most ``concurrency``, are sent after it (``run``'s ``claim_for`` promise)."""
        if self.runner.out_of_time():
            await self.release([claim])
            return False
        if not await self.runner.holds():
            return False
        resend_for = None if self.window is None else self.window * RESEND_SHARE
        return await self.runner.commit(
            Write(
                campaign=self.runner.campaign,
                owner=self.runner.id,
                batch=claim.token,
                size=claim.size,
                provider=self.provider,
                request_id=claim.request_id,
                resend_for=resend_for,
            )
        )

    def send(
        self, numbers: list[str], content: str, request_id: str | None
    ) -> Awaitable[SendResult]:
        """Send one batch with the sender of its content (through the screen, if any). A
        resend under its original id that the provider refuses as already received was sent by
        the earlier attempt. A plain function returning the send: no coroutine of its own for
        an unscreened batch."""
        screen = self._screen
        if screen is None:
            return self._send(numbers, content, request_id)
        resend = request_id is not None and request_id in self._resends
        return screen(
            self.provider,
            numbers,
            content,
            resend,
            lambda allowed: self._send(allowed, content, request_id),
        )

    async def _send(self, numbers: list[str], content: str, request_id: str | None) -> SendResult:
        sender = self._senders.get(content)
        if sender is None:
            sender = self._generic if self._generic is not None else self._sender(content)
        try:
            return await sender(numbers, content, request_id)
        except SmsError as exc:
            if (
                request_id is not None
                and request_id in self._resends
                and self.resent_code is not None
                and exc.code == self.resent_code
                and not isinstance(exc, OutcomeUnknown)
            ):
                return SendResult(
                    provider=self.provider,
                    message_id=None,
                    recipients=tuple(numbers),
                    request_id=request_id,
                )
            raise

    async def settle(
        self, claim: _Claim, result: SendResult | None, error: SmsError | None
    ) -> Outcome | None:
        """Record what became of the batch; the outcome recorded, None if the claim lapsed."""
        if claim.request_id is not None:
            self._resends.discard(claim.request_id)
        campaign, owner, token = self.runner.campaign, self.runner.id, claim.token
        outcome: Outcome
        if result is not None:
            item = Settle(
                campaign,
                owner,
                token,
                State.SENT,
                message_id=result.message_id,
                refused=_kept(result.invalid),
            )
            outcome = Outcome.SENT
        elif error is None or isinstance(error, OutcomeUnknown):
            # Numbers a screen kept out of the request were never sent: ``invalid``. (A batch
            # handed back for a resend under its id keeps them with it: the resend is screened
            # again. eSMS, the one provider that deduplicates, sends one number a batch.)
            kept = _kept(error.kept) if isinstance(error, Withheld) else []
            if self.window is not None:
                # The request may have got in under its id: only a resend under that id may
                # follow (a later run; never this one, which would loop on a failing provider).
                item = Settle(
                    campaign, owner, token, State.PENDING, reason=_why(error), tier=-1,
                    refused=kept,
                )  # fmt: skip
                outcome = Outcome.SKIPPED
            else:
                item = Settle(campaign, owner, token, State.UNKNOWN, reason=_why(error),
                              refused=kept)  # fmt: skip
                outcome = Outcome.UNKNOWN
        elif isinstance(error, NOTHING_SENT):
            # Nothing was sent now. A fresh batch is handed on (to this runner's next provider,
            # or to a later run); a resend stays a resend under its id.
            item = Settle(
                campaign,
                owner,
                token,
                State.PENDING,
                reason=str(error),
                forget=not claim.resend,
                tier=self.stage + 1 if not claim.resend else -1,
            )
            outcome = Outcome.SKIPPED
        elif claim.resend:
            # Refused now, but the earlier attempt under this id may have got in.
            item = Settle(campaign, owner, token, State.UNKNOWN, reason=_why(error))
            outcome = Outcome.UNKNOWN
        else:
            item = Settle(campaign, owner, token, State.FAILED, reason=str(error))
            outcome = Outcome.FAILED
        return outcome if await self.runner.commit(item) else None

    async def release(self, claims: Sequence[_Claim]) -> None:
        """Hand back batches that never left: pending again, for anyone."""
        campaign, owner = self.runner.campaign, self.runner.id
        writes = [
            Settle(campaign, owner, c.token, State.PENDING, forget=not c.resend, release=True)
            for c in claims
        ]
        for claim in claims:
            if claim.request_id is not None:
                self._resends.discard(claim.request_id)
        try:
            await asyncio.gather(*(self.runner.commit(w) for w in writes))
        except Exception:
            # The journal is unreachable: the batches stay in flight there, and a sweep would
            # make them ``unknown``. This process knows they never left: the next run of the
            # campaign through this journal hands them back first (a hand-back that did land
            # meanwhile makes that a no-op: it is fenced on the rows being held still).
            self._owed.extend(writes)
            raise


def _kept(numbers: Sequence[InvalidNumber]) -> list[tuple[int, str]]:
    """Numbers that were not sent (refused by the provider, or kept out by a screen), with
    their reasons, as the store keeps them."""
    refused: list[tuple[int, str]] = []
    for bad in numbers:
        with contextlib.suppress(ValidationError):
            refused.append((phone_int(normalize(str(bad))), bad.reason))
    return refused


def _why(error: SmsError | None) -> str:
    return str(error) if error is not None else "it may have been sent"


Screen: TypeAlias = Callable[
    [str, list[str], str, bool, Callable[[list[str]], Awaitable[SendResult]]],
    Awaitable[SendResult],
]
"""A guard's check of one batch as it leaves: (provider, canonical numbers, content, whether
it is a resend under its request id, send the numbers it lets through) -> the batch's result,
the numbers it kept back in ``invalid`` (recorded ``invalid`` with their reasons)."""

CLAIM_FOR_MAX: Final = 1e9
"""``claim_for`` is below this many seconds (about 31 years: "no deadline" is None)."""


def check_claim_for(claim_for: object) -> float | None:
    """``claim_for`` in seconds (finite, more than 0, less than ``CLAIM_FOR_MAX``; not a bool),
    or None; ``ValidationError`` otherwise. The one check of ``Campaign.run``, ``work_campaign``
    and ``smsvn.taskiq.enqueue``: NaN or infinity would become JSON's null in a task, that is
    no deadline at all."""
    if claim_for is None:
        return None
    return checked_number(
        claim_for, "claim_for", low=0.0, high=CLAIM_FOR_MAX, low_open=True, high_open=True,
        unit="seconds",
    )  # fmt: skip


def check_lease(lease: object) -> float:
    """A lease in seconds (at least half a second, finite), or ``ValidationError``."""
    return checked_number(lease, "lease", low=0.5, high=1e7, high_open=True, unit="seconds")
