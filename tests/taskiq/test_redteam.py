"""Red-team tests of campaigns on taskiq workers: real ``taskiq worker tests.taskiq.app:broker``
processes on a real Redis broker, the simulator in a process of its own as the ground truth.

What the other suites of ``tests/taskiq`` do not try:

- a task stopped by taskiq's own job timeout (the ``timeout`` label: ``register(broker,
  timeout=...)`` or ``kicker().with_labels(timeout=...)``; README: "bound that wait ... with the
  queue's own job timeout"). taskiq runs the task inside anyio's ``fail_after``, whose cancel
  scope cancels the task again at every step of its clean-up, where ``asyncio.wait_for`` (arq)
  cancels it once;
- a task message with an argument the task does not take, or without one it needs;
- worker ``client_options`` the client does not take;
- everything a real worker writes to the broker, the result backend and its log, when its
  journal URL has a password (``SMSVN_JOURNAL``) and its provider's keys are refused.

Two simulators: the conftest's (SpeedSMS compressed to 10 requests a second, 5 ms a request)
behind the conftest's two workers, and a slow one (300 ms a request, no limit that binds)
behind a worker of this module's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from taskiq import AsyncTaskiqTask, TaskiqResult
from taskiq_redis import RedisStreamBroker

import smsvn
import smsvn.taskiq
from smsvn.errors import ValidationError
from smsvn.journal._store import State
from smsvn.limits import RateLimit
from smsvn.sandbox import Sandbox
from smsvn.workers import work_campaign
from tests.campaign.fleet import CONTENT, campaign_input
from tests.campaign.journals import Row, rows
from tests.services import delete_keys
from tests.taskiq.harness import (
    SIMULATOR_WINDOW,
    Config,
    Simulator,
    Worker,
    cleanup,
    drained,
    listening,
    new_config,
    producer,
    provider_env,
    stop_all,
    worker_env,
)

UNBOUND = 1_000
"""Requests a second of the slow simulator and its worker's limit: a limit that never binds."""
SLOW = 0.3
"""Seconds the slow simulator takes to answer a request."""
JOURNAL_PASSWORD = "jpw-SENTINEL-9d2e"
ESMS_KEY = "key-SENTINEL-4a1b"
ESMS_SECRET = "sec-SENTINEL-77c3"
SENTINEL = "SENTINEL"


# -- fixtures: the slow simulator and a worker of this module's own ----------------------------


@pytest.fixture(scope="module")
def slow_simulator() -> Iterator[Simulator]:
    sim = Simulator(UNBOUND, SIMULATOR_WINDOW, latency=SLOW)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def slow_config(redis_url: str) -> Iterator[Config]:
    config = dataclasses.replace(
        new_config(redis_url, f"smsvn-test-{uuid.uuid4().hex[:12]}"), requests=UNBOUND
    )
    yield config
    cleanup(config)
    delete_keys(config.redis_url, config.limiter)


async def _schema(dsn: str, statement: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def secret_journal(postgres_dsn: str) -> Iterator[str]:
    """A PostgreSQL schema of the module's own, as a URL with a password (the server trusts
    loopback: any password is taken), for the worker's ``SMSVN_JOURNAL``; dropped after."""
    schema = f"smsvn_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_schema(postgres_dsn, f"CREATE SCHEMA {schema}"))
    parts = urlsplit(postgres_dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{parts.username or 'postgres'}:{JOURNAL_PASSWORD}@{host}"
    query = f"{parts.query}&" if parts.query else ""
    try:
        yield urlunsplit(parts._replace(netloc=netloc, query=f"{query}search_path={schema}"))
    finally:
        asyncio.run(_schema(postgres_dsn, f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(scope="module")
def slow_worker(
    slow_config: Config, slow_simulator: Simulator, secret_journal: str
) -> Iterator[Worker]:
    """One worker on the slow simulator; its eSMS keys (sentinels) are refused by it, and its
    ``SMSVN_JOURNAL`` is a URL with a password."""
    env = worker_env(slow_config, "speedsms", slow_simulator.client_options["speedsms"])
    esms = provider_env("esms", slow_simulator.client_options["esms"])
    env.update(esms)
    env.update(
        SMSVN_ESMS_API_KEY=ESMS_KEY, SMSVN_ESMS_SECRET_KEY=ESMS_SECRET, SMSVN_JOURNAL=secret_journal
    )
    worker = Worker(env, "slow-worker")
    try:
        yield worker
    finally:
        stop_all([worker])


# -- helpers -------------------------------------------------------------------------------------


async def new_campaign(journal: str, name: str, n: int) -> set[str]:
    """A campaign of ``n`` distinct numbers (some invalid and repeated entries among them); its
    valid numbers."""
    inputs, valid, _, _ = campaign_input(n)
    async with smsvn.Journal(journal) as book:
        await (await book.campaign(name)).add(inputs, content=CONTENT)
    return valid


async def outcome(broker: RedisStreamBroker, task_id: str) -> TaskiqResult[Any]:
    """The task's result, as the result backend keeps it."""
    waiting: AsyncTaskiqTask[Any] = AsyncTaskiqTask(task_id, broker.result_backend)
    return await waiting.wait_result(check_interval=0.05, timeout=30)


def accepted_since(simulator: Simulator, before: int) -> Counter[str]:
    """How often the simulator accepted each number since its outbox held ``before``."""
    return Counter(phone for phone, _, _ in simulator.report()["outbox"][before:])


def text(value: bytes | str | None) -> str:
    """A Redis reply as text (a pickled result: its str fields are UTF-8 inside)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else value


def held(table: list[Row]) -> tuple[int, int]:
    """(numbers in flight, numbers reserved by a runner and not yet in flight)."""
    in_flight = sum(1 for r in table if r.state == State.IN_FLIGHT)
    reserved = sum(1 for r in table if r.state == State.PENDING and r.owner is not None)
    return in_flight, reserved


def check_ground_truth(table: list[Row], valid: set[str], accepted: Counter[str]) -> None:
    """The campaign is settled against the simulator: nobody accepted twice, everybody sent or
    unknown, and nobody unknown who certainly was not sent."""
    assert max(accepted.values()) == 1, "a number was accepted twice"
    sent = {r.phone for r in table if r.state == State.SENT and r.phone is not None}
    unknown = {r.phone for r in table if r.state == State.UNKNOWN and r.phone is not None}
    assert sent | unknown == valid, Counter(State(r.state) for r in table)
    assert sent <= set(accepted)
    never_sent = sorted(unknown - set(accepted))
    assert not never_sent, (
        f"{len(never_sent)} numbers the provider never received are unknown (no run sends them "
        f"again): {never_sent[:3]}..."
    )


# -- findings ------------------------------------------------------------------------------------


async def test_a_task_stopped_by_taskiq_s_timeout_retires_its_runner(
    slow_worker: Worker, slow_config: Config, slow_simulator: Simulator, tmp_path: Path
) -> None:
    """Finding: a task stopped by taskiq's ``timeout`` label leaves its journal runner
    registered: the batches it had reserved are not handed back and those in flight stay in
    flight until its lease runs out (60 s by default), so no other worker can finish the
    campaign meanwhile, and the worker logs "journal: could not retire the runner:
    RuntimeError('the journal is not open')".

    Root cause: ``smsvn.journal._campaign.Campaign._run`` retires the runner in ``finally:
    await asyncio.shield(_stop(runner))``; anyio's cancel scope (taskiq's ``run_task`` wraps the
    task in ``anyio.fail_after``) cancels the task again at that await, so ``work_campaign``
    (``smsvn.workers``) leaves ``async with Journal(...)`` and closes the store while the
    shielded ``_stop`` still needs it. Broken: "A job cancelled at job_timeout hands back the
    batches that had not left; what was in flight follows the journal's rules" (README)."""
    journal = str(tmp_path / "campaigns.db")
    valid = await new_campaign(journal, "timed-out", 3_000)  # 30 batches of 0.3 s, 4 at once
    await listening([slow_worker])
    before = len(slow_simulator.report()["outbox"])
    async with producer(slow_config) as (broker, task):
        kicker = task.kicker().with_labels(timeout=0.5)
        kicked = await kicker.kiq(
            campaign="timed-out", provider="speedsms", journal=journal, concurrency=4
        )
        stopped = await outcome(broker, kicked.task_id)
        assert stopped.is_err and isinstance(stopped.error, TimeoutError), stopped.error
        # The runner is retired on the way out (in flight: unknown; reserved: pending again).
        for _ in range(30):
            in_flight, reserved = held(await rows(journal, "timed-out"))
            if (in_flight, reserved) == (0, 0):
                break
            await asyncio.sleep(0.1)
        assert (in_flight, reserved) == (0, 0), (
            f"3 s after the task ended, its runner still holds {in_flight} numbers in flight "
            f"and {reserved} reserved (until its 60 s lease runs out)"
        )
        rerun = await smsvn.taskiq.enqueue(
            task, campaign="timed-out", provider="speedsms", journal=journal, workers=1,
            concurrency=4, claim_for=10,
        )  # fmt: skip
        finished = await outcome(broker, rerun[0])
        await drained(slow_config)
    assert not finished.is_err and finished.return_value["left"] == 0, finished
    table = await rows(journal, "timed-out")
    check_ground_truth(table, valid, accepted_since(slow_simulator, before))


async def test_a_batch_waiting_for_the_limiter_at_taskiq_s_timeout_is_not_lost(
    pool: list[Worker], pool_config: Config, simulator: Simulator, tmp_path: Path
) -> None:
    """Finding: a task stopped by taskiq's ``timeout`` label while a batch waits for the
    account's turn (marked in flight, request not sent) leaves that batch ``unknown``: its 100
    numbers were never sent, yet no run sends them again. With ``asyncio.wait_for`` (a single
    cancellation) the same batch is handed back and sent by the next run.

    Root cause: ``smsvn.bulk.run_claims``: on cancellation, ``except BaseException: await
    state.wind_down(exc); await state.release_unsent()``; anyio's cancel scope (taskiq's
    ``run_task``: ``anyio.fail_after``) cancels the task again inside ``_Run.wind_down``'s
    ``await asyncio.wait(...)``, so ``release_unsent`` never runs and the runner's retirement
    sweeps the batch to ``unknown``. Broken: "A batch stopped by a cancellation is unknown only
    if its request may have left; one still waiting, say in the account's rate limiter, is
    skipped: it was not sent" (``smsvn.bulk``), i.e. nobody lost."""
    journal = str(tmp_path / "campaigns.db")
    valid = await new_campaign(journal, "limited", 1_500)  # 15 batches at 10 a second
    await listening(pool)
    before = len(simulator.report()["outbox"])
    async with producer(pool_config) as (broker, task):
        kicker = task.kicker().with_labels(timeout=0.7)
        kicked = await kicker.kiq(
            campaign="limited", provider="speedsms", journal=journal, concurrency=4, lease=2.0
        )
        stopped = await outcome(broker, kicked.task_id)
        assert stopped.is_err and isinstance(stopped.error, TimeoutError), stopped.error
        rerun = await smsvn.taskiq.enqueue(
            task, campaign="limited", provider="speedsms", journal=journal, workers=1,
            concurrency=4, lease=2.0, claim_for=10,
        )  # fmt: skip
        finished = await outcome(broker, rerun[0])
        await drained(pool_config)
    assert not finished.is_err and finished.return_value["left"] == 0, finished
    table = await rows(journal, "limited")
    check_ground_truth(table, valid, accepted_since(simulator, before))


async def test_a_task_message_with_a_wrong_argument_is_a_validation_error(
    pool: list[Worker], pool_config: Config, simulator: Simulator, tmp_path: Path
) -> None:
    """Finding: a task message with an argument the task does not take (a send option given
    beside ``options=``, as ``task.kiq(..., sms_type=2)``; a message from a producer on another
    smsvn version) or without one it needs (``provider``) fails in the worker with a bare
    ``TypeError`` from the call itself. ``CampaignTask`` is typed ``[..., ...]``, so no type
    checker catches it either.

    Root cause: ``smsvn.taskiq.register``'s ``work_campaign_task`` takes exactly
    ``work_campaign``'s task arguments, so Python refuses the call before ``check_task`` runs.
    Broken: "a bad task is a ValidationError at enqueue (nothing in the broker) and in the
    worker (nothing sent)" (``smsvn.workers.check_task``): bad input gets a clear typed error."""
    journal = str(tmp_path / "campaigns.db")
    await new_campaign(journal, "typo", 200)
    await listening(pool)
    before = len(simulator.report()["outbox"])
    messages: list[dict[str, Any]] = [
        {"campaign": "typo", "provider": "speedsms", "journal": journal, "sms_type": 2},
        {"campaign": "typo", "journal": journal},
    ]
    errors: list[str] = []
    async with producer(pool_config) as (broker, task):
        for kwargs in messages:
            kicked = await task.kiq(**kwargs)
            result = await outcome(broker, kicked.task_id)
            assert result.is_err, result
            if not isinstance(result.error, ValidationError):
                errors.append(f"{sorted(kwargs)}: {type(result.error).__name__}: {result.error}")
        await drained(pool_config)
    assert accepted_since(simulator, before) == Counter(), "a refused task sent something"
    assert not errors, errors


async def test_client_options_the_client_does_not_take_are_refused(
    sb: Sandbox, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Finding: ``client_options`` (``work_campaign``'s, and ``register``'s for every task) are
    not checked by name: a misspelt option (``rate_limits=``, ``max_wiat=``) is silently dropped
    and the worker sends at the provider's default limit, with no bound on its wait; and
    ``environ`` is a bare ``TypeError`` ("from_env() got multiple values for keyword argument
    'environ'").

    Root cause: ``smsvn.workers.work_campaign`` refuses only ``limiter`` in ``client_options``
    and passes the rest to ``BaseClient.from_env(environ=env, limiter=shared, **extra)``, whose
    constructor (``smsvn.providers._base.BaseClient.__init__``) reads the options it knows and
    ignores the others. Broken: "Raises ValidationError (a bad task or worker setting, ...)
    before anything is sent" (``work_campaign``); bad input gets a clear typed error."""
    journal = str(tmp_path / "campaigns.db")
    env = provider_env("speedsms", sb.client_options("speedsms"))
    wrong: list[str] = []
    cases: list[dict[str, Any]] = [
        {"rate_limits": RateLimit(requests=1, period=60.0)},
        {"max_wiat": 5.0},
        {"environ": {"SMSVN_SPEEDSMS_TOKEN": "x"}},
    ]
    async with smsvn.RedisLimiter(redis_url, prefix=redis_prefix) as limiter:
        for i, options in enumerate(cases):
            await new_campaign(journal, f"options-{i}", 200)
            try:
                done = await work_campaign(
                    campaign=f"options-{i}", provider="speedsms", journal=journal,
                    limiter=limiter, environ=env, client_options=options,
                )  # fmt: skip
            except ValidationError:
                continue
            except Exception as exc:  # the finding: anything but a ValidationError
                wrong.append(f"{sorted(options)}: {type(exc).__name__}: {exc}")
            else:
                wrong.append(f"{sorted(options)}: accepted, {done.sent} sent")
    assert not wrong, wrong


# -- regression guards ---------------------------------------------------------------------------


async def test_no_secret_reaches_the_broker_the_results_or_the_worker_s_log(
    slow_worker: Worker, slow_config: Config, slow_simulator: Simulator, secret_journal: str
) -> None:
    """Nothing a real worker writes holds its secrets: the journal's password (its
    ``SMSVN_JOURNAL``) and the eSMS keys the provider refuses. Searched: every Redis key of the
    test's broker (the stream's messages, every result: an ``aborted`` summary, and a failed
    task's error with its ``__cause__``/``__context__``, which taskiq keeps too) and the
    worker's whole log."""
    await new_campaign(secret_journal, "refused-keys", 100)
    await listening([slow_worker])
    before = len(slow_simulator.report()["outbox"])
    async with producer(slow_config) as (broker, task):
        (aborted_id,) = await smsvn.taskiq.enqueue(
            task, campaign="refused-keys", provider="esms", workers=1, concurrency=2
        )
        (missing_id,) = await smsvn.taskiq.enqueue(
            task, campaign="no-such-campaign", provider="esms", workers=1
        )
        aborted = await outcome(broker, aborted_id)
        missing = await outcome(broker, missing_id)
        await drained(slow_config)
    assert not aborted.is_err, aborted.error
    assert aborted.return_value["aborted"].startswith("AuthenticationError"), aborted
    assert aborted.return_value["sent"] == 0 and aborted.return_value["left"] > 0
    assert isinstance(missing.error, ValidationError), missing
    assert "no campaign named" in str(missing.error)
    assert accepted_since(slow_simulator, before) == Counter()

    client = aioredis.Redis.from_url(slow_config.redis_url)
    try:
        stored: list[str] = []
        async for key in client.scan_iter(match=f"{slow_config.prefix}:*"):
            kind = text(await client.type(key))
            if kind == "string":
                stored.append(f"{text(key)} {text(await client.get(key))}")
            elif kind == "stream":
                for _, fields in await client.xrange(key) or []:
                    stored.append(f"{text(key)} {fields!r}")
    finally:
        await client.aclose()
    assert len(stored) >= 4, stored  # two messages and two results at least
    texts = stored + slow_worker.lines
    for secret in (JOURNAL_PASSWORD, ESMS_KEY, ESMS_SECRET, SENTINEL):
        leaks = [t[:200] for t in texts if secret.casefold() in t.casefold()]
        assert not leaks, leaks
