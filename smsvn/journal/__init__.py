"""Durable campaigns: a journal that survives crashes, deploys and SIGKILL.

    async with smsvn.Journal("campaigns.db") as journal:          # or "postgresql://host/db"
        campaign = await journal.campaign("promo-2026-12")       # get or create, by name
        await campaign.add(numbers, content="Khuyen mai ...")    # idempotent
        report = await campaign.run(sms, concurrency=32)         # resumes; many runners at once
        counts = await campaign.counts()

Every input ends in exactly one state: ``pending`` -> ``in_flight`` (recorded durably before its
request leaves) -> ``sent`` | ``failed`` (only errors that prove nothing was sent) |
``unknown`` (it may have been sent: never resent automatically, except under a request id the
provider deduplicates, such as eSMS's ``RequestId`` within its window); or ``invalid`` /
``duplicate`` from the start. ``unknown`` leaves only by ``reconcile``, ``apply`` (a delivery
report) or ``resolve``.

SQLite (the stdlib's, in a worker thread, WAL, ``synchronous=FULL``) is the default and serves
the processes of one machine; PostgreSQL (``smsvn[postgres]``: asyncpg, claims with
``FOR UPDATE SKIP LOCKED``) serves several machines. asyncpg is imported only by a PostgreSQL
journal; a PostgreSQL server that cannot be reached, or drops the connection, is
``JournalUnavailable``.
"""

from __future__ import annotations

from smsvn.errors import JournalUnavailable
from smsvn.journal._campaign import DEFAULT_LEASE, Campaign, Journal
from smsvn.journal._runner import LeaseLost
from smsvn.journal._store import Added, Counts, Recipient

__all__ = [
    "DEFAULT_LEASE",
    "Added",
    "Campaign",
    "Counts",
    "Journal",
    "JournalUnavailable",
    "LeaseLost",
    "Recipient",
]
