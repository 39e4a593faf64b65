"""Every client method of SpeedSMS, ESMS and Fibo against the simulator over real sockets:
results, typed errors, rate limiting, resends, and the outbox as ground truth (exactly one
record per accepted recipient, nothing ever sent twice)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import pytest

from smsvn import errors
from smsvn.limits import AccountLimit, InProcessLimiter, RateLimit
from smsvn.models import BrandnameType, CallStatus, SendStatus
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.multiprocess.harness import max_in_window

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    # Wide enough to see messages pending right after sending, even on a slow machine.
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.2) as sandbox:
        yield sandbox


def assert_once_each(sb: Sandbox, provider: str, phones: list[str]) -> None:
    """The outbox holds exactly one record for each of ``phones`` and nothing else."""
    assert Counter(sb.outbox.phones(provider)) == Counter(phones)
    assert all(n == 1 for n in Counter(phones).values())


# -- SpeedSMS -----------------------------------------------------------------------------------


async def test_speedsms_balance_send_and_voice(sb: Sandbox) -> None:
    async with sb.client("speedsms", retry=FAST_RETRY) as sms:
        before = await sms.balance()
        assert (before.amount, before.currency) == (1e9, "VND")
        result = await sms.send(["+84 912 345 678", "0987654321", "12345"], "Xin chao")
        assert result.recipients == ("0912345678", "0987654321")
        assert [str(n) for n in result.invalid] == ["12345"]
        assert (result.segments, result.cost) == (2, 500.0)
        otp = await sms.voice_otp("0912345670", "4321")
        assert otp.recipients == ("0912345670",) and otp.cost == 400.0
        after = await sms.balance()
    assert after.amount == before.amount - 900
    assert_once_each(sb, "speedsms", ["0912345678", "0987654321", "0912345670"])
    assert [r.message_id for r in sb.outbox] == [result.message_id] * 2 + [otp.message_id]


async def test_speedsms_refusals_are_typed(sb: Sandbox) -> None:
    async with sb.client("speedsms", token="not-the-token", retry=FAST_RETRY) as sms:
        with pytest.raises(errors.AuthenticationError) as caught:
            await sms.balance()
        assert caught.value.http_status == 401
    async with sb.client("speedsms", sender="UNKNOWN", retry=FAST_RETRY) as sms:
        # 101 "sender is not registered": the same class as eSMS's 104 and Fibo's 5.
        with pytest.raises(errors.SenderNotRegistered) as refused:
            await sms.send("0912345678", "hi")
        assert refused.value.code == "101"
    sb.set_balance("speedsms", 100)
    async with sb.client("speedsms", retry=FAST_RETRY) as sms:
        with pytest.raises(errors.InsufficientBalance):
            await sms.send("0912345678", "hi")
    assert len(sb.outbox) == 0


async def test_speedsms_429_waits_and_resends() -> None:
    async with Sandbox(speedsms_rate_limit=RateLimit(requests=5, period=0.3)) as sb:
        too_fast = RateLimit(requests=100, period=0.3, burst=100)
        phones = [f"091234{i:04d}" for i in range(2, 14)]
        async with sb.client("speedsms", rate_limit=too_fast, retry=FAST_RETRY) as sms:
            results = await asyncio.gather(*(sms.send(p, "hi") for p in phones))
        assert [r.recipients for r in results] == [(p,) for p in phones]
        assert sb.stats.rate_limited >= 1
        assert sb.requests[("speedsms", "send")] == len(phones) + sb.stats.rate_limited
        assert_once_each(sb, "speedsms", phones)


class NotingLimiter:
    """The default in-process limiter, noting when it lets each request go (loop time)."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    def for_account(self, provider: str, account: str, limit: RateLimit) -> AccountLimit:
        return NotingAccount(InProcessLimiter().for_account(provider, account, limit), self.taken)


class NotingAccount:
    def __init__(self, inner: AccountLimit, taken: list[float]) -> None:
        self.inner = inner
        self.taken = taken

    async def acquire(self, max_wait: float | None = None) -> None:
        await self.inner.acquire(max_wait)
        self.taken.append(asyncio.get_running_loop().time())

    async def pause(self, seconds: float) -> None:
        await self.inner.pause(seconds)


async def test_speedsms_matching_limiter_never_gets_429() -> None:
    # The client keeps 8 in any 0.25 s (with a 2 % margin); the simulator answers 429 to more
    # than 8 in any 0.2375 s, the rest being for the trip to it (a busy machine delays it by
    # more than the margin leaves). The client's own promise is checked in the true 0.25 s.
    limit = RateLimit(requests=8, period=0.25)
    window = limit.period * 0.95
    noting = NotingLimiter()
    async with Sandbox(speedsms_rate_limit=RateLimit(requests=8, period=window)) as sb:
        async with sb.client("speedsms", rate_limit=limit, limiter=noting) as sms:
            for i in range(12):
                await sms.send(f"091234{i + 2:04d}", "hi")
        assert sb.stats.rate_limited == 0
        assert len(sb.outbox) == 12
    assert len(noting.taken) == 12
    assert max_in_window(noting.taken, limit.period) <= limit.requests


async def test_speedsms_lost_answer_is_never_resent(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="drop_after", provider="speedsms", route="send", times=1))
    async with sb.client("speedsms", retry=FAST_RETRY) as sms:
        with pytest.raises(errors.OutcomeUnknown):
            await sms.send("0912345678", "hi")
    assert sb.requests[("speedsms", "send")] == 1
    assert_once_each(sb, "speedsms", ["0912345678"])


async def test_speedsms_unavailable_read_is_retried(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="status_5xx", provider="speedsms", route="balance", times=1))
    async with sb.client("speedsms", retry=FAST_RETRY) as sms:
        assert (await sms.balance()).amount == 1e9
    assert sb.requests[("speedsms", "balance")] == 2


async def test_speedsms_send_bulk(sb: Sandbox) -> None:
    phones = [f"09123{i:05d}" for i in range(2, 252)]
    async with sb.client("speedsms", retry=FAST_RETRY) as sms:
        report = await sms.send_bulk([*phones, "0912300002", "bad"], "Khuyen mai")
    assert report.accepted == 250 and report.duplicates == 1
    assert [str(n) for n in report.invalid] == ["bad"]
    assert sb.requests[("speedsms", "send")] == 3
    assert_once_each(sb, "speedsms", phones)


async def test_speedsms_bulk_unknown_batch_is_not_resent(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="drop_after", provider="speedsms", route="send", times=1))
    phones = [f"09123{i:05d}" for i in range(2, 202)]
    async with sb.client("speedsms", retry=FAST_RETRY) as sms:
        report = await sms.send_bulk(phones, "Khuyen mai", concurrency=1)
    assert report.unknown_count == 100 and report.accepted == 100
    assert sb.requests[("speedsms", "send")] == 2
    assert_once_each(sb, "speedsms", phones)


# -- eSMS ---------------------------------------------------------------------------------------


async def test_esms_send_status_receivers_and_lists(sb: Sandbox) -> None:
    async with sb.client("esms", retry=FAST_RETRY) as esms:
        balance = await esms.balance()
        assert (balance.amount, balance.currency) == (1e9, "VND")
        sent = await esms.send("0912345678", "Ma OTP cua ban la 1234", request_id="otp-1")
        assert sent.recipients == ("0912345678",) and sent.request_id == "otp-1"
        assert sent.message_id is not None
        pending = await esms.status(sent.message_id)
        assert pending.status is SendStatus.SENDING
        await sb.settle()
        status = await esms.status(sent.message_id)
        assert (status.status, status.succeeded, status.failed) == (SendStatus.SENT, 1, 0)
        assert status.total_receivers == 1
        receivers = await esms.receivers(sent.message_id)
        assert [(r.phone, r.is_sent, r.succeeded) for r in receivers] == [
            ("0912345678", True, True)
        ]
        today = date.today()
        messages = await esms.sent_messages(today - timedelta(days=1), today + timedelta(days=1))
        assert [(m.message_id, m.phone, m.sms_type) for m in messages] == [
            (sent.message_id, "0912345678", 2)
        ]
        assert messages[0].sent_at is not None and messages[0].status == "true"
        brands = await esms.brandnames()
        assert [(b.name, b.type) for b in brands] == [
            ("SMSVN", BrandnameType.CUSTOMER_CARE),
            ("SMSVN.QC", BrandnameType.ADVERTISING),
        ]
        assert (await esms.balance()).amount == 1e9 - 350
    assert [r.request_id for r in sb.outbox] == ["otp-1"]


async def test_esms_send_forms_and_options(sb: Sandbox) -> None:
    async with sb.client("esms", retry=FAST_RETRY) as esms:
        by_get = await esms.send("0912345678", "Xin chao", method="GET")
        trial = await esms.send("0912345679", "Xin chao", sandbox=True)
        fixed = await esms.send("0912345670", "Ma 1234", sms_type=8)
        later = await esms.send(
            "0912345671", "Hen gap", send_date=datetime.now() + timedelta(days=365)
        )
        ad_phones = [f"09123{i:05d}" for i in range(100, 120)]
        advert = await esms.send(ad_phones, "Khuyen mai", sms_type=1, brandname="SMSVN.QC")
        assert advert.recipients == tuple(ad_phones)
        assert later.message_id is not None
        assert (await esms.status(later.message_id)).status is SendStatus.WAITING_TO_SEND
    assert [r.sandbox for r in sb.outbox if r.phone == "0912345679"] == [True]
    assert {by_get.message_id, trial.message_id, fixed.message_id} <= {
        r.message_id for r in sb.outbox
    }
    assert len(sb.outbox) == 4 + 20


async def test_esms_refusals_are_typed(sb: Sandbox) -> None:
    async with sb.client("esms", secret_key="wrong", retry=FAST_RETRY) as esms:
        with pytest.raises(errors.AuthenticationError):
            await esms.balance()
        with pytest.raises(errors.AuthenticationError):
            await esms.send("0912345678", "hi")
        with pytest.raises(errors.AuthenticationError):
            await esms.brandnames()
    async with sb.client("esms", brandname="UNKNOWN", retry=FAST_RETRY) as esms:
        with pytest.raises(errors.SenderNotRegistered) as caught:
            await esms.send("0912345678", "hi")
        assert caught.value.code == "104"
    async with sb.client("esms", retry=FAST_RETRY) as esms:
        with pytest.raises(errors.InvalidRequest) as missing:
            await esms.status("no-such-id")
        assert missing.value.code == "105"
        sb.set_balance("esms", 10)
        with pytest.raises(errors.InsufficientBalance):
            await esms.send("0912345678", "hi")
        with pytest.raises(errors.InsufficientBalance):
            await esms.voice_otp("0912345678", "1234")
    assert len(sb.outbox) == 0


async def test_esms_resend_after_a_lost_answer_is_deduplicated(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=1))
    async with sb.client("esms", retry=FAST_RETRY) as esms:
        result = await esms.send("0912345678", "Ma OTP 1234")
    assert result.recipients == ("0912345678",)
    assert sb.requests[("esms", "send")] == 2
    assert sb.stats.duplicates == 1
    assert_once_each(sb, "esms", ["0912345678"])
    assert sb.outbox[0].request_id == result.request_id


async def test_esms_same_request_id_twice_is_refused(sb: Sandbox) -> None:
    async with sb.client("esms", retry=FAST_RETRY) as esms:
        await esms.send("0912345678", "hi", request_id="dup")
        with pytest.raises(errors.InvalidRequest) as caught:
            await esms.send("0912345678", "hi", request_id="dup")
    assert caught.value.code == "124"
    assert len(sb.outbox) == 1


async def test_esms_voice_calls(sb: Sandbox) -> None:
    async with sb.client("esms", retry=FAST_RETRY) as esms:
        otp = await esms.voice_otp("0912345678", "123456", voice="female", speed=1)
        template = await esms.call_template(
            "0912345679", sb.esms_call_template_id, ["Trung", "20000"], voice="male"
        )
        record = await esms.call_record("0912340000", sb.esms_call_record_id, ivr=5)
        assert otp.message_id and template.message_id and record.message_id
        pending = await esms.call_status(otp.message_id)
        assert pending.status is CallStatus.PENDING
        await sb.settle()
        answered = await esms.call_status(otp.message_id)
        assert (answered.status, answered.duration, answered.ivr) == (CallStatus.ANSWERED, 24, "2")
        missed = await esms.call_status(record.message_id)
        assert (missed.status, missed.duration) == (CallStatus.NO_ANSWER, 0)
        with pytest.raises(errors.InvalidRequest) as unknown:
            await esms.call_template("0912345678", "9999", ["a"])
        assert unknown.value.code == "104"
        with pytest.raises(errors.InvalidRequest):
            await esms.call_record("0912345678", "9999")
        with pytest.raises(errors.InvalidRequest):
            await esms.call_status("no-such-call")
    assert [r.kind for r in sb.outbox] == ["voice"] * 3
    assert [r.content for r in sb.outbox][:2] == ["123456", "template 1001: Trung||20000"]


# -- Fibo ---------------------------------------------------------------------------------------


async def test_fibo_send_balance_and_totals(sb: Sandbox) -> None:
    async with sb.client("fibo", retry=FAST_RETRY) as fibo:
        before = await fibo.balance()
        assert (before.amount, before.currency) == (10_000_000, None)
        plain = await fibo.send("0912345678", "Xin chao")
        accented = await fibo.send("84912340000", "Chào bạn", sms_guid="order-7")
        assert plain.recipients == ("0912345678",) and accented.recipients == ("0912340000",)
        totals = await fibo.daily_totals()
        assert (totals.success, totals.failed, totals.pending) == (0, 0, 2)
        await sb.settle()
        totals = await fibo.daily_totals()
        assert (totals.success, totals.failed, totals.pending) == (1, 1, 0)
        assert (await fibo.balance()).amount == before.amount - 2
    # smsGUID: the document's default 0 unless the caller gives an id, which is the message_id.
    assert (plain.message_id, accented.message_id) == (None, "order-7")
    assert [r.request_id for r in sb.outbox] == ["0", "order-7"]
    assert_once_each(sb, "fibo", ["0912345678", "0912340000"])


async def test_fibo_refusals_are_typed(sb: Sandbox) -> None:
    async with sb.client("fibo", client_pass="wrong", retry=FAST_RETRY) as fibo:
        with pytest.raises(errors.AuthenticationError):
            await fibo.balance()
        with pytest.raises(errors.AuthenticationError):
            await fibo.send("0912345678", "hi")
        with pytest.raises(errors.AuthenticationError):
            await fibo.daily_totals()
    async with sb.client("fibo", sender="UNKNOWN", retry=FAST_RETRY) as fibo:
        with pytest.raises(errors.SenderNotRegistered):
            await fibo.send("0912345678", "hi")
    sb.set_balance("fibo", 0)
    async with sb.client("fibo", retry=FAST_RETRY) as fibo:
        with pytest.raises(errors.InsufficientBalance):
            await fibo.send("0912345678", "hi")
    assert len(sb.outbox) == 0


async def test_fibo_lost_answer_is_never_resent(sb: Sandbox) -> None:
    sb.faults.add(Fault(kind="truncate", provider="fibo", route="send", times=1))
    async with sb.client("fibo", retry=FAST_RETRY) as fibo:
        with pytest.raises(errors.OutcomeUnknown):
            await fibo.send("0912345678", "hi")
    assert sb.requests[("fibo", "send")] == 1
    assert_once_each(sb, "fibo", ["0912345678"])


async def test_fibo_send_bulk(sb: Sandbox) -> None:
    phones = [f"09123{i:05d}" for i in range(2, 42)]
    async with sb.client("fibo", retry=FAST_RETRY) as fibo:
        report = await fibo.send_bulk(phones, "Xin chao", concurrency=8)
    assert report.accepted == 40
    assert_once_each(sb, "fibo", phones)


# -- callbacks into smsvn.webhooks --------------------------------------------------------------


async def test_callbacks_reach_the_webhook_receiver() -> None:
    from aiohttp import web

    from smsvn import webhooks
    from smsvn.models import CallReport, DeliveryReport, DeliveryState, InboundSms

    events: list[object] = []

    async def handler(event: object) -> None:
        events.append(event)

    secret = webhooks.new_secret()
    runner = web.AppRunner(webhooks.app(handler, secret=secret), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        speedsms_hook = webhooks.callback_url(base, "speedsms", secret)
        esms_hook = webhooks.callback_url(base, "esms", secret)
        async with Sandbox(
            speedsms_rate_limit=None, delivery_delay=0.02, speedsms_webhook_url=speedsms_hook
        ) as sb:
            async with sb.client("speedsms", retry=FAST_RETRY) as sms:
                sent = await sms.send(["0912345678", "0912340000", "0912340001"], "hi")
            async with sb.client("esms", retry=FAST_RETRY) as esms:
                sms_result = await esms.send("0987654321", "Ma 1234", callback_url=esms_hook)
                call = await esms.voice_otp("0987654322", "1234", callback_url=esms_hook)
            assert await sb.inbound_sms("0912345678", "Cam on") == 200
            await sb.settle()
            assert sb.stats.callback_failures == 0
    finally:
        await runner.cleanup()

    reports = [e for e in events if isinstance(e, DeliveryReport)]
    speedsms_states = [(r.phone, r.state) for r in reports if r.provider == "speedsms"]
    assert speedsms_states == [
        ("0912345678", DeliveryState.DELIVERED),
        ("0912340000", DeliveryState.FAILED),
        ("0912340001", DeliveryState.TEMPORARY_FAILURE),
        ("0912340001", DeliveryState.DELIVERED),
    ]
    assert {r.message_id for r in reports if r.provider == "speedsms"} == {sent.message_id}
    (esms_report,) = [r for r in reports if r.provider == "esms"]
    assert (esms_report.message_id, esms_report.phone, esms_report.state) == (
        sms_result.message_id,
        "0987654321",
        DeliveryState.DELIVERED,
    )
    (call_report,) = [e for e in events if isinstance(e, CallReport)]
    assert (call_report.reference_id, call_report.status) == (call.message_id, CallStatus.ANSWERED)
    (inbound,) = [e for e in events if isinstance(e, InboundSms)]
    assert (inbound.phone, inbound.content) == ("0912345678", "Cam on")
