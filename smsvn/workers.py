"""Campaigns on a task queue: one coroutine that works on one campaign, for any queue's task.

    from smsvn.workers import work_campaign

    summary = await work_campaign(campaign="promo-2026-12", provider="speedsms",
                                  journal="postgresql://db.internal/sms", claim_for=300)

A task carries only what names the work: the journal's URL, the campaign's name, the provider's
name and the send and run options, nothing secret (a queue's messages sit in a broker, its logs
and its dashboards). The worker brings the rest from its own environment: the provider's
credentials (``SMSVN_SPEEDSMS_TOKEN``, ...: the client's ``from_env``), the Redis of the shared
limiter (``SMSVN_REDIS_URL``, or a ``RedisLimiter`` the worker holds) and, when the task names
none, the journal (``SMSVN_JOURNAL``: the place for a URL with a password).

A task may run twice, at once or later: every queue delivers some tasks twice (a worker that
died before acknowledging, a broker that redelivers a long task, a retry). That is safe because
a task only calls ``Campaign.run``: each batch is claimed by exactly one runner, marked in
flight before its request leaves, and a batch a dead runner had in flight becomes ``unknown``,
never resent (except under a request id the provider deduplicates: eSMS). A second copy of the
task is one more runner: it sends what nobody holds, or nothing. The shared limiter keeps the
account's limit across every worker of every queue. ``smsvn.taskiq`` registers this coroutine
as a taskiq task; an arq or Celery task calls it directly (README, "Running campaigns on
workers").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from smsvn import providers
from smsvn._shared_limits import RedisLimiter
from smsvn.bulk import DEFAULT_CONCURRENCY
from smsvn.errors import ValidationError
from smsvn.journal import DEFAULT_LEASE, Journal
from smsvn.journal._campaign import redact_url

__all__ = [
    "JOURNAL_ENV",
    "REDIS_ENV",
    "CampaignWork",
    "SendOption",
    "check_task",
    "work_campaign",
]

_log = logging.getLogger("smsvn")

JOURNAL_ENV: Final = "SMSVN_JOURNAL"
"""Where a worker finds the journal when a task names none (as ``smsvn campaign`` does)."""
REDIS_ENV: Final = "SMSVN_REDIS_URL"
"""Where a worker finds the shared limiter's Redis when it is given no limiter."""

_RUN_KEYWORDS: Final = frozenset(
    {"concurrency", "lease", "claim_for", "on_progress", "on_result", "keep_results"}
)
SendOption = str | int | bool | None
"""A send option's value as a task carries it (JSON: ``sms_type=3``, ``sender="BRAND"``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignWork:
    """What one ``work_campaign`` call did (a plain dataclass: any queue's result backend can
    keep it; ``dataclasses.asdict`` for a JSON one)."""

    campaign: str
    provider: str
    taken: int
    """Numbers this call claimed."""
    sent: int
    """Numbers the provider accepted."""
    failed: int
    """Numbers in batches the provider refused (nothing was sent)."""
    unknown: int
    """Numbers in batches that may have been sent (``campaign.recipients(state="unknown")``)."""
    invalid: int
    """Numbers the provider refused in batches it accepted."""
    skipped: int
    """Numbers claimed and handed back unsent (still pending, for any runner)."""
    requests: int
    elapsed: float
    """Seconds this call took."""
    left: int
    """Inputs of the campaign still pending or in flight when this call ended (any runner's):
    0 once the campaign is finished."""
    aborted: str | None = None
    """The account-wide error that stopped this call (``"AuthenticationError: ..."``), if any:
    no retry helps until a person acts. Secrets never appear in it."""

    @property
    def finished(self) -> bool:
        """Whether nothing is left to send or in flight in the campaign."""
        return self.left == 0


def check_task(
    *,
    campaign: str,
    provider: str,
    journal: str | None,
    options: Mapping[str, SendOption] | None,
) -> dict[str, SendOption]:
    """Check what a task carries before it is sent or run: a campaign name, a registered
    provider, a journal URL without a password (put that in the worker's ``SMSVN_JOURNAL``, or
    PostgreSQL's ``PGPASSWORD``/``.pgpass``), and send options that are JSON scalars and no
    credential. Returns the options as a dict; ``ValidationError`` otherwise."""
    if not isinstance(campaign, str) or not campaign.strip():
        raise ValidationError("a task names its campaign: a non-empty str")
    entry = providers.get(provider)
    if journal is not None:
        if not isinstance(journal, str) or not journal.strip():
            raise ValidationError("journal is a path or URL, or None for $SMSVN_JOURNAL")
        if redact_url(journal) != journal:
            raise ValidationError(
                "a task's journal URL carries no password (brokers keep messages in the "
                f"clear): give it to the workers as ${JOURNAL_ENV}, or with PGPASSWORD/.pgpass"
            )
    found: dict[str, SendOption] = dict(options or {})
    for name, value in found.items():
        if not isinstance(name, str):
            raise ValidationError("send options are named by str")
        if name in _RUN_KEYWORDS:
            raise ValidationError(f"{name!r} is a run option, not a send option")
        if any(name == c.name for c in entry.credentials):
            raise ValidationError(
                f"{name!r} is a credential: workers read it from their environment "
                f"({', '.join(c.env for c in entry.credentials)}), never from a task"
            )
        if value is not None and not isinstance(value, str | int | bool):
            raise ValidationError(f"send option {name!r} must be a str, int, bool or None")
    return found


async def work_campaign(
    *,
    campaign: str,
    provider: str,
    journal: str | None = None,
    options: Mapping[str, SendOption] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: float = DEFAULT_LEASE,
    claim_for: float | None = None,
    limiter: RedisLimiter | str | None = None,
    client_options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> CampaignWork:
    """Work on the existing campaign ``campaign`` of ``journal`` through ``provider``: send
    what is pending until nothing is left for this call, or claim nothing new after
    ``claim_for`` seconds (what it claimed still finishes); return what it did.

    From the task: ``campaign``, ``provider`` (a registry name: ``"speedsms"``), ``journal``
    (None: ``$SMSVN_JOURNAL``), ``options`` (send options: ``sms_type``, ``sender``, ...),
    ``concurrency``, ``lease``, ``claim_for`` (``Campaign.run``'s).

    From the worker: ``limiter``, the shared limiter: a ``RedisLimiter`` the worker keeps
    (reuse one per process and event loop), a Redis URL (a limiter for this call), or None
    (one on ``$SMSVN_REDIS_URL`` for this call; neither set: ``ValidationError``, since
    workers that do not share the account's limit would each send at the full limit).
    ``client_options``: the client's keyword options (``rate_limit=``, ``max_wait=``,
    ``timeout=``); credentials and the other ``SMSVN_*`` settings come from ``environ``
    (default ``os.environ``) through the client's ``from_env``.

    Raises ``ValidationError`` (a bad task, missing credentials, no such campaign) before
    anything is sent, ``journal.LeaseLost`` if this runner was paused past its lease, and the
    journal's errors; an account-wide provider error ends the call with ``aborted`` set.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    send_options: dict[str, Any] = check_task(
        campaign=campaign, provider=provider, journal=journal, options=options
    )
    if journal is None:
        journal = env.get(JOURNAL_ENV) or None
        if journal is None:
            raise ValidationError(f"no journal in the task and ${JOURNAL_ENV} is not set")
    extra = dict(client_options or {})
    if "limiter" in extra:
        raise ValidationError("give the shared limiter as limiter=, not in client_options")
    own: RedisLimiter | None = None
    if not isinstance(limiter, RedisLimiter):
        url = limiter if limiter is not None else env.get(REDIS_ENV) or None
        if url is None:
            raise ValidationError(
                f"no shared limiter: pass limiter= or set ${REDIS_ENV}, so that the workers "
                "keep the account's limit together"
            )
        limiter = own = RedisLimiter(url)
    started = time.monotonic()
    try:
        entry = providers.get(provider)
        client = entry.client.from_env(environ=env, limiter=limiter, **extra)
        async with Journal(journal) as book, client:
            work = await book.campaign(campaign, create=False)
            report = await work.run(
                client,
                concurrency=concurrency,
                lease=lease,
                claim_for=claim_for,
                **send_options,
            )
            left = (await work.counts()).unsettled
    finally:
        if own is not None:
            await own.aclose()
    aborted = report.aborted
    summary = CampaignWork(
        campaign=campaign,
        provider=entry.name,
        taken=report.taken,
        sent=report.accepted,
        failed=report.failed_count,
        unknown=report.unknown_count,
        invalid=len(report.invalid),
        skipped=len(report.skipped),
        requests=report.requests,
        elapsed=time.monotonic() - started,
        left=left,
        aborted=None if aborted is None else f"{type(aborted).__name__}: {aborted}",
    )
    if aborted is not None:
        _log.warning("campaign %r: stopped by %s", campaign, summary.aborted)
    return summary
