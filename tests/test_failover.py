"""Failover: moves on only when nothing can have been sent; never after OutcomeUnknown."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from smsvn import errors
from smsvn.bulk import BatchSender, BulkReport
from smsvn.failover import Failover
from smsvn.models import Balance, SendResult
from smsvn.phone import normalize
from smsvn.providers._base import BaseClient
from smsvn.transport import departure
from tests.conftest import taken_count

Rule = Callable[[list[str]], errors.SmsError | None]


class FakeClient(BaseClient):
    """A client whose every request answers by ``rule`` and is recorded."""

    provider = "fake"

    def __init__(self, name: str, rule: Rule | None = None, batch_size: int = 1) -> None:
        super().__init__(base_url=f"http://{name}.invalid", account=name, secrets=(), options={})
        self.name = name
        self.rule = rule
        self.sent: list[str] = []
        self.requests = 0
        self.batch_size = batch_size  # type: ignore[misc]

    async def _deliver(self, numbers: list[str], content: str) -> SendResult:
        mark = departure.get()
        if mark is not None:  # what the transport does as the request leaves
            mark.left = True
        self.requests += 1
        error = self.rule(numbers) if self.rule else None
        if error is not None:
            raise error
        self.sent.extend(numbers)
        return SendResult(provider=self.name, message_id="m", recipients=tuple(numbers), cost=1.0)

    async def send(self, to: str | Sequence[str], content: str) -> SendResult:
        return await self._deliver([to] if isinstance(to, str) else list(to), content)

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


def assert_every_input_ends_once(
    report: BulkReport, inputs: list[str], rest: list[str], clients: list[FakeClient]
) -> None:
    """The promise of ``send_bulk``, checked on a merged Failover report: every input ends
    exactly once as sent, reported (failed / unknown / invalid / duplicate / skipped) or still
    in the caller's iterator; the totals add up with nothing subtracted away; and the report
    agrees with what the providers really sent."""
    taken = inputs[: len(inputs) - len(rest)]
    assert inputs[len(taken) :] == rest, "the caller's iterator must hold the untaken suffix"
    assert report.taken == len(taken)
    assert taken_count(report) == report.taken
    sent = [n for r in report.sent for n in r.recipients]
    failed = [n for batch, _ in report.failed for n in batch]
    unknown = [n for batch, _ in report.unknown for n in batch]
    invalid = [str(n) for n in report.invalid]
    skipped = list(report.skipped)
    where = Counter(sent + failed + unknown + invalid + skipped)
    assert len(sent) == report.accepted
    assert all(n == 1 for n in where.values()), "a number is in two places of the report"
    assert sum(where.values()) + report.duplicates == len(taken)
    assert set(where) == {normalize(n) for n in taken}, "a taken number is reported nowhere"
    # The providers' ground truth: nothing sent twice, sent is what was reported sent, and
    # nothing reported failed or skipped went out.
    delivered = [n for client in clients for n in client.sent]
    assert len(delivered) == len(set(delivered)), "a number was sent twice"
    assert sorted(delivered) == sorted(sent)
    assert not set(delivered) & (set(failed) | set(skipped))


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
    assert_every_input_ends_once(report, source, [], [a, b])


async def test_send_bulk_retries_provably_unsent_batches_on_the_fallback() -> None:
    def flaky(numbers: list[str]) -> errors.SmsError | None:
        return errors.ConnectError("refused") if numbers[0] == number(3) else None

    a, b = FakeClient("a", flaky), FakeClient("b")
    inputs = [number(i) for i in range(6)]
    report = await Failover(a, b).send_bulk(inputs, "hi")
    assert b.sent == [number(3)]
    assert report.accepted == 6
    assert report.failed == []
    assert report.taken == 6
    assert_every_input_ends_once(report, inputs, [], [a, b])


async def test_send_bulk_never_hands_on_unknown_outcomes() -> None:
    def lost(numbers: list[str]) -> errors.SmsError | None:
        return errors.OutcomeUnknown("timeout") if numbers[0] == number(2) else None

    a, b = FakeClient("a", lost), FakeClient("b")
    inputs = [number(i) for i in range(4)]
    report = await Failover(a, b).send_bulk(inputs, "hi")
    assert b.requests == 0
    assert report.unknown_count == 1
    assert report.accepted == 3
    assert_every_input_ends_once(report, inputs, [], [a, b])


async def test_send_bulk_stops_when_every_provider_is_refused() -> None:
    a = FakeClient("a", always(errors.AuthenticationError("a locked")))
    b = FakeClient("b", always(errors.AuthenticationError("b locked")))

    inputs = [number(i) for i in range(50)]

    async def numbers() -> AsyncIterator[str]:
        for n in inputs:
            yield n

    source = numbers()
    report = await Failover(a, b).send_bulk(source, "hi", concurrency=1)
    assert isinstance(report.aborted, errors.AuthenticationError)
    assert report.accepted == 0
    rest = [n async for n in source]
    assert_every_input_ends_once(report, inputs, rest, [a, b])
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


# -- every input ends exactly once (issue #13, item 2) ---------------------------------------------


def runs_out_after(batches: int) -> Rule:
    """A provider whose balance runs out after ``batches`` requests."""
    calls = 0

    def rule(numbers: list[str]) -> errors.SmsError | None:
        nonlocal calls
        calls += 1
        return errors.InsufficientBalance("balance not enough") if calls > batches else None

    return rule


class Source:
    """The caller's input, sync or async (yielding to the loop between items), whose
    untaken rest can be read back."""

    def __init__(self, numbers: list[str], kind: str) -> None:
        self.kind = kind
        self.items = iter(numbers)

    def iterable(self) -> Iterator[str] | AsyncIterator[str]:
        return self.items if self.kind == "sync" else self._async()

    async def _async(self) -> AsyncIterator[str]:
        for item in self.items:
            await asyncio.sleep(0)
            yield item

    def rest(self) -> list[str]:
        return list(self.items)


INPUTS = [number(i) for i in range(1500)] + [number(5)] + [number(i) for i in range(1500, 10_000)]
"""More than two providers that run out after a few batches take, one duplicate among them."""


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("sizes", [(1, 1), (100, 100), (100, 1), (1, 100)])
@pytest.mark.parametrize("concurrency", [1, 4, 32])
async def test_send_bulk_loses_no_number_when_the_fallback_stops_too(
    kind: str, sizes: tuple[int, int], concurrency: int
) -> None:
    a = FakeClient("a", runs_out_after(2), batch_size=sizes[0])
    b = FakeClient("b", runs_out_after(1), batch_size=sizes[1])
    source = Source(INPUTS, kind)
    report = await Failover(a, b).send_bulk(source.iterable(), "hi", concurrency=concurrency)
    assert isinstance(report.aborted, errors.InsufficientBalance)
    rest = source.rest()
    assert rest, "both providers stopped: the caller's iterator keeps the rest"
    assert_every_input_ends_once(report, INPUTS, rest, [a, b])


async def test_send_bulk_reports_handed_on_numbers_the_fallback_never_took() -> None:
    # SpeedSMS-sized batches handed to a one-number provider that runs out after 5 sends:
    # a hands on 300 numbers, b takes 4 + 5 of them, the rest must come back as skipped.
    a = FakeClient("a", always(errors.InsufficientBalance("a empty")), batch_size=100)
    b = FakeClient("b", runs_out_after(5), batch_size=1)
    inputs = [number(i) for i in range(500)]
    source = iter(inputs)
    report = await Failover(a, b).send_bulk(source, "hi", concurrency=4)
    rest = list(source)
    assert len(b.sent) == 5
    handed = [n for batch, _ in report.parts[0].failed for n in batch]
    handed += report.parts[0].skipped
    took = report.parts[1].taken
    assert 5 <= took < len(handed)
    never_taken = set(handed) - {n for r in report.parts[1].sent for n in r.recipients}
    never_taken -= {n for batch, _ in report.parts[1].failed for n in batch}
    never_taken -= set(report.parts[1].skipped)
    assert never_taken, "the scenario must leave handed-on numbers untaken"
    assert never_taken <= set(report.skipped)
    assert_every_input_ends_once(report, inputs, rest, [a, b])


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_send_bulk_carries_untaken_numbers_through_every_fallback(kind: str) -> None:
    a = FakeClient("a", runs_out_after(1), batch_size=100)
    b = FakeClient("b", runs_out_after(3), batch_size=1)
    c = FakeClient("c", runs_out_after(2), batch_size=1)
    source = Source(INPUTS, kind)
    report = await Failover(a, b, c).send_bulk(source.iterable(), "hi", concurrency=3)
    assert len(report.parts) == 3
    assert len(a.sent) == 100 and len(b.sent) == 3 and len(c.sent) == 2
    assert_every_input_ends_once(report, INPUTS, source.rest(), [a, b, c])


async def test_send_bulk_after_a_full_run_still_adds_up() -> None:
    a = FakeClient("a", runs_out_after(2), batch_size=100)
    b = FakeClient("b", batch_size=1)
    source = iter(INPUTS)
    report = await Failover(a, b).send_bulk(source, "hi", concurrency=8)
    assert report.aborted is None
    assert report.skipped == []
    assert_every_input_ends_once(report, INPUTS, list(source), [a, b])


@pytest.mark.parametrize("recipients", ["0912345678", b"0912345678", bytearray(b"0912345678")])
async def test_send_bulk_refuses_one_string_or_bytes_before_taking_anything(
    recipients: Any,
) -> None:
    a = FakeClient("a")
    with pytest.raises(errors.ValidationError, match="not one"):
        await Failover(a, FakeClient("b")).send_bulk(recipients, "hi")
    with pytest.raises(errors.ValidationError, match="not one"):
        await a.send_bulk(recipients, "hi")
    assert a.requests == 0
