"""The journal in PostgreSQL (``smsvn[postgres]``), for runners on several machines.

asyncpg is imported when a PostgreSQL journal opens, never by ``import smsvn``. The schema is
the SQLite store's, in PostgreSQL types. Claims take their rows with ``SELECT ... FOR UPDATE OF
r SKIP LOCKED``: concurrent runners each lock different pending rows and never wait for one
another. Time (leases, resend deadlines) is the database's clock, so the machines' clocks need
not agree. Adds of one campaign take a transaction-scoped advisory lock, so two processes adding
the same input at once add it once.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from smsvn.errors import JournalUnavailable, ValidationError
from smsvn.journal._store import (
    STATE_NAMES,
    Added,
    Chunk,
    ClaimedBatch,
    ClaimedRow,
    Counts,
    Outlook,
    Recipient,
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

__all__ = ["PostgresStore"]

_NOW: Final = "extract(epoch from clock_timestamp())"
_LOCK_CLASS: Final = 0x534D53  # "SMS": the advisory-lock namespace of the journal
_POOL_SIZE: Final = 4

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS smsvn_campaigns (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS smsvn_contents (
    id BIGSERIAL PRIMARY KEY,
    campaign BIGINT NOT NULL REFERENCES smsvn_campaigns (id),
    digest BIGINT NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (campaign, text)
);
CREATE TABLE IF NOT EXISTS smsvn_runners (
    id BIGSERIAL PRIMARY KEY,
    campaign BIGINT NOT NULL REFERENCES smsvn_campaigns (id),
    name TEXT NOT NULL,
    machine TEXT,
    pid INTEGER NOT NULL,
    started BIGINT NOT NULL,
    expires DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS smsvn_recipients (
    id BIGSERIAL PRIMARY KEY,
    campaign BIGINT NOT NULL REFERENCES smsvn_campaigns (id),
    seg BIGINT NOT NULL,
    chain BIGINT NOT NULL,
    state SMALLINT NOT NULL,
    phone BIGINT,
    digest BIGINT NOT NULL,
    content BIGINT REFERENCES smsvn_contents (id),
    text TEXT,
    given TEXT,
    given_id TEXT,
    request_id TEXT,
    provider TEXT,
    message_id TEXT,
    reason TEXT,
    owner BIGINT,
    batch BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    since DOUBLE PRECISION,
    resend_until DOUBLE PRECISION,
    passed BIGINT,
    tier INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS smsvn_recipients_key
    ON smsvn_recipients (campaign, seg, chain);
CREATE UNIQUE INDEX IF NOT EXISTS smsvn_recipients_once
    ON smsvn_recipients (campaign, phone, digest) WHERE state < 5;
CREATE INDEX IF NOT EXISTS smsvn_recipients_free
    ON smsvn_recipients (campaign, id) WHERE state = 0 AND owner IS NULL;
CREATE INDEX IF NOT EXISTS smsvn_recipients_held
    ON smsvn_recipients (campaign, owner, batch) WHERE state < 2 AND owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS smsvn_recipients_resend
    ON smsvn_recipients (campaign, resend_until) WHERE state = 0 AND since IS NOT NULL;
CREATE INDEX IF NOT EXISTS smsvn_recipients_by_state ON smsvn_recipients (campaign, state, id);
DROP INDEX IF EXISTS smsvn_recipients_state;
"""

_STAGE: Final = """
CREATE TEMP TABLE IF NOT EXISTS smsvn_stage (
    pos INTEGER PRIMARY KEY,
    chain BIGINT NOT NULL,
    state SMALLINT NOT NULL,
    phone BIGINT,
    digest BIGINT NOT NULL,
    text TEXT,
    given TEXT,
    given_id TEXT,
    reason TEXT
) ON COMMIT DELETE ROWS
"""
_STAGE_COLUMNS: Final = (
    "pos", "chain", "state", "phone", "digest", "text", "given", "given_id", "reason",
)  # fmt: skip

_DUPLICATE_REASON: Final = "duplicate: the campaign already has this number with this text"
_LOST_REASON: Final = "its runner stopped while it was in flight: it may have been sent"
_EXPIRED_REASON: Final = (
    "its runner stopped while it was in flight, and it was not resent within the provider's "
    "deduplication window: it may have been sent"
)

_INSERT: Final = """
WITH ins AS (
    INSERT INTO smsvn_recipients
        (campaign, seg, chain, state, phone, digest, content, text, given, given_id, reason)
    SELECT $1, $2, chain, state, phone, digest, CASE WHEN text IS NULL AND phone IS NOT NULL
           THEN $3::bigint END, text, given, given_id, reason
    FROM smsvn_stage ORDER BY pos
    ON CONFLICT DO NOTHING
    RETURNING state
)
SELECT state, COUNT(*) FROM ins GROUP BY state
"""
# Rows the first statement left out whose key is not there were left out by the unique index on
# number and text: they are the duplicates.
_DUPLICATES: Final = f"""
WITH ins AS (
    INSERT INTO smsvn_recipients
        (campaign, seg, chain, state, phone, digest, content, text, given_id, reason)
    SELECT $1, $2, s.chain, 6, s.phone, s.digest, CASE WHEN s.text IS NULL THEN $3::bigint END,
           s.text, s.given_id, '{_DUPLICATE_REASON}'
    FROM smsvn_stage s
    WHERE s.phone IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM smsvn_recipients r WHERE r.campaign = $1 AND r.seg = $2 AND r.chain = s.chain
    )
    ORDER BY s.pos
    RETURNING state
)
SELECT COUNT(*) FROM ins
"""

_CLAIM: Final = f"""
SELECT r.id, r.phone, r.content, COALESCE(r.text, c.text), r.request_id, r.given_id,
       r.since IS NOT NULL
FROM smsvn_recipients r LEFT JOIN smsvn_contents c ON c.id = r.content
WHERE r.campaign = $1 AND r.state = 0 AND r.owner IS NULL
  AND CASE WHEN r.since IS NOT NULL
                THEN r.provider = $2 AND r.resend_until > {_NOW}
                     AND r.passed IS DISTINCT FROM $3
           WHEN r.passed = $3 THEN r.tier <= $4
           ELSE $5 END
ORDER BY r.id
LIMIT $6
FOR UPDATE OF r SKIP LOCKED
"""

_DEPART: Final = f"""
UPDATE smsvn_recipients
SET state = 1, attempts = attempts + 1, provider = $3, request_id = COALESCE(request_id, $4),
    since = COALESCE(since, {_NOW}), resend_until = COALESCE(resend_until, {_NOW} + $5)
WHERE campaign = $6 AND owner = $1 AND batch = $2 AND state = 0 AND owner IS NOT NULL
  AND EXISTS (SELECT 1 FROM smsvn_runners WHERE id = $1 FOR SHARE)
"""

_MARK_ALL: Final = f"""
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])
        AS v (batch, provider, request_id, resend_for)
)
UPDATE smsvn_recipients r
SET state = 1, attempts = r.attempts + 1, provider = v.provider,
    request_id = COALESCE(r.request_id, v.request_id), since = COALESCE(r.since, {_NOW}),
    resend_until = COALESCE(r.resend_until, {_NOW} + v.resend_for)
FROM v
WHERE r.campaign = $5 AND r.owner = $6 AND r.batch = v.batch AND r.state = 0
  AND r.owner IS NOT NULL
  AND EXISTS (SELECT 1 FROM smsvn_runners WHERE id = $6 FOR SHARE)
RETURNING r.batch
"""

_FINISH_ALL: Final = """
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[])
        AS v (batch, state, message_id, reason)
)
UPDATE smsvn_recipients r
SET state = v.state, message_id = v.message_id, reason = v.reason
FROM v
WHERE r.campaign = $5 AND r.owner = $6 AND r.batch = v.batch AND r.state = 1
  AND r.owner IS NOT NULL
RETURNING r.batch
"""

_REFUSE: Final = """
UPDATE smsvn_recipients SET state = 5, reason = $4
WHERE campaign = $5 AND owner = $1 AND batch = $2 AND phone = $3 AND state = 1
  AND owner IS NOT NULL
"""

_FINISH: Final = """
UPDATE smsvn_recipients SET state = $3, message_id = $4, reason = $5
WHERE campaign = $6 AND owner = $1 AND batch = $2 AND state = 1 AND owner IS NOT NULL
"""

_HAND_BACK: Final = """
UPDATE smsvn_recipients
SET state = 0, owner = NULL, batch = NULL, passed = $3, tier = $4, reason = $5,
    request_id = CASE WHEN $6 THEN NULL ELSE request_id END,
    since = CASE WHEN $6 THEN NULL ELSE since END,
    resend_until = CASE WHEN $6 THEN NULL ELSE resend_until END
WHERE campaign = $7 AND owner = $1 AND batch = $2 AND state {held} AND owner IS NOT NULL
"""

_PAGE: Final = """
SELECT r.id, r.phone, r.given, r.state, COALESCE(r.text, c.text), r.message_id, r.request_id,
       r.provider, r.attempts, r.reason
FROM ({ids}) p
JOIN smsvn_recipients r ON r.id = p.id
LEFT JOIN smsvn_contents c ON c.id = r.content
ORDER BY r.id
"""
_PAGE_OF: Final = (
    "(SELECT id FROM smsvn_recipients WHERE campaign = $1 AND state = {state} AND id > $2 "
    "ORDER BY id LIMIT $3)"
)
_PAGE_ALL: Final = _PAGE.format(
    ids=" UNION ALL ".join(_PAGE_OF.format(state=int(s)) for s in State) + " ORDER BY id LIMIT $3"
)
_PAGE_STATE: Final = _PAGE.format(ids=_PAGE_OF.format(state="$4"))
# A page is read through ``by_state`` (campaign, state, id), an ordered range that stops at the
# limit whatever the planner believes of the table (right after an add its statistics are
# stale); every state at once is the merge of one such range a state. (A plain ``ORDER BY id``
# read every row of the campaign for each page: 11 s for 100,000 rows.)


def _changed(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresStore:
    """A journal in a PostgreSQL database (see the module's docstring)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None
        self._lost: tuple[type[BaseException], ...] = (ConnectionError,)  # asyncpg's, once open

    def __repr__(self) -> str:
        return "PostgresStore()"

    async def open(self) -> None:
        try:
            import asyncpg  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - depends on the extra
            raise ImportError(
                "a PostgreSQL journal needs asyncpg: pip install 'smsvn[postgres]'"
            ) from None
        self._lost = (
            # The socket's (not any OSError: the caller's input read inside a write may raise
            # its own, which is no lost server).
            ConnectionError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.ConnectionDoesNotExistError,
        )
        malformed: str | None = None
        lost: BaseException | None = None
        try:
            pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=_POOL_SIZE)
        except ValueError as exc:  # asyncpg's URL parsing (ClientConfigurationError is one too)
            malformed = f"{type(exc).__name__}; its message is not shown, it may quote the URL"
        except OverflowError:  # the socket's "connect(): port must be 0-65535"
            malformed = "a port out of range: ports are 0-65535"
        except self._lost as exc:  # the server is down or away
            lost = exc
        if lost is not None:
            raise _unavailable(lost) from None
        if malformed is not None:
            # asyncpg's message quotes pieces of the URL, where a password with an unencoded
            # "/", "?" or "#" ends up: raised here, outside the except block, so that neither
            # the message nor __context__ carries it.
            raise ValidationError(
                f"the PostgreSQL journal URL is malformed ({malformed}): "
                "postgresql://user@host:port/db, with /, ?, # and @ percent-encoded in a password"
            ) from None
        try:
            async with pool.acquire() as db, db.transaction():
                # Runners starting together would race to create the tables: one at a time.
                await db.execute("SELECT pg_advisory_xact_lock($1, 0)", _LOCK_CLASS)
                await db.execute(_SCHEMA)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _db(self) -> AsyncIterator[Any]:
        """A connection from the pool (``async with``); a lost server, in acquiring it or in
        the caller's statements, is ``JournalUnavailable`` (asyncpg's and the socket's own
        exceptions are not smsvn errors, and a socket's may name the server)."""
        if self._pool is None:
            raise RuntimeError("the journal is not open (use it as `async with`)")
        try:
            async with self._pool.acquire() as db:
                yield db
        except self._lost as exc:
            raise _unavailable(exc) from None

    # -- campaigns and contents ------------------------------------------------------------

    async def campaign(self, name: str, create: bool) -> int | None:
        async with self._db() as db:
            found = await db.fetchval("SELECT id FROM smsvn_campaigns WHERE name = $1", name)
            if found is None and create:
                found = await db.fetchval(
                    f"INSERT INTO smsvn_campaigns (name, created) VALUES ($1, {_NOW}) "
                    "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                    name,
                )
        return None if found is None else int(found)

    async def campaigns(self) -> list[str]:
        async with self._db() as db:
            return [r[0] for r in await db.fetch("SELECT name FROM smsvn_campaigns ORDER BY id")]

    async def content_id(self, campaign: int, text: str, digest: int) -> int:
        async with self._db() as db:
            found = await db.fetchval(
                "INSERT INTO smsvn_contents (campaign, digest, text) VALUES ($1, $2, $3) "
                "ON CONFLICT (campaign, text) DO UPDATE SET digest = EXCLUDED.digest RETURNING id",
                campaign,
                digest,
                text,
            )
        return int(found)

    async def contents(self, campaign: int) -> list[str]:
        async with self._db() as db:
            rows = await db.fetch(
                "SELECT text FROM smsvn_contents WHERE campaign = $1 ORDER BY id", campaign
            )
        return [r[0] for r in rows]

    # -- import ----------------------------------------------------------------------------

    def stop_add(self) -> None:
        """Nothing to commit: every segment is committed as it is written."""

    async def add(
        self, campaign: int, content: int | None, digest: int, chunk: Chunk, final: bool
    ) -> Added:
        records: list[tuple[object, ...]] = []
        for run in chunk.runs:
            base = len(records)
            if run.plain:
                records.extend(
                    (base + i, key, 0, number, digest, None, None, None, None)
                    for i, (key, number) in enumerate(run.rows)
                )
            else:
                records.extend((base + i, *row) for i, row in enumerate(run.rows))
        async with self._db() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, campaign)
            await db.execute(_STAGE)
            await db.copy_records_to_table("smsvn_stage", records=records, columns=_STAGE_COLUMNS)
            new = {
                int(s): int(n) for s, n in await db.fetch(_INSERT, campaign, chunk.segment, content)
            }
            duplicates = int(await db.fetchval(_DUPLICATES, campaign, chunk.segment, content))
        added = new.get(State.PENDING, 0)
        invalid = new.get(State.INVALID, 0)
        return Added(
            read=chunk.size,
            added=added,
            invalid=invalid,
            duplicates=duplicates,
            already=chunk.size - added - invalid - duplicates,
        )

    # -- runners ---------------------------------------------------------------------------

    async def enlist(self, campaign: int, runner: RunnerInfo, lease: float) -> int:
        async with self._db() as db:
            found = await db.fetchval(
                "INSERT INTO smsvn_runners (campaign, name, machine, pid, started, expires) "
                f"VALUES ($1, $2, $3, $4, $5, {_NOW} + $6) RETURNING id",
                campaign,
                runner.name,
                runner.machine,
                runner.pid,
                runner.started,
                lease,
            )
        return int(found)

    async def renew(self, runner: int, lease: float) -> bool:
        async with self._db() as db:
            status = await db.execute(
                f"UPDATE smsvn_runners SET expires = {_NOW} + $2 WHERE id = $1", runner, lease
            )
        return _changed(status) == 1

    async def runners(self, campaign: int) -> list[RunnerRow]:
        async with self._db() as db:
            rows = await db.fetch(
                f"SELECT id, name, machine, pid, started, expires < {_NOW} FROM smsvn_runners "
                "WHERE campaign = $1 ORDER BY id",
                campaign,
            )
        return [RunnerRow(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), bool(r[5])) for r in rows]

    async def sweep(self, campaign: int, dead: Sequence[int]) -> Swept:
        async with self._db() as db, db.transaction():
            gone = await db.fetch(
                f"DELETE FROM smsvn_runners WHERE campaign = $1 "
                f"AND (expires < {_NOW} OR id = ANY($2::bigint[])) RETURNING id",
                campaign,
                list(dead),
            )
            held = (
                "campaign = $1 AND state < 2 AND owner IS NOT NULL AND owner NOT IN "
                "(SELECT id FROM smsvn_runners WHERE campaign = $1)"
            )
            freed = _changed(
                await db.execute(
                    "UPDATE smsvn_recipients SET owner = NULL, batch = NULL "
                    f"WHERE {held} AND state = 0",
                    campaign,
                )
            )
            resend = _changed(
                await db.execute(
                    "UPDATE smsvn_recipients SET state = 0, owner = NULL, batch = NULL, "
                    f"passed = NULL WHERE {held} AND state = 1 AND resend_until > {_NOW}",
                    campaign,
                )
            )
            unknown = _changed(
                await db.execute(
                    f"UPDATE smsvn_recipients SET state = 4, reason = $2 "
                    f"WHERE {held} AND state = 1",
                    campaign,
                    _LOST_REASON,
                )
            )
            unknown += _changed(
                await db.execute(
                    "UPDATE smsvn_recipients SET state = 4, reason = $2 "
                    "WHERE campaign = $1 AND state = 0 AND since IS NOT NULL "
                    f"AND resend_until <= {_NOW} AND owner IS NULL",
                    campaign,
                    _EXPIRED_REASON,
                )
            )
        return Swept(len(gone), freed, resend, unknown)

    # -- claims and outcomes ---------------------------------------------------------------

    @property
    def claim_rows(self) -> int | None:
        """None: PostgreSQL's claims and marks do not wait for one another (they lock
        different rows), and each claim is a round trip: the more it reserves, the better."""
        return None

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
        async with self._db() as db, db.transaction():
            # The runner's registration row, locked: a sweep cannot retire it meanwhile.
            if (
                await db.fetchval("SELECT 1 FROM smsvn_runners WHERE id = $1 FOR SHARE", runner)
                is None
            ):
                return None
            found = [
                ClaimedRow(int(r[0]), int(r[1]), r[2], r[3], r[4] if r[6] else r[5], bool(r[6]))
                for r in await db.fetch(
                    _CLAIM, campaign, provider, runner, tier, fresh, batch_size * batches
                )
            ]
            groups = group_rows(found, batch_size, batches)
            if groups:
                await db.execute(
                    "UPDATE smsvn_recipients r SET owner = $1, batch = u.batch "
                    "FROM unnest($2::bigint[], $3::bigint[]) AS u (id, batch) WHERE r.id = u.id",
                    runner,
                    [row.id for group in groups for row in group],
                    [first_token + n for n, group in enumerate(groups) for _ in group],
                )
        return batches_of(groups, first_token)

    async def write(self, writes: Sequence[Write | Settle]) -> list[bool]:
        async with self._db() as db, db.transaction():
            return await _write(db, writes)

    async def outlook(self, campaign: int, runner: int) -> Outlook:
        async with self._db() as db:
            held = await db.fetchval(
                "SELECT COUNT(*) FROM smsvn_recipients WHERE campaign = $1 AND state < 2 "
                "AND owner IS NOT NULL AND owner <> $2",
                campaign,
                runner,
            )
        return Outlook(int(held))

    async def handed(self, campaign: int, runner: int) -> list[tuple[int, int]]:
        async with self._db() as db:
            rows = await db.fetch(
                "SELECT phone, tier FROM smsvn_recipients WHERE campaign = $1 AND state = 0 "
                "AND owner IS NULL AND passed = $2 ORDER BY id",
                campaign,
                runner,
            )
        return [(int(r[0]), int(r[1])) for r in rows]

    # -- reading ---------------------------------------------------------------------------

    async def counts(self, campaign: int) -> Counts:
        async with self._db() as db:
            rows = await db.fetch(
                "SELECT state, COUNT(*) FROM smsvn_recipients WHERE campaign = $1 GROUP BY state",
                campaign,
            )
        return Counts(**{STATE_NAMES[State(int(s))]: int(n) for s, n in rows})

    async def page(
        self, campaign: int, state: State | None, after: int, limit: int
    ) -> list[tuple[int, Recipient]]:
        async with self._db() as db:
            if state is None:
                rows = await db.fetch(_PAGE_ALL, campaign, after, limit)
            else:
                rows = await db.fetch(_PAGE_STATE, campaign, after, limit, int(state))
        return [_recipient(tuple(row)) for row in rows]

    # -- reconciliation --------------------------------------------------------------------

    async def unknown_since(self, campaign: int, provider: str) -> list[tuple[int, int, float]]:
        async with self._db() as db:
            rows = await db.fetch(
                "SELECT id, phone, since FROM smsvn_recipients "
                "WHERE campaign = $1 AND state = 4 AND provider = $2 ORDER BY id",
                campaign,
                provider,
            )
        return [(int(r[0]), int(r[1]), float(r[2] or 0.0)) for r in rows]

    async def settle_found(
        self, campaign: int, found: Sequence[tuple[int, str | None]], provider: str | None
    ) -> int:
        changed = 0
        async with self._db() as db, db.transaction():
            for row, message_id in found:
                changed += _changed(
                    await db.execute(
                        "UPDATE smsvn_recipients "
                        "SET state = 2, message_id = COALESCE($1, message_id), reason = NULL "
                        "WHERE id = $2 AND campaign = $3 AND state = 4",
                        message_id,
                        row,
                        campaign,
                    )
                )
        return changed

    async def settle_phone(self, campaign: int, provider: str, phone: int, message_id: str) -> int:
        async with self._db() as db:
            status = await db.execute(
                "UPDATE smsvn_recipients SET state = 2, message_id = $1, reason = NULL "
                "WHERE id = (SELECT id FROM smsvn_recipients WHERE campaign = $2 "
                "AND phone = $3 AND provider = $4 AND state = 4 "
                "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) AND state = 4",
                message_id,
                campaign,
                phone,
                provider,
            )
        return _changed(status)

    async def resolve(
        self, campaign: int, state: State, phones: Sequence[int] | None, reason: str | None
    ) -> int:
        assignments = "state = $1, reason = $2"
        if state == State.PENDING:
            assignments += (
                ", owner = NULL, batch = NULL, passed = NULL, request_id = NULL, "
                "since = NULL, resend_until = NULL"
            )
        update = f"UPDATE smsvn_recipients SET {assignments} WHERE campaign = $3 AND state = 4"
        async with self._db() as db:
            if phones is None:
                status = await db.execute(update, int(state), reason, campaign)
            else:
                status = await db.execute(
                    update + " AND phone = ANY($4::bigint[])",
                    int(state),
                    reason,
                    campaign,
                    list(phones),
                )
        return _changed(status)


async def _write(db: Any, writes: Sequence[Write | Settle]) -> list[bool]:
    """Apply a group of marks and outcomes (each fenced); whether each batch was still held.
    The common ones (marks; outcomes without refused numbers) go in one statement per kind and
    runner (one round trip), whatever the number of batches."""
    done: list[bool | None] = [None] * len(writes)
    marks: dict[tuple[int, int], list[tuple[int, Write]]] = {}
    outcomes: dict[tuple[int, int], list[tuple[int, Settle]]] = {}
    for i, item in enumerate(writes):
        if isinstance(item, Write):
            marks.setdefault((item.campaign, item.owner), []).append((i, item))
        elif item.state != State.PENDING and not item.refused:
            outcomes.setdefault((item.campaign, item.owner), []).append((i, item))
    for (campaign, owner), group in marks.items():
        rows = await db.fetch(
            _MARK_ALL,
            [w.batch for _, w in group],
            [w.provider for _, w in group],
            [w.request_id for _, w in group],
            [w.resend_for for _, w in group],
            campaign,
            owner,
        )
        marked = Counter(int(r[0]) for r in rows)
        for i, w in group:
            done[i] = marked[w.batch] == w.size > 0
    for (campaign, owner), settled in outcomes.items():
        rows = await db.fetch(
            _FINISH_ALL,
            [o.batch for _, o in settled],
            [int(o.state) for _, o in settled],
            [o.message_id for _, o in settled],
            [o.reason for _, o in settled],
            campaign,
            owner,
        )
        finished = {int(r[0]) for r in rows}
        for i, o in settled:
            done[i] = o.batch in finished
    return [
        await _apply(db, item) if result is None else result
        for item, result in zip(writes, done, strict=True)
    ]


async def _apply(db: Any, item: Write | Settle) -> bool:
    """One fenced mark or outcome; whether the batch was still held as expected."""
    if isinstance(item, Write):
        status = await db.execute(
            _DEPART,
            item.owner,
            item.batch,
            item.provider,
            item.request_id,
            item.resend_for,
            item.campaign,
        )
        return _changed(status) == item.size > 0
    if item.state == State.PENDING:
        held = "IN (0, 1)" if item.release else "= 1"
        status = await db.execute(
            _HAND_BACK.format(held=held),
            item.owner,
            item.batch,
            None if item.release else item.owner,
            item.tier,
            item.reason,
            item.forget,
            item.campaign,
        )
        return _changed(status) > 0
    changed = 0
    for phone, why in item.refused:
        changed += _changed(
            await db.execute(_REFUSE, item.owner, item.batch, phone, why, item.campaign)
        )
    changed += _changed(
        await db.execute(
            _FINISH,
            item.owner,
            item.batch,
            int(item.state),
            item.message_id,
            item.reason,
            item.campaign,
        )
    )
    return changed > 0


def _recipient(row: tuple[Any, ...]) -> tuple[int, Recipient]:
    """One ``_PAGE`` row as (id, Recipient)."""
    ident, phone, given, state, text, message_id, request_id, provider, attempts, reason = row
    return int(ident), Recipient(
        phone=phone_text(phone) if phone is not None else (given or ""),
        state=STATE_NAMES[State(int(state))],
        content=text or "",
        message_id=message_id,
        request_id=request_id,
        provider=provider,
        attempts=int(attempts),
        error=reason,
    )


def _unavailable(exc: BaseException) -> JournalUnavailable:
    """The error of a lost PostgreSQL server: its kind only (a socket's message names the
    server and port, asyncpg's may quote the URL)."""
    return JournalUnavailable(
        f"the PostgreSQL journal is unreachable ({type(exc).__name__}); a write it was making "
        "may or may not have been made: run again once it is back to resume"
    )
