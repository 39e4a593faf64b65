"""``smsvn.otp`` end to end against the simulator: codes, expiry, attempts, resends, caps,
channels, and secrets that never leak.

Behaviour that depends on the store runs on both stores (``MemoryStore``; ``RedisStore`` on
the Redis of ``tests.services``). Time is a controllable clock given to the verifier; the
simulator's outbox is the only way a test learns a code.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from smsvn import otp
from smsvn.errors import (
    ConnectError,
    InsufficientBalance,
    InvalidRequest,
    OutcomeUnknown,
    SenderNotRegistered,
    SmsError,
    ValidationError,
)
from smsvn.failover import Failover
from smsvn.limits import RateLimit
from smsvn.models import SendResult
from smsvn.providers._base import BaseClient
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Fault, Sandbox
from tests.conftest import FAST_RETRY

# The service fixtures (redis_url, redis_prefix); imported as a plugin.

SECRET = "otp-SENTINEL-hmac-key-0123456789abcdef"
TEMPLATE = "Ma xac thuc cua ban la {code}"
SMS_TEXT = re.compile(r"Ma xac thuc cua ban la (\d{6})")
PHONE = "0912345678"
START = 1_000_000.0


class Clock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sms(sb: Sandbox) -> AsyncIterator[BaseClient]:
    async with sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[otp.Store]:
    """Each store in turn: in memory, and in Redis under a key prefix of the test's own."""
    if request.param == "memory":
        yield otp.MemoryStore()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    async with otp.RedisStore(url, prefix=prefix) as redis_store:
        yield redis_store


def verifier(client: Any, store: otp.Store, clock: Clock, **options: Any) -> otp.Verifier:
    return otp.Verifier(
        client, store=store, secret=SECRET, template=TEMPLATE, clock=clock, **options
    )


def sent_codes(sb: Sandbox, number: str = PHONE, kind: str = "sms") -> list[str]:
    """Every code the simulator accepted for ``number`` by ``kind``, oldest first."""
    codes = []
    for record in sb.outbox:
        if record.phone != number or record.kind != kind:
            continue
        if kind == "voice":
            codes.append(record.content)
        else:
            match = SMS_TEXT.fullmatch(record.content)
            assert match is not None, record.content
            codes.append(match.group(1))
    return codes


def last_code(sb: Sandbox, number: str = PHONE, kind: str = "sms") -> str:
    codes = sent_codes(sb, number, kind)
    assert codes, f"no {kind} to {number} in the outbox"
    return codes[-1]


def wrong(code: str) -> str:
    """A code of the same length that is not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


# -- start, check, consume --------------------------------------------------------------------


async def test_start_check_consume(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, ttl=300.0, resend_after=60.0)
    started = await v.start("+84 912 345 678")
    assert started == otp.Verification(
        to=PHONE,
        channel="sms",
        expires_at=START + 300.0,
        resend_at=START + 60.0,
        attempts_left=5,
        outcome="sent",
        provider="speedsms",
        message_id=started.message_id,
    )
    assert started.message_id
    code = last_code(sb)
    assert re.fullmatch(r"\d{6}", code)

    assert await v.check(PHONE, wrong(code)) == otp.CheckResult(
        approved=False, reason=otp.Reason.WRONG_CODE, attempts_left=4
    )
    assert await v.check("0912 345 678", f" {code}\n") == otp.CheckResult(
        approved=True, reason=otp.Reason.APPROVED, attempts_left=0
    )
    # A code works once.
    assert await v.check(PHONE, code) == otp.CheckResult(
        approved=False, reason=otp.Reason.NOT_FOUND, attempts_left=0
    )
    assert len(sb.outbox) == 1


async def test_unknown_number_and_malformed_input(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock)
    assert (await v.check(PHONE, "123456")).reason is otp.Reason.NOT_FOUND
    with pytest.raises(ValidationError):
        await v.start("024 3826 1234")  # a landline: refused before anything
    with pytest.raises(ValidationError):
        await v.check(12345, "123456")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await v.check(PHONE, 123456)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="channel"):
        await v.start(PHONE, channel="fax")  # type: ignore[arg-type]
    await v.start(PHONE)  # none of the above counted anything or held anything back
    code = last_code(sb)
    # A malformed code is a wrong code (counted), and a huge one is not even hashed.
    assert (await v.check(PHONE, "12 34")).attempts_left == 4
    assert (await v.check(PHONE, "9" * 10_000)).attempts_left == 3
    assert (await v.check(PHONE, code)).approved


async def test_code_expires_on_the_given_clock(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, ttl=120.0, resend_after=30.0)
    await v.start(PHONE)
    code = last_code(sb)
    clock.advance(119.0)
    assert (await v.check(PHONE, wrong(code))).reason is otp.Reason.WRONG_CODE
    clock.advance(1.0)  # exactly ttl: expired
    assert await v.check(PHONE, code) == otp.CheckResult(
        approved=False, reason=otp.Reason.EXPIRED, attempts_left=0
    )
    # A new verification after expiry: a fresh code and fresh attempts.
    again = await v.start(PHONE)
    assert again.attempts_left == 5
    assert again.expires_at == clock.now + 120.0
    new = last_code(sb)
    if new != code:  # one in a million they are equal
        assert (await v.check(PHONE, code)).reason is otp.Reason.WRONG_CODE
    assert (await v.check(PHONE, new)).approved


async def test_one_live_code_per_number(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, resend_after=60.0)
    await v.start(PHONE)
    first = last_code(sb)
    clock.advance(60.0)
    resent = await v.start(PHONE)
    second = last_code(sb)
    assert len(sent_codes(sb)) == 2
    assert resent.expires_at == clock.now + 300.0
    if first != second:  # one in a million they are equal
        assert (await v.check(PHONE, first)).reason is otp.Reason.WRONG_CODE
    assert (await v.check(PHONE, second)).approved


async def test_attempts_carry_over_resends_and_lock_the_number(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, ttl=300.0, resend_after=60.0, max_attempts=5)
    await v.start(PHONE)
    code = last_code(sb)
    for left in (4, 3):
        assert (await v.check(PHONE, wrong(code))).attempts_left == left
    clock.advance(60.0)
    resent = await v.start(PHONE)
    assert resent.attempts_left == 3  # a resend does not buy more guesses
    code = last_code(sb)
    for left in (2, 1, 0):
        result = await v.check(PHONE, wrong(code))
        assert (result.reason, result.attempts_left) == (otp.Reason.WRONG_CODE, left)
    # Used up: not even the right code is compared any more.
    assert await v.check(PHONE, code) == otp.CheckResult(
        approved=False, reason=otp.Reason.TOO_MANY_ATTEMPTS, attempts_left=0
    )
    clock.advance(60.0)
    with pytest.raises(otp.Blocked) as blocked:
        await v.start(PHONE)
    assert blocked.value.reason == "too_many_attempts"
    assert blocked.value.retry_after == pytest.approx(300.0 - 60.0, abs=0.01)
    assert len(sent_codes(sb)) == 2
    clock.advance(240.0)  # the locked code expires: a new verification may start
    fresh = await v.start(PHONE)
    assert fresh.attempts_left == 5
    assert (await v.check(PHONE, last_code(sb))).approved


async def test_concurrent_wrong_guesses_are_counted_atomically(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, max_attempts=5)
    await v.start(PHONE)
    code = last_code(sb)
    guesses = [f"{n:06d}" for n in range(40) if f"{n:06d}" != code][:40]
    while len(guesses) < 40:
        guesses.append(wrong(guesses[-1]) if wrong(guesses[-1]) != code else "999999")
    results = await asyncio.gather(*(v.check(PHONE, g) for g in guesses))
    reasons = [r.reason for r in results]
    assert reasons.count(otp.Reason.WRONG_CODE) == 5
    assert reasons.count(otp.Reason.TOO_MANY_ATTEMPTS) == 35
    assert sorted(r.attempts_left for r in results if r.reason is otp.Reason.WRONG_CODE) == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert not (await v.check(PHONE, code)).approved


async def test_concurrent_right_codes_approve_once(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock)
    await v.start(PHONE)
    code = last_code(sb)
    results = await asyncio.gather(*(v.check(PHONE, code) for _ in range(40)))
    assert [r.approved for r in results].count(True) == 1
    assert {r.reason for r in results if not r.approved} == {otp.Reason.NOT_FOUND}


# -- resends and caps ---------------------------------------------------------------------------


async def test_resend_cooldown(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, resend_after=60.0)
    await v.start(PHONE)
    clock.advance(20.0)
    with pytest.raises(otp.TooSoon) as too_soon:
        await v.start(PHONE)
    assert isinstance(too_soon.value, SmsError)
    assert too_soon.value.retry_after == pytest.approx(40.0, abs=0.01)
    clock.advance(40.0)
    await v.start(PHONE)
    assert len(sent_codes(sb)) == 2


async def test_concurrent_starts_send_one_code(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock)
    results = await asyncio.gather(*(v.start(PHONE) for _ in range(40)), return_exceptions=True)
    assert sum(isinstance(r, otp.Verification) for r in results) == 1
    assert sum(isinstance(r, otp.TooSoon) for r in results) == 39
    assert len(sb.outbox) == 1
    assert (await v.check(PHONE, last_code(sb))).approved


async def test_caps_per_number_per_hour_and_day(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, resend_after=60.0, max_sends_per_hour=2, max_sends_per_day=3)
    await v.start(PHONE)
    clock.advance(61.0)
    await v.start(PHONE)
    clock.advance(61.0)
    with pytest.raises(otp.Blocked) as hourly:
        await v.start(PHONE)
    assert hourly.value.reason == "number_hour"
    assert hourly.value.retry_after == pytest.approx(3600.0 - 122.0, abs=0.01)
    clock.advance(3600.0 - 122.0 + 0.01)  # the first send leaves the hour
    await v.start(PHONE)
    clock.advance(61.0)
    with pytest.raises(otp.Blocked) as daily:
        await v.start(PHONE)
    assert daily.value.reason == "number_day"
    assert daily.value.retry_after == pytest.approx(86400.0 - (3600.0 + 61.0 + 0.01), abs=0.01)
    assert len(sent_codes(sb)) == 3
    # The caps are the number's, over every purpose; another number is not held back.
    reset = verifier(sms, store, clock, purpose="reset", max_sends_per_day=3)
    with pytest.raises(otp.Blocked):
        await reset.start(PHONE)
    await reset.start("0987654321")


async def test_caps_hold_under_concurrency(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, resend_after=0.0, max_sends_per_hour=3)
    results = await asyncio.gather(*(v.start(PHONE) for _ in range(40)), return_exceptions=True)
    assert sum(isinstance(r, otp.Verification) for r in results) == 3
    blocked = [r for r in results if isinstance(r, otp.Blocked)]
    assert len(blocked) == 37
    assert {b.reason for b in blocked} == {"number_hour"}
    assert len(sb.outbox) == 3


async def test_global_budget_holds_every_number_back(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, global_sends_per_hour=3)
    numbers = [f"09123{n:05d}" for n in range(2, 42)]
    results = await asyncio.gather(*(v.start(n) for n in numbers), return_exceptions=True)
    assert sum(isinstance(r, otp.Verification) for r in results) == 3
    blocked = [r for r in results if isinstance(r, otp.Blocked)]
    assert len(blocked) == 37
    assert {b.reason for b in blocked} == {"global_hour"}
    assert blocked[0].retry_after == pytest.approx(3600.0, abs=0.01)
    assert len(sb.outbox) == 3
    clock.advance(3600.0)
    await v.start(numbers[-1])


async def test_a_send_that_went_nowhere_is_undone(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, resend_after=60.0, max_sends_per_hour=2)
    await v.start(PHONE)
    first = last_code(sb)
    clock.advance(60.0)
    sb.set_balance("speedsms", 0)
    with pytest.raises(InsufficientBalance):
        await v.start(PHONE)
    # The previous code is live again, and the failed send neither cooled down nor counted.
    sb.set_balance("speedsms", 1_000_000)
    assert (await v.check(PHONE, wrong(first))).attempts_left == 4
    await v.start(PHONE)  # no TooSoon; and the hourly cap of 2 still had room
    second = last_code(sb)
    assert len(sent_codes(sb)) == 2
    assert (await v.check(PHONE, second)).attempts_left == 0  # approved; 1 + 1 attempts used


async def test_a_first_send_that_went_nowhere_leaves_nothing(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock)
    sb.set_balance("speedsms", 0)
    with pytest.raises(InsufficientBalance):
        await v.start(PHONE)
    assert (await v.check(PHONE, "123456")).reason is otp.Reason.NOT_FOUND
    if isinstance(store, otp.MemoryStore):
        assert len(store) == 0


# -- channels -------------------------------------------------------------------------------------


async def test_auto_calls_when_the_sms_provably_sent_nothing(
    sb: Sandbox, store: otp.Store, clock: Clock
) -> None:
    """eSMS refuses the brandname (SenderNotRegistered: nothing sent): "auto" calls at once."""
    async with sb.client("esms", brandname="NOT-REGISTERED", rate_limit=None) as bad:
        with pytest.raises(SenderNotRegistered):
            await verifier(bad, store, clock).start(PHONE, channel="sms")
        started = await verifier(bad, store, clock).start(PHONE, channel="auto")
    assert (started.channel, started.outcome, started.provider) == ("voice", "sent", "esms")
    assert sent_codes(sb) == []
    code = last_code(sb, kind="voice")
    assert re.fullmatch(r"\d{6}", code)
    assert (await verifier(bad, store, clock).check(PHONE, code)).approved


async def test_auto_does_not_call_after_a_refusal_of_the_message(
    store: otp.Store, clock: Clock
) -> None:
    """SpeedSMS refuses the request's parameters (101 "Invalid or missing parameters", an
    InvalidRequest, not one of NOTHING_SENT): the error is raised, no call is placed, and
    nothing holds the number back."""
    calls: list[str] = []

    async def sms(request: web.Request) -> web.Response:
        calls.append("sms")
        refusal = {"status": "error", "code": "101", "message": "Invalid or missing parameters"}
        return web.json_response(refusal)

    async def voice(request: web.Request) -> web.Response:
        calls.append("voice")
        return web.json_response({"status": "success", "code": "00", "data": {"tranId": 1}})

    app = web.Application()
    app.router.add_post("/sms/send", sms)
    app.router.add_post("/voice/otp", voice)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        async with SpeedSMS("stub-token-0123456789", base_url=url, rate_limit=None) as bad:
            v = verifier(bad, store, clock)
            for _ in range(2):
                with pytest.raises(InvalidRequest):
                    await v.start(PHONE, channel="auto")
    assert calls == ["sms", "sms"]


async def test_auto_sends_sms_first_and_calls_on_the_resend(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    v = verifier(sms, store, clock, resend_after=60.0)
    assert v.channels == ("sms", "voice")
    assert (await v.start(PHONE, channel="auto")).channel == "sms"
    by_sms = last_code(sb)
    clock.advance(60.0)
    assert (await v.start(PHONE, channel="auto")).channel == "voice"
    by_voice = last_code(sb, kind="voice")
    if by_sms != by_voice:
        assert (await v.check(PHONE, by_sms)).reason is otp.Reason.WRONG_CODE
    assert (await v.check(PHONE, by_voice)).approved
    # Approved: the next verification starts by SMS again.
    clock.advance(60.0)
    assert (await v.start(PHONE, channel="auto")).channel == "sms"


async def test_voice_by_another_client_and_through_a_failover(
    sb: Sandbox, store: otp.Store, clock: Clock
) -> None:
    fibo = sb.client("fibo", rate_limit=None)
    esms = sb.client("esms", rate_limit=None)
    speedsms = sb.client("speedsms", rate_limit=None)
    async with fibo, esms, speedsms:
        # Fibo places no calls: voice only with voice=.
        alone = verifier(fibo, store, clock)
        assert alone.channels == ("sms",)
        with pytest.raises(ValidationError, match="voice"):
            await alone.start(PHONE, channel="voice")
        assert (await alone.start(PHONE, channel="auto")).channel == "sms"
        with pytest.raises(ValidationError, match="voice"):
            verifier(fibo, store, clock, voice=fibo)

        with_voice = verifier(fibo, store, clock, voice=esms)
        started = await with_voice.start("0987654321", channel="voice")
        assert (started.channel, started.provider) == ("voice", "esms")
        assert (await with_voice.check("0987654321", last_code(sb, "0987654321", "voice"))).approved

        # A Failover's clients place calls in turn: SpeedSMS has no balance, eSMS calls.
        sb.set_balance("speedsms", 0)
        both = verifier(Failover(speedsms, esms), store, clock)
        started = await both.start("0911111112", channel="voice")
        assert (started.channel, started.provider) == ("voice", "esms")
        started = await both.start("0911111113", channel="sms")
        assert (started.channel, started.provider) == ("sms", "esms")


async def test_a_turn_too_far_away_moves_on_at_once(
    sb: Sandbox, store: otp.Store, clock: Clock
) -> None:
    """The SMS account's next turn is a minute away: the send fails at once (nothing sent) and
    the call goes out by the other provider, well within a web request's patience."""
    slow = sb.client("speedsms", rate_limit=RateLimit(requests=1, period=60.0))
    esms = sb.client("esms", rate_limit=None)
    async with slow, esms:
        await slow.send("0911111111", "warming up the limiter")
        v = verifier(slow, store, clock, voice=esms, max_wait=0.5)
        began = time.monotonic()
        started = await v.start(PHONE, channel="auto")
        assert time.monotonic() - began < 2.0
    assert (started.channel, started.provider) == ("voice", "esms")
    assert sent_codes(sb) == []
    assert (await v.check(PHONE, last_code(sb, kind="voice"))).approved


async def test_a_hanging_provider_is_cut_off_at_the_deadline(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    """The request left and no answer comes: at the deadline the outcome is unknown (the code
    stays live), and no call follows it."""
    sb.faults.add(Fault(kind="hang", provider="speedsms", route="send", times=1))
    v = verifier(sms, store, clock, deadline=0.5)
    began = time.monotonic()
    started = await v.start(PHONE, channel="auto")
    assert time.monotonic() - began < 2.0
    assert (started.outcome, started.channel) == ("unknown", "sms")
    assert len(sb.outbox) == 0


class _Slow:
    """An SMS client that takes ``seconds`` to find it cannot connect."""

    provider = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def send(self, to: str, content: str) -> SendResult:
        await asyncio.sleep(self.seconds)
        raise ConnectError("no route to the provider", provider="slow")


async def test_the_deadline_covers_every_sender(sb: Sandbox, clock: Clock) -> None:
    """The SMS used up the whole budget and sent nothing: no call is tried after it, and the
    number is not held back."""
    async with sb.client("esms", rate_limit=None) as esms:
        v = verifier(_Slow(0.3), otp.MemoryStore(), clock, voice=esms, deadline=0.25)
        with pytest.raises(ConnectError):
            await v.start(PHONE, channel="auto")
        assert len(sb.outbox) == 0
        v = verifier(_Slow(0.0), otp.MemoryStore(), clock, voice=esms, deadline=0.25)
        assert (await v.start(PHONE, channel="auto")).channel == "voice"


async def test_an_unknown_outcome_keeps_the_code_live(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    sb.faults.add(Fault(kind="drop_after", provider="speedsms", route="send", times=1))
    v = verifier(sms, store, clock, resend_after=60.0)
    started = await v.start(PHONE, channel="auto")
    assert (started.outcome, started.channel, started.provider) == ("unknown", "sms", "speedsms")
    assert started.message_id is None
    # It was processed: the code the user may have got works, and nothing else was sent.
    assert len(sb.outbox) == 1
    with pytest.raises(otp.TooSoon):
        await v.start(PHONE, channel="auto")
    assert len(sb.outbox) == 1
    assert (await v.check(PHONE, last_code(sb))).approved


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("Ma xac thuc", "exactly once"),
        ("{code} {code}", "exactly once"),
        ("Xin chao {name}, ma: {code}", r"only \{code\}"),
        ("Ma: {code:>8}", r"only \{code\}"),
        ("Ma: {code!r}", r"only \{code\}"),
        ("Ma: {}", r"only \{code\}"),
        ("Ma: {code", "brace"),
        ("Ma: code}", "brace"),
        ("Ma: " + "x" * 800 + " {code}", "segments"),
        ("Ma: {code} \U0001f600", "emoji"),
        ("Ma: {code}\x00", "control"),
        (b"Ma: {code}", "str"),
    ],
)
async def test_templates_are_checked_at_construction(
    sms: BaseClient, template: Any, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        otp.Verifier(sms, store=otp.MemoryStore(), secret=SECRET, template=template)


async def test_a_template_is_checked_with_every_client(sb: Sandbox) -> None:
    fibo = sb.client("fibo", sender=None, rate_limit=None)
    speedsms = sb.client("speedsms", rate_limit=None)
    async with fibo, speedsms:
        with pytest.raises(ValidationError, match="sender"):
            otp.Verifier(
                Failover(speedsms, fibo), store=otp.MemoryStore(), secret=SECRET, template=TEMPLATE
            )
        # Literal braces are fine, and the text goes as written.
        v = otp.Verifier(
            speedsms,
            store=otp.MemoryStore(),
            secret=SECRET,
            template="{{MyApp}} ma {code}, het han sau 5 phut",
        )
        await v.start(PHONE)
    assert re.fullmatch(r"\{MyApp\} ma \d{6}, het han sau 5 phut", sb.outbox[-1].content)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"secret": "short"}, "at least 16 bytes"),
        ({"secret": 12345}, "bytes or a str"),
        ({"length": 3}, "length"),
        ({"length": 11}, "length"),
        ({"length": True}, "length"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"resend_after": -1}, "resend_after"),
        ({"purpose": "log in"}, "purpose"),
        ({"purpose": ""}, "purpose"),
        ({"max_sends_per_hour": 0}, "max_sends_per_hour"),
        ({"max_sends_per_day": 1.5}, "max_sends_per_day"),
        ({"global_sends_per_hour": 0}, "global_sends_per_hour"),
        ({"max_wait": -1.0}, "max_wait"),
        ({"deadline": 0}, "deadline"),
        ({"clock": 5}, "clock"),
        ({"store": {}}, "store"),
    ],
)
async def test_options_are_checked_at_construction(
    sms: BaseClient, options: dict[str, Any], why: str
) -> None:
    arguments: dict[str, Any] = {
        "store": otp.MemoryStore(),
        "secret": SECRET,
        "template": TEMPLATE,
        **options,
    }
    with pytest.raises(ValidationError, match=why):
        otp.Verifier(sms, **arguments)


def test_the_client_must_send() -> None:
    with pytest.raises(ValidationError, match="client"):
        otp.Verifier(object(), store=otp.MemoryStore(), secret=SECRET, template=TEMPLATE)  # type: ignore[arg-type]


async def test_codes_are_uniform_digits_from_secrets(
    sb: Sandbox, sms: BaseClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every code is ``secrets.randbelow(10**length)`` written with its leading zeros: each of
    the 10**length codes is equally likely."""
    drawn: list[int] = []

    def randbelow(n: int) -> int:
        drawn.append(n)
        return 42

    monkeypatch.setattr("smsvn.otp._verifier.secrets.randbelow", randbelow)
    await verifier(sms, otp.MemoryStore(), clock, length=6).start(PHONE)
    await verifier(sms, otp.MemoryStore(), clock, length=8).start("0987654321", channel="voice")
    assert drawn == [10**6, 10**8]
    assert last_code(sb) == "000042"
    assert last_code(sb, "0987654321", "voice") == "00000042"


async def test_purposes_and_secrets_keep_codes_apart(
    sb: Sandbox, sms: BaseClient, store: otp.Store, clock: Clock
) -> None:
    login = verifier(sms, store, clock, purpose="login")
    await login.start(PHONE)
    code = last_code(sb)
    reset = verifier(sms, store, clock, purpose="reset")
    assert (await reset.check(PHONE, code)).reason is otp.Reason.NOT_FOUND
    other_key = otp.Verifier(
        sms,
        store=store,
        secret="another-SENTINEL-key-abcdef0123456789",
        template=TEMPLATE,
        clock=clock,
        purpose="login",
    )
    assert (await other_key.check(PHONE, code)).reason is otp.Reason.NOT_FOUND
    assert (await login.check(PHONE, code)).approved


# -- secrets -------------------------------------------------------------------------------------


def _strings(obj: object, seen: set[int] | None = None) -> Iterator[str]:
    """Every str and bytes reachable from ``obj`` (containers, attributes, slots)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes | bytearray):
        yield bytes(obj).decode("latin-1")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(key, seen)
            yield from _strings(value, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from _strings(item, seen)
    elif isinstance(obj, int | float | type(None)) or callable(obj):
        return
    else:
        for name in getattr(type(obj), "__slots__", ()):
            yield from _strings(getattr(obj, name, None), seen)
        yield from _strings(getattr(obj, "__dict__", {}), seen)


async def test_codes_numbers_and_the_secret_never_show(
    sb: Sandbox, sms: BaseClient, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = otp.MemoryStore()
    v = verifier(sms, store, clock, resend_after=60.0, max_sends_per_hour=3)
    shown: list[object] = [v, store]
    shown.append(await v.start(PHONE, channel="auto"))
    shown.append(await v.check(PHONE, "000000"))
    clock.advance(60.0)
    shown.append(await v.start(PHONE, channel="auto"))  # a call
    for call in (v.start(PHONE), v.start("not a number")):
        with pytest.raises(SmsError) as refused:
            await call
        shown.append(refused.value)
    clock.advance(60.0)
    sb.set_balance("speedsms", 0)
    with pytest.raises(InsufficientBalance) as failed:
        await v.start(PHONE)
    shown.append(failed.value)
    sb.set_balance("speedsms", 1_000_000)
    sb.faults.add(Fault(kind="drop_after", provider="speedsms", route="send", times=1))
    shown.append(await v.start("0987654321"))

    codes = sent_codes(sb) + sent_codes(sb, kind="voice") + sent_codes(sb, "0987654321")
    assert len(codes) == 3
    numbers = ("0912345678", "912345678", "0987654321", "987654321")
    texts = [repr(o) for o in shown] + [str(o) for o in shown]
    texts += [r.getMessage() for r in caplog.records]
    texts += [caplog.text]
    internals = list(_strings(store))
    assert internals  # the walk reaches the store's records
    for code in codes:
        for text in texts:
            assert code not in text
        for value in internals:
            # Times and counts are numbers; a digest is hex: a code is in none of them.
            assert value != code and (value.isdigit() or code not in value)
    for text in texts + internals:
        assert "SENTINEL" not in text
    for value in internals:
        assert not any(n in value for n in numbers)
    # The code does not even reach a log line as a repr of the verifier's objects.
    assert "<otp code>" not in caplog.text


class _Echo:
    """An SMS client whose provider refuses the message and echoes it in its error, with the
    request's text on the cause too."""

    provider = "echo"

    def __init__(self) -> None:
        self.contents: list[str] = []

    async def send(self, to: str, content: str) -> SendResult:
        self.contents.append(content)
        try:
            raise ValueError(f"request was: {content}")
        except ValueError as cause:
            raise InvalidRequest(f"refused: {content}", provider="echo") from cause


async def test_errors_from_a_send_do_not_carry_the_code(clock: Clock) -> None:
    echo = _Echo()
    v = verifier(echo, otp.MemoryStore(), clock)
    with pytest.raises(InvalidRequest) as refused:
        await v.start(PHONE)
    error = refused.value
    (content,) = echo.contents
    match = SMS_TEXT.fullmatch(content)
    assert match is not None
    code = match.group(1)
    assert error.message == "refused: Ma xac thuc cua ban la ******"
    assert code not in str(error) and code not in repr(error)
    assert error.__cause__ is not None and code not in str(error.__cause__)
    # The provider's frames (whose locals hold the text) are not in the traceback.
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
    files = {Path(frame.f_code.co_filename).name for frame in frames}
    assert files <= {"test_otp.py", "_verifier.py"}
    for frame in frames:
        if frame.f_code.co_filename.endswith("_verifier.py"):
            for value in frame.f_locals.values():
                assert code not in repr(value)
    assert code not in "".join(traceback.format_exception(error))
    # Nothing was sent: a new start is allowed at once.
    with pytest.raises(InvalidRequest):
        await v.start(PHONE)


def test_errors_are_sms_errors_and_pickle() -> None:
    for error in (
        otp.TooSoon("wait", retry_after=12.5),
        otp.Blocked("capped", retry_after=3.0, reason="number_day"),
    ):
        assert isinstance(error, SmsError) and isinstance(error, otp.OtpError)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.message, copy.retry_after) == (error.message, error.retry_after)
    assert pickle.loads(pickle.dumps(otp.Blocked("x", retry_after=1.0, reason="r"))).reason == "r"
    assert issubclass(otp.StoreError, SmsError)
    assert not issubclass(otp.TooSoon, OutcomeUnknown)


def test_both_stores_are_stores() -> None:
    assert isinstance(otp.MemoryStore(), otp.Store)
    assert isinstance(otp.RedisStore("redis://127.0.0.1:1/0"), otp.Store)  # no connection yet


def test_import_smsvn_loads_neither_otp_nor_redis() -> None:
    code = (
        "import sys, smsvn; before = 'smsvn.otp' in sys.modules or 'redis' in sys.modules; "
        "from smsvn import otp; assert smsvn.otp is otp; "
        "print(before, 'redis' in sys.modules, otp.Verifier.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False", "Verifier"]
