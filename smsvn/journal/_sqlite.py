"""The default journal store: one SQLite file, for the runners of one machine.

The stdlib's ``sqlite3`` runs in one worker thread per journal (a connection belongs to the
thread that made it), so the event loop never waits on the disk. The file is in WAL mode with
``synchronous=FULL``: a commit is on disk before the call returns, so a batch marked in flight
stays marked through a power cut (with NORMAL, the last commits can be lost on power loss,
and a batch whose mark was lost would be sent again by the next runner). Every write is one
``BEGIN IMMEDIATE`` transaction, which takes the file's write lock at once: runners in other
processes queue for it (``busy_timeout``) instead of failing on a lock upgrade.

Several processes may run one campaign at once: a claim reserves its rows inside the write
transaction, so two runners never reserve the same row.

**Batches.** A claim of new rows does not write them: each batch it takes (a run of consecutive
pending rows with one shared content, or one row with its own text) becomes one row of
``smsvn_batches`` (owner, token, the ids ``lo`` to ``hi``, size, state, request id, ...), and the
campaign's cursor (``smsvn_campaigns.claimed``) moves past it. The batch's mark in flight and its
outcome change that one row: per batch of 100 numbers, three row writes instead of three hundred
(each with its indexes), which is most of what a journaled send cost. A batch row's rows stay
pending, unowned and without the ``again`` mark in their own columns: exactly those rows of
``lo``..``hi`` are its rows. Anything else done to them (a hand-back, refused numbers, a sweep of
a dead runner, a page or export, reconciliation, ``resolve``) first *spreads* the batch row onto
its rows (``spread``: the columns a claim of single rows would have left) and drops it; from there
on the rows say all, as before. A row that goes back to pending (a hand-back, a freed claim, a
resend under its request id) gets the ``again`` mark, and claims take such rows one by one first;
so a claim cursor never passes a row that is still to be sent.

**Imports** (``add``; the keys are ``_intake``'s hash chain). There is no index of the keys
(it cost a quarter of an add's time): each add of a segment records the rows it wrote
(``smsvn_segments``: the chain of its first row, how many rows, the chain of its last, the ids
they got). The rows an input shares with one added before are always its first ones (a row's
chain is a digest of everything up to it), so an add finds how many of its segment's rows are
there by following the records from the segment's first row, each found by the chain of its
first: a record whose last chain is this input's at that place is there whole; one that this
input leaves part way (another continuation of a common beginning) is read, by its ids, and
compared chain by chain. So a segment never seen before costs one lookup, and an input added
again one lookup a segment and nothing written. The unique index on number and text digest
finds duplicates as it refuses them; they are written again, as such, right after the rows of
their statement. The lookups, the rows and the record are one write transaction: two processes
adding the same input at once add it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from smsvn.errors import ValidationError
from smsvn.journal._store import (
    STATE_NAMES,
    Added,
    Chunk,
    ClaimedBatch,
    ClaimedRow,
    Counts,
    Outlook,
    Recipient,
    Run,
    RunnerInfo,
    RunnerRow,
    Settle,
    State,
    Swept,
    Write,
    batches_of,
    group_rows,
    phone_text,
)

__all__ = ["SqliteStore"]

_T = TypeVar("_T")

CACHE_KIB: Final = 16 * 1024
"""The connection's page cache: an add of a million numbers touches the duplicate index at
random, and a bigger cache keeps the add fast (SQLite's default is 2 MiB). It is most of an
add's memory: 1,000,000 numbers took 7-9 s and 56 MB of extra peak memory with 16 MiB, 7.5-9 s
and 75 MB with 32 MiB, 13-14 s with the default (benchmarks/README.md)."""
PAGE_SIZE: Final = 8192
"""Bytes a page of a new journal file (an existing file keeps its own): an add of a million
numbers spends less time in the duplicate index's B-tree and writes fewer, larger pages at
each commit than with SQLite's default of 4096."""
ADD_COMMIT_EVERY: Final = 5
"""Segments of an add per commit (100,000 numbers)."""
BUSY_TIMEOUT: Final = 60.0
"""Seconds a write waits for another process's transaction to end before failing."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS smsvn_campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS smsvn_contents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign INTEGER NOT NULL REFERENCES smsvn_campaigns (id),
    digest INTEGER NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (campaign, text)
);
CREATE TABLE IF NOT EXISTS smsvn_runners (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign INTEGER NOT NULL REFERENCES smsvn_campaigns (id),
    name TEXT NOT NULL,
    machine TEXT,
    pid INTEGER NOT NULL,
    started INTEGER NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS smsvn_segments (
    campaign INTEGER NOT NULL,
    seg INTEGER NOT NULL,
    head INTEGER NOT NULL,
    size INTEGER NOT NULL,
    tail INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (campaign, seg, head)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS smsvn_segments_before (
    campaign INTEGER NOT NULL,
    seg INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (campaign, seg, first_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS smsvn_recipients (
    id INTEGER PRIMARY KEY,
    campaign INTEGER NOT NULL,
    seg INTEGER NOT NULL,
    chain INTEGER NOT NULL,
    state INTEGER NOT NULL,
    phone INTEGER,
    digest INTEGER NOT NULL,
    content INTEGER,
    text TEXT,
    given TEXT,
    given_id TEXT,
    request_id TEXT,
    provider TEXT,
    message_id TEXT,
    reason TEXT,
    owner INTEGER,
    batch INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    since REAL,
    resend_until REAL,
    passed INTEGER,
    tier INTEGER,
    again INTEGER
);
CREATE TABLE IF NOT EXISTS smsvn_batches (
    campaign INTEGER NOT NULL,
    owner INTEGER NOT NULL,
    token INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    size INTEGER NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider TEXT,
    request_id TEXT,
    since REAL,
    resend_until REAL,
    message_id TEXT,
    reason TEXT,
    PRIMARY KEY (campaign, owner, token)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS smsvn_recipients_once
    ON smsvn_recipients (campaign, phone, digest) WHERE state < 5;
CREATE INDEX IF NOT EXISTS smsvn_recipients_free
    ON smsvn_recipients (campaign, id) WHERE state = 0 AND owner IS NULL;
CREATE INDEX IF NOT EXISTS smsvn_recipients_held
    ON smsvn_recipients (campaign, owner, batch) WHERE state < 2 AND owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS smsvn_recipients_resend
    ON smsvn_recipients (campaign, resend_until) WHERE state = 0 AND since IS NOT NULL;
"""
# ``smsvn_segments``: a record of each add of a segment (see the module's docstring): ``head``
# and ``tail`` the chains of the first and last of its ``size`` rows (in input order), which got
# the ids ``first_id`` to ``last_id``. ``smsvn_segments_before``: the ids of each segment added
# by a journal older than these records (which kept a unique index of every row's segment and
# chain instead): read row by row (see ``_migrate``).
# ``smsvn_batches`` and ``smsvn_campaigns.claimed``: see "Batches" in the module's docstring.
# Index by index: ``once`` finds duplicates (a number with the same text twice); ``free`` is
# what claims walk (pending rows no runner holds, oldest first); ``again`` those of them that
# went back to pending (a resend, a hand-on, a freed claim); ``held`` finds the rows of one
# batch (the fenced writes) and those of dead runners (sweeps); ``resend`` finds pending
# resends. Counts and exports read the table (each index more slows every add). Queries repeat
# each partial index's condition word for word, which is how SQLite knows that the index
# applies.

_AGAIN_INDEX: Final = """
CREATE INDEX IF NOT EXISTS smsvn_recipients_again
    ON smsvn_recipients (campaign, id) WHERE state = 0 AND owner IS NULL AND again IS NOT NULL
"""
"""Made after ``_upgrade`` (a journal made before batch rows gets the column first)."""

_DUPLICATE_REASON: Final = "duplicate: the campaign already has this number with this text"
_LOST_REASON: Final = "its runner stopped while it was in flight: it may have been sent"
_EXPIRED_REASON: Final = (
    "its runner stopped while it was in flight, and it was not resent within the provider's "
    "deduplication window: it may have been sent"
)

_CLAIM: Final = """
SELECT r.id, r.phone, r.content, COALESCE(r.text, c.text), r.request_id, r.given_id,
       r.since IS NOT NULL
FROM smsvn_recipients r LEFT JOIN smsvn_contents c ON c.id = r.content
WHERE r.campaign = :campaign AND r.state = 0 AND r.owner IS NULL AND r.again IS NOT NULL
  AND CASE WHEN r.since IS NOT NULL
                THEN r.provider = :provider AND r.resend_until > :now AND r.passed IS NOT :runner
           WHEN r.passed = :runner THEN r.tier <= :tier
           ELSE :fresh END
ORDER BY r.id
LIMIT :limit
"""

# New rows after a campaign's claim cursor (see ``_claim_new``): the first; rows with their own
# text; a run of one shared content, concatenated (the ordered subquery feeds the aggregate in
# id order, which ``_fresh_run`` checks), with how many rows of the window are not of it; where
# a run (of ``:content``, or of own texts with ``:content`` NULL) ends; a run row by row.
_FRESH_HEAD: Final = """
SELECT id, content FROM smsvn_recipients
WHERE campaign = ? AND state = 0 AND owner IS NULL AND id > ? AND again IS NULL
ORDER BY id LIMIT 1
"""

_FRESH_OWN: Final = """
SELECT id, phone, text, given_id FROM smsvn_recipients
WHERE campaign = :campaign AND state = 0 AND owner IS NULL AND id > :after AND id < :before
  AND again IS NULL
ORDER BY id LIMIT :limit
"""

_FRESH_RUN: Final = """
SELECT COUNT(*), MIN(phone), TOTAL(content IS NOT :content),
       group_concat(id), group_concat(phone)
FROM (
  SELECT id, phone, content FROM smsvn_recipients
  WHERE campaign = :campaign AND state = 0 AND owner IS NULL AND id > :after AND id < :before
    AND again IS NULL
  ORDER BY id LIMIT :limit)
"""

_FRESH_BREAK: Final = """
SELECT MIN(id) FROM (
  SELECT id, content FROM smsvn_recipients
  WHERE campaign = :campaign AND state = 0 AND owner IS NULL AND id > :after AND id < :before
    AND again IS NULL
  ORDER BY id LIMIT :limit)
WHERE content IS NOT :content
"""

_FRESH_RUN_ROWS: Final = """
SELECT id, phone FROM smsvn_recipients
WHERE campaign = :campaign AND state = 0 AND owner IS NULL AND id > :after AND id < :before
  AND again IS NULL
ORDER BY id LIMIT :limit
"""

CLAIM_ROWS: Final = 400
"""The most numbers a runner reserves in one claim (``SqliteStore.claim_rows``; at least one
batch): four SpeedSMS batches; single-number batches (eSMS, Fibo) one a slot, up to 400. The
file has one writer: a batch's mark in flight waits for the claim being written, and short
claims keep that wait off the requests' path. Measured with 100-number batches at 20 ms
(benchmarks/README.md): claims of 3,200 numbers ran 0.87x a plain run, of 400 0.95x."""

_NO_ID: Final = 2**63 - 1
"""Above every row id (SQLite's largest integer)."""

_NINE_DIGITS: Final = 10**8
"""A stored number at least this is nine digits: its canonical text is "0" and its digits."""

_DEPART: Final = """
UPDATE smsvn_recipients
SET state = 1, attempts = attempts + 1, provider = ?, request_id = COALESCE(request_id, ?),
    since = COALESCE(since, ?), resend_until = COALESCE(resend_until, ?)
WHERE campaign = ? AND owner = ? AND batch = ? AND state = 0 AND state < 2
  AND owner IS NOT NULL AND EXISTS (SELECT 1 FROM smsvn_runners WHERE id = owner)
"""

_MARK_ALL: Final = """
UPDATE smsvn_recipients
SET state = 1, attempts = attempts + 1, provider = v.provider,
    request_id = COALESCE(smsvn_recipients.request_id, v.request_id),
    since = COALESCE(since, ?), resend_until = COALESCE(resend_until, v.until)
FROM v
WHERE campaign = ? AND owner = ? AND smsvn_recipients.batch = v.batch
  AND smsvn_recipients.state = 0 AND smsvn_recipients.state < 2 AND owner IS NOT NULL
"""

_FINISH_ALL: Final = """
UPDATE smsvn_recipients
SET state = v.state, message_id = v.message_id, reason = v.reason
FROM v
WHERE campaign = ? AND owner = ? AND smsvn_recipients.batch = v.batch
  AND smsvn_recipients.state = 1 AND smsvn_recipients.state < 2 AND owner IS NOT NULL
"""

_REFUSE: Final = """
UPDATE smsvn_recipients SET state = 5, reason = ?
WHERE campaign = ? AND owner = ? AND batch = ? AND phone = ? AND state = 1 AND state < 2
  AND owner IS NOT NULL
"""

_FINISH: Final = """
UPDATE smsvn_recipients SET state = ?, message_id = ?, reason = ?
WHERE campaign = ? AND owner = ? AND batch = ? AND state = 1 AND state < 2 AND owner IS NOT NULL
"""

_HAND_BACK: Final = """
UPDATE smsvn_recipients
SET state = 0, owner = NULL, batch = NULL, again = 1, passed = ?, tier = ?, reason = ?,
    request_id = CASE WHEN ? THEN NULL ELSE request_id END,
    since = CASE WHEN ? THEN NULL ELSE since END,
    resend_until = CASE WHEN ? THEN NULL ELSE resend_until END
WHERE campaign = ? AND owner = ? AND batch = ? AND state {held} AND state < 2
  AND owner IS NOT NULL
"""

_PAGE: Final = """
SELECT r.id, r.phone, r.given, r.state, COALESCE(r.text, c.text), r.message_id, r.request_id,
       r.provider, r.attempts, r.reason
FROM smsvn_recipients r LEFT JOIN smsvn_contents c ON c.id = r.content
WHERE r.campaign = ? {state} AND r.id > ?
ORDER BY r.id
LIMIT ?
"""


class _Worker:
    """One thread owning the SQLite connection: calls run there, one at a time, in order."""

    def __init__(self, path: str) -> None:
        self._path = path
        # (priority, order, job, its future); the job None (priority 2, after all) stops.
        self._jobs: queue.PriorityQueue[
            tuple[int, int, Callable[[sqlite3.Connection], Any] | None, asyncio.Future[Any] | None]
        ] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._serve, name="smsvn-journal", daemon=True)
        self._ready: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the thread and open the connection there (its errors are raised here)."""
        self._ready = asyncio.get_running_loop().create_future()
        self._thread.start()
        await self._ready

    async def call(self, job: Callable[[sqlite3.Connection], _T], urgent: bool = False) -> _T:
        """Run ``job(connection)`` in the thread; its result or exception comes back here."""
        return await self.submit(job, urgent)

    def submit(
        self, job: Callable[[sqlite3.Connection], _T], urgent: bool = False
    ) -> asyncio.Future[_T]:
        """Queue ``job(connection)`` now; its result or exception comes in the future. An
        ``urgent`` job (a batch's mark in flight, which its request waits for) goes before the
        others queued (claims of more batches, which are made ahead of need)."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._jobs.put((0 if urgent else 1, next(self._order), job, future))
        return future

    async def stop(self) -> None:
        """Close the connection and end the thread."""
        self._jobs.put((2, next(self._order), None, None))
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _serve(self) -> None:
        ready = self._ready
        assert ready is not None
        loop = ready.get_loop()
        try:
            connection = _connect(self._path)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while True:
                _, _, job, future = self._jobs.get()
                if job is None or future is None:
                    break
                try:
                    result = job(connection)
                except BaseException as exc:
                    if connection.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            connection.execute("ROLLBACK")
                    future.get_loop().call_soon_threadsafe(_settle, future, None, exc)
                else:
                    future.get_loop().call_soon_threadsafe(_settle, future, result, None)
        finally:
            connection.close()


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a future's error as retrieved: no "never retrieved" warning (an add's commit: its
    error is raised by the next add, see ``SqliteStore.add``)."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Complete ``future`` in its loop, unless its awaiter has gone (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _connect(path: str) -> sqlite3.Connection:
    """The connection, in WAL mode with full sync, the schema in place."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no directory {directory!r} for the journal")
    if os.path.isdir(path):
        raise ValidationError(f"the journal {path!r} is a directory: name a file in it")
    try:
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except sqlite3.OperationalError as exc:  # "unable to open database file"
        raise ValidationError(f"cannot open the journal file {path!r}: {exc}") from None
    try:
        connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file's (no pages yet)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        connection.execute("PRAGMA temp_store = MEMORY")
        with _transaction(connection):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            _migrate(connection)
            _upgrade(connection)
            connection.execute(_AGAIN_INDEX)
    except sqlite3.DatabaseError as exc:
        connection.close()
        if type(exc) is not sqlite3.DatabaseError:  # locked, read-only, ...: as they are
            raise
        # "file is not a database": a numbers file given as --journal, say.
        raise ValidationError(f"the journal file {path!r} is not a SQLite database") from None
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(db: sqlite3.Connection) -> None:
    """A journal made before segment records (with a unique index of every row's segment and
    chain): the ids of each segment it added, run by run, go to ``smsvn_segments_before``
    (read row by row by later adds of the segment), and the index goes (inside the schema's
    transaction: one process does it)."""
    if not db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'smsvn_recipients_key'"
    ).fetchone():
        return
    ranges: list[tuple[int, int, int, int]] = []
    current: tuple[int, int] | None = None
    first = last = 0
    for ident, campaign, seg in db.execute(
        "SELECT id, campaign, seg FROM smsvn_recipients ORDER BY id"
    ):
        if (campaign, seg) != current:
            if current is not None:
                ranges.append((*current, first, last))
            current, first = (campaign, seg), ident
        last = ident
    if current is not None:
        ranges.append((*current, first, last))
    db.executemany(
        "INSERT INTO smsvn_segments_before (campaign, seg, first_id, last_id) VALUES (?, ?, ?, ?)",
        ranges,
    )
    db.execute("DROP INDEX smsvn_recipients_key")


def _upgrade(db: sqlite3.Connection) -> None:
    """A journal made before batch rows: its campaigns get a claim cursor (at their first
    row) and its rows the ``again`` mark, set on the pending rows that went back to pending
    (a resend under its request id, a hand-on): claims take those one by one, as before."""
    if any(column[1] == "again" for column in db.execute("PRAGMA table_info(smsvn_recipients)")):
        return
    db.execute("ALTER TABLE smsvn_campaigns ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE smsvn_recipients ADD COLUMN again INTEGER")
    db.execute(
        "UPDATE smsvn_recipients SET again = 1 WHERE state = 0 AND owner IS NULL "
        "AND (since IS NOT NULL OR passed IS NOT NULL)"
    )


class _transaction(contextlib.AbstractContextManager[sqlite3.Connection]):
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on an exception."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._connection.execute("COMMIT")
        else:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("ROLLBACK")


class SqliteStore:
    """A journal in one SQLite file (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._worker: _Worker | None = None
        self._added = 0
        """Segments an add has written since its last commit (see ``add``)."""
        self._failed: BaseException | None = None
        """Why the last commit of an add's segments failed, for its next add to raise."""
        self._before: bool | None = None
        """Whether the file has segments of an older journal (``smsvn_segments_before``)."""

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def open(self) -> None:
        worker = _Worker(self.path)
        await worker.start()
        self._worker = worker

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop()

    async def _call(self, job: Callable[[sqlite3.Connection], _T], urgent: bool = False) -> _T:
        """Run ``job`` in the worker, after committing an add's open transaction (if any)."""
        worker = self._worker
        if worker is None:
            raise RuntimeError("the journal is not open (use it as `async with`)")

        def after_adds(db: sqlite3.Connection) -> _T:
            if db.in_transaction:
                self._added = 0
                db.execute("COMMIT")
            return job(db)

        return await worker.call(after_adds, urgent)

    # -- campaigns and contents ------------------------------------------------------------

    async def campaign(self, name: str, create: bool) -> int | None:
        def job(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT id FROM smsvn_campaigns WHERE name = ?", (name,)).fetchone()
            if row is not None or not create:
                return None if row is None else int(row[0])
            with _transaction(db):
                db.execute(
                    "INSERT OR IGNORE INTO smsvn_campaigns (name, created) VALUES (?, ?)",
                    (name, time.time()),
                )
                row = db.execute(
                    "SELECT id FROM smsvn_campaigns WHERE name = ?", (name,)
                ).fetchone()
            return int(row[0])

        return await self._call(job)

    async def campaigns(self) -> list[str]:
        def job(db: sqlite3.Connection) -> list[str]:
            return [r[0] for r in db.execute("SELECT name FROM smsvn_campaigns ORDER BY id")]

        return await self._call(job)

    async def content_id(self, campaign: int, text: str, digest: int) -> int:
        def job(db: sqlite3.Connection) -> int:
            query = "SELECT id FROM smsvn_contents WHERE campaign = ? AND text = ?"
            row = db.execute(query, (campaign, text)).fetchone()
            if row is None:
                with _transaction(db):
                    db.execute(
                        "INSERT OR IGNORE INTO smsvn_contents (campaign, digest, text) "
                        "VALUES (?, ?, ?)",
                        (campaign, digest, text),
                    )
                    row = db.execute(query, (campaign, text)).fetchone()
            return int(row[0])

        return await self._call(job)

    async def contents(self, campaign: int) -> list[str]:
        def job(db: sqlite3.Connection) -> list[str]:
            query = "SELECT text FROM smsvn_contents WHERE campaign = ? ORDER BY id"
            return [r[0] for r in db.execute(query, (campaign,))]

        return await self._call(job)

    # -- import ----------------------------------------------------------------------------

    async def add(
        self, campaign: int, content: int | None, digest: int, chunk: Chunk, final: bool
    ) -> Added:
        def job(db: sqlite3.Connection) -> tuple[Added, bool] | BaseException:
            # The transaction stays open for the next segment (up to ``ADD_COMMIT_EVERY``, or
            # until any other call): each commit writes every page the segments touched, and
            # the duplicate index is touched all over. Nothing else of this journal waits on an
            # open one: the next other call commits it first.
            failed, self._failed = self._failed, None
            if failed is not None:
                raise failed
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            if self._before is None:
                self._before = bool(db.execute("SELECT 1 FROM smsvn_segments_before").fetchone())
            # The open transaction may hold segments of other adds of this journal (one
            # connection serves them all), which they have reported added: a segment that
            # fails undoes its own rows only, and its error is given back, not raised here
            # (the worker rolls back a failed call's whole transaction).
            db.execute("SAVEPOINT smsvn_segment")
            try:
                added = _add(db, campaign, content, digest, chunk, self._before)
            except Exception as exc:
                db.execute("ROLLBACK TO smsvn_segment")
                db.execute("RELEASE smsvn_segment")
                # What the transaction holds besides (this add's earlier segments, other
                # adds'): committed, and the file's write lock let go.
                self._added = 0
                db.execute("COMMIT")
                return exc
            db.execute("RELEASE smsvn_segment")
            self._added += 1
            if final:
                self._added = 0
                db.execute("COMMIT")
            elif self._added >= ADD_COMMIT_EVERY:
                self._added = 0
                return added, True
            return added, False

        worker = self._worker
        if worker is None:
            raise RuntimeError("the journal is not open (use it as `async with`)")
        outcome = await worker.call(job)
        if isinstance(outcome, BaseException):
            raise outcome
        added, due = outcome
        if due:
            # The commit (its writes and fsyncs, without the GIL) goes on in the worker while
            # the caller reads its next segment: queued now, before any other call. Its error
            # (a full disk: the segments since the last commit are gone) is the next add's,
            # and an add ends with a final segment, committed before it returns.
            self._commit_adds(worker)
        return added

    def stop_add(self) -> None:
        worker = self._worker
        if worker is not None:
            # Queued behind the segment being written: the file's write lock is not left held
            # (for as long as the journal is open) by an add that will not come back.
            self._commit_adds(worker)

    def _commit_adds(self, worker: _Worker) -> None:
        """Queue a commit of the segments written since the last one; its error is kept for
        the next add (see ``add``)."""

        def commit(db: sqlite3.Connection) -> None:
            try:
                if db.in_transaction:  # (another call may have committed it first)
                    self._added = 0
                    db.execute("COMMIT")
            except BaseException as exc:
                self._failed = exc
                raise

        worker.submit(commit).add_done_callback(_seen)

    # -- runners ---------------------------------------------------------------------------

    async def enlist(self, campaign: int, runner: RunnerInfo, lease: float) -> int:
        def job(db: sqlite3.Connection) -> int:
            with _transaction(db):
                cursor = db.execute(
                    "INSERT INTO smsvn_runners (campaign, name, machine, pid, started, expires) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (campaign, runner.name, runner.machine, runner.pid, runner.started,
                     time.time() + lease),
                )  # fmt: skip
                return int(cursor.lastrowid or 0)

        return await self._call(job)

    async def renew(self, runner: int, lease: float) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cursor = db.execute(
                    "UPDATE smsvn_runners SET expires = ? WHERE id = ?",
                    (time.time() + lease, runner),
                )
                return cursor.rowcount == 1

        return await self._call(job)

    async def runners(self, campaign: int) -> list[RunnerRow]:
        def job(db: sqlite3.Connection) -> list[RunnerRow]:
            now = time.time()
            return [
                RunnerRow(int(i), name, machine, int(pid), int(started), expires < now)
                for i, name, machine, pid, started, expires in db.execute(
                    "SELECT id, name, machine, pid, started, expires FROM smsvn_runners "
                    "WHERE campaign = ? ORDER BY id",
                    (campaign,),
                )
            ]

        return await self._call(job)

    async def sweep(self, campaign: int, dead: Sequence[int]) -> Swept:
        def job(db: sqlite3.Connection) -> Swept:
            with _transaction(db):
                now = time.time()
                gone = {int(r[0]) for r in db.execute(
                    "SELECT id FROM smsvn_runners WHERE campaign = ? AND expires < ?",
                    (campaign, now),
                )}  # fmt: skip
                gone.update(dead)
                for runner in gone:
                    db.execute("DELETE FROM smsvn_runners WHERE id = ?", (runner,))
                alive = "SELECT id FROM smsvn_runners WHERE campaign = :campaign"
                args = {"campaign": campaign, "now": now, "lost": _LOST_REASON}
                spread(db, campaign, f"AND state < 2 AND owner NOT IN ({alive})", args)
                held = (
                    "campaign = :campaign AND state < 2 AND owner IS NOT NULL "
                    f"AND owner NOT IN ({alive})"
                )
                freed = db.execute(
                    f"UPDATE smsvn_recipients SET owner = NULL, batch = NULL, again = 1 "
                    f"WHERE {held} AND state = 0",
                    args,
                ).rowcount
                resend = db.execute(
                    f"UPDATE smsvn_recipients SET state = 0, owner = NULL, batch = NULL, "
                    f"again = 1, passed = NULL WHERE {held} AND state = 1 AND resend_until > :now",
                    args,
                ).rowcount
                unknown = db.execute(
                    f"UPDATE smsvn_recipients SET state = 4, reason = :lost "
                    f"WHERE {held} AND state = 1",
                    args,
                ).rowcount
                unknown += db.execute(
                    "UPDATE smsvn_recipients SET state = 4, reason = ? "
                    "WHERE campaign = ? AND state = 0 AND since IS NOT NULL "
                    "AND resend_until <= ? AND owner IS NULL",
                    (_EXPIRED_REASON, campaign, now),
                ).rowcount
            return Swept(len(gone), freed, resend, unknown)

        return await self._call(job)

    # -- claims and outcomes ---------------------------------------------------------------

    @property
    def claim_rows(self) -> int | None:
        return CLAIM_ROWS

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
        def job(db: sqlite3.Connection) -> list[ClaimedBatch] | None:
            with _transaction(db):
                if not db.execute("SELECT 1 FROM smsvn_runners WHERE id = ?", (runner,)).fetchone():
                    return None
                # Rows that went back to pending first (one by one, as they may go to other
                # batches), then new ones: batch rows.
                found = [
                    ClaimedRow(
                        int(i), int(phone), content, text,
                        request_id if resend else given_id, bool(resend),
                    )
                    for i, phone, content, text, request_id, given_id, resend in db.execute(
                        _CLAIM,
                        {
                            "campaign": campaign, "provider": provider, "now": time.time(),
                            "runner": runner, "tier": tier, "fresh": fresh,
                            "limit": batch_size * batches,
                        },
                    )
                ]  # fmt: skip
                groups = group_rows(found, batch_size, batches)
                claimed = batches_of(groups, first_token)
                # One statement a batch of several numbers (an eSMS or Fibo batch of one:
                # one executemany for all): a third of the cost of one statement a row.
                db.executemany(
                    "UPDATE smsvn_recipients SET owner = ?, batch = ? WHERE id = ?",
                    [
                        (runner, first_token + n, group[0].id)
                        for n, group in enumerate(groups)
                        if len(group) == 1
                    ],
                )
                for n, group in enumerate(groups):
                    if len(group) > 1:
                        marks = ", ".join("?" * len(group))
                        db.execute(
                            "UPDATE smsvn_recipients SET owner = ?, batch = ? "
                            f"WHERE id IN ({marks})",
                            (runner, first_token + n, *(row.id for row in group)),
                        )
                if fresh and len(claimed) < batches:
                    claimed += _claim_new(
                        db, campaign, runner, batch_size, batches - len(claimed),
                        first_token + len(claimed),
                    )  # fmt: skip
            return claimed

        return await self._call(job)

    async def write(self, writes: Sequence[Write | Settle]) -> list[bool]:
        def job(db: sqlite3.Connection) -> list[bool]:
            with _transaction(db):
                return _write(db, writes, time.time())

        return await self._call(job, urgent=True)

    async def outlook(self, campaign: int, runner: int) -> Outlook:
        def job(db: sqlite3.Connection) -> Outlook:
            row = db.execute(
                "SELECT COUNT(*) FROM smsvn_recipients WHERE campaign = ? AND state < 2 "
                "AND owner IS NOT NULL AND owner != ?",
                (campaign, runner),
            ).fetchone()
            (batched,) = db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM smsvn_batches WHERE campaign = ? "
                "AND state < 2 AND owner != ?",
                (campaign, runner),
            ).fetchone()
            return Outlook(int(row[0]) + int(batched))

        return await self._call(job)

    async def handed(self, campaign: int, runner: int) -> list[tuple[int, int]]:
        def job(db: sqlite3.Connection) -> list[tuple[int, int]]:
            return [
                (int(phone), int(tier))
                for phone, tier in db.execute(
                    "SELECT phone, tier FROM smsvn_recipients WHERE campaign = ? AND state = 0 "
                    "AND owner IS NULL AND passed = ? ORDER BY id",
                    (campaign, runner),
                )
            ]

        return await self._call(job)

    # -- reading ---------------------------------------------------------------------------

    async def counts(self, campaign: int) -> Counts:
        def job(db: sqlite3.Connection) -> Counts:
            counts = dict.fromkeys(State, 0)
            for state, n in db.execute(
                "SELECT state, COUNT(*) FROM smsvn_recipients WHERE campaign = ? GROUP BY state",
                (campaign,),
            ):
                counts[State(state)] += int(n)
            # A batch row's rows are pending in their own columns.
            for state, n in db.execute(
                "SELECT state, SUM(size) FROM smsvn_batches WHERE campaign = ? GROUP BY state",
                (campaign,),
            ):
                counts[State.PENDING] -= int(n)
                counts[State(state)] += int(n)
            return Counts(**{STATE_NAMES[state]: n for state, n in counts.items()})

        return await self._call(job)

    async def page(
        self, campaign: int, state: State | None, after: int, limit: int
    ) -> list[tuple[int, Recipient]]:
        def job(db: sqlite3.Connection) -> list[tuple[int, Recipient]]:
            _spread_all(db, campaign)
            if state is None:
                rows = db.execute(_PAGE.format(state=""), (campaign, after, limit))
            else:
                rows = db.execute(
                    _PAGE.format(state="AND r.state = ?"), (campaign, int(state), after, limit)
                )
            return [_recipient(row) for row in rows]

        return await self._call(job)

    # -- reconciliation --------------------------------------------------------------------

    async def unknown_since(self, campaign: int, provider: str) -> list[tuple[int, int, float]]:
        def job(db: sqlite3.Connection) -> list[tuple[int, int, float]]:
            _spread_all(db, campaign)
            return [
                (int(i), int(phone), float(since or 0.0))
                for i, phone, since in db.execute(
                    "SELECT id, phone, since FROM smsvn_recipients "
                    "WHERE campaign = ? AND state = 4 AND provider = ? ORDER BY id",
                    (campaign, provider),
                )
            ]

        return await self._call(job)

    async def settle_found(
        self, campaign: int, found: Sequence[tuple[int, str | None]], provider: str | None
    ) -> int:
        def job(db: sqlite3.Connection) -> int:
            with _transaction(db):
                spread(db, campaign)
                return sum(
                    db.execute(
                        "UPDATE smsvn_recipients "
                        "SET state = 2, message_id = COALESCE(?, message_id), reason = NULL "
                        "WHERE id = ? AND campaign = ? AND state = 4",
                        (message_id, row, campaign),
                    ).rowcount
                    for row, message_id in found
                )

        return await self._call(job)

    async def settle_phone(self, campaign: int, provider: str, phone: int, message_id: str) -> int:
        def job(db: sqlite3.Connection) -> int:
            with _transaction(db):
                spread(db, campaign)
                return db.execute(
                    "UPDATE smsvn_recipients SET state = 2, message_id = ?, reason = NULL "
                    "WHERE id = (SELECT id FROM smsvn_recipients WHERE campaign = ? "
                    "AND phone = ? AND provider = ? AND state = 4 AND state < 5 "
                    "ORDER BY id LIMIT 1)",
                    (message_id, campaign, phone, provider),
                ).rowcount

        return await self._call(job)

    async def resolve(
        self, campaign: int, state: State, phones: Sequence[int] | None, reason: str | None
    ) -> int:
        def job(db: sqlite3.Connection) -> int:
            assignments = "state = :state, reason = :reason"
            if state == State.PENDING:
                assignments += (
                    ", owner = NULL, batch = NULL, again = 1, passed = NULL, request_id = NULL, "
                    "since = NULL, resend_until = NULL"
                )
            update = (
                f"UPDATE smsvn_recipients SET {assignments} "
                "WHERE campaign = :campaign AND state = 4"
            )
            args: dict[str, object] = {"state": int(state), "reason": reason, "campaign": campaign}
            with _transaction(db):
                spread(db, campaign)
                if phones is None:
                    return db.execute(update, args).rowcount
                return sum(
                    db.execute(update + " AND phone = :phone", {**args, "phone": p}).rowcount
                    for p in phones
                )

        return await self._call(job)


# -- import (``SqliteStore.add``) ------------------------------------------------------------
# Integers only are written into the statements' text.

PIECE: Final = 128
"""The most rows one multi-row INSERT of plain numbers carries (two parameters a row: within
the 999 parameters the oldest SQLite takes). A run of rows goes in as pieces of 128, 64, ...,
1 rows: a few statements a run instead of one a row."""


def _add(
    db: sqlite3.Connection,
    campaign: int,
    content: int | None,
    digest: int,
    chunk: Chunk,
    before: bool,
) -> Added:
    """Add one segment inside the open write transaction (see the module's docstring):
    the rows from the first one the campaign does not have, and a record of them."""
    c, seg = int(campaign), int(chunk.segment)
    chains = chunk.chains
    there = _there(db, c, seg, chains, before)
    if there == len(chains):
        return Added(read=chunk.size, already=chunk.size)
    top = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM smsvn_recipients").fetchone()[0])
    runs = _from(chunk.runs, there)
    pending, duplicates, last = _insert(db, c, seg, content, digest, runs, top)
    written = len(chains) - there
    if last - top != written:  # a row each, one after the other: what the record says
        raise sqlite3.IntegrityError(
            f"journal: a segment of {written} rows was written as {last - top}"
        )
    db.execute(
        "INSERT INTO smsvn_segments (campaign, seg, head, size, tail, first_id, last_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (c, seg, chains[there], written, chains[-1], top + 1, last),
    )
    return Added(
        read=chunk.size,
        added=pending - duplicates,
        invalid=written - pending,
        duplicates=duplicates,
        already=there,
    )


def _there(db: sqlite3.Connection, c: int, seg: int, chains: list[int], before: bool) -> int:
    """How many of the segment's first rows (``chains``, in input order) the campaign has.

    From the segment's first row, the record that begins with the row's chain (if any): all
    its rows are there when its last chain is the one at its place in ``chains`` (this input
    goes on as that one did, at least that far); otherwise its chains are read, and the rows
    found among them are there. Then the same from the first row not found yet."""
    read: set[int] = set()
    if before:
        for first, last in db.execute(
            "SELECT first_id, last_id FROM smsvn_segments_before WHERE campaign = ? AND seg = ?",
            (c, seg),
        ).fetchall():
            read.update(_chains(db, first, last))
    seen: set[int] = set()
    there, size = 0, len(chains)
    while there < size:
        if chains[there] in read:
            there += 1
            continue
        found = db.execute(
            "SELECT size, tail, first_id, last_id FROM smsvn_segments "
            "WHERE campaign = ? AND seg = ? AND head = ?",
            (c, seg, chains[there]),
        ).fetchone()
        if found is None:
            break
        rows, tail, first, last = found
        end = there + rows
        if end <= size and chains[end - 1] == tail:
            there = end
        elif first in seen:  # read already, and its first row is not at this place: no more
            break
        else:
            seen.add(first)
            read.update(_chains(db, first, last))
    return there


def _chains(db: sqlite3.Connection, first: int, last: int) -> list[int]:
    """The chains of the rows with ids ``first`` to ``last``."""
    query = "SELECT chain FROM smsvn_recipients WHERE id BETWEEN ? AND ?"
    return [chain for (chain,) in db.execute(query, (first, last))]


def _from(runs: list[Run], start: int) -> list[Run]:
    """The rows of ``runs`` from the ``start``-th one (in input order) on."""
    if not start:
        return runs
    rest: list[Run] = []
    for run in runs:
        if start >= len(run.rows):
            start -= len(run.rows)
            continue
        rest.append(Run(run.plain, run.rows[start:]) if start else run)
        start = 0
    return rest


def _insert(
    db: sqlite3.Connection,
    c: int,
    seg: int,
    content: int | None,
    digest: int,
    runs: list[Run],
    top: int,
) -> tuple[int, int, int]:
    """Write the rows of ``runs`` after the id ``top``, in order, each pending row the unique
    index refuses right after its statement's rows as a duplicate: (pending rows, of which
    duplicates, the last id)."""
    # The segment's constants are parameters, not text: each statement is prepared once per
    # connection (the sqlite3 module caches 128), where text of their own made new statements
    # every segment, kept in that cache at up to a few hundred KB each.
    fixed = (c, seg, int(digest), content)
    pending = duplicates = 0
    last = top
    changes = db.total_changes
    for run in runs:
        rows = run.rows
        if not run.plain:
            # Rows with their own text (``Message``s) or not numbers: one statement a row.
            db.executemany(_OTHER, [(*fixed[:2], *row) for row in rows])
            took = db.total_changes - changes
            pending += sum(1 for row in rows if row[1] == State.PENDING)
            if took < len(rows):
                new = set(_chains(db, last + 1, _MAX_ID))
                refused = [
                    (row[0], row[2], row[3], row[4], row[6])
                    for row in rows
                    if row[0] not in new and row[1] == State.PENDING
                ]
                db.executemany(_OTHER_AGAIN, [(*fixed[:2], *row) for row in refused])
                duplicates += len(refused)
            changes = db.total_changes
            last = int(db.execute("SELECT MAX(id) FROM smsvn_recipients").fetchone()[0])
            continue
        pending += len(rows)
        start, size, end = 0, PIECE, len(rows)
        while start < end:
            while start + size > end:
                size >>= 1
            values = [*fixed, *itertools.chain.from_iterable(rows[start : start + size])]
            cursor = db.execute(_PLAIN.statement(size), values)
            took = db.total_changes - changes
            if took < size:
                values.append(last)
                cursor = db.execute(_PLAIN_AGAIN.statement(size), values)
                duplicates += db.total_changes - changes - took
            changes = db.total_changes
            last = int(cursor.lastrowid or last)
            start += size
    return pending, duplicates, last


_MAX_ID: Final = 2**63 - 1


class _Pieces:
    """A multi-row statement of ``n`` rows, made once per ``n`` (``PIECE`` at most)."""

    def __init__(self, head: str, row: str, tail: str) -> None:
        self._head, self._row, self._tail = head, row, tail
        self._made: dict[int, str] = {}

    def statement(self, n: int) -> str:
        made = self._made.get(n)
        if made is None:
            made = self._made[n] = self._head + ", ".join([self._row] * n) + self._tail
        return made


# An add's statements (see ``_insert``): the segment's campaign, segment, digest and shared
# content first, then its rows.
_PLAIN: Final = _Pieces(
    "INSERT OR IGNORE INTO smsvn_recipients "
    "(campaign, seg, chain, state, phone, digest, content) "
    "SELECT ?1, ?2, column1, 0, column2, ?3, ?4 FROM (VALUES ",
    "(?, ?)",
    ")",
)
# The rows of a piece that the unique index refused: those not among the ids after the last one
# before the piece.
_PLAIN_AGAIN: Final = _Pieces(
    "INSERT INTO smsvn_recipients (campaign, seg, chain, state, phone, digest, content, "
    f"reason) SELECT ?1, ?2, column1, 6, column2, ?3, ?4, '{_DUPLICATE_REASON}' "
    "FROM (VALUES ",
    "(?, ?)",
    ") WHERE column1 NOT IN (SELECT chain FROM smsvn_recipients WHERE id > ?)",
)
_OTHER: Final = (
    "INSERT OR IGNORE INTO smsvn_recipients "
    "(campaign, seg, chain, state, phone, digest, text, given, given_id, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OTHER_AGAIN: Final = (
    "INSERT INTO smsvn_recipients "
    "(campaign, seg, chain, state, phone, digest, text, given_id, reason) "
    f"VALUES (?, ?, ?, 6, ?, ?, ?, ?, '{_DUPLICATE_REASON}')"
)


_GROUPED: Final = sqlite3.sqlite_version_info >= (3, 33)
"""Whether this SQLite has ``UPDATE ... FROM`` (3.33): marks and outcomes of many batches go in
one statement each; otherwise one statement a batch."""


def _claim_new(
    db: sqlite3.Connection, campaign: int, runner: int, batch_size: int, batches: int, token: int
) -> list[ClaimedBatch]:
    """Up to ``batches`` batches of the rows after the campaign's claim cursor, each a run of
    consecutive new rows with one shared content (or one row with its own text), reserved as
    one batch row; the cursor moves past the last of them.

    A run of shared content is read as two strings SQLite concatenates (ids, numbers), cut into
    batches here: no Python object per row, the claim's main cost before (benchmarks/README)."""
    if batch_size < 1 or batches < 1:
        return []
    (cursor,) = db.execute(
        "SELECT claimed FROM smsvn_campaigns WHERE id = ?", (campaign,)
    ).fetchone()
    claimed: list[ClaimedBatch] = []
    ranges: list[tuple[int, int, int, int]] = []  # (token, lo, hi, size) of each batch row
    while len(claimed) < batches:
        head = db.execute(_FRESH_HEAD, (campaign, cursor)).fetchone()
        if head is None:
            break
        left = batches - len(claimed)
        content = head[1]
        if content is None:  # rows with their own text: a batch each
            args = _run_args(campaign, cursor, None, left)
            _to_run_end(db, args)
            for ident, phone, text, given_id in db.execute(_FRESH_OWN, args):
                claimed.append(ClaimedBatch(token, [phone_text(phone)], text, given_id, False))
                ranges.append((token, ident, ident, 1))
                token += 1
                cursor = ident
            continue
        (text,) = db.execute("SELECT text FROM smsvn_contents WHERE id = ?", (content,)).fetchone()
        run = _fresh_run(db, campaign, cursor, content, left * batch_size)
        if run is None:  # SQLite did not keep the rows in id order: one row at a time
            run = _fresh_rows(db, campaign, cursor, content, left * batch_size)
        ids, numbers = run
        if not ids:  # never (the head row is of the run): a guard against an IndexError
            break
        for at in range(0, len(numbers), batch_size):
            part = numbers[at : at + batch_size]
            claimed.append(ClaimedBatch(token, part, text, None, False))
            ranges.append((token, ids[at], ids[at + len(part) - 1], len(part)))
            token += 1
        cursor = ids[-1]
    if not claimed:
        return []
    db.executemany(
        "INSERT INTO smsvn_batches (campaign, owner, token, lo, hi, size, state) "
        "VALUES (?, ?, ?, ?, ?, ?, 0)",
        [(campaign, runner, *batch) for batch in ranges],
    )
    db.execute("UPDATE smsvn_campaigns SET claimed = ? WHERE id = ?", (cursor, campaign))
    return claimed


def _run_args(campaign: int, cursor: int, content: int | None, limit: int) -> dict[str, object]:
    """The parameters of the ``_FRESH_*`` queries: a window of ``limit`` new rows after
    ``cursor``, and a run of ``content`` (None: of rows with their own text)."""
    return {"campaign": campaign, "after": cursor, "before": _NO_ID, "content": content,
            "limit": limit}  # fmt: skip


def _to_run_end(db: sqlite3.Connection, args: dict[str, object]) -> None:
    """Bound ``args`` at the first row of the window that is not of the run, if any."""
    (before,) = db.execute(_FRESH_BREAK, args).fetchone()
    if before is not None:
        args["before"] = before


def _fresh_run(
    db: sqlite3.Connection, campaign: int, cursor: int, content: int, limit: int
) -> tuple[list[int], list[str]] | None:
    """The ids and numbers of the run of new rows of ``content`` after ``cursor`` (at most
    ``limit``), in id order; None if SQLite's concatenation did not keep that order."""
    args = _run_args(campaign, cursor, content, limit)
    count, low, other, ids, phones = db.execute(_FRESH_RUN, args).fetchone()
    if other:  # the window holds other rows too: the run ends at the first of them
        _to_run_end(db, args)
        count, low, other, ids, phones = db.execute(_FRESH_RUN, args).fetchone()
    if not count:
        return [], []
    order = [int(ident) for ident in ids.split(",")]
    numbers: list[str] = phones.split(",")
    # Both strings in id order, one entry a row: else a batch row's [lo, hi] would not be its
    # rows (a claim of a few hundred numbers checks it in tens of microseconds). Ids are
    # unique: sorted is increasing.
    if len(order) != count or len(numbers) != count or order != sorted(order):
        return None
    if low >= _NINE_DIGITS:  # every number is 0 and nine digits: the text SQLite made
        return order, ["0" + number for number in numbers]
    return order, [phone_text(int(number)) for number in numbers]


def _fresh_rows(
    db: sqlite3.Connection, campaign: int, cursor: int, content: int, limit: int
) -> tuple[list[int], list[str]]:
    """``_fresh_run`` read row by row."""
    args = _run_args(campaign, cursor, content, limit)
    _to_run_end(db, args)
    rows = db.execute(_FRESH_RUN_ROWS, args).fetchall()
    return [int(ident) for ident, _ in rows], [phone_text(phone) for _, phone in rows]


_SPREAD: Final = """
UPDATE smsvn_recipients
SET state = ?, owner = ?, batch = ?, attempts = attempts + ?, provider = ?, request_id = ?,
    since = ?, resend_until = ?, message_id = ?, reason = ?
WHERE campaign = ? AND id BETWEEN ? AND ? AND state = 0 AND owner IS NULL AND again IS NULL
"""


def spread(
    db: sqlite3.Connection,
    campaign: int | None,
    which: str = "",
    args: Sequence[object] | Mapping[str, object] = (),
) -> None:
    """Write the batch rows of ``campaign`` (all campaigns: None) that match ``which`` (more
    conditions) onto their rows, and drop them: the rows then say all, as a claim of single
    rows would have left them, and the fenced writes that follow find them there."""
    where = "WHERE 1" if campaign is None else f"WHERE campaign = {int(campaign)}"
    found = db.execute(
        "SELECT campaign, owner, token, lo, hi, state, attempts, provider, request_id, since, "
        f"resend_until, message_id, reason FROM smsvn_batches {where} {which}",
        args,
    ).fetchall()
    if not found:
        return
    db.executemany(
        _SPREAD,
        [(state, owner, token, attempts, provider, request_id, since, until, message_id, reason,
          c, lo, hi)
         for c, owner, token, lo, hi, state, attempts, provider, request_id, since, until,
         message_id, reason in found],
    )  # fmt: skip
    db.executemany(
        "DELETE FROM smsvn_batches WHERE campaign = ? AND owner = ? AND token = ?",
        [row[:3] for row in found],
    )


def _spread_all(db: sqlite3.Connection, campaign: int) -> None:
    """Before a read of single rows: ``spread`` every batch row of ``campaign``, in a write
    transaction taken only if there are any."""
    if db.execute("SELECT 1 FROM smsvn_batches WHERE campaign = ? LIMIT 1", (campaign,)).fetchone():
        with _transaction(db):
            spread(db, campaign)


_BATCH_MARK: Final = """
UPDATE smsvn_batches
SET state = 1, attempts = attempts + 1, provider = ?, request_id = ?, since = ?, resend_until = ?
WHERE campaign = ? AND owner = ? AND token = ? AND state = 0
"""

_BATCH_FINISH: Final = """
UPDATE smsvn_batches SET state = ?, message_id = ?, reason = ?
WHERE campaign = ? AND owner = ? AND token = ? AND state = 1
"""


def _write_batches(
    db: sqlite3.Connection, writes: Sequence[Write | Settle], now: float, done: list[bool | None]
) -> None:
    """The marks and plain outcomes of ``writes`` whose batch is a batch row, fenced as the
    rows' are (owner still registered, the batch still held in the expected state); the other
    items (of single rows, or hand-backs, refused numbers) are left to ``_write``, their batch
    rows first spread onto their rows."""
    owners: dict[tuple[int, int], list[int]] = {}
    for i, item in enumerate(writes):
        if isinstance(item, Settle) and (item.state == State.PENDING or item.refused):
            spread(db, item.campaign, "AND owner = ? AND token = ?", (item.owner, item.batch))
        else:
            owners.setdefault((item.campaign, item.owner), []).append(i)
    for (campaign, owner), indices in owners.items():
        marks = ", ".join("?" * len(indices))
        held = {
            token: (state, size)
            for token, state, size in db.execute(
                f"SELECT token, state, size FROM smsvn_batches WHERE campaign = ? AND owner = ? "
                f"AND token IN ({marks})",
                (campaign, owner, *(writes[i].batch for i in indices)),
            )
        }
        if not held:
            continue
        alive = db.execute("SELECT 1 FROM smsvn_runners WHERE id = ?", (owner,)).fetchone()
        departing: list[tuple[object, ...]] = []
        finishing: list[tuple[object, ...]] = []
        for i in indices:
            item = writes[i]
            found = held.get(item.batch)
            if found is None:
                continue  # of single rows
            state, size = found
            if isinstance(item, Write):
                done[i] = ok = bool(alive) and state == State.PENDING and size == item.size > 0
                if ok:
                    until = None if item.resend_for is None else now + item.resend_for
                    departing.append(
                        (item.provider, item.request_id, now, until, campaign, owner, item.batch)
                    )
            else:
                done[i] = ok = state == State.IN_FLIGHT
                if ok:
                    finishing.append(
                        (int(item.state), item.message_id, item.reason, campaign, owner,
                         item.batch)
                    )  # fmt: skip
        db.executemany(_BATCH_MARK, departing)
        db.executemany(_BATCH_FINISH, finishing)


def _write(db: sqlite3.Connection, writes: Sequence[Write | Settle], now: float) -> list[bool]:
    """Apply a group of marks and outcomes (each fenced); whether each batch was still held.

    The common ones (marks; outcomes without refused numbers) go in one statement per kind and
    runner, after one query that finds which of the group's batches are still held: a few
    statements per commit, however many batches it carries."""
    done: list[bool | None] = [None] * len(writes)
    _write_batches(db, writes, now, done)
    if _GROUPED:
        marks: dict[tuple[int, int], list[tuple[int, Write]]] = {}
        outcomes: dict[tuple[int, int], list[tuple[int, Settle]]] = {}
        for i, item in enumerate(writes):
            if done[i] is not None:
                continue
            if isinstance(item, Write):
                marks.setdefault((item.campaign, item.owner), []).append((i, item))
            elif item.state != State.PENDING and not item.refused:
                outcomes.setdefault((item.campaign, item.owner), []).append((i, item))
        for (campaign, owner), group in marks.items():
            held = _held(db, campaign, owner, [w.batch for _, w in group], State.PENDING)
            if not db.execute("SELECT 1 FROM smsvn_runners WHERE id = ?", (owner,)).fetchone():
                held = {}
            ready = [(i, w) for i, w in group if held.get(w.batch) == w.size > 0]
            for i, _ in group:
                done[i] = False
            if ready:
                values = ", ".join(["(?, ?, ?, ?)"] * len(ready))
                params: list[object] = []
                for i, w in ready:
                    done[i] = True
                    until = None if w.resend_for is None else now + w.resend_for
                    params += [w.batch, w.provider, w.request_id, until]
                db.execute(
                    f"WITH v (batch, provider, request_id, until) AS (VALUES {values}) {_MARK_ALL}",
                    [*params, now, campaign, owner],
                )
        for (campaign, owner), settled in outcomes.items():
            held = _held(db, campaign, owner, [s.batch for _, s in settled], State.IN_FLIGHT)
            ready_outcomes = [(i, o) for i, o in settled if held.get(o.batch)]
            for i, _ in settled:
                done[i] = False
            if ready_outcomes:
                values = ", ".join(["(?, ?, ?, ?)"] * len(ready_outcomes))
                params = []
                for i, o in ready_outcomes:
                    done[i] = True
                    params += [o.batch, int(o.state), o.message_id, o.reason]
                db.execute(
                    f"WITH v (batch, state, message_id, reason) AS (VALUES {values}) {_FINISH_ALL}",
                    [*params, campaign, owner],
                )
    return [
        _apply(db, item, now) if result is None else result
        for item, result in zip(writes, done, strict=True)
    ]


def _held(
    db: sqlite3.Connection, campaign: int, owner: int, batches: list[int], state: State
) -> dict[int, int]:
    """Rows in ``state`` of each of ``batches`` that ``owner`` still holds."""
    marks = ", ".join("?" * len(batches))
    return dict(
        db.execute(
            "SELECT batch, COUNT(*) FROM smsvn_recipients WHERE campaign = ? AND owner = ? "
            f"AND batch IN ({marks}) AND state = {int(state)} AND state < 2 "
            "AND owner IS NOT NULL GROUP BY batch",
            (campaign, owner, *batches),
        ).fetchall()
    )


def _apply(db: sqlite3.Connection, item: Write | Settle, now: float) -> bool:
    """One fenced mark or outcome; whether the batch was still held as expected."""
    if isinstance(item, Write):
        until = None if item.resend_for is None else now + item.resend_for
        cursor = db.execute(
            _DEPART,
            (item.provider, item.request_id, now, until, item.campaign, item.owner, item.batch),
        )
        return cursor.rowcount == item.size > 0
    if item.state == State.PENDING:
        forget = item.forget
        held = "IN (0, 1)" if item.release else "= 1"
        cursor = db.execute(
            _HAND_BACK.format(held=held),
            (None if item.release else item.owner, item.tier, item.reason, forget, forget,
             forget, item.campaign, item.owner, item.batch),
        )  # fmt: skip
        return cursor.rowcount > 0
    changed = 0
    for phone, why in item.refused:
        changed += db.execute(_REFUSE, (why, item.campaign, item.owner, item.batch, phone)).rowcount
    changed += db.execute(
        _FINISH,
        (int(item.state), item.message_id, item.reason, item.campaign, item.owner, item.batch),
    ).rowcount
    return changed > 0


def _recipient(row: tuple[Any, ...]) -> tuple[int, Recipient]:
    """One ``_PAGE`` row as (id, Recipient)."""
    ident, phone, given, state, text, message_id, request_id, provider, attempts, reason = row
    return int(ident), Recipient(
        phone=phone_text(phone) if phone is not None else (given or ""),
        state=STATE_NAMES[State(state)],
        content=text or "",
        message_id=message_id,
        request_id=request_id,
        provider=provider,
        attempts=int(attempts),
        error=reason,
    )
