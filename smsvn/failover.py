"""Failover: several providers behind one ``send`` / ``send_bulk``.

It moves to the next provider only when the error proves nothing was sent: the request never
left (``ConnectError``), or the provider refused the account (authentication, balance, sender
not registered), said it is unavailable, or kept rate-limiting beyond the wait budget. It never
moves on after ``OutcomeUnknown``: the message may have gone out, and a second provider would
send it twice.

``send_bulk`` hands on to the next provider what provably was not sent (skipped, or failed with
one of ``NOTHING_SENT``), ahead of the rest of the caller's input. Every input still ends
exactly once: sent, reported, or left in the caller's iterator. Handed-on numbers that no
provider took (the last one stopped too) are reported in ``skipped`` of the merged report.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Final, Self

import msgspec

from smsvn import bulk
from smsvn.bulk import BulkOutcome, BulkProgress, BulkReport
from smsvn.errors import (
    AuthenticationError,
    ConnectError,
    InsufficientBalance,
    ProviderUnavailable,
    RateLimited,
    SenderNotRegistered,
    SmsError,
)
from smsvn.models import FailoverAttempt, SendResult
from smsvn.providers._base import BaseClient

__all__ = ["NOTHING_SENT", "Failover"]

NOTHING_SENT: Final[tuple[type[SmsError], ...]] = (
    ConnectError,
    AuthenticationError,
    InsufficientBalance,
    SenderNotRegistered,
    ProviderUnavailable,
    RateLimited,
)
"""Errors that prove a send did not go out, so another provider may send it."""


class Failover:
    """Send through ``primary``; when it provably sent nothing, through each fallback in turn.

    Each client sends with the defaults it was built with (sender, brandname, sms_type).
    Closing the Failover closes every client.
    """

    def __init__(self, primary: BaseClient, *fallbacks: BaseClient) -> None:
        self.clients: tuple[BaseClient, ...] = (primary, *fallbacks)

    async def __aenter__(self) -> Failover:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every client (each is safe to close twice)."""
        for client in self.clients:
            await client.aclose()

    def __repr__(self) -> str:
        return f"Failover({', '.join(c.provider for c in self.clients)})"

    async def send(self, to: str, content: str) -> SendResult:
        """Send ``content`` to one number; ``result.provider`` names who sent it and
        ``result.failovers`` lists the providers passed over, with their errors."""
        passed: list[FailoverAttempt] = []
        for client in self.clients:
            try:
                result = await client.send(to, content)
            except NOTHING_SENT as exc:
                passed.append(FailoverAttempt(provider=client.provider, error=exc))
                continue
            return msgspec.structs.replace(result, failovers=tuple(passed))
        raise passed[-1].error

    async def send_bulk(
        self,
        recipients: Iterable[str] | AsyncIterable[str],
        content: str,
        *,
        concurrency: int | None = None,
        on_progress: Callable[[BulkProgress], object] | None = None,
        on_result: Callable[[BulkOutcome], object] | None = None,
        keep_results: bool = True,
        dedupe: bool = True,
    ) -> BulkReport:
        """Send one ``content`` to every number, moving what provably was not sent to the next
        provider. The report merges every provider's; ``report.parts`` has each of them.

        A number handed on is taken by the next provider before any more of the caller's
        input; those the last provider never took are in the merged report's ``skipped``."""
        bulk.check_source(recipients)
        # Every provider's sender now: content or options one of them refuses is a
        # ValidationError before anything is sent, not after the first provider sent a part.
        senders = [client.batch_sender(content=content) for client in self.clients]
        seen: set[int] | None = set() if dedupe else None
        source: Iterator[str] | AsyncIterator[str] = (
            aiter(recipients) if isinstance(recipients, AsyncIterable) else iter(recipients)
        )
        parts: list[BulkReport] = []
        carry: list[str] = []
        untaken: list[str] = []  # handed on to the last run, which never took them
        carried = 0  # handed-on numbers that a later run took: counted in two parts' ``taken``
        last = len(self.clients) - 1
        for index, client in enumerate(self.clients):
            if seen is not None:
                seen.difference_update(int(n) for n in carry)
            handover = iter(carry)  # the run takes from it first; what it leaves stays here
            report = await bulk.run(
                _prepend(handover, source),
                provider=client.provider,
                send_batch=senders[index],
                content=content,
                batch_size=client.batch_size,
                concurrency=concurrency,
                dedupe=dedupe,
                keep_results=keep_results,
                on_result=on_result,
                on_progress=on_progress,
                seen=seen,
                price=client.price,
                unit=client.unit,
            )
            parts.append(report)
            untaken = list(handover)
            carried += len(carry) - len(untaken)
            if report.aborted is not None and not isinstance(report.aborted, NOTHING_SENT):
                break
            # Still not sent: this run's hand-ons, then what it was handed and never took.
            carry = _handed_on(report) + untaken
            if index == last or (report.aborted is None and not carry):
                break
        if untaken and on_result is not None:
            # The last word on_result has on them was an earlier provider's "failed": they are
            # skipped, as the report says.
            on_result(
                BulkOutcome(
                    outcome=bulk.Outcome.SKIPPED,
                    recipients=tuple(untaken),
                    content=content,
                    reason=f"handed on to {parts[-1].provider}, which did not take it",
                )
            )
        return _merge(parts, untaken, carried)


def _prepend(
    first: Iterator[str], rest: Iterator[str] | AsyncIterator[str]
) -> Iterator[str] | AsyncIterator[str]:
    """``first`` then whatever ``rest`` still holds, keeping sync input sync. Items are pulled
    one at a time, so what the run did not take is still in ``first`` afterwards."""
    if isinstance(rest, Iterator):
        return itertools.chain(first, rest)
    return _Then(first, rest)


class _Then:
    """``first`` (a plain iterator) then the async iterator ``rest``; an object rather than an
    async generator, so nothing is left to finalize when a run stops part-way."""

    __slots__ = ("_first", "_rest")

    def __init__(self, first: Iterator[str], rest: AsyncIterator[str]) -> None:
        self._first = first
        self._rest = rest

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        for item in self._first:
            return item
        return await anext(self._rest)


def _handed_on(report: BulkReport) -> list[str]:
    """The numbers of a run that provably were not sent: skipped, or failed with NOTHING_SENT."""
    numbers = list(report.skipped)
    for batch, error in report.failed:
        if isinstance(error, NOTHING_SENT):
            numbers.extend(batch)
    return numbers


def _merge(parts: list[BulkReport], untaken: list[str], carried: int) -> BulkReport:
    """One report for the whole input. What an earlier provider handed on leaves its failed and
    skipped lists: a later run took it (and reports it), or it is ``untaken`` — handed on to the
    last run, never taken — and is reported skipped here. ``taken`` counts the caller's inputs:
    every part's, less the ``carried`` hand-ons a later run took again. So
    ``accepted + failed + unknown + invalid + duplicates + skipped == taken`` by construction
    of the lists, not by subtraction."""
    earlier, final = parts[:-1], parts[-1]
    failed = [
        (numbers, error)
        for part in earlier
        for numbers, error in part.failed
        if not isinstance(error, NOTHING_SENT)
    ]
    failed.extend(final.failed)
    return BulkReport(
        provider=",".join(p.provider for p in parts),
        sent=[r for p in parts for r in p.sent],
        failed=failed,
        unknown=[u for p in parts for u in p.unknown],
        invalid=[n for p in parts for n in p.invalid],
        skipped=[*final.skipped, *untaken],
        duplicates=sum(p.duplicates for p in parts),
        accepted=sum(p.accepted for p in parts),
        cost=sum(p.cost for p in parts),
        segments=sum(p.segments for p in parts),
        requests=sum(p.requests for p in parts),
        taken=sum(p.taken for p in parts) - carried,
        elapsed=sum(p.elapsed for p in parts),
        aborted=final.aborted,
        parts=tuple(parts),
    )
