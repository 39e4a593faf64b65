"""What a journal store keeps and the protocol every store (SQLite, PostgreSQL) implements.

A store is storage only: the rules (which error proves nothing was sent, when a message may be
resent, which provider deduplicates) belong to the campaign layer, which tells the store what to
write. Every write that a runner makes about a batch is *fenced*: it names the runner (``owner``)
and the batch token it was given (``batch``) and changes rows only while they are still held by
that pair in the state the runner expects, so a runner whose claim lapsed (it was paused past its
lease, and another runner has moved the batch on) changes nothing.

States are small integers in storage (``State``); their names are the public vocabulary.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

import msgspec

__all__ = [
    "STATE_NAMES",
    "Added",
    "Chunk",
    "ClaimedBatch",
    "ClaimedRow",
    "Counts",
    "Outlook",
    "Recipient",
    "Run",
    "RunnerInfo",
    "RunnerRow",
    "Settle",
    "State",
    "Store",
    "Swept",
    "Write",
    "batches_of",
    "group_rows",
    "phone_int",
    "phone_text",
]


class State(enum.IntEnum):
    """Where one input stands. Stored as its number; ``Counts`` and ``Recipient`` name it."""

    PENDING = 0
    """Not sent yet (possibly reserved by a runner that will mark it in flight before sending)."""
    IN_FLIGHT = 1
    """Recorded durably as about to be sent (or sent) by a runner that holds it."""
    SENT = 2
    FAILED = 3
    """The provider refused it: an error that proves nothing was sent."""
    UNKNOWN = 4
    """It may have been sent; never resent automatically (reconcile or resolve it)."""
    INVALID = 5
    """Not a Vietnamese mobile number (or refused as one by the provider)."""
    DUPLICATE = 6
    """The same number with the same text is already in the campaign."""


STATE_NAMES: Final = {state: state.name.lower() for state in State}
"""``State`` -> its public name (``"in_flight"``)."""


def phone_int(canonical: str) -> int:
    """A canonical national number (``"0912345678"``) as the integer the store keeps."""
    return int(canonical)


def phone_text(value: int) -> str:
    """The integer a store keeps back to the canonical national number."""
    return f"0{value:09d}"


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """How many inputs of a campaign are in each state."""

    pending: int = 0
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    invalid: int = 0
    duplicate: int = 0

    @property
    def total(self) -> int:
        """Every input the campaign holds."""
        return (
            self.pending
            + self.in_flight
            + self.sent
            + self.failed
            + self.unknown
            + self.invalid
            + self.duplicate
        )

    @property
    def unsettled(self) -> int:
        """Inputs still to be sent or still held by a runner (pending + in flight)."""
        return self.pending + self.in_flight


class Added(msgspec.Struct, frozen=True, kw_only=True):
    """What one ``campaign.add`` did with its input."""

    read: int = 0
    """Inputs read."""
    added: int = 0
    """New inputs, pending."""
    invalid: int = 0
    """New inputs that are not numbers (recorded as ``invalid`` with the reason)."""
    duplicates: int = 0
    """New inputs whose number already has the same text in the campaign (``duplicate``)."""
    already: int = 0
    """Inputs the campaign already had (the same input added again): nothing was added."""


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """One input of a campaign, as ``campaign.recipients()`` yields it."""

    phone: str
    """The canonical number, or the input as written when it is not a number (``invalid``)."""
    state: str
    """``pending``, ``in_flight``, ``sent``, ``failed``, ``unknown``, ``invalid``, ``duplicate``."""
    content: str
    message_id: str | None = None
    """The provider's id of the request that carried it (SpeedSMS ``tranId``, eSMS ``SMSID``)."""
    request_id: str | None = None
    """The id it was (or will be) sent under: eSMS ``RequestId``; check unknowns with it."""
    provider: str | None = None
    """The provider it was last sent (or attempted) through."""
    attempts: int = 0
    """How many times it was put in flight."""
    error: str | None = None
    """Why it is invalid, a duplicate, failed or unknown."""


class Run(NamedTuple):
    """Consecutive rows of one kind, written with one statement.

    ``plain``: numbers with the input's shared content, as (chain, number). Otherwise rows as
    (chain, state, number, digest, text, given, request id, reason): a ``Message`` (its own
    text, ``state`` PENDING) or an input that is not a number (``state`` INVALID, number None).
    """

    plain: bool
    rows: list[tuple[object, ...]]


class Chunk(NamedTuple):
    """One segment of input, in order: its key prefix and its runs of rows."""

    segment: int
    runs: list[Run]
    size: int
    chains: list[int]
    """Each row's chain value, in input order (SQLite finds with them how many of the
    segment's first rows the campaign has: see ``_sqlite``)."""


class RunnerInfo(NamedTuple):
    """Who a runner is: shown in status, and used to tell a dead process on this machine."""

    name: str
    """``host:pid``, for people."""
    machine: str | None
    """An id of this machine's boot and process namespace (None where it cannot be known)."""
    pid: int
    started: int
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""


class RunnerRow(NamedTuple):
    """A runner as the store has it."""

    id: int
    name: str
    machine: str | None
    pid: int
    started: int
    expired: bool


class ClaimedRow(NamedTuple):
    """One row a claim took, before the campaign groups rows into batches."""

    id: int
    phone: int
    content_id: int | None
    text: str
    request_id: str | None
    resend: bool
    """It was in flight before under ``request_id`` (a resend under its original id)."""


class ClaimedBatch(NamedTuple):
    """One batch a claim reserved, as the runner sends it: the store builds the numbers' text
    (a claim of thousands of new numbers makes no object per row)."""

    token: int
    numbers: list[str]
    """Canonical national numbers (``"0912345678"``)."""
    text: str
    request_id: str | None
    """The id it goes (or went) under; for a ``Message``, the id it was given, if any."""
    resend: bool
    """It was in flight before under ``request_id`` (a resend under its original id)."""


class Write(NamedTuple):
    """Mark one batch in flight (``state`` IN_FLIGHT) before its request leaves: fenced on
    ``owner`` (still registered), ``batch`` (of ``campaign``) and the rows being pending; sets
    the request id it goes under, the provider, and, for a provider that deduplicates, until
    when it may be resent."""

    campaign: int
    owner: int
    batch: int
    size: int
    provider: str
    request_id: str | None
    resend_for: float | None
    """Seconds from now during which the batch may be resent under ``request_id`` (None: never)."""


class Settle(NamedTuple):
    """Record one batch's outcome: fenced on ``owner``, ``batch`` (of ``campaign``) and the rows
    being in flight
    (or, for ``release``, pending or in flight: a batch that certainly never left).

    ``state`` SENT, FAILED or UNKNOWN is final. PENDING hands the batch back: ``forget`` clears
    its request id (nothing was ever sent under it), otherwise it stays a resend under its id;
    ``tier`` is the Failover stage of this runner that may take it again.
    """

    campaign: int
    owner: int
    batch: int
    state: State
    message_id: str | None = None
    reason: str | None = None
    refused: Sequence[tuple[int, str]] = ()
    """Numbers of a sent batch the provider refused, with why: they become INVALID."""
    forget: bool = False
    tier: int = 0
    release: bool = False


class Swept(NamedTuple):
    """What one sweep of dead runners did."""

    runners: int
    freed: int
    """Rows reserved (not yet in flight) by a dead runner, pending again."""
    resend: int
    """Rows in flight under a deduplicating provider's request id, pending a resend under it."""
    unknown: int
    """Rows that may have been sent and can no longer be resent: unknown."""


class Outlook(NamedTuple):
    """Whether a runner with nothing to claim should wait: rows others hold may come back."""

    held_by_others: int
    """Rows reserved or in flight by other runners."""


def group_rows(rows: Sequence[ClaimedRow], batch_size: int, batches: int) -> list[list[ClaimedRow]]:
    """Rows (in id order) grouped into at most ``batches`` batches of at most ``batch_size``:
    rows of one shared content together; a resend with the rows that went under its request id
    before; a row with its own text (a ``Message``) alone. Rows that fit no batch are left out
    (not reserved)."""
    closed: list[list[ClaimedRow]] = []
    open_: dict[object, list[ClaimedRow]] = {}
    for row in rows:
        key: object = None
        if row.resend:
            key = ("resend", row.request_id)
        elif row.content_id is not None:
            key = ("content", row.content_id)
        group = None if key is None else open_.get(key)
        if group is None:
            if len(closed) + len(open_) >= batches:
                continue  # a new batch would be one too many: leave the row unreserved
            if key is None:  # its own text and request id: a batch of its own
                closed.append([row])
                continue
            group = open_[key] = []
        group.append(row)
        if len(group) >= batch_size:
            closed.append(open_.pop(key))
    closed.extend(open_.values())
    return closed


def batches_of(groups: Sequence[Sequence[ClaimedRow]], first_token: int) -> list[ClaimedBatch]:
    """Rows grouped by ``group_rows`` as batches with the tokens ``first_token``, ``first_token
    + 1``, ..."""
    return [
        ClaimedBatch(
            first_token + n,
            [phone_text(row.phone) for row in group],
            group[0].text,
            group[0].request_id,
            group[0].resend,
        )
        for n, group in enumerate(groups)
    ]


class Store(Protocol):
    """A journal's storage: SQLite (one machine) or PostgreSQL (several)."""

    async def open(self) -> None:
        """Connect and create the schema if it is not there."""
        ...

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        ...

    async def campaign(self, name: str, create: bool) -> int | None:
        """The id of the campaign called ``name``; created when absent and ``create``."""
        ...

    async def campaigns(self) -> list[str]:
        """Every campaign's name, oldest first."""
        ...

    async def content_id(self, campaign: int, text: str, digest: int) -> int:
        """The id of a shared content of the campaign (recorded once)."""
        ...

    async def contents(self, campaign: int) -> list[str]:
        """Every shared content of the campaign."""
        ...

    async def add(
        self, campaign: int, content: int | None, digest: int, chunk: Chunk, final: bool
    ) -> Added:
        """Add one segment of input (``final``: the last of its add): rows whose key is already
        there are left out (``already``); the others become pending or invalid, or ``duplicate``
        where the unique index on number and text digest already has the number with that text.
        Plain rows take the shared ``content`` (its id) and its ``digest``. Concurrent adds of
        one campaign are serialized. Each segment is atomic; a store may commit several
        segments together, but all of them by the time the final one returns."""
        ...

    def stop_add(self) -> None:
        """An add was cancelled between segments: commit, behind the segment being written
        (if any), whatever segments a store holds uncommitted, without waiting for it."""
        ...

    async def enlist(self, campaign: int, runner: RunnerInfo, lease: float) -> int:
        """Register a runner whose claims hold for ``lease`` seconds unless renewed."""
        ...

    async def renew(self, runner: int, lease: float) -> bool:
        """Extend a runner's lease; False when it is gone (others declared it dead)."""
        ...

    async def runners(self, campaign: int) -> list[RunnerRow]:
        """The campaign's registered runners, with whether each lease has run out."""
        ...

    async def sweep(self, campaign: int, dead: Sequence[int]) -> Swept:
        """Retire the runners ``dead`` and those whose lease ran out, and every row held by a
        runner that is not registered and alive: reserved rows are freed, rows in flight become
        pending resends while their resend deadline lies ahead, unknown otherwise; pending
        resends whose deadline has passed become unknown too."""
        ...

    @property
    def claim_rows(self) -> int | None:
        """The most rows a runner should reserve in one claim (None: as many as its slots
        take). A store with one writer at a time keeps claims short: a batch's mark in flight,
        on its request's path, waits for the claim being written."""
        ...

    async def claim(
        self,
        campaign: int,
        runner: int,
        *,
        batch_size: int,
        batches: int,
        first_token: int,
        provider: str,
        tier: int,
        fresh: bool,
    ) -> list[ClaimedBatch] | None:
        """Reserve up to ``batches`` batches of pending rows for ``runner`` in one transaction
        (concurrent runners get different rows), oldest first: pending resends under
        ``provider`` that this runner did not hand back, rows this runner handed on to a stage up
        to ``tier``, and, when ``fresh``, every other pending row. Rows are grouped by
        ``group_rows``; the batches get the tokens ``first_token``, ``first_token + 1``, ...
        None when ``runner`` is not registered (it was
        declared dead: it may not claim anything)."""
        ...

    async def write(self, writes: Sequence[Write | Settle]) -> list[bool]:
        """Apply marks and outcomes in one transaction; each result says whether the batch was
        still held as expected (False: the claim lapsed and nothing was written for it)."""
        ...

    async def outlook(self, campaign: int, runner: int) -> Outlook:
        """What other runners still hold."""
        ...

    async def handed(self, campaign: int, runner: int) -> list[tuple[int, int]]:
        """(number, stage) of the pending rows this runner handed back: the stage of this
        runner that may take each again (-1: a resend, for a later run)."""
        ...

    async def counts(self, campaign: int) -> Counts:
        """Inputs per state."""
        ...

    async def page(
        self, campaign: int, state: State | None, after: int, limit: int
    ) -> list[tuple[int, Recipient]]:
        """Up to ``limit`` inputs (in ``state``, or any) with ids after ``after``, in id order."""
        ...

    async def unknown_since(self, campaign: int, provider: str) -> list[tuple[int, int, float]]:
        """(id, number, when first put in flight) of the unknown rows sent through ``provider``."""
        ...

    async def settle_found(
        self, campaign: int, found: Sequence[tuple[int, str | None]], provider: str | None
    ) -> int:
        """Rows by id that reconciliation found sent (with the provider's message id): sent, if
        still unknown. Returns how many changed."""
        ...

    async def settle_phone(self, campaign: int, provider: str, phone: int, message_id: str) -> int:
        """An unknown row sent through ``provider`` to ``phone`` was sent (a delivery report):
        the oldest such row becomes sent. Returns how many changed (0 or 1)."""
        ...

    async def resolve(
        self, campaign: int, state: State, phones: Sequence[int] | None, reason: str | None
    ) -> int:
        """Unknown rows (those of ``phones``, or all) become ``state`` (SENT, FAILED or
        PENDING: a pending row is sent again). Returns how many changed."""
        ...
