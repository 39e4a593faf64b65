"""Bounds a web request relies on, and arguments that must fail clearly.

- ``max_wait``: the longest a call waits for the account's turn; past it ``RateLimited`` at
  once, nothing sent, and Failover moves on.
- ``deadline``: a bound on the whole call, attempts and backoff included (``timeout`` is per
  attempt: an eSMS send with ``timeout=2`` used to take 7 s over three attempts).
- eSMS's "RequestId already received" (124) means "sent by this call" only when an earlier
  attempt of this call may have been processed.
- Bad arguments raise ``ValidationError`` (also a ``ValueError``), never a bare ``TypeError``
  or ``AttributeError``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from smsvn import ESMS, Fibo, RateLimit, SpeedSMS, errors
from smsvn.failover import Failover
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import bounded
from tests.conftest import FAST_RETRY, PROVIDERS

NUMBER = "0912345678"


async def test_max_wait_refuses_at_once_when_the_turn_is_far() -> None:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        slow = RateLimit(requests=2, period=30.0)
        async with sb.client("speedsms", rate_limit=slow, max_wait=0.5) as sms:
            await sms.send(NUMBER, "1")
            await sms.send(NUMBER, "2")  # burst + 1 at once; the next turn is ~30 s away
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(errors.RateLimited, match="nothing was sent") as caught:
                await sms.send(NUMBER, "3")
            assert loop.time() - started < 0.5, "it waited instead of refusing at once"
        assert caught.value.retry_after is not None and caught.value.retry_after > 25
        assert sb.requests[("speedsms", "send")] == 2


async def test_failover_moves_on_when_the_primary_turn_is_too_far() -> None:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        primary = sb.client("speedsms", rate_limit=RateLimit(requests=1, period=60.0), max_wait=0)
        async with Failover(primary, sb.client("fibo")) as failover:
            first = await failover.send(NUMBER, "a")
            second = await failover.send("0987654321", "b")
    assert first.provider == "speedsms"
    assert second.provider == "fibo"
    assert isinstance(second.failovers[0].error, errors.RateLimited)


async def test_deadline_bounds_the_whole_call() -> None:
    """Every attempt hangs: with timeout=0.5 and two retries the call took over 1.5 s; the
    deadline of 0.8 s ends it, as OutcomeUnknown (the request left)."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        sb.faults.add(Fault(kind="hang", provider="esms", route="send"))
        async with sb.client("esms", retry=FAST_RETRY, timeout=0.5, deadline=0.8) as esms:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(errors.OutcomeUnknown):
                await esms.send(NUMBER, "hi")
            elapsed = loop.time() - started
        assert elapsed < 1.3, f"the call took {elapsed:.2f} s past its 0.8 s deadline"
        assert sb.requests[("esms", "send")] == 2


async def test_deadline_ends_a_wait_for_the_turn_with_nothing_sent() -> None:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        slow = RateLimit(requests=1, period=30.0)
        async with sb.client("speedsms", rate_limit=slow, deadline=0.3) as sms:
            await sms.send(NUMBER, "1")
            with pytest.raises(errors.RateLimited, match="nothing was sent"):
                await sms.send(NUMBER, "2")
        assert sb.requests[("speedsms", "send")] == 1


async def test_a_bulk_send_waits_for_its_turns_whatever_max_wait_says() -> None:
    """max_wait and deadline bound one call of a web request; a campaign paces itself."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        limit = RateLimit(requests=2, period=0.3)
        async with sb.client("speedsms", rate_limit=limit, max_wait=0.0, deadline=0.05) as sms:
            numbers = [f"09123{i:05d}" for i in range(500)]
            report = await sms.send_bulk(numbers, "hi")
        assert report.accepted == 500 and report.aborted is None
        assert sb.requests[("speedsms", "send")] == 5


async def test_esms_reused_request_id_after_a_429_is_not_reported_sent() -> None:
    """The caller reuses a RequestId for a different message; the first attempt gets a 429
    (not processed), the resend "124 already received": nothing of this call got in, so it is
    an InvalidRequest, not a SendResult for a message eSMS never took."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        async with sb.client("esms", retry=FAST_RETRY) as esms:
            await esms.send(NUMBER, "first message", request_id="order-42")
            sb.faults.add(
                Fault(kind="rate_limit", provider="esms", route="send", times=1, seconds=0)
            )
            with pytest.raises(errors.InvalidRequest, match="already"):
                await esms.send("0987654321", "second message", request_id="order-42")
        assert [r.content for r in sb.outbox] == ["first message"]


async def test_esms_resend_after_an_unknown_outcome_is_reported_sent() -> None:
    """The other side of the rule: a lost answer, then 124 on the resend: this call's first
    attempt got in, so the send is reported sent, once."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=1))
        async with sb.client("esms", retry=FAST_RETRY) as esms:
            result = await esms.send(NUMBER, "hi", request_id="order-43")
        assert result.recipients == (NUMBER,)
        assert [r.phone for r in sb.outbox] == [NUMBER]


# -- bad arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("to", "content"),
    [(None, "hi"), (NUMBER, 123), (NUMBER, None), (12345, "hi"), (b"0912345678", "hi")],
    ids=["to-None", "content-int", "content-None", "to-int", "to-bytes"],
)
async def test_bad_send_arguments_are_validation_errors(
    provider: str, to: Any, content: Any
) -> None:
    async with Sandbox(speedsms_rate_limit=None) as sb, sb.client(provider) as client:
        with pytest.raises(errors.ValidationError):
            await client.send(to, content)
    assert sum(sb.requests.values()) == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: SpeedSMS(12345),  # type: ignore[arg-type]
        lambda: SpeedSMS(None),  # type: ignore[arg-type]
        lambda: ESMS("key", 42),  # type: ignore[arg-type]
        lambda: Fibo(1, "pass"),  # type: ignore[arg-type]
        lambda: SpeedSMS("tok", timeout=-1),
        lambda: SpeedSMS("tok", timeout=float("nan")),
        lambda: SpeedSMS("tok", connect_timeout=0),
        lambda: SpeedSMS("tok", max_wait=-1),
        lambda: SpeedSMS("tok", deadline=float("inf")),
        lambda: SpeedSMS("tok", max_connections=0),
        lambda: SpeedSMS("tok", rate_limit=(60, 60)),  # type: ignore[arg-type]
        lambda: SpeedSMS("tok", limiter="redis://x"),  # type: ignore[arg-type]
        lambda: SpeedSMS("tok", base_url="api.speedsms.vn"),
        lambda: ESMS("k", "s", voice_base_url=None),  # type: ignore[arg-type]
        lambda: RateLimit(requests=60, period=float("nan")),
    ],
)
def test_bad_construction_is_a_validation_error(build: Any) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        build()
    assert isinstance(caught.value, ValueError)
    assert caught.value.message


async def test_bounded_sets_per_call_bounds_on_a_shared_client() -> None:
    """A client shared with slower work has no max_wait; the web request bounds its own calls,
    and the tighter of nested bounds applies."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        slow = RateLimit(requests=2, period=30.0)
        async with sb.client("speedsms", rate_limit=slow) as sms:
            await sms.send(NUMBER, "1")
            await sms.send(NUMBER, "2")
            with (
                bounded(max_wait=60.0),
                bounded(max_wait=0.2),
                pytest.raises(errors.RateLimited, match="nothing was sent"),
            ):
                await sms.send(NUMBER, "3")
            with bounded(deadline=0.2), pytest.raises(errors.RateLimited):
                await sms.send(NUMBER, "4")
        assert sb.requests[("speedsms", "send")] == 2


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "1", True])
def test_bounded_refuses_bad_values(value: Any) -> None:
    with pytest.raises(errors.ValidationError), bounded(max_wait=value):
        pass
