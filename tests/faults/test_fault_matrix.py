"""The fault matrix: every client's sends, voice calls, reads and ``send_bulk`` against the
simulator under each fault, asserting the error class and, from the outbox, that nothing was
accepted twice and nothing was lost track of.

What each fault must produce follows from one question, *may the request have been processed?*

- never left (connection refused) -> ``ConnectError`` after the retries, nothing accepted;
- left and no usable answer (dropped before or after processing, no answer, a cut-off body)
  -> ``OutcomeUnknown``; the outbox holds 0 or 1, as the fault did;
- an answer that is not the provider's (5xx page, garbage, empty) -> ``MalformedResponse``
  (an ``OutcomeUnknown``: a proxy's 502/504 can come after the provider processed it);
- 429 -> waited out and sent, or ``RateLimited`` past the wait budget, nothing accepted.

At-most-once sends (SpeedSMS SMS and voice, eSMS voice calls, Fibo) are never resent once they
may have left. eSMS SMS sends carry a ``RequestId`` that eSMS deduplicates, so they are resent
and end accepted exactly once (a resend answered 124 is reported as sent). Reads are retried.

Each test runs one fault against every path of one provider at once, each path on its own
sandbox, and reports every mismatch together. ``EXPECTED`` is the table the README shows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from smsvn import errors
from smsvn.bulk import BulkReport
from smsvn.sandbox import Fault, Sandbox
from tests.conftest import client_at, per_provider
from tests.faults.conftest import FAST_RETRY, accounted, agrees_with_outbox, no_duplicates

TIMEOUT = 0.5
"""The clients' whole-request timeout here: what a hung or dribbled answer costs."""
NUMBER = "0912345678"
BULK = ["0912345670", "0912345671", "0912345672"]

Error = type[errors.SmsError] | None


@dataclass(frozen=True)
class Expect:
    """What a path must end with: ``error`` (None = success), how many records of the message
    the outbox holds, and how many requests reached the simulator's route."""

    error: Error
    outbox: int
    requests: int | None = None


@dataclass(frozen=True)
class Case:
    """One fault: the switches to arm (or a refused connection) and what each kind of call
    must produce: ``once`` (an at-most-once send), ``dedup`` (an eSMS send), ``read``."""

    name: str
    faults: Callable[[str, str], list[Fault]]
    once: Expect
    dedup: Expect
    read: Expect
    every_attempt: bool = False
    refused: bool = False


def _one(kind: str, **kw: Any) -> Callable[[str, str], list[Fault]]:
    return lambda provider, route: [
        Fault(kind=kind, provider=provider, route=route, **kw)  # type: ignore[arg-type]
    ]


def _storm(provider: str, route: str) -> list[Fault]:
    # SpeedSMS's X-Rate-Limit-Reset is fractional; eSMS's and Fibo's Retry-After is whole
    # seconds (at least 1), so their storm is one 429 to keep the suite fast.
    times = 3 if provider == "speedsms" else 1
    return [Fault(kind="rate_limit", provider=provider, route=route, times=times, seconds=0.02)]


OK = Expect(None, 1)
READ_OK = Expect(None, 0, 2)
UNKNOWN = errors.OutcomeUnknown
MALFORMED = errors.MalformedResponse

CASES: list[Case] = [
    Case(
        "connection refused",
        lambda provider, route: [],
        once=Expect(errors.ConnectError, 0, 0),
        dedup=Expect(errors.ConnectError, 0, 0),
        read=Expect(errors.ConnectError, 0, 0),
        refused=True,
        every_attempt=True,
    ),
    Case(
        "dropped before processing",
        _one("drop_before", times=1),
        once=Expect(UNKNOWN, 0, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "dropped after processing",
        _one("drop_after", times=1),
        once=Expect(UNKNOWN, 1, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "dropped after processing, every attempt",
        _one("drop_after"),
        once=Expect(UNKNOWN, 1, 1),
        dedup=Expect(UNKNOWN, 1, 3),
        read=Expect(UNKNOWN, 0, 3),
        every_attempt=True,
    ),
    Case(
        "no answer (hang)",
        _one("hang", times=1),
        once=Expect(UNKNOWN, 0, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "no answer (hang), every attempt",
        _one("hang"),
        once=Expect(UNKNOWN, 0, 1),
        dedup=Expect(UNKNOWN, 0, 3),
        read=Expect(UNKNOWN, 0, 3),
        every_attempt=True,
    ),
    Case(
        "body cut off mid-way",
        _one("truncate", times=1),
        once=Expect(UNKNOWN, 1, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "HTTP 503 page",
        _one("status_5xx", times=1),
        once=Expect(MALFORMED, 0, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "HTTP 503 page, every attempt",
        _one("status_5xx"),
        once=Expect(MALFORMED, 0, 1),
        dedup=Expect(MALFORMED, 0, 3),
        read=Expect(MALFORMED, 0, 3),
        every_attempt=True,
    ),
    Case(
        "garbage body",
        _one("garbage", times=1),
        once=Expect(MALFORMED, 1, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "empty body",
        _one("empty", times=1),
        once=Expect(MALFORMED, 1, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
    Case(
        "429 storm within the wait budget",
        _storm,
        once=Expect(None, 1),
        dedup=Expect(None, 1),
        read=Expect(None, 0),
    ),
    Case(
        "429 past the wait budget",
        _one("rate_limit", seconds=30.0),
        once=Expect(errors.RateLimited, 0, 1),
        dedup=Expect(errors.RateLimited, 0, 1),
        read=Expect(errors.RateLimited, 0, 1),
        every_attempt=True,
    ),
    Case(
        "slow dribbled bytes",
        # 4 bytes a millisecond: Fibo's SOAP totals (~460 bytes) take ~0.15 s alone, well inside
        # TIMEOUT even when the whole suite shares the machine (at 2 ms they took ~0.25 s, and
        # under the suite's load once over 0.5 s: a read retried).
        _one("dribble", times=1, seconds=0.001),
        once=Expect(None, 1, 1),
        dedup=Expect(None, 1, 1),
        read=Expect(None, 0, 1),
    ),
    Case(
        "dribbled past the timeout",
        _one("dribble", times=1, seconds=0.1),
        once=Expect(UNKNOWN, 1, 1),
        dedup=Expect(None, 1, 2),
        read=READ_OK,
    ),
]


@dataclass(frozen=True)
class Path:
    """One client operation: the simulator route it uses and which kind of call it is."""

    name: str
    route: str
    kind: str  # "once", "dedup" or "read"
    call: Callable[[Any], Awaitable[Any]]
    bulk: bool = False


PATHS = per_provider(
    {
        "speedsms": [
            Path("send", "send", "once", lambda c: c.send(NUMBER, "hi")),
            Path("voice_otp", "voice", "once", lambda c: c.voice_otp(NUMBER, "1234")),
            Path("balance", "balance", "read", lambda c: c.balance()),
            Path("send_bulk", "send", "once", lambda c: c.send_bulk(BULK, "hi"), bulk=True),
        ],
        "esms": [
            Path("send", "send", "dedup", lambda c: c.send(NUMBER, "hi")),
            Path("send GET", "send", "dedup", lambda c: c.send(NUMBER, "hi", method="GET")),
            Path("voice_otp", "voice_otp", "once", lambda c: c.voice_otp(NUMBER, "1234")),
            Path(
                "call_template",
                "call_template",
                "once",
                lambda c: c.call_template(NUMBER, Sandbox.esms_call_template_id, ["a", "b"]),
            ),
            Path("balance", "balance", "read", lambda c: c.balance()),
            Path("brandnames", "brandnames", "read", lambda c: c.brandnames()),
            Path("sent_messages (POST)", "sent_data", "read", lambda c: _sent_today(c)),
            Path("send_bulk", "send", "dedup", lambda c: c.send_bulk(BULK, "hi"), bulk=True),
        ],
        "fibo": [
            Path("send", "send", "once", lambda c: c.send(NUMBER, "hi")),
            Path("balance", "balance", "read", lambda c: c.balance()),
            Path("daily_totals (SOAP)", "totals", "read", lambda c: c.daily_totals()),
            Path("send_bulk", "send", "once", lambda c: c.send_bulk(BULK, "hi"), bulk=True),
        ],
    }
)


async def _sent_today(client: Any) -> Any:
    from smsvn.sandbox._base import vn_now

    today = vn_now().date()
    return await client.sent_messages(today, today)


def _client(sb: Sandbox, provider: str, refused_port: int | None) -> Any:
    options: dict[str, Any] = {"retry": FAST_RETRY, "timeout": TIMEOUT}
    if refused_port is not None:
        return client_at(sb, provider, f"http://127.0.0.1:{refused_port}", **options)
    return sb.client(provider, **options)


async def _run_path(provider: str, path: Path, case: Case, refused_port: int | None) -> list[str]:
    """Run one path under the case's fault on a fresh sandbox; the list of what went wrong."""
    expect: Expect = getattr(case, path.kind)
    problems: list[str] = []
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        for fault in case.faults(provider, path.route):
            sb.faults.add(fault)
        async with _client(sb, provider, refused_port) as client:
            outcome: Any = None
            error: BaseException | None = None
            try:
                outcome = await path.call(client)
            except errors.SmsError as exc:
                error = exc
        requests = sb.requests[(provider, path.route)]
        no_duplicates(sb)
        if path.bulk:
            assert isinstance(outcome, BulkReport), error
            problems += _check_bulk(provider, path, case, expect, outcome, sb)
            return problems
        got = None if error is None else type(error)
        if got is not expect.error:
            problems.append(f"raised {got.__name__ if got else 'nothing'}: {error}")
        elif (
            case.refused
            and isinstance(error, errors.SmsError)
            and error.attempts != FAST_RETRY.max_retries + 1
        ):
            problems.append(f"ConnectError after {error.attempts} attempts, not 3")
        mine = [r for r in sb.outbox if r.phone == NUMBER]
        if path.kind != "read" and len(mine) != expect.outbox:
            problems.append(f"outbox holds {len(mine)}, not {expect.outbox}")
        if expect.requests is not None and requests != expect.requests and not case.refused:
            problems.append(f"{requests} requests, not {expect.requests}")
    return problems


def _check_bulk(
    provider: str, path: Path, case: Case, expect: Expect, report: BulkReport, sb: Sandbox
) -> list[str]:
    """A 3-number bulk: accounting, the outbox, and the faulted batches' error class."""
    problems: list[str] = []
    accounted(report, BULK)
    agrees_with_outbox(report, sb, provider)
    outbox = Counter(sb.outbox.phones(provider))
    if expect.error is None:
        if report.accepted != len(BULK) or set(outbox) != set(BULK):
            problems.append(f"bulk accepted {report.accepted}, outbox {dict(outbox)}")
        return problems
    # SpeedSMS sends the three in one request; eSMS and Fibo one request each.
    faulted = len(BULK) if case.every_attempt or provider == "speedsms" else 1
    errors_seen = [(len(b), type(e)) for b, e in report.failed + report.unknown]
    if sum(n for n, _ in errors_seen) != faulted or any(
        c is not expect.error for _, c in errors_seen
    ):
        problems.append(f"bulk errors {errors_seen}, expected {faulted} x {expect.error.__name__}")
    accepted_or_lost = report.accepted + (faulted if expect.outbox else 0)
    if sum(outbox.values()) != accepted_or_lost:
        problems.append(f"bulk outbox {dict(outbox)}, expected {accepted_or_lost} records")
    if expect.error is errors.RateLimited and not isinstance(report.aborted, errors.RateLimited):
        problems.append(f"a 429 past the budget did not stop the run: {report.aborted!r}")
    return problems


@pytest.mark.parametrize("provider", list(PATHS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_fault(case: Case, provider: str, closed_port: int, leak_check: None) -> None:
    paths = PATHS[provider]
    port = closed_port if case.refused else None
    results = await asyncio.gather(*(_run_path(provider, p, case, port) for p in paths))
    problems = [
        f"{p.name}: {msg}" for p, found in zip(paths, results, strict=True) for msg in found
    ]
    assert not problems, f"{provider} under '{case.name}':\n  " + "\n  ".join(problems)


# -- the README table ------------------------------------------------------------------------------


def fault_table() -> str:
    """The Markdown table of ``CASES`` (the README's "Reliability" section prints it)."""

    def cell(e: Expect, kind: str) -> str:
        name = "sent" if e.error is None else e.error.__name__
        return name if kind == "read" else f"{name}, outbox {e.outbox}"

    rows = [
        "| fault | at-most-once send | eSMS send (RequestId) | read |",
        "| --- | --- | --- | --- |",
    ]
    for c in CASES:
        read = "ok" if c.read.error is None else c.read.error.__name__
        rows.append(f"| {c.name} | {cell(c.once, 'once')} | {cell(c.dedup, 'dedup')} | {read} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(fault_table())


# -- Failover under every fault ------------------------------------------------------------------

FALLBACK = per_provider({"speedsms": "fibo", "esms": "speedsms", "fibo": "esms"})


async def _failover_once(primary: str, case: Case, refused_port: int | None) -> list[str]:
    """``Failover(primary, fallback).send`` with the fault on the primary's send route."""
    from smsvn.failover import NOTHING_SENT, Failover

    expect: Expect = case.dedup if primary == "esms" else case.once
    fallback = FALLBACK[primary]
    problems: list[str] = []
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        for fault in case.faults(primary, "send"):
            sb.faults.add(fault)
        first = _client(sb, primary, refused_port)
        second = sb.client(fallback, retry=FAST_RETRY, timeout=TIMEOUT)  # type: ignore[call-overload]
        error: errors.SmsError | None = None
        async with Failover(first, second) as failover:
            try:
                result = await failover.send(NUMBER, "hi")
            except errors.SmsError as exc:
                error = exc
        no_duplicates(sb)
        by_provider = Counter(r.provider for r in sb.outbox if r.phone == NUMBER)
        moved_on = expect.error is not None and issubclass(expect.error, NOTHING_SENT)
        if expect.error is None or moved_on:
            want = primary if expect.error is None else fallback
            if error is not None or result.provider != want:
                problems.append(f"expected a send through {want}, got {error or result.provider}")
            if by_provider != Counter({want: 1}):
                problems.append(f"outbox {dict(by_provider)}, expected one through {want}")
        else:
            if type(error) is not expect.error:
                problems.append(f"raised {type(error).__name__}, not {expect.error.__name__}")
            if by_provider[fallback] or by_provider[primary] != expect.outbox:
                problems.append(f"outbox {dict(by_provider)}: never failed over after a maybe")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_failover_never_sends_twice(case: Case, closed_port: int, leak_check: None) -> None:
    port = closed_port if case.refused else None
    primaries = list(FALLBACK)
    results = await asyncio.gather(*(_failover_once(p, case, port) for p in primaries))
    problems = [f"{p}: {msg}" for p, found in zip(primaries, results, strict=True) for msg in found]
    assert not problems, f"Failover under '{case.name}':\n  " + "\n  ".join(problems)
