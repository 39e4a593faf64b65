"""Campaigns on taskiq workers (extra ``smsvn[taskiq]``: taskiq and taskiq-redis).

    # tasks.py, imported by the workers (taskiq worker tasks:broker) and by the app
    from taskiq_redis import RedisStreamBroker
    import smsvn.taskiq

    broker = RedisStreamBroker("redis://127.0.0.1:6379/0", xread_count=1)
    work = smsvn.taskiq.register(broker)          # the task; nothing runs at import

    # the app: spread the campaign over 4 workers
    await broker.startup()
    await smsvn.taskiq.enqueue(work, campaign="promo-2026-12", provider="speedsms",
                               journal="postgresql://db.internal/sms", workers=4)

``register(broker)`` registers ``smsvn.workers.work_campaign`` as a task of the broker and
returns it; ``enqueue`` sends one message per worker, each carrying only the journal's URL, the
campaign's name, the provider's name and the send and run options. The workers bring their
credentials (``SMSVN_SPEEDSMS_TOKEN``, ...) and the shared limiter's Redis
(``SMSVN_REDIS_URL``, or ``register(broker, limiter=...)``) from their own environment.

A message delivered twice, a worker killed mid-task, a task retried: each copy is one more
runner of the campaign, and the journal's claims decide what each may send (see
``smsvn.workers``). Importing ``smsvn`` never imports this module, nor taskiq.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, TypeAlias

from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, TaskiqEvents, TaskiqState

from smsvn._shared_limits import RedisLimiter
from smsvn.bulk import DEFAULT_CONCURRENCY
from smsvn.errors import ValidationError
from smsvn.journal import DEFAULT_LEASE
from smsvn.workers import REDIS_ENV, CampaignWork, SendOption, check_task, work_campaign

__all__ = [
    "MAX_WORKERS",
    "TASK_NAME",
    "CampaignTask",
    "CampaignWork",
    "enqueue",
    "register",
    "work_campaign",
]

TASK_NAME: Final = "smsvn.work_campaign"
"""The name ``register`` gives the task by default (what its messages name)."""
MAX_WORKERS: Final = 1_000
"""The most messages one ``enqueue`` sends: more is a typo, and would flood the broker."""

CampaignTask: TypeAlias = AsyncTaskiqDecoratedTask[..., Coroutine[Any, Any, CampaignWork]]
"""The task ``register`` returns: ``await task.kiq(campaign=..., provider=...)``, or
``enqueue(task, ...)`` for several workers."""


class _ProcessLimiter:
    """One shared limiter per worker process (per event loop), made on first use and closed
    when the worker shuts down."""

    def __init__(self, make: Callable[[], RedisLimiter] | None) -> None:
        self._make = make
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: RedisLimiter | None = None

    def get(self) -> RedisLimiter | None:
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._loop is not loop:
            if self._make is not None:
                self._limiter = self._make()
            else:
                url = os.environ.get(REDIS_ENV) or None
                self._limiter = RedisLimiter(url) if url is not None else None
            self._loop = loop
        return self._limiter

    async def close(self, state: TaskiqState) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None and self._loop is asyncio.get_running_loop():
            await limiter.aclose()


def register(
    broker: AsyncBroker,
    *,
    limiter: Callable[[], RedisLimiter] | None = None,
    client_options: Mapping[str, Any] | None = None,
    send_options: Mapping[str, Any] | None = None,
    task_name: str = TASK_NAME,
    **labels: Any,
) -> CampaignTask:
    """Register the campaign task on ``broker`` and return it.

    ``limiter``: a function that makes the worker process's shared limiter, called once inside
    its event loop (a ``RedisLimiter`` belongs to one loop, so the function, not a limiter:
    ``lambda: RedisLimiter(url, prefix=...)``); by default one on ``$SMSVN_REDIS_URL``. It is
    closed when the worker shuts down. ``client_options``: the client's keyword options in
    every worker (``rate_limit=``, ``max_wait=``, ``timeout=``). ``send_options``: send options
    set by the workers, never carried by a task, which may not override them (eSMS's
    ``callback_url`` with the webhook secret, from the worker's settings). ``task_name`` and
    ``labels`` are taskiq's (``retry_on_error=True`` with its retry middleware: safe, a retry is
    one more runner).
    """
    if not isinstance(broker, AsyncBroker):
        raise ValidationError(f"register takes a taskiq broker, not {type(broker).__name__}")
    if isinstance(limiter, RedisLimiter | str) or (limiter is not None and not callable(limiter)):
        raise ValidationError(
            "register's limiter= is a function that makes a RedisLimiter in the worker's event "
            "loop (limiter=lambda: smsvn.RedisLimiter(url, prefix=...)), or None for "
            f"${REDIS_ENV}; not a {type(limiter).__name__}"
        )
    for what, given in (("client_options", client_options), ("send_options", send_options)):
        if given is not None and not isinstance(given, Mapping):
            raise ValidationError(f"{what} is a mapping, not {type(given).__name__}")
    worker_options = dict(client_options or {})
    worker_send = dict(send_options or {})
    shared = _ProcessLimiter(limiter)

    async def work_campaign_task(*args: Any, **fields: Any) -> CampaignWork:
        """Work on one campaign (``smsvn.workers.work_campaign``): the message's fields
        (``campaign``, ``provider``, ``journal``, ``options``, ``concurrency``, ``lease``,
        ``claim_for``) are checked by name, so a send option given outside ``options`` is a
        ``ValidationError`` saying so, not the call's ``TypeError``."""
        return await work_campaign(
            **_task_fields(args, fields),
            limiter=shared.get(),
            client_options=worker_options,
            send_options=worker_send,
        )

    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, shared.close)
    return broker.register_task(work_campaign_task, task_name, **labels)


_TASK_FIELDS: Final = (
    "campaign", "provider", "journal", "options", "concurrency", "lease", "claim_for",
)  # fmt: skip
"""A task message's fields, in the order of ``work_campaign``'s keywords."""


def _task_fields(args: tuple[Any, ...], fields: dict[str, Any]) -> dict[str, Any]:
    """A message's arguments as ``work_campaign``'s task keywords, or a ``ValidationError``
    naming what is extra or missing (never a value: a message may hold anything)."""
    if len(args) > len(_TASK_FIELDS):
        raise ValidationError(f"a campaign task takes at most {len(_TASK_FIELDS)} arguments")
    named = dict(zip(_TASK_FIELDS, args, strict=False))
    twice = sorted(set(named) & set(fields))
    if twice:
        raise ValidationError(f"a campaign task got {', '.join(twice)} twice")
    named.update(fields)
    unknown = sorted(set(named) - set(_TASK_FIELDS))
    if unknown:
        raise ValidationError(
            f"a campaign task has no field {', '.join(unknown)}: it takes "
            f"{', '.join(_TASK_FIELDS)}; send options go in options= (options={{'sms_type': 2}})"
        )
    missing = [name for name in ("campaign", "provider") if name not in named]
    if missing:
        raise ValidationError(f"a campaign task needs {' and '.join(missing)}")
    return named


async def enqueue(
    task: CampaignTask,
    *,
    campaign: str,
    provider: str,
    workers: int,
    journal: str | None = None,
    options: Mapping[str, SendOption] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    lease: float = DEFAULT_LEASE,
    claim_for: float | None = None,
) -> list[str]:
    """Send ``workers`` messages of ``task`` (from ``register``) for the campaign, so that up
    to that many workers work on it at once; returns their task ids. Everything is checked
    first (``smsvn.workers.check_task``; ``ValidationError``, nothing sent): the provider is
    registered, the journal URL carries no password (None: each worker's ``$SMSVN_JOURNAL``),
    the options are ones the provider takes and none may carry a secret, the run options are
    ``Campaign.run``'s, and ``workers`` is 1 to ``MAX_WORKERS``.

    The campaign must exist in the journal (``campaign.add`` it first). Enqueueing again, or
    more workers than there is work for, is harmless: a task that finds nothing to claim ends
    once no other runner holds work that could come back to it.
    """
    if not isinstance(task, AsyncTaskiqDecoratedTask):
        raise ValidationError(
            f"enqueue takes the task register() returned, not {type(task).__name__}"
        )
    sent_options = check_task(
        campaign=campaign,
        provider=provider,
        journal=journal,
        options=options,
        concurrency=concurrency,
        lease=lease,
        claim_for=claim_for,
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValidationError(f"workers must be an int from 1 to {MAX_WORKERS}")
    ids: list[str] = []
    for _ in range(workers):
        sent = await task.kiq(
            campaign=campaign,
            provider=provider,
            journal=journal,
            options=sent_options,
            concurrency=concurrency,
            lease=lease,
            claim_for=claim_for,
        )
        ids.append(sent.task_id)
    return ids
