"""``otp.RedisStore`` on a real Redis: what it holds (no code, no number, every key expiring),
one round trip a step, rules on the verifier's clock, a Redis that is away, and two processes
checking one code.

The behaviour both stores share is in ``tests/test_otp.py`` (run there on both). Each test
uses a key prefix of its own (``tests.services.redis_prefix``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
import redis.asyncio as aioredis

from smsvn import otp
from smsvn.errors import InsufficientBalance, ValidationError
from smsvn.providers._base import BaseClient
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY

SECRET = "otp-SENTINEL-hmac-key-0123456789abcdef"
TEMPLATE = "Ma xac thuc cua ban la {code}"
SMS_TEXT = re.compile(r"Ma xac thuc cua ban la (\d{6})")
PHONE = "0912345678"
NUMBER_FORMS = ("0912345678", "912345678")
CTX = multiprocessing.get_context("spawn")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sms(sb: Sandbox) -> AsyncIterator[BaseClient]:
    async with sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at what the store wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[otp.RedisStore]:
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as s:
        yield s


def last_code(sb: Sandbox, kind: str = "sms", number: str = PHONE) -> str:
    records = [r for r in sb.outbox if r.kind == kind and r.phone == number]
    assert records
    if kind == "voice":
        return records[-1].content
    match = SMS_TEXT.fullmatch(records[-1].content)
    assert match is not None
    return match.group(1)


async def dump(raw: aioredis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` with its value (hash: fields; sorted set: members and
    scores) and its TTL in milliseconds, all as text."""
    found: dict[str, Any] = {}
    key: Any  # redis-py's own types are partial (bytes here: no decode_responses)
    async for key in raw.scan_iter(match=f"{prefix}:*"):
        name = key.decode()
        kind_raw: Any = await raw.type(key)
        kind = kind_raw.decode()
        value: Any
        if kind == "hash":
            pairs: dict[Any, Any] = await raw.hgetall(key)
            value = {k.decode(): v.decode() for k, v in pairs.items()}
        elif kind == "zset":
            members: list[Any] = await raw.zrange(key, 0, -1, withscores=True)
            value = {m.decode(): score for m, score in members}
        elif kind == "string":
            text: Any = await raw.get(key)
            value = {"": text.decode()}
        else:
            raise AssertionError(f"unexpected {kind} at {name}")
        found[name] = (kind, value, await raw.pttl(key))
    return found


async def test_redis_holds_no_code_no_number_and_every_key_expires(
    sb: Sandbox,
    sms: BaseClient,
    store: otp.RedisStore,
    raw: aioredis.Redis,
    redis_prefix: str,
) -> None:
    clock = Clock()
    v = otp.Verifier(
        sms,
        store=store,
        secret=SECRET,
        template=TEMPLATE,
        clock=clock,
        global_sends_per_hour=100,
        resend_after=60.0,
    )
    await v.start(PHONE)
    first = last_code(sb)
    clock.now += 60.0
    await v.start(PHONE, channel="voice")
    second = last_code(sb, "voice")
    await v.check(PHONE, "12345")  # a wrong one: counted
    keys = await dump(raw, redis_prefix)
    root = f"{redis_prefix}:{{otp}}"
    assert {k.rsplit(":", 1)[0] for k in keys} == {
        f"{root}:v:verify", f"{root}:n", f"{root}:c", root
    }  # fmt: skip
    assert f"{root}:all" in keys
    # The counted check's answer (for a retry of the same call): its reason and attempts.
    answers = [value for name, (_, value, _) in keys.items() if name.startswith(f"{root}:c:")]
    assert answers == [{"": "1 1"}]
    verification = next(value for kind, value, _ in keys.values() if kind == "hash")
    # The live code's digest, its times (whole ms of the verifier's clock, and the same in
    # microseconds), counts, last send, and the verifications its sends replaced (the first
    # put back if a send had gone nowhere).
    assert set(verification) == {"d", "e", "r", "E", "R", "u", "a", "n", "t", "p"}
    earlier = json.loads(verification.pop("p"))
    # digest, expiry, cooldown, sends, token, expiry and cooldown in microseconds
    assert [len(entry) for entry in earlier] == [7]
    assert earlier[0][5:] == ["1000300000000", "1000060000000"]
    verification.update({f"p{i}": str(item) for i, item in enumerate(earlier[0])})
    assert (verification["e"], verification["r"]) == ("1000360000", "1000120000")
    assert (verification["E"], verification["R"]) == ("1000360000000", "1000120000000")
    assert verification["u"] == verification["t"]
    assert (verification["a"], verification["n"]) == ("1", "2")
    assert re.fullmatch(r"[0-9a-f]{64}", verification["d"])
    texts: list[str] = []
    for name, (_, value, ttl) in keys.items():
        assert 0 < ttl <= 86_400_000, name  # everything expires, within the longest window
        texts.append(name)
        for field, item in value.items():
            texts += [field, str(item)]
    for code in (first, second):
        for text in texts:
            assert text != code and (text.isdigit() or code not in text)
    for text in texts:
        assert "SENTINEL" not in text
        assert not any(form in text for form in NUMBER_FORMS)
    # Once approved, the verification is gone; the send logs stay for the caps.
    assert (await v.check(PHONE, second)).approved
    after = await dump(raw, redis_prefix)
    assert all(kind != "hash" for kind, _, _ in after.values())


async def test_one_round_trip_a_step(sb: Sandbox, sms: BaseClient, store: otp.RedisStore) -> None:
    v = otp.Verifier(sms, store=store, secret=SECRET, template=TEMPLATE)
    before = store.calls
    await v.start(PHONE)
    assert store.calls - before == 1
    await v.check(PHONE, last_code(sb))
    assert store.calls - before == 2
    sb.set_balance("speedsms", 0)
    with pytest.raises(InsufficientBalance):
        await v.start("0987654321")
    assert store.calls - before == 4  # the grant and its undoing


async def test_rules_follow_the_verifiers_clock_not_redis(
    sb: Sandbox, sms: BaseClient, store: otp.RedisStore, raw: aioredis.Redis, redis_prefix: str
) -> None:
    """The key outlives the code (its TTL is for cleanup); the code expires on the clock."""
    clock = Clock()
    v = otp.Verifier(sms, store=store, secret=SECRET, template=TEMPLATE, clock=clock, ttl=30.0)
    await v.start(PHONE)
    clock.now += 30.0
    assert (await v.check(PHONE, last_code(sb))).reason is otp.Reason.EXPIRED
    (ttl,) = [t for kind, _, t in (await dump(raw, redis_prefix)).values() if kind == "hash"]
    assert 60_000 < ttl <= (60 + 600) * 1000  # the cooldown, and ten minutes of grace


async def test_an_unreachable_redis_sends_nothing(
    sb: Sandbox, sms: BaseClient, closed_port: int
) -> None:
    async with otp.RedisStore(f"redis://127.0.0.1:{closed_port}/0", timeout=0.5) as store:
        v = otp.Verifier(sms, store=store, secret=SECRET, template=TEMPLATE)
        with pytest.raises(otp.StoreError, match="Redis") as failed:
            await v.start(PHONE)
        assert failed.value.__cause__ is None and failed.value.__suppress_context__
        with pytest.raises(otp.StoreError):
            await v.check(PHONE, "123456")
    assert len(sb.outbox) == 0
    with pytest.raises(otp.StoreError, match="closed"):
        await v.check(PHONE, "123456")


async def test_a_borrowed_client_stays_open(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = otp.RedisStore(client, prefix=redis_prefix)
    await store.aclose()
    await store.aclose()
    assert await client.ping()
    await client.aclose()
    assert repr(store) == f"RedisStore(prefix={redis_prefix!r})"
    with pytest.raises(ValidationError):
        otp.RedisStore(redis_url, prefix="a{b}")


# -- two processes ------------------------------------------------------------------------------


def _checker(url: str, prefix: str, barrier: Barrier, conn: Connection) -> None:
    """A worker process: its own store and verifier; checks the codes it is sent, all at once,
    after meeting the other worker at ``barrier``; answers with the reasons."""
    asyncio.run(_check_loop(url, prefix, barrier, conn))


async def _check_loop(url: str, prefix: str, barrier: Barrier, conn: Connection) -> None:
    from smsvn import SpeedSMS

    loop = asyncio.get_running_loop()
    unused = SpeedSMS("unused-token", base_url="http://127.0.0.1:9", sms_type=4)
    async with otp.RedisStore(url, prefix=prefix) as store, unused:
        v = otp.Verifier(unused, store=store, secret=SECRET, template=TEMPLATE)
        while True:
            job = await loop.run_in_executor(None, conn.recv)
            if job is None:
                return
            number, codes = job
            await loop.run_in_executor(None, barrier.wait, 30.0)
            results = await asyncio.gather(*(v.check(number, c) for c in codes))
            conn.send([r.reason.value for r in results])


def _recv(conn: Connection) -> Any:
    """The worker's answer, or TimeoutError instead of waiting forever for a dead one."""
    if not conn.poll(60.0):
        raise TimeoutError("a checker process did not answer")
    return conn.recv()


async def test_two_processes_share_attempts_and_a_code_works_once(
    sb: Sandbox, sms: BaseClient, redis_url: str, redis_prefix: str
) -> None:
    barrier = CTX.Barrier(2)
    pipes = [CTX.Pipe() for _ in range(2)]
    workers = [
        CTX.Process(target=_checker, args=(redis_url, redis_prefix, barrier, child), daemon=True)
        for _, child in pipes
    ]
    for worker in workers:
        worker.start()
    loop = asyncio.get_running_loop()

    async def run_both(number: str, codes: list[str]) -> list[str]:
        for parent, _ in pipes:
            parent.send((number, codes))
        answers = await asyncio.gather(
            *(loop.run_in_executor(None, _recv, parent) for parent, _ in pipes)
        )
        return [reason for answer in answers for reason in answer]

    try:
        async with otp.RedisStore(redis_url, prefix=redis_prefix) as store:
            v = otp.Verifier(sms, store=store, secret=SECRET, template=TEMPLATE, max_attempts=5)
            # The right code, 20 times from each process at once: approved exactly once.
            await v.start(PHONE)
            code = last_code(sb)
            reasons = await run_both(PHONE, [code] * 20)
            assert reasons.count("approved") == 1
            assert reasons.count("not_found") == 39
            # 20 wrong guesses from each process at once: 5 compared in all, then locked.
            other = "0987654321"
            await v.start(other)
            code = last_code(sb, number=other)
            guesses = [f"{n:06d}" for n in range(100) if f"{n:06d}" != code][:20]
            reasons = await run_both(other, guesses)
            assert reasons.count("wrong_code") == 5
            assert reasons.count("too_many_attempts") == 35
            assert (await v.check(other, code)).reason is otp.Reason.TOO_MANY_ATTEMPTS
    finally:
        for parent, _ in pipes:
            parent.send(None)
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    assert [w.exitcode for w in workers] == [0, 0]
