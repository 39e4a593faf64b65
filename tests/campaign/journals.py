"""Journals for the tests: a real SQLite file, and a real PostgreSQL database (a schema of the
test's own, dropped afterwards); and a way to read what a journal holds underneath its API (the
owner and batch of every row), for tests that check the journal against the simulator.

``journal_url`` runs a test once per store. PostgreSQL comes from ``tests.services``: skipped
where there is none, a failure under ``CI``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from typing import NamedTuple

import pytest

from smsvn.sandbox import Sandbox
from tests.services import postgres_dsn, postgres_schema

__all__ = ["Row", "in_transaction", "journal_url", "postgres_dsn", "rows", "store_of", "tagged"]


@pytest.fixture(params=["sqlite", "postgres"])
async def journal_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh journal: a SQLite file, or a PostgreSQL schema of this test's own."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("journal") / "campaigns.db")
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    async with postgres_schema(dsn) as url:
        yield url


def store_of(url: str) -> str:
    """``sqlite`` or ``postgres``."""
    return "postgres" if url.startswith("postgresql://") else "sqlite"


class Row(NamedTuple):
    """One input as the journal's table holds it."""

    phone: str | None
    state: int
    owner: int | None
    batch: int | None
    message_id: str | None
    attempts: int
    request_id: str | None


_ROWS = (
    "SELECT r.phone, r.state, r.owner, r.batch, r.message_id, r.attempts, r.request_id "
    "FROM smsvn_recipients r JOIN smsvn_campaigns c ON c.id = r.campaign "
    "WHERE c.name = $1 ORDER BY r.id"
)
_SQLITE_ROWS = """
SELECT r.phone, COALESCE(b.state, r.state), COALESCE(b.owner, r.owner),
       COALESCE(b.token, r.batch), IIF(b.token IS NULL, r.message_id, b.message_id),
       r.attempts + COALESCE(b.attempts, 0), IIF(b.token IS NULL, r.request_id, b.request_id)
FROM smsvn_recipients r JOIN smsvn_campaigns c ON c.id = r.campaign
LEFT JOIN smsvn_batches b ON b.campaign = r.campaign AND r.id BETWEEN b.lo AND b.hi
     AND r.state = 0 AND r.owner IS NULL AND r.again IS NULL
WHERE c.name = ? ORDER BY r.id
"""
"""SQLite keeps the batches a claim took whole as batch rows (``smsvn_batches``): their rows
are pending in their own columns, and the batch row says the rest."""


async def rows(url: str, campaign: str) -> list[Row]:
    """Every row of ``campaign``, read from the tables themselves."""

    def row(values: tuple[object, ...]) -> Row:
        phone, state, owner, batch, message_id, attempts, request_id = values
        return Row(
            None if phone is None else f"0{int(phone):09d}",  # type: ignore[call-overload]
            int(state),  # type: ignore[call-overload]
            None if owner is None else int(owner),  # type: ignore[call-overload]
            None if batch is None else int(batch),  # type: ignore[call-overload]
            message_id,  # type: ignore[arg-type]
            int(attempts),  # type: ignore[call-overload]
            request_id,  # type: ignore[arg-type]
        )

    if store_of(url) == "sqlite":
        with sqlite3.connect(url) as db:
            return [row(r) for r in db.execute(_SQLITE_ROWS, (campaign,))]
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        return [row(tuple(r)) for r in await db.fetch(_ROWS, campaign)]
    finally:
        await db.close()


def tagged(url: str, tag: str) -> str:
    """``url`` naming its connections ``tag`` (PostgreSQL's ``application_name``), so that
    ``in_transaction`` can tell them apart; a SQLite path unchanged."""
    if store_of(url) == "sqlite":
        return url
    return f"{url}{'&' if '?' in url else '?'}application_name={tag}"


async def in_transaction(url: str, tag: str) -> bool:
    """Whether a connection tagged ``tag`` (any, for SQLite) is inside a write transaction: a
    process paused there holds the file's write lock (SQLite) or its rows' locks (PostgreSQL)."""
    if store_of(url) == "sqlite":
        db = sqlite3.connect(url, timeout=0.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            db.close()
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        count = await db.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND xact_start IS NOT NULL",
            tag,
        )
        return bool(count)
    finally:
        await db.close()


async def expire_resends(url: str) -> None:
    """Time travel: eSMS's resend window under a ``RequestId`` (18 hours) runs out for every
    input. The journal keeps the deadline as a time; nothing else is changed."""
    update = "UPDATE smsvn_recipients SET resend_until = 0 WHERE resend_until IS NOT NULL"
    if store_of(url) == "sqlite":
        with sqlite3.connect(url) as db:
            db.execute(update)
        return
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        await db.execute(update)
    finally:
        await db.close()


def outbox(sb: Sandbox, provider: str) -> Counter[str]:
    """How many times the simulator accepted each number through ``provider``."""
    return Counter(r.phone for r in sb.outbox.for_provider(provider))
