"""Failover: moves on only when nothing can have been sent; never after OutcomeUnknown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smsvn import errors
from smsvn.bulk import BatchSender
from smsvn.failover import Failover
from smsvn.models import Balance, SendResult
from smsvn.providers._base import BaseClient

Rule = Callable[[list[str]], errors.SmsError | None]


class FakeClient(BaseClient):
    """A client whose every request answers by ``rule`` and is recorded."""

    provider = "fake"

    def __init__(self, name: str, rule: Rule | None = None, batch_size: int = 1) -> None:
        super().__init__(
            base_url=f"http://{name}.invalid", account=name, secrets=(), options={}
        )
        self.name = name
        self.rule = rule
        self.sent: list[str] = []
        self.requests = 0
        self.batch_size = batch_size  # type: ignore[misc]

    async def _deliver(self, numbers: list[str], content: str) -> SendResult:
        self.requests += 1
        error = self.rule(numbers) if self.rule else None
        if error is not None:
            raise error
        self.sent.extend(numbers)
        return SendResult(provider=self.name, message_id="m", recipients=tuple(numbers), cost=1.0)

    async def send(self, to: str, content: str) -> SendResult:
        return await self._deliver([to], content)

    async def balance(self) -> Balance:
        return Balance(provider=self.name, amount=0.0, currency=None, raw=None)

    def batch_sender(self, *, content: str | None) -> BatchSender:
        async def send_batch(numbers: list[str], text: str, request_id: str | None) -> SendResult:
            return await self._deliver(numbers, text)

        return send_batch


def always(error: errors.SmsError) -> Rule:
    return lambda numbers: error


def number(i: int) -> str:
    return f"0912{i:06d}"


@pytest.mark.parametrize(
    "error",
    [
        errors.ConnectError("refused"),
        errors.AuthenticationError("bad key"),
        errors.InsufficientBalance("empty"),
        errors.SenderNotRegistered("no brand"),
        errors.ProviderUnavailable("try later"),
        errors.RateLimited("slow down", retry_after=600),
    ],
)
async def test_send_moves_on_when_nothing_was_sent(error: errors.SmsError) -> None:
    a, b = FakeClient("a", always(error)), FakeClient("b")
    result = await Failover(a, b).send("0912345678", "hi")
    assert result.provider == "b"
    assert [(f.provider, f.error) for f in result.failovers] == [("fake", error)]
    assert b.sent == ["0912345678"]


@pytest.mark.parametrize(
    "error",
    [
        errors.OutcomeUnknown("timeout after sending"),
        errors.MalformedResponse("garbage"),
        errors.InvalidRecipient("bad number"),
        errors.InvalidRequest("bad content"),
        errors.ValidationError("local"),
    ],
)
async def test_send_never_moves_on_when_it_may_have_sent_or_would_fail_anyway(
    error: errors.SmsError,
) -> None:
    a, b = FakeClient("a", always(error)), FakeClient("b")
    with pytest.raises(type(error)):
        await Failover(a, b).send("0912345678", "hi")
    assert b.requests == 0


async def test_send_raises_the_last_error_when_every_provider_refuses() -> None:
    a = FakeClient("a", always(errors.ConnectError("a down")))
    b = FakeClient("b", always(errors.InsufficientBalance("b empty")))
    with pytest.raises(errors.InsufficientBalance):
        await Failover(a, b).send("0912345678", "hi")


async def test_send_first_provider_success_has_no_failovers() -> None:
    result = await Failover(FakeClient("a"), FakeClient("b")).send("0912345678", "hi")
    assert result.provider == "a"
    assert result.failovers == ()


async def test_send_bulk_hands_the_rest_to_the_fallback_after_an_account_error() -> None:
    calls = 0

    def balance_runs_out(numbers: list[str]) -> errors.SmsError | None:
        nonlocal calls
        calls += 1
        return errors.InsufficientBalance("empty") if calls > 3 else None

    a, b = FakeClient("a", balance_runs_out, batch_size=10), FakeClient("b", batch_size=10)
    source = [number(i) for i in range(100)] + [number(5)]  # one duplicate across providers
    report = await Failover(a, b).send_bulk(source, "hi", concurrency=1)
    assert len(a.sent) == 30
    assert len(b.sent) == 70
    assert set(a.sent).isdisjoint(b.sent)  # nothing sent twice
    assert report.accepted == 100
    assert report.duplicates == 1
    assert report.failed == []
    assert report.taken == 101
    assert [p.provider for p in report.parts] == ["fake", "fake"]
    assert report.aborted is None


async def test_send_bulk_retries_provably_unsent_batches_on_the_fallback() -> None:
    def flaky(numbers: list[str]) -> errors.SmsError | None:
        return errors.ConnectError("refused") if numbers[0] == number(3) else None

    a, b = FakeClient("a", flaky), FakeClient("b")
    report = await Failover(a, b).send_bulk([number(i) for i in range(6)], "hi")
    assert b.sent == [number(3)]
    assert report.accepted == 6
    assert report.failed == []
    assert report.taken == 6


async def test_send_bulk_never_hands_on_unknown_outcomes() -> None:
    def lost(numbers: list[str]) -> errors.SmsError | None:
        return errors.OutcomeUnknown("timeout") if numbers[0] == number(2) else None

    a, b = FakeClient("a", lost), FakeClient("b")
    report = await Failover(a, b).send_bulk([number(i) for i in range(4)], "hi")
    assert b.requests == 0
    assert report.unknown_count == 1
    assert report.accepted == 3


async def test_send_bulk_stops_when_every_provider_is_refused() -> None:
    a = FakeClient("a", always(errors.AuthenticationError("a locked")))
    b = FakeClient("b", always(errors.AuthenticationError("b locked")))

    async def numbers() -> AsyncIterator[str]:
        for i in range(50):
            yield number(i)

    source = numbers()
    report = await Failover(a, b).send_bulk(source, "hi", concurrency=1)
    assert isinstance(report.aborted, errors.AuthenticationError)
    assert report.accepted == 0
    rest = [n async for n in source]
    # a took one number and was refused; b was handed that number and was refused too.
    assert report.failed_count == 1
    assert report.taken == 1
    assert len(rest) == 49
    assert a.requests == b.requests == 1


async def test_failover_closes_every_client() -> None:
    a, b = FakeClient("a"), FakeClient("b")
    async with Failover(a, b) as fo:
        assert "fake" in repr(fo)
    for client in (a, b):
        with pytest.raises(errors.ValidationError, match="closed"):
            client._transport.session()


def test_failover_refuses_a_single_string_as_recipients() -> None:
    import asyncio

    async def go() -> Any:
        return await Failover(FakeClient("a")).send_bulk("0912345678", "hi")

    with pytest.raises(errors.ValidationError):
        asyncio.run(go())
