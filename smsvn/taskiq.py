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
from smsvn.journal._runner import check_lease
from smsvn.workers import REDIS_ENV, CampaignWork, SendOption, check_task, work_campaign

__all__ = ["TASK_NAME", "CampaignTask", "CampaignWork", "enqueue", "register", "work_campaign"]

TASK_NAME: Final = "smsvn.work_campaign"
"""The name ``register`` gives the task by default (what its messages name)."""

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
    task_name: str = TASK_NAME,
    **labels: Any,
) -> CampaignTask:
    """Register the campaign task on ``broker`` and return it.

    ``limiter``: makes the worker process's shared limiter, once, inside its event loop (for
    ``RedisLimiter(url, prefix=...)`` with your own settings); by default one on
    ``$SMSVN_REDIS_URL``. It is closed when the worker shuts down. ``client_options``: the
    client's keyword options in every worker (``rate_limit=``, ``max_wait=``, ``timeout=``).
    ``task_name`` and ``labels`` are taskiq's (``retry_on_error=True`` with its retry
    middleware: safe, a retry is one more runner).
    """
    if not isinstance(broker, AsyncBroker):
        raise ValidationError(f"register takes a taskiq broker, not {type(broker).__name__}")
    worker_options = dict(client_options or {})
    shared = _ProcessLimiter(limiter)

    async def work_campaign_task(
        campaign: str,
        provider: str,
        journal: str | None = None,
        options: dict[str, SendOption] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease: float = DEFAULT_LEASE,
        claim_for: float | None = None,
    ) -> CampaignWork:
        """Work on one campaign (``smsvn.workers.work_campaign``)."""
        return await work_campaign(
            campaign=campaign,
            provider=provider,
            journal=journal,
            options=options,
            concurrency=concurrency,
            lease=lease,
            claim_for=claim_for,
            limiter=shared.get(),
            client_options=worker_options,
        )

    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, shared.close)
    return broker.register_task(work_campaign_task, task_name, **labels)


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
    first (``ValidationError``, nothing sent): the provider is registered, the journal URL
    carries no password (None: each worker's ``$SMSVN_JOURNAL``), no option is a credential.

    The campaign must exist in the journal (``campaign.add`` it first). Enqueueing again, or
    more workers than there is work for, is harmless: a task that finds nothing to claim ends.
    """
    sent_options = check_task(
        campaign=campaign, provider=provider, journal=journal, options=options
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError("workers must be a positive int")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency must be a positive int")
    check_lease(lease)
    if claim_for is not None and (
        isinstance(claim_for, bool) or not isinstance(claim_for, int | float) or claim_for <= 0
    ):
        raise ValidationError("claim_for must be a positive number of seconds, or None")
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
