"""What a task may carry and what a worker may be given, checked before anything is queued or
sent: ``smsvn.workers.check_task`` (what ``enqueue`` and ``work_campaign`` share), the worker's
own settings (``limiter=``, ``send_options=``, ``environ=``, ``client_options=``), and
``register``'s. No secret is ever quoted by the errors, nor chained into them."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from taskiq import InMemoryBroker

import smsvn
import smsvn.taskiq
from smsvn.errors import ValidationError
from smsvn.limits import InProcessLimiter
from smsvn.sandbox import Sandbox
from smsvn.workers import check_task, work_campaign
from tests.campaign.fleet import CONTENT, campaign_input
from tests.taskiq.harness import cleanup, new_config, producer, provider_env

SECRET = "S3cretPW"

PASSWORD_JOURNALS = [
    f"postgresql://u:{SECRET}@h/db",
    f"postgresql://u@h/db?password={SECRET}",
    f"postgresql://u@h/db?sslpassword={SECRET}",
    f"postgresql://u@h/db?passfile=/x&password={SECRET}",
    f"postgresql://u@h/db?PASSWORD={SECRET}",
    f"postgresql://u@h/db#password={SECRET}",
    f"postgresql://root:Sl4sh/{SECRET}@host/db",
    f"postgresql://root:Qu3ry?{SECRET}@host/db",
    f"postgresql://root:H4sh#{SECRET}@host/db",
    f"host=h user=u password={SECRET} dbname=db",
    f"host=h password='{SECRET} x' dbname=db",
]


def chain(exc: BaseException) -> str:
    """Every message and argument of ``exc`` and what it was raised from or during."""
    seen: list[str] = []
    at: BaseException | None = exc
    while at is not None:
        seen.append(f"{type(at).__name__}: {at} {at.args!r}")
        at = at.__cause__ or at.__context__
    return " <- ".join(seen)


def refused(message: str, **change: Any) -> ValidationError:
    """``check_task`` of a good task with ``change``: a ValidationError matching ``message``."""
    arguments: dict[str, Any] = {
        "campaign": "promo", "provider": "esms", "journal": None, "options": None, **change,
    }  # fmt: skip
    with pytest.raises(ValidationError, match=message) as raised:
        check_task(**arguments)
    assert SECRET not in chain(raised.value)
    return raised.value


@pytest.mark.parametrize("journal", PASSWORD_JOURNALS)
def test_a_journal_password_in_any_form_is_refused(journal: str) -> None:
    refused("no password", journal=journal)


@pytest.mark.parametrize(
    "name",
    ["callback_url", "CallBack_URL", "token", "Token", "api_key", "SECRET_KEY", "password",
     "client_pass", "client_no", "my_passphrase"],
)  # fmt: skip
def test_a_send_option_that_may_carry_a_secret_is_refused(name: str) -> None:
    refused("secret.*send_options", options={name: SECRET})


def test_send_options_are_what_the_provider_takes() -> None:
    refused("takes no send option 'colour'", options={"colour": "red"})
    refused("takes no send option 'brandname'", provider="speedsms", options={"brandname": "B"})
    refused("run option", options={"claim_for": 5})
    refused("mapping", options=[("sms_type", 2)])
    refused("named by str", options={1: 2})
    refused("str, int, bool or None", options={"sms_type": 2.5})
    refused("ISO-8601", options={"send_date": "tomorrow"})
    refused("ISO-8601", options={"send_date": 20261224})
    checked = check_task(
        campaign="promo",
        provider="esms",
        journal="postgresql://u@db/sms?passfile=/etc/sms.pgpass",
        options={"sms_type": 2, "send_date": "2026-12-24T08:00:00+07:00"},
    )
    assert checked == {"sms_type": 2, "send_date": "2026-12-24T08:00:00+07:00"}


def test_the_rest_of_a_task_is_checked_by_the_journal_s_own_checks() -> None:
    refused("campaign name", campaign="x" * 201)
    refused("campaign name", campaign=None)
    refused("concurrency", concurrency=0)
    refused("lease", lease=0.1)
    for bad in (math.nan, math.inf, -math.inf, 0, True, 1e9, "5"):
        refused("claim_for", claim_for=bad)
    refused("key=value", journal="host=db dbname=sms")
    check_task(campaign="x" * 200, provider="esms", journal=None, options=None, claim_for=1e8)


@pytest.mark.parametrize("journal", PASSWORD_JOURNALS)
def test_a_journal_s_repr_masks_its_password(journal: str) -> None:
    """A URL opens (and its repr is masked); a key=value string is refused without quoting."""
    if journal.startswith("host="):
        with pytest.raises(ValidationError, match="key=value") as raised:
            smsvn.Journal(journal)
        assert SECRET not in chain(raised.value)
        return
    shown = repr(smsvn.Journal(journal))
    assert SECRET not in shown and "***" in shown


async def test_enqueue_refuses_bad_input_and_queues_nothing(redis_url: str) -> None:
    config = new_config(redis_url, "unused")
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with producer(config) as (_, task):
            cases: list[tuple[dict[str, Any], str]] = [
                ({"task": None}, "the task register"),
                ({"task": "smsvn.work_campaign"}, "the task register"),
                ({"workers": 1_001}, "workers"),
                ({"workers": True}, "workers"),
                ({"claim_for": math.nan}, "claim_for"),
                ({"claim_for": math.inf}, "claim_for"),
                ({"campaign": "c" * 201}, "campaign name"),
                ({"options": "sms_type=2"}, "mapping"),
                ({"options": {"callback_url": f"https://app/hooks/{SECRET}"}}, "secret"),
                ({"options": {"colour": "red"}}, "takes no send option"),
                ({"journal": f"postgresql://u@db/sms?password={SECRET}"}, "no password"),
                ({"journal": f"postgresql://u:Sl4sh/{SECRET}@db/sms"}, "no password"),
            ]
            for change, message in cases:
                arguments: dict[str, Any] = {
                    "task": task, "campaign": "promo", "provider": "esms", "workers": 2,
                    **change,
                }  # fmt: skip
                with pytest.raises(ValidationError, match=message) as raised:
                    await smsvn.taskiq.enqueue(**arguments)
                assert SECRET not in chain(raised.value)
            assert await client.xlen(config.queue) == 0, "a refused task was queued"
    finally:
        await client.aclose()
        cleanup(config)


def test_register_takes_a_function_that_makes_the_limiter() -> None:
    broker = InMemoryBroker()
    with pytest.raises(ValidationError, match="lambda"):
        smsvn.taskiq.register(broker, limiter=smsvn.RedisLimiter("redis://127.0.0.1:9/0"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="lambda"):
        smsvn.taskiq.register(broker, limiter="redis://127.0.0.1:9/0")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="lambda"):
        smsvn.taskiq.register(broker, limiter=5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="client_options is a mapping"):
        smsvn.taskiq.register(broker, client_options=[("timeout", 5)])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="send_options is a mapping"):
        smsvn.taskiq.register(broker, send_options="callback_url=x")  # type: ignore[arg-type]


async def add(journal: str, name: str, n: int) -> set[str]:
    inputs, valid, _, _ = campaign_input(n)
    async with smsvn.Journal(journal) as book:
        await (await book.campaign(name)).add(inputs, content=CONTENT)
    return valid


async def test_what_a_worker_refuses_of_its_own_settings(sb: Sandbox, tmp_path: Path) -> None:
    """A limiter that is not shared, settings that are not mappings, a worker send option the
    provider does not take or that a task would override: ValidationError, nothing sent."""
    journal = str(tmp_path / "campaigns.db")
    await add(journal, "own", 100)
    env = provider_env("esms", sb.client_options("esms"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limiter": InProcessLimiter()}, "limiter is a smsvn.RedisLimiter"),
        ({"limiter": 5}, "limiter is a smsvn.RedisLimiter"),
        ({"limiter": ""}, "limiter is a smsvn.RedisLimiter"),
        ({"limiter": f"redis://:Sl4sh/{SECRET}@127.0.0.1:6379/0"}, "Redis URL is malformed"),
        ({"environ": [("SMSVN_REDIS_URL", "redis://x")]}, "environ is a mapping"),
        ({"client_options": [("timeout", 5)]}, "client_options is a mapping"),
        ({"send_options": "callback_url=x"}, "send_options is a mapping"),
        ({"send_options": {"colour": "red"}}, "takes no send option"),
        ({"options": {"sms_type": 2}, "send_options": {"sms_type": 2}}, "may not override"),
        ({"options": {"send_date": "soon"}}, "ISO-8601"),
        ({"journal": f"postgresql://u:Sl4sh/{SECRET}@127.0.0.1:5432/test"}, "no password"),
    ]
    for change, message in cases:
        arguments: dict[str, Any] = {
            "campaign": "own", "provider": "esms", "journal": journal, "environ": env,
            "limiter": "redis://127.0.0.1:9/0", **change,
        }  # fmt: skip
        with pytest.raises(ValidationError, match=message) as raised:
            await work_campaign(**arguments)
        assert SECRET not in chain(raised.value)
    assert len(sb.outbox) == 0


async def test_the_worker_s_send_options_and_a_task_s_send_date_reach_the_provider(
    sb: Sandbox, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """The webhook's secret stays in the worker (``send_options``); a task's ISO-8601
    ``send_date`` schedules the messages."""
    journal = str(tmp_path / "campaigns.db")
    await add(journal, "scheduled", 30)
    hook = f"http://127.0.0.1:9/hooks/esms/{SECRET}"
    when = datetime(2031, 12, 24, 1, 0, tzinfo=UTC)
    async with smsvn.RedisLimiter(redis_url, prefix=redis_prefix) as limiter:
        done = await work_campaign(
            campaign="scheduled", provider="esms", journal=journal, limiter=limiter,
            environ=provider_env("esms", sb.client_options("esms")),
            client_options={"rate_limit": None},
            options={"send_date": "2031-12-24T08:00:00+07:00"},
            send_options={"callback_url": hook},
        )  # fmt: skip
    assert done.sent == len(sb.outbox) > 0 and done.finished
    batches = sb.outbox.batches()
    assert {b.callback for b in batches} == {hook}
    # The simulator keeps ``due`` on its event loop's clock: compare how far ahead it is.
    ahead = when.timestamp() - time.time()
    now = asyncio.get_running_loop().time()
    assert all(abs(b.due - now - ahead) < 5 for b in batches), [b.due - now for b in batches]


async def test_the_esms_client_refuses_a_send_date_that_is_not_a_datetime(sb: Sandbox) -> None:
    async with sb.client("esms") as sms:
        for bad in ("2031-12-24T08:00:00", 1_800_000_000, datetime(2031, 12, 24).date()):
            with pytest.raises(ValidationError, match="send_date must be a datetime"):
                sms.batch_sender(content=None, send_date=bad)  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="send_date must be a datetime"):
                await sms.send("0912345678", "Xin chao", send_date=bad)  # type: ignore[arg-type]
    assert len(sb.outbox) == 0
