"""``Journal`` and ``Campaign``: durable campaigns that survive crashes, deploys and SIGKILL.

A campaign is a named set of inputs in the journal. ``add`` streams inputs in (idempotently,
see ``_intake``); ``run`` sends what is pending through a client or a ``Failover`` with the bulk
engine's journaled mode, in as many processes (SQLite) or machines (PostgreSQL) as you like;
``counts`` and ``recipients`` read the account; ``reconcile``, ``apply`` and ``resolve`` settle
what is ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, Self, runtime_checkable
from urllib.parse import unquote

from smsvn import bulk, providers, text
from smsvn._cancel import cancelled_once
from smsvn._checks import checked_path
from smsvn.bulk import BulkOutcome, BulkProgress, BulkReport, check_callback, check_concurrency
from smsvn.errors import ValidationError
from smsvn.failover import NOTHING_SENT, Failover
from smsvn.journal._dsn import is_keyword_dsn, redact_url
from smsvn.journal._intake import CHUNK, Intake, check_content
from smsvn.journal._runner import Runner, Screen, Source, check_claim_for, check_lease
from smsvn.journal._store import (
    STATE_NAMES,
    Added,
    Chunk,
    Counts,
    Recipient,
    Settle,
    State,
    Store,
    phone_int,
    phone_text,
)
from smsvn.models import DeliveryReport, Message, SentMessage
from smsvn.phone import normalize
from smsvn.providers import Provider
from smsvn.providers._base import BaseClient

__all__ = [
    "DEFAULT_LEASE",
    "NAME_MAX",
    "Campaign",
    "Journal",
    "check_concurrency",
    "check_name",
    "redact_url",
]

_log = logging.getLogger("smsvn")

DEFAULT_LEASE: Final = 60.0
"""Seconds a runner's claims hold without renewal (renewed every quarter of it)."""
_PAGE: Final = 1000
NAME_MAX: Final = 200
"""The longest campaign name, in characters."""
_NEEDS_CONTENT: Final = "numbers need the campaign's text: add(numbers, content=...)"
_RESOLVABLE: Final = {"sent": State.SENT, "failed": State.FAILED, "pending": State.PENDING}


@runtime_checkable
class SentList(Protocol):
    """A client that lists the messages its account sent between two days (eSMS
    ``GetSmsSentData``): what ``reconcile`` looks unknown messages up in."""

    async def sent_messages(
        self, start: datetime, end: datetime
    ) -> list[SentMessage]: ...  # pragma: no cover - a protocol


class Guard(Protocol):
    """What ``Campaign.run(guard=...)`` needs of a guard (``smsvn.advertising.Guard``): to run
    the campaign itself, pausing outside the hours its rules allow."""

    async def run(
        self,
        campaign: Campaign,
        client: BaseClient | Failover,
        *,
        purpose: str,
        **options: Any,
    ) -> BulkReport: ...


class Journal:
    """Where campaigns are kept: ``Journal("campaigns.db")`` (SQLite, one machine) or
    ``Journal("postgresql://host/db")`` (PostgreSQL, ``smsvn[postgres]``, several machines).

    A filesystem path or a ``sqlite:///`` URL (``sqlite:////abs/path.db`` for an absolute
    path) opens SQLite; a ``postgresql://`` (or ``postgres://``) URL opens PostgreSQL (a libpq
    key=value string is a ``ValidationError``: asyncpg reads only URLs). So is a path or URL
    no store could open: a directory, a NUL, a lone surrogate, a port out of range. Its repr
    masks any password (``redact_url``).
    Use it as an async context manager; the tables are created on first use.
    """

    def __init__(self, url: str) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ValidationError("a journal is a file path, a sqlite:/// or postgresql:// URL")
        self.url = url
        self._store: Store = _open_store(url)
        self._opened = False
        self._owed: list[Settle] = []
        """Hand-backs of batches that never left, which the journal could not take when they
        were made (it was unreachable): written before the next run of their campaign."""

    def __repr__(self) -> str:
        return f"Journal({redact_url(self.url)!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect (and create the tables if needed)."""
        if not self._opened:
            await self._store.open()
            self._opened = True

    async def aclose(self) -> None:
        """Disconnect; safe to call twice."""
        self._opened = False
        await self._store.close()

    async def campaign(self, name: str, *, create: bool = True) -> Campaign:
        """The campaign called ``name``: created when it does not exist (unless ``create`` is
        False: then ``ValidationError``)."""
        check_name(name)
        ident = await self._store.campaign(name, create)
        if ident is None:
            raise ValidationError(f"no campaign named {name!r} in this journal")
        return Campaign(self._store, ident, name, self._owed)

    async def campaigns(self) -> list[str]:
        """The names of the journal's campaigns, oldest first."""
        return await self._store.campaigns()


def check_name(name: object) -> str:
    """A campaign's name (a non-empty str of at most ``NAME_MAX`` characters, without control
    characters or lone surrogates), or ``ValidationError``: the one check of
    ``Journal.campaign`` and of a task that names one. A NUL (PostgreSQL's text cannot hold
    it) or a lone surrogate (UTF-8 cannot encode it: a non-UTF-8 byte of the command line)
    would otherwise fail in the store's driver, differently on each store."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
        raise ValidationError(
            f"a campaign name is a non-empty str of at most {NAME_MAX} characters"
        )
    if not text.is_encodable(name):
        raise ValidationError(
            "a campaign name cannot hold control characters or lone surrogates (is it valid UTF-8?)"
        )
    return name


def _open_store(url: str) -> Store:
    """The store ``url`` names (nothing is connected yet). A libpq key=value string
    (``host=h dbname=db``) is refused rather than taken for a SQLite file's name: asyncpg reads
    only URLs."""
    if is_keyword_dsn(url):
        raise ValidationError(
            "a PostgreSQL journal is a postgresql:// URL: key=value connection strings "
            "(host=... dbname=...) are not supported"
        )
    if "\x00" in url:
        raise ValidationError("a journal's path or URL cannot hold a NUL character")
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        from smsvn.journal._postgres import PostgresStore

        return PostgresStore(_postgres_url(url))
    if scheme == "sqlite":
        path = url[len("sqlite://") :]
        if not path.startswith("/") or path in ("/", "/:memory:"):
            raise ValidationError(
                "a SQLite journal URL names a file: sqlite:///relative.db or sqlite:////abs.db "
                "(a journal in memory would not survive the crash it is for)"
            )
        path = path[1:]
    elif scheme:
        raise ValidationError(f"a journal is a file path or a sqlite:// or postgresql:// URL, "
                              f"not {scheme}://")  # fmt: skip
    else:
        path = url
    from smsvn.journal._sqlite import SqliteStore

    return SqliteStore(checked_path(path, "the journal path"))


def _postgres_url(url: str) -> str:
    """``url`` if asyncpg can send what it holds, or ``ValidationError`` (the URL is not
    quoted: it may hold a password). The server takes UTF-8 without NUL: a lone surrogate
    failed inside asyncpg's protocol (``AttributeError``), a NUL, even percent-encoded, as a
    protocol violation."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            "the PostgreSQL journal URL has a character UTF-8 cannot encode (a lone surrogate: "
            "is it valid UTF-8?)"
        ) from None
    if "\x00" in unquote(url):
        raise ValidationError("the PostgreSQL journal URL holds a NUL (%00)")
    return url


class Campaign:
    """One campaign of a journal (``journal.campaign(name)``)."""

    def __init__(self, store: Store, ident: int, name: str, owed: list[Settle]) -> None:
        self._store = store
        self._id = ident
        self.name = name
        self._owed = owed

    def __repr__(self) -> str:
        return f"Campaign({self.name!r})"

    # -- input -------------------------------------------------------------------------------

    async def add(
        self,
        items: Iterable[str] | AsyncIterable[str] | Iterable[Message] | AsyncIterable[Message],
        *,
        content: str | None = None,
    ) -> Added:
        """Add numbers (with ``content``, the campaign's text) or ``Message`` items (each with
        its own text), streaming, a chunk per transaction. Idempotent: the same input again adds
        nothing (see ``smsvn.journal._intake`` for the rule); invalid numbers and duplicates
        (the same number with the same text) are recorded with the reason. Bad ``content`` is a
        ``ValidationError`` before anything is added."""
        bulk.check_source(items)
        if content is not None:
            content = check_content(content)
        intake = Intake(content)
        shared = None
        if content is not None:
            shared = await self._store.content_id(self._id, content, intake.digest)
        total = Added()
        writing: asyncio.Future[Added] | None = None
        held: Chunk | None = None  # one segment is held back: the last is written as final
        add = self._store.add
        # An async input may keep the next segment waiting (a cursor, a network stream): each
        # of its segments is committed, so that no open transaction holds the journal's write
        # lock while it waits (a runner of any campaign on the file would wait with it).
        final = isinstance(items, AsyncIterable)
        try:
            async for part in _segments(items, content is None):
                chunk = intake.chunk(part)  # this segment's rows (a commit may be under way)
                if writing is not None:
                    # Shielded: a cancelled add still finishes the segment it is writing.
                    total = _sum(total, await asyncio.shield(writing))
                    writing = None
                if held is not None:
                    writing = asyncio.ensure_future(
                        add(self._id, shared, intake.digest, held, final)
                    )
                held = chunk
            if writing is not None:
                total = _sum(total, await asyncio.shield(writing))
                writing = None
            if held is not None:
                total = _sum(total, await add(self._id, shared, intake.digest, held, True))
        except asyncio.CancelledError:
            # Cancelled (a request's timeout): at once. The segment being written is finished
            # and committed behind the call (a transaction left open would keep the journal
            # file's write lock); what was read but not written is not added (the same input
            # again adds it).
            if writing is not None:
                writing.add_done_callback(_retrieved)
            self._store.stop_add()
            raise
        except BaseException:
            # The input failed: what was read before is still added, and committed by the
            # final segment.
            with contextlib.suppress(Exception):
                if writing is not None:
                    await writing
                if held is not None:
                    await add(self._id, shared, intake.digest, held, True)
            raise
        return total

    # -- reading -----------------------------------------------------------------------------

    async def texts(self) -> list[str]:
        """The shared texts numbers were added with (``add(numbers, content=...)``), oldest
        first."""
        return await self._store.contents(self._id)

    async def counts(self) -> Counts:
        """How many inputs are in each state."""
        return await self._store.counts(self._id)

    async def recipients(self, state: str | None = None) -> AsyncIterator[Recipient]:
        """Every input (or those in ``state``: ``"unknown"``, ...), in the order added; a
        duplicate (a number repeated with the same text) is listed after the other inputs of
        its segment of the input (up to 20,000), not where it was repeated."""
        wanted = _state(state) if state is not None else None
        after = 0
        while True:
            page = await self._store.page(self._id, wanted, after, _PAGE)
            for ident, recipient in page:
                after = ident
                yield recipient
            if len(page) < _PAGE:
                return

    # -- sending -----------------------------------------------------------------------------

    async def run(
        self,
        client: BaseClient | Failover,
        *,
        concurrency: int = bulk.DEFAULT_CONCURRENCY,
        lease: float = DEFAULT_LEASE,
        on_progress: Callable[[BulkProgress], object] | None = None,
        on_result: Callable[[BulkOutcome], object] | None = None,
        keep_results: bool = False,
        claim_for: float | None = None,
        guard: Guard | None = None,
        purpose: str | None = None,
        **options: Any,
    ) -> BulkReport:
        """Send what is pending through ``client`` (or each provider of a ``Failover`` in turn:
        a batch that provably was not sent goes to the next one), until nothing is left for
        this runner. Several runners may run at once (processes, machines): each batch is
        claimed by one. A finished campaign sends nothing. ``options`` are the client's send
        options (``sms_type=``, ``sender=``, ...; not with a ``Failover``, whose clients send
        with the defaults they were built with). An option the client does not take, a
        callback that is not callable, or a ``guard`` that is not one is a ``ValidationError``
        before anything is claimed or sent.

        ``claim_for`` (seconds, or None): claim no new batch after that long, let the batches
        already in flight finish (a batch is sent after the deadline only if it was marked in
        flight before it: at most ``concurrency``; one reserved but not yet marked is handed
        back, in ``skipped``), and return; what is left stays pending for the next run. A task
        queue's task uses it to end in bounded time: about ``claim_for`` plus one request's
        time (the client's ``timeout`` with its retries, and any wait for the limiter).

        ``guard`` (``smsvn.advertising.Guard``) keeps the run within Vietnam's rules for
        advertising (Decree 91/2020/ND-CP): ``purpose`` (``"advertising"`` by default with a
        guard) is required to be stated; an advertising or registration campaign without a
        guard is a ``ValidationError``. With a guard the run pauses outside the hours allowed
        and goes on by itself (see ``Guard.run``).

        Returns this run's report (``taken`` = numbers it claimed; ``skipped`` = those it
        handed back, still pending). Raises ``LeaseLost`` if this runner's lease ran out and
        others took over (it was paused), and the journal's own errors if it fails.
        """
        run_options: dict[str, Any] = {
            "concurrency": concurrency, "lease": lease, "on_progress": on_progress,
            "on_result": on_result, "keep_results": keep_results, "claim_for": claim_for,
        }  # fmt: skip
        _check_run_options(concurrency, lease, on_progress, on_result, claim_for)  # a guard's too
        if guard is not None and not callable(getattr(guard, "run", None)):
            raise ValidationError(
                f"guard must be a smsvn.advertising.Guard, not {type(guard).__name__}"
            )
        # Its clean-up (batches handed back, the runner retired) runs to its end even under a
        # cancel scope that cancels again at every await (taskiq's job timeout).
        if guard is not None:
            return await cancelled_once(guard.run(self, client, purpose=purpose or "advertising",
                                                  **run_options, **options))  # fmt: skip
        if purpose in ("advertising", "registration"):
            raise ValidationError(
                f"a {purpose} campaign runs with a guard (smsvn.advertising.Guard): "
                "run(client, guard=guard)"
            )
        if purpose is not None and purpose not in ("customer_care", "otp"):
            raise ValidationError(
                f"purpose is advertising, registration, customer_care or otp, not {purpose!r}"
            )
        return await cancelled_once(self._run(client, **run_options, **options))

    async def _run(
        self,
        client: BaseClient | Failover,
        *,
        concurrency: int = bulk.DEFAULT_CONCURRENCY,
        lease: float = DEFAULT_LEASE,
        on_progress: Callable[[BulkProgress], object] | None = None,
        on_result: Callable[[BulkOutcome], object] | None = None,
        keep_results: bool = False,
        claim_for: float | None = None,
        screen: Screen | None = None,
        **options: Any,
    ) -> BulkReport:
        """One run (``run``'s body); ``screen`` checks each batch as it leaves."""
        clients: tuple[BaseClient, ...]
        if isinstance(client, Failover):
            if options:
                raise ValidationError(
                    "a Failover's clients send with the defaults they were built with: "
                    f"no send options here ({', '.join(options)})"
                )
            clients = client.clients
        elif isinstance(client, BaseClient):
            clients = (client,)
        else:
            raise ValidationError(f"run needs a client or a Failover, not {type(client).__name__}")
        concurrency, lease, claim_for = _check_run_options(
            concurrency, lease, on_progress, on_result, claim_for
        )
        claim_until = None
        if claim_for is not None:
            claim_until = asyncio.get_running_loop().time() + claim_for
        contents = await self._store.contents(self._id)
        await self._pay_owed()
        runner = Runner(self._store, self._id, lease, claim_until)
        sources = [
            Source(
                runner, c, _entry(c), stage=i, fresh=i == 0, options=dict(options),
                screen=screen, owed=self._owed,
            )
            for i, c in enumerate(clients)
        ]  # fmt: skip
        for source in sources:
            source.prepare(contents)  # bad options or content: ValidationError, nothing sent
        await runner.start()
        parts: list[BulkReport] = []
        try:
            for source in sources:
                report = await bulk.run_claims(
                    source,
                    provider=source.provider,
                    send_batch=source.send,
                    concurrency=concurrency,
                    keep_results=keep_results,
                    on_result=on_result,
                    on_progress=on_progress,
                    price=source.client.price,
                    unit=source.client.unit,
                    ahead=source.ahead(concurrency),
                    prefetch=source.prefetch(concurrency),
                )
                parts.append(report)
                if report.aborted is not None and not isinstance(report.aborted, NOTHING_SENT):
                    break
                if source is sources[-1]:
                    break
                following = sources[sources.index(source) + 1]
                following.fresh = report.aborted is not None
                handed = await self._store.handed(self._id, runner.id)
                if not following.fresh and not any(0 <= t <= following.stage for _, t in handed):
                    break
            left = await self._store.handed(self._id, runner.id) if len(parts) > 1 else []
        finally:
            await asyncio.shield(_stop(runner))
        if len(parts) == 1:
            return parts[0]
        return merge_reports(parts, [phone_text(number) for number, _ in left])

    async def _pay_owed(self) -> None:
        """Hand back, before anything else (a sweep would make them ``unknown``), the batches
        an earlier run of this campaign knew never left but could not hand back then."""
        owed = [item for item in self._owed if item.campaign == self._id]
        if not owed:
            return
        await self._store.write(owed)  # fenced: a batch moved on since is left as it is
        self._owed[:] = [item for item in self._owed if item.campaign != self._id]

    # -- settling unknowns -------------------------------------------------------------------

    async def reconcile(self, client: BaseClient) -> int:
        """Ask ``client``'s provider about the campaign's ``unknown`` messages sent through it,
        and record as sent those it lists. Needs a client that lists its sent messages (eSMS:
        ``GetSmsSentData``); for SpeedSMS, feed its delivery reports to ``apply``. Returns how
        many became sent; a message the provider does not list stays unknown (it may not be
        listed yet)."""
        if not isinstance(client, SentList):
            provider = getattr(client, "provider", None)
            if not isinstance(provider, str):  # not a client at all: None, a name, ...
                raise ValidationError(
                    "reconcile takes a client that lists its sent messages (eSMS), not "
                    f"{type(client).__name__}"
                )
            raise ValidationError(
                f"{provider} cannot list sent messages: feed its delivery reports "
                "(smsvn.webhooks) to campaign.apply(), or campaign.resolve() what you checked"
            )
        rows = await self._store.unknown_since(self._id, client.provider)
        if not rows:
            return 0
        first = min(since for _, _, since in rows)
        last = max(since for _, _, since in rows)
        listed = await client.sent_messages(
            datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)
        )
        by_phone: dict[str, list[SentMessage]] = {}
        for message in listed:
            by_phone.setdefault(message.phone, []).append(message)
        # Compared without diacritics: a run with ``strip_diacritics=True`` sent (and eSMS
        # lists) the plain form of the journal's text.
        texts = {
            ident: text.strip_diacritics(recipient.content)
            for ident, recipient in await self._unknown_rows(rows)
        }
        found: list[tuple[int, str | None]] = []
        for ident, number, _ in rows:
            candidates = by_phone.get(phone_text(number), [])
            for message in candidates:
                if text.strip_diacritics(message.content) == texts.get(ident):
                    candidates.remove(message)  # one listed message settles one input
                    found.append((ident, message.message_id))
                    break
        return await self._store.settle_found(self._id, found, client.provider)

    async def _unknown_rows(
        self, rows: list[tuple[int, int, float]]
    ) -> list[tuple[int, Recipient]]:
        wanted = {ident for ident, _, _ in rows}
        out: list[tuple[int, Recipient]] = []
        after = 0
        while True:
            page = await self._store.page(self._id, State.UNKNOWN, after, _PAGE)
            out.extend((ident, r) for ident, r in page if ident in wanted)
            if len(page) < _PAGE:
                return out
            after = page[-1][0]

    async def apply(self, report: DeliveryReport) -> bool:
        """A provider's delivery report (``smsvn.webhooks``) proves the message was accepted:
        the campaign's oldest ``unknown`` input to that number through that provider becomes
        sent. Use reports from the campaign's own time: the journal cannot tell two messages to
        one number on one account apart. Returns whether an input changed."""
        if not isinstance(report, DeliveryReport):
            raise ValidationError("apply takes a smsvn.DeliveryReport")
        try:
            number = phone_int(normalize(report.phone))
        except ValidationError:
            return False
        changed = await self._store.settle_phone(
            self._id, report.provider, number, report.message_id
        )
        return changed > 0

    async def resolve(
        self,
        outcome: Literal["sent", "failed", "pending"],
        *,
        phones: Iterable[str] | None = None,
        note: str | None = None,
    ) -> int:
        """Settle ``unknown`` inputs (those to ``phones``, or all) by what you found out: "sent",
        "failed", or "pending" (it was not sent: send it again). Returns how many changed."""
        state = _RESOLVABLE.get(outcome) if isinstance(outcome, str) else None
        if state is None:
            raise ValidationError(f"resolve to one of {', '.join(_RESOLVABLE)}, not {outcome!r}")
        # The note is stored as the inputs' reason: what a store cannot keep (a NUL, a lone
        # surrogate) or keeps differently (an int) is refused before anything changes.
        if note is not None and not isinstance(note, str):
            raise ValidationError(f"note must be a str, not {type(note).__name__}")
        if note is not None and not text.is_encodable(note):
            raise ValidationError("note has control characters or lone surrogates")
        numbers = None
        if phones is not None:
            bulk.check_source(phones)
            numbers = [phone_int(normalize(p)) for p in phones]
        reason = note if note is not None else f"resolved as {outcome}"
        return await self._store.resolve(self._id, state, numbers, reason)


def _retrieved(future: asyncio.Future[Added]) -> None:
    """Retrieve a segment write's error nobody awaits any more (a cancelled add's): no
    "exception was never retrieved" warning."""
    if not future.cancelled():
        future.exception()


async def _segments(items: object, messages: bool) -> AsyncIterator[list[object]]:
    """The items of an iterable or async iterable, ``CHUNK`` at a time. When ``messages`` (no
    shared content), a first item that is a number is a ``ValidationError``: nothing is added.
    An input that raises gives what it yielded before, then its exception."""
    if isinstance(items, AsyncIterable):
        source: AsyncIterator[object] | None = aiter(items)
        iterator = None
    elif isinstance(items, Iterable):
        source, iterator = None, iter(items)
    else:
        raise ValidationError(
            f"add takes an iterable of numbers or Messages, not {type(items).__name__}"
        )
    first = True
    while True:
        part: list[object] = []
        failure: Exception | None = None
        try:
            if iterator is not None:
                for item in iterator:
                    part.append(item)
                    if len(part) >= CHUNK:
                        break
            elif source is not None:
                async for item in source:
                    part.append(item)
                    if len(part) >= CHUNK:
                        break
        except Exception as exc:
            failure = exc
        if first and messages and part and isinstance(part[0], str):
            raise ValidationError(_NEEDS_CONTENT)
        first = False
        if part:
            yield part
        if failure is not None:
            raise failure
        if len(part) < CHUNK:
            return


def _sum(a: Added, b: Added) -> Added:
    return Added(
        read=a.read + b.read,
        added=a.added + b.added,
        invalid=a.invalid + b.invalid,
        duplicates=a.duplicates + b.duplicates,
        already=a.already + b.already,
    )


def _state(name: str) -> State:
    for state, public in STATE_NAMES.items():
        if public == name:
            return state
    raise ValidationError(f"state is one of {', '.join(STATE_NAMES.values())}, not {name!r}")


def _check_run_options(
    concurrency: object,
    lease: object,
    on_progress: object,
    on_result: object,
    claim_for: object,
) -> tuple[int, float, float | None]:
    """``run``'s own options (concurrency, lease, claim_for) as the run uses them, or
    ``ValidationError`` before anything is claimed or sent: a callback that is not callable
    would otherwise fail only after the first batch was sent."""
    check_callback(on_progress, "on_progress")
    check_callback(on_result, "on_result")
    return check_concurrency(concurrency), check_lease(lease), check_claim_for(claim_for)


def _entry(client: BaseClient) -> Provider | None:
    """The client's registry entry (what its provider deduplicates), if it is registered."""
    try:
        return providers.get(client.provider)
    except ValidationError:
        return None


async def _stop(runner: Runner) -> None:
    """Retire the runner; a journal that fails now is logged (what it held is swept later)."""
    try:
        await runner.stop()
    except Exception as exc:
        _log.warning("journal: could not retire the runner: %r", exc)


def merge_reports(parts: list[BulkReport], skipped: list[str] | None = None) -> BulkReport:
    """One report for the stages of a Failover run (or the runs of a guarded campaign between
    its pauses). What a stage handed on and a later one took is in the later one's lists;
    ``skipped`` is what was handed on and no later part took (still pending: a later run sends
    it; the last part's by default)."""
    if skipped is None:
        skipped = list(parts[-1].skipped)
    providers = list(dict.fromkeys(p.provider for p in parts))
    failed = [(n, e) for p in parts for n, e in p.failed]
    unknown = [(n, e) for p in parts for n, e in p.unknown]
    invalid = [n for p in parts for n in p.invalid]
    accepted = sum(p.accepted for p in parts)
    taken = (
        accepted
        + sum(len(n) for n, _ in failed)
        + sum(len(n) for n, _ in unknown)
        + len(invalid)
        + len(skipped)
    )
    return BulkReport(
        provider=",".join(providers),
        sent=[r for p in parts for r in p.sent],
        failed=failed,
        unknown=unknown,
        invalid=invalid,
        skipped=skipped,
        duplicates=0,
        accepted=accepted,
        cost=sum(p.cost for p in parts),
        segments=sum(p.segments for p in parts),
        requests=sum(p.requests for p in parts),
        taken=taken,
        elapsed=sum(p.elapsed for p in parts),
        aborted=parts[-1].aborted,
        parts=tuple(parts),
    )
