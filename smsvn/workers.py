"""Campaigns on a task queue: one coroutine that works on one campaign, for any queue's task.

    from smsvn.workers import work_campaign

    summary = await work_campaign(campaign="promo-2026-12", provider="speedsms",
                                  journal="postgresql://db.internal/sms", claim_for=300)

A task carries only what names the work: the journal's URL, the campaign's name, the provider's
name and the send and run options, nothing secret (a queue's messages sit in a broker, its logs
and its dashboards). The worker brings the rest from its own environment: the provider's
credentials (``SMSVN_SPEEDSMS_TOKEN``, ...: the client's ``from_env``), the Redis of the shared
limiter (``SMSVN_REDIS_URL``, or a ``RedisLimiter`` the worker holds), send options that carry
a secret (``send_options=``: eSMS's ``callback_url`` with the webhook secret) and, when the task
names none, the journal (``SMSVN_JOURNAL``: the place for a URL with a password). ``check_task``
is the one check of what a task may carry, at ``enqueue`` and again in the worker.

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

import contextlib
import inspect
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from smsvn import providers
from smsvn._shared_limits import RedisLimiter
from smsvn.bulk import DEFAULT_CONCURRENCY
from smsvn.errors import ValidationError
from smsvn.journal import DEFAULT_LEASE, Journal
from smsvn.journal._campaign import check_concurrency, check_name
from smsvn.journal._dsn import has_password, is_keyword_dsn
from smsvn.journal._runner import check_claim_for, check_lease
from smsvn.providers import Provider

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
_SECRET_WORDS: Final = ("token", "key", "secret", "pass")
"""Parts of a send option's name that say it may carry a secret ("pass" covers "password")."""
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
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: float = DEFAULT_LEASE,
    claim_for: float | None = None,
) -> dict[str, SendOption]:
    """Check what a task carries before it is sent or run, so that a bad task is a
    ``ValidationError`` at ``enqueue`` (nothing in the broker) and in the worker (nothing sent).

    - ``campaign``: a name ``Journal.campaign`` accepts; ``provider``: a registered one;
    - ``journal``: None, a path or a URL with no password in any form (userinfo,
      ``?password=``, ``?sslpassword=``: brokers keep messages in the clear; put it in the
      worker's ``SMSVN_JOURNAL``, or PostgreSQL's ``PGPASSWORD``/``.pgpass``), not a libpq
      key=value string;
    - ``options``: send options the provider's ``batch_sender`` takes, as JSON scalars
      (``send_date`` as an ISO-8601 str), none secret: no credential, no ``callback_url`` (it
      carries the webhook secret) and no name with token, key, secret or pass in it; a worker
      sets those itself (``work_campaign(send_options=...)``);
    - ``concurrency``, ``lease``, ``claim_for``: ``Campaign.run``'s checks.

    Returns the options as a dict; never quotes a journal URL or an option's value.
    """
    check_name(campaign)
    entry = providers.get(provider)
    if journal is not None:
        if not isinstance(journal, str) or not journal.strip():
            raise ValidationError("journal is a path or URL, or None for $SMSVN_JOURNAL")
        if has_password(journal):
            raise ValidationError(
                "a task's journal URL carries no password (brokers keep messages in the "
                f"clear): give it to the workers as ${JOURNAL_ENV}, or with PGPASSWORD/.pgpass"
            )
        if is_keyword_dsn(journal):
            raise ValidationError(
                "a journal is a path or a sqlite:/// or postgresql:// URL, not a libpq "
                "key=value string"
            )
    check_concurrency(concurrency)
    check_lease(lease)
    check_claim_for(claim_for)
    found = _options(options, "options")
    accepted = _send_option_names(entry)
    for name, value in found.items():
        if _secret_option(name):
            raise ValidationError(
                f"send option {name!r} may carry a secret (a credential, or callback_url's "
                "webhook secret), and a task's messages sit in the broker in the clear: set it "
                "in the worker, work_campaign(send_options=...) or register(broker, "
                "send_options=...)"
            )
        _check_option_name(name, entry, accepted)
        if value is not None and not isinstance(value, str | int | bool):
            raise ValidationError(f"send option {name!r} must be a str, int, bool or None")
        if name == "send_date" and value is not None:
            _send_date(value)
    return found


def _options(options: object, what: str) -> dict[str, Any]:
    """``options`` (a Mapping named by str, or None) as a dict, or ``ValidationError``."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValidationError(f"{what} is a mapping of send options, not {type(options).__name__}")
    found = dict(options)
    for name in found:
        if not isinstance(name, str):
            raise ValidationError(f"{what} are named by str")
    return found


def _send_option_names(entry: Provider) -> frozenset[str] | None:
    """The send options the provider's ``batch_sender`` takes (its keyword parameters other
    than ``content``); None if it takes any (``**options``)."""
    names: set[str] = set()
    for parameter in inspect.signature(entry.client.batch_sender).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name != "content":
            names.add(parameter.name)
    return frozenset(names)


def _check_option_name(name: str, entry: Provider, accepted: frozenset[str] | None) -> None:
    """A send option's name: not a run option, one the provider takes (else the worker's
    ``batch_sender`` would raise a TypeError), or ``ValidationError``."""
    if name in _RUN_KEYWORDS:
        raise ValidationError(f"{name!r} is a run option, not a send option")
    if accepted is not None and name not in accepted:
        raise ValidationError(
            f"{entry.name} takes no send option {name!r} (its send options: "
            f"{', '.join(sorted(accepted)) or 'none'})"
        )


def _secret_option(name: str) -> bool:
    """Whether a send option called ``name`` may carry a secret: ``callback_url`` (eSMS's
    carries the webhook secret), any provider's credential, or a name with token, key, secret
    or pass in it (any case)."""
    folded = name.lower()
    if folded == "callback_url" or any(word in folded for word in _SECRET_WORDS):
        return True
    return any(folded == c.name.lower() for e in providers.all_providers() for c in e.credentials)


def _send_date(value: object) -> datetime:
    """A task's ``send_date``: an ISO-8601 str (JSON has no datetime; naive is Vietnam time, as
    the client takes it) made a datetime, or ``ValidationError``."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    raise ValidationError(
        "a task's send_date is an ISO-8601 str: 2026-12-24T08:00:00+07:00 (naive: Vietnam time)"
    )


def _limiter(limiter: object, env: Mapping[str, str]) -> tuple[RedisLimiter, bool]:
    """The shared limiter and whether this call made it (and closes it): a ``RedisLimiter``,
    a Redis URL, or None for ``$SMSVN_REDIS_URL``; anything else is a ``ValidationError``
    (another limiter would not be shared across workers)."""
    if isinstance(limiter, RedisLimiter):
        return limiter, False
    if limiter is None:
        url = env.get(REDIS_ENV) or None
        if url is None:
            raise ValidationError(
                f"no shared limiter: pass limiter= or set ${REDIS_ENV}, so that the workers "
                "keep the account's limit together"
            )
    elif isinstance(limiter, str) and limiter.strip():
        url = limiter
    else:
        raise ValidationError(
            "limiter is a smsvn.RedisLimiter, a redis:// URL, or None for "
            f"${REDIS_ENV}, not {type(limiter).__name__} (workers share the account's limit "
            "only through Redis)"
        )
    return RedisLimiter(url), True


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
    send_options: Mapping[str, Any] | None = None,
) -> CampaignWork:
    """Work on the existing campaign ``campaign`` of ``journal`` through ``provider``: send
    what is pending until nothing is left for this call, or claim nothing new after
    ``claim_for`` seconds (then at most ``concurrency`` batches, those already in flight, are
    still sent); return what it did.

    From the task (``check_task``): ``campaign``, ``provider`` (a registry name:
    ``"speedsms"``), ``journal`` (None: ``$SMSVN_JOURNAL``), ``options`` (send options:
    ``sms_type``, ``sender``, ``send_date`` as an ISO-8601 str, ...; nothing secret),
    ``concurrency``, ``lease``, ``claim_for`` (``Campaign.run``'s).

    From the worker: ``limiter``, the shared limiter: a ``RedisLimiter`` the worker keeps
    (reuse one per process and event loop), a Redis URL (a limiter for this call), or None
    (one on ``$SMSVN_REDIS_URL`` for this call; neither set: ``ValidationError``, since
    workers that do not share the account's limit would each send at the full limit).
    ``client_options``: the client's keyword options (``rate_limit=``, ``max_wait=``,
    ``timeout=``); credentials and the other ``SMSVN_*`` settings come from ``environ``
    (default ``os.environ``) through the client's ``from_env``. ``send_options``: send options
    only the worker knows, merged with the task's, which may not override them (eSMS's
    ``callback_url``, which carries the webhook secret).

    Raises ``ValidationError`` (a bad task or worker setting, missing credentials, no such
    campaign, options the provider refuses) before anything is sent, ``journal.LeaseLost`` if
    this runner was paused past its lease, and the journal's errors; an account-wide provider
    error ends the call with ``aborted`` set.
    """
    if environ is not None and not isinstance(environ, Mapping):
        raise ValidationError(f"environ is a mapping, not {type(environ).__name__}")
    env: Mapping[str, str] = os.environ if environ is None else environ
    task_options: dict[str, Any] = check_task(
        campaign=campaign,
        provider=provider,
        journal=journal,
        options=options,
        concurrency=concurrency,
        lease=lease,
        claim_for=claim_for,
    )
    entry = providers.get(provider)
    accepted = _send_option_names(entry)
    own_options = _options(send_options, "send_options")
    for name in own_options:
        _check_option_name(name, entry, accepted)
    overridden = sorted(set(task_options) & set(own_options))
    if overridden:
        raise ValidationError(
            f"the worker sets {', '.join(overridden)}: a task may not override it"
        )
    if task_options.get("send_date") is not None:
        task_options["send_date"] = _send_date(task_options["send_date"])
    merged = {**task_options, **own_options}
    if journal is None:
        journal = env.get(JOURNAL_ENV) or None
        if journal is None:
            raise ValidationError(f"no journal in the task and ${JOURNAL_ENV} is not set")
    if client_options is not None and not isinstance(client_options, Mapping):
        raise ValidationError(f"client_options is a mapping, not {type(client_options).__name__}")
    extra = dict(client_options or {})
    if "limiter" in extra:
        raise ValidationError("give the shared limiter as limiter=, not in client_options")
    if "environ" in extra:
        raise ValidationError("give the environment as environ=, not in client_options")
    shared, owned = _limiter(limiter, env)
    started = time.monotonic()
    try:
        client = entry.client.from_env(environ=env, limiter=shared, **extra)
        async with Journal(journal) as book, client:
            work = await book.campaign(campaign, create=False)
            report = await work.run(
                client,
                concurrency=concurrency,
                lease=lease,
                claim_for=claim_for,
                **merged,
            )
            left = (await work.counts()).unsettled
    finally:
        if owned:
            await shared.aclose()
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
