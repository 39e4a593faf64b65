"""``smsvn.advertising`` end to end against the simulator: the message rules, the hours (a
controlled clock across the edges), the Do-Not-Call snapshot, consent and refusals, the 24-hour
cap, the one registration, replies that refuse (confirmed once), records, and campaigns that
pause at 22:00 and go on at 07:00.

The simulator's outbox is the ground truth of what was sent."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import smsvn
from smsvn import advertising as ad
from smsvn import webhooks
from smsvn.advertising import Blocked, BlockedNumber, ComplianceError, OutsideWindow, Purpose, Rule
from smsvn.errors import ValidationError
from smsvn.models import InboundSms
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY
from tests.test_advertising_records import fresh_journal_url

AD = "[QC] Giam 20% cho khach hang than thiet den het 30/11. Tu choi: soan TC gui 8079"
CARE = "Don hang 1234 cua ban da duoc giao. Cam on quy khach."
A, B, C = "0912345678", "0987654321", "0338123456"


def vn(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=ad.VIETNAM)


class Clock:
    """The guard's clock, moved by hand; ``sleep`` moves it too (and records the waits)."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()
        self.slept: list[float] = []
        self.step = 0.0
        """Seconds added at every reading (time passing while a campaign sends)."""

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def at(self, moment: datetime) -> None:
        self.now = moment.timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(vn(1, 10))


RULES = ad.Rules(advertiser="Shop ABC", brandname="SMSVN")


@pytest.fixture(params=["memory", "sqlite"])
async def guard(
    clock: Clock, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ad.Guard]:
    """A guard in memory and in a SQLite journal (each store's own behaviour, PostgreSQL's
    included, is tried in tests/test_advertising_records.py; campaigns run on both journals
    below)."""
    async with contextlib.AsyncExitStack() as stack:
        journal = None
        if request.param != "memory":
            url = await stack.enter_async_context(
                fresh_journal_url(request.param, request, tmp_path)
            )
            journal = await stack.enter_async_context(smsvn.Journal(url))
        g = await stack.enter_async_context(
            ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep)
        )
        await g.load_do_not_call([C], snapshot="2026-11-30")
        for number in (A, B, C):
            await g.consent(number, how="form", at=vn(1, 8))
        yield g


def sent_to(sb: Sandbox) -> list[str]:
    return [record.phone for record in sb.outbox]


# -- the rules themselves ---------------------------------------------------------------------


def test_rules_are_checked_when_made() -> None:
    with pytest.raises(ValidationError, match="advertiser"):
        ad.Rules(advertiser=" ")
    with pytest.raises(ValidationError, match="at most 11"):
        ad.Rules(advertiser="x", brandname="ABCDEFGHIJKL")
    with pytest.raises(ValidationError, match="all digits"):
        ad.Rules(advertiser="x", brandname="8079")
    with pytest.raises(ValidationError, match="a year"):
        ad.Rules(advertiser="x", keep_for=100 * 86400.0)
    with pytest.raises(ValidationError, match="before its end"):
        ad.Window(time(22), time(7))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (vn(1, 6, 59, 59), False),
        (vn(1, 7), True),
        (vn(1, 21, 59, 59), True),
        (vn(1, 22), False),  # 22:00 itself: outside (the safe reading of an open question)
        (vn(1, 23, 30), False),
        (datetime(2026, 12, 1, 0, 30, tzinfo=UTC), True),  # 07:30 in Vietnam
        (datetime(2026, 12, 1, 15, 0, tzinfo=UTC), False),  # 22:00 in Vietnam
    ],
)
def test_the_sms_window_edges(moment: datetime, inside: bool) -> None:
    assert RULES.sms_window.contains(moment) is inside


def test_the_window_opens_next_morning() -> None:
    window = RULES.sms_window
    assert window.opens_at(vn(1, 22, 30)) == vn(2, 7)
    assert window.opens_at(vn(2, 3)) == vn(2, 7)
    assert window.opens_at(vn(2, 9)) == vn(2, 9)
    assert window.closes_at(vn(2, 9)) == vn(2, 22)
    assert window.closes_at(vn(1, 23)) == vn(2, 22)
    assert RULES.call_window.contains(vn(1, 16, 59)) and not RULES.call_window.contains(vn(1, 17))


async def test_a_message_that_breaks_the_rules_is_refused_before_anything(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    cases = {
        "Giam 20% ... Tu choi: TC": "starts with '[QC]' or '[AD]'",
        "[QC] Giam 20% cho ban": "how to refuse",
    }
    for content, problem in cases.items():
        with pytest.raises(ComplianceError, match=problem.replace("[", r"\[").replace("]", r"\]")):
            await guard.send(sms, A, content, purpose="advertising")
    with pytest.raises(ComplianceError, match="DKQC"):
        await guard.send(sms, A, "Dang ky nhan tin?", purpose=Purpose.REGISTRATION)
    # Accents and case do not hide the way to refuse.
    checked = await guard.check(
        A, "[QC] Uu dai lon. Từ chối: soạn Hủy gửi 8079", purpose="advertising"
    )
    assert checked.allowed == (A,)
    no_brand = ad.Guard(ad.Rules(advertiser="Shop ABC"))
    async with no_brand:
        await no_brand.load_do_not_call([], snapshot="2026-11-30")
        with pytest.raises(ComplianceError, match="brandname"):
            await no_brand.send(sms, A, AD, purpose="advertising")
    with pytest.raises(ValidationError, match="purpose"):
        await guard.send(sms, A, AD, purpose="promo")
    assert sent_to(sb) == []


async def test_without_a_do_not_call_snapshot_no_advertising_leaves(
    clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    async with ad.Guard(RULES, clock=clock) as guard:
        await guard.consent(A, how="form")
        with pytest.raises(ComplianceError, match="Do-Not-Call"):
            await guard.send(sms, A, AD, purpose="advertising")
        # Customer care and OTP are not advertising: straight through, nothing recorded.
        await guard.send(sms, A, CARE, purpose="customer_care")
        await guard.send(sms, A, "Ma OTP 123456", purpose=Purpose.OTP)
        assert [e async for e in guard.records()][1:] == []  # the consent only
    assert sent_to(sb) == [A, A]


# -- the hours ---------------------------------------------------------------------------------


async def test_outside_the_hours_nothing_is_sent(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    for moment in (vn(1, 22), vn(1, 6, 59, 59), vn(2, 3)):
        clock.at(moment)
        with pytest.raises(OutsideWindow) as caught:
            await guard.send(sms, A, AD, purpose="advertising")
        assert caught.value.opens_at == RULES.sms_window.opens_at(moment)
        assert caught.value.retry_after == (caught.value.opens_at - moment).total_seconds()
        assert isinstance(caught.value, smsvn.errors.RateLimited)
    clock.at(vn(1, 21, 59, 59))
    await guard.send(sms, A, AD, purpose="advertising")
    assert sent_to(sb) == [A]


async def test_a_scheduled_send_counts_at_its_time(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS
) -> None:
    clock.at(vn(1, 23))
    checked = await guard.check(A, AD, purpose="advertising", at=vn(2, 9))
    assert checked.allowed == (A,)
    with pytest.raises(OutsideWindow):
        await guard.check(A, AD, purpose="advertising", at=vn(2, 22, 30))
    with pytest.raises(ValidationError, match="aware"):
        await guard.check(A, AD, purpose="advertising", at=datetime(2026, 12, 2, 9))


# -- numbers kept from a message ---------------------------------------------------------------


async def test_do_not_call_refusals_and_consent(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox, tmp_path: Path
) -> None:
    D = "0701234567"  # no consent
    result = await guard.send(sms, [A, B, C, D, "123"], AD, purpose="advertising")
    assert result.recipients == (A, B)
    blocked = {str(n): n for n in result.invalid if isinstance(n, BlockedNumber)}
    assert blocked[C].rule is Rule.DO_NOT_CALL
    assert blocked[C].reason == "blocked: Do-Not-Call list (snapshot of 2026-11-30)"
    assert blocked[D].rule is Rule.NO_CONSENT
    assert "123" in result.invalid and "123" not in blocked
    # A refusal keeps B from the next one; a later consent lets B back in.
    clock.at(vn(1, 11))
    await guard.refuse(B)
    result = await guard.send(sms, [A, B], AD, purpose="advertising")
    assert result.recipients == (A,)
    assert [n.rule for n in result.invalid if isinstance(n, BlockedNumber)] == [Rule.REFUSED]
    clock.at(vn(1, 12))
    await guard.consent(B, how="message")
    assert (await guard.check(B, AD, purpose="advertising")).allowed == (B,)
    # A new snapshot replaces the old one.
    dnc = tmp_path / "dnc.csv"
    dnc.write_text(
        "phone;registered\r\n+84 912 345 678;2026-01-01\r\n701234567\r\n0701234568\r\n"
        "not-a-number\r\n\r\n"
    )
    loaded = await guard.load_do_not_call(dnc, snapshot=date(2026, 12, 1))
    assert (loaded.numbers, loaded.skipped, loaded.snapshot) == (3, 2, "2026-12-01")
    checked = await guard.check([A, C, D], AD, purpose="advertising")
    assert checked.allowed == (C,)  # D lost its leading 0 in a spreadsheet: still listed
    assert checked.blocked[0].reason == "blocked: Do-Not-Call list (snapshot of 2026-12-01)"
    # A file read wrong (most lines not numbers) never replaces the list.
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name|phone\nAn|0912345678\nBinh|0987654321\n")
    with pytest.raises(ValidationError, match="not phone numbers"):
        await guard.load_do_not_call(wrong, snapshot=date(2026, 12, 1))
    assert (
        (await guard.check([A], AD, purpose="advertising"))
        .blocked[0]
        .reason.endswith("(snapshot of 2026-12-01)")
    )
    # Every number kept: Blocked, and nothing sent.
    before = len(sb.outbox)
    with pytest.raises(Blocked) as caught:
        await guard.send(sms, [A], AD, purpose="advertising")
    assert [n.rule for n in caught.value.blocked] == [Rule.DO_NOT_CALL]
    assert len(sb.outbox) == before


async def test_the_24_hour_cap_rolls(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    for hour in (9, 10, 11):
        clock.at(vn(1, hour))
        await guard.send(sms, "84912345678", AD, purpose="advertising")
    clock.at(vn(1, 21))
    with pytest.raises(Blocked) as caught:
        await guard.send(sms, A, AD, purpose="advertising")
    assert caught.value.blocked[0].rule is Rule.CAP
    assert "3 advertising SMS" in caught.value.blocked[0].reason
    assert (await guard.check(A, AD, purpose="advertising")).blocked[0].rule is Rule.CAP
    clock.at(vn(2, 9, 0, 1))  # 24 hours after the first one: one is free again
    await guard.send(sms, A, AD, purpose="advertising")
    with pytest.raises(Blocked):
        await guard.send(sms, A, AD, purpose="advertising")
    assert sent_to(sb) == [A] * 4
    # Customer care never counts and is never capped.
    await guard.send(sms, A, CARE, purpose="customer_care")


async def test_a_send_that_sent_nothing_gives_its_cap_back(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    async with sb.client("speedsms", token="not-the-token", retry=FAST_RETRY) as refused:
        for _ in range(3):
            with pytest.raises(smsvn.errors.AuthenticationError):
                await guard.send(refused, A, AD, purpose="advertising")
    for _ in range(3):
        await guard.send(sms, A, AD, purpose="advertising")
    assert sent_to(sb) == [A] * 3
    assert [e.kind async for e in guard.records(kind="sent")] == ["sent"] * 3


async def test_one_registration_message_ever(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    D = "0701234567"
    text = "DKQC Shop ABC: soan Y gui 8079 de nhan uu dai"
    result = await guard.send(sms, [D, C], text, purpose="registration")  # no consent needed
    assert result.recipients == (D,)
    clock.at(vn(20, 10))
    await guard.load_do_not_call([C], snapshot=guard.now().date())  # the list of that day
    with pytest.raises(Blocked) as caught:
        await guard.send(sms, D, text, purpose="registration")
    assert caught.value.blocked[0].rule is Rule.REGISTERED
    assert sent_to(sb) == [D]


# -- replies that refuse -------------------------------------------------------------------


async def test_a_refusal_is_recorded_and_confirmed_once(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    reply = InboundSms(provider="speedsms", phone="84912345678", content="  huỷ ")
    assert await guard.inbound(reply, sms)
    assert await guard.inbound(InboundSms(provider="speedsms", phone=A, content="TC"), sms)
    assert not await guard.inbound(InboundSms(provider="speedsms", phone=A, content="OK"), sms)
    assert not await guard.inbound(InboundSms(provider="speedsms", phone=A, content="TCB"), sms)
    # A reply from a short code or a foreign number: nothing to suppress, no error.
    assert not await guard.inbound(InboundSms(provider="speedsms", phone="8079", content="TC"), sms)
    confirmations = [r for r in sb.outbox if r.phone == A]
    assert [r.content for r in confirmations] == [RULES.confirmation_text()]
    assert "[QC]" not in confirmations[0].content
    with pytest.raises(Blocked):
        await guard.send(sms, A, AD, purpose="advertising")
    # Consent again, refuse again: one more confirmation.
    clock.at(vn(2, 10))
    await guard.consent(A, how="reply")
    clock.at(vn(2, 11))
    assert await guard.inbound(InboundSms(provider="speedsms", phone=A, content="STOP"), sms)
    assert len([r for r in sb.outbox if r.phone == A]) == 2


async def test_the_webhook_receiver_suppresses_a_refusal_at_once(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    seen: list[Any] = []

    async def then(event: Any) -> None:
        seen.append(event)

    secret = webhooks.new_secret()
    app = webhooks.app(guard.handler(sms, then), secret=secret)
    async with TestClient(TestServer(app)) as http:
        answer = await http.post(
            f"/speedsms/{secret}", json={"type": "sms", "phone": B, "content": "Tu choi"}
        )
        assert answer.status == 200
        answer = await http.post(
            f"/speedsms/{secret}", json={"type": "sms", "phone": B, "content": "TC"}
        )
        assert answer.status == 200
    assert len(seen) == 2
    assert [r.phone for r in sb.outbox] == [B]  # "Tu choi" is not a refusal word; TC is
    result = await guard.send(sms, [A, B], AD, purpose="advertising")
    assert result.recipients == (A,)


# -- records ---------------------------------------------------------------------------------


async def test_records_are_exported(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, tmp_path: Path
) -> None:
    await guard.send(sms, [A, B], AD, purpose="advertising")
    await guard.inbound(InboundSms(provider="speedsms", phone=B, content="TC"), sms)
    kinds = [e.kind async for e in guard.records()]
    assert kinds.count("consent") == 3 and kinds.count("sent") == 2
    assert kinds.count("refusal") == 2 and kinds.count("confirmation") == 1  # sms and call
    path = tmp_path / "records.csv"
    assert await guard.export_csv(path) == len(kinds)
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["at"] == "2026-12-01T08:00:00+07:00"
    assert {r["kind"] for r in rows} == {"consent", "sent", "refusal", "confirmation"}
    # Pruning keeps a year.
    clock.at(vn(1, 10) + timedelta(days=364))
    assert await guard.prune() == 0
    clock.at(vn(1, 10) + timedelta(days=366))
    assert await guard.prune() == 4  # the sends, the confirmation, B's consent it refused
    left = sorted([(e.kind, e.channel, e.phone) async for e in guard.records()])
    assert left == sorted([
        ("consent", "sms", A), ("consent", "sms", C),  # in force: kept however old
        ("refusal", "call", B), ("refusal", "sms", B),
    ])  # fmt: skip


# -- campaigns -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[smsvn.Journal]:
    async with (
        fresh_journal_url(request.param, request, tmp_path) as url,
        smsvn.Journal(url) as j,
    ):
        yield j


async def test_a_campaign_pauses_at_22_and_goes_on_at_07(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    numbers = [f"09{n:08d}" for n in range(1, 1001)]
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call(numbers[:10], snapshot="2026-11-30")
        for number in numbers[:-5]:
            await guard.consent(number, how="form")
        campaign = await journal.campaign("promo")
        await campaign.add(numbers, content=AD)
        clock.at(vn(1, 21))
        clock.step = 15 * 60.0  # a quarter of an hour passes at every reading of the clock
        report = await campaign.run(sms, guard=guard, concurrency=1)
        clock.step = 0.0
        sent = [e async for e in guard.records(kind="sent")]
    assert clock.slept, "it never waited for the morning"
    hours = {datetime.fromtimestamp(e.at, ad.VIETNAM).hour for e in sent}
    assert hours and all(7 <= h < 22 for h in hours), hours
    assert any(h < 12 for h in hours) and any(h >= 21 for h in hours)  # before and after
    counts = await campaign.counts()
    assert counts.sent == 985 and counts.invalid == 15 and counts.pending == 0
    assert report.accepted == 985
    assert sorted(sent_to(sb)) == sorted(numbers[10:-5])
    reasons = {r.error async for r in campaign.recipients(state="invalid")}
    assert reasons == {
        "blocked: Do-Not-Call list (snapshot of 2026-11-30)",
        "blocked: no consent recorded",
    }


async def test_an_advertising_campaign_needs_a_guard(
    journal: smsvn.Journal, sms: SpeedSMS, sb: Sandbox
) -> None:
    campaign = await journal.campaign("promo")
    await campaign.add([A], content=AD)
    with pytest.raises(ValidationError, match="guard"):
        await campaign.run(sms, purpose="advertising")
    with pytest.raises(ValidationError, match="purpose"):
        await campaign.run(sms, purpose="spam")
    async with ad.Guard(RULES) as guard:  # no snapshot: refused before anything
        with pytest.raises(ComplianceError):
            await campaign.run(sms, guard=guard)
    assert sent_to(sb) == []
    report = await campaign.run(sms, purpose="customer_care")
    assert report.accepted == 1


# -- two processes, one cap ------------------------------------------------------------------

_CHILD = """
import asyncio, sys
import smsvn
from smsvn import advertising as ad

async def main(path, url, token, now, numbers):
    rules = ad.Rules(advertiser="Shop ABC", brandname="SMSVN")
    async with smsvn.Journal(path) as journal, ad.Guard(rules, journal, clock=lambda: now) as guard:
        async with smsvn.SpeedSMS(token, base_url=url, rate_limit=None, sms_type=3,
                                  sender="SMSVN") as sms:
            for _ in range(3):
                for number in numbers:
                    try:
                        await guard.send(sms, number, sys.argv[6], purpose="advertising")
                    except ad.Blocked:
                        pass

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]),
                 sys.argv[5].split(",")))
"""


async def test_two_processes_share_the_cap(tmp_path: Path, sb: Sandbox) -> None:
    """Two processes advertise to the same numbers at once through one journal: each number
    gets its 3 messages of the day, not 3 from each."""
    path = str(tmp_path / "shared.db")
    numbers = [f"09{n:08d}" for n in range(1, 21)]
    now = vn(1, 10).timestamp()
    async with smsvn.Journal(path) as journal, ad.Guard(RULES, journal) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        for number in numbers:
            await guard.consent(number, how="form", at=vn(1, 8))
    options = sb.client_options("speedsms")
    args = [path, options["base_url"], options["token"], str(now), ",".join(numbers), AD]
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, *args) for _ in range(2)
    ]
    codes = await asyncio.gather(*(child.wait() for child in children))
    assert codes == [0, 0]
    per_number = Counter(sent_to(sb))
    assert per_number == dict.fromkeys(numbers, 3)


async def test_a_campaign_message_that_breaks_the_rules_is_never_sent(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """``Message`` items carry their own texts: each is checked as its batch leaves."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        for number in (A, B):
            await guard.consent(number, how="form")
        campaign = await journal.campaign("mixed")
        await campaign.add([smsvn.Message(to=A, content=AD), smsvn.Message(to=B, content=CARE)])
        await campaign.run(sms, guard=guard)
    assert sent_to(sb) == [A]
    failed = [r async for r in campaign.recipients(state="failed")]
    assert [r.phone for r in failed] == [B]
    assert "[QC]" in (failed[0].error or "")


async def test_advertising_calls_are_reserved_within_their_rules(
    guard: ad.Guard, clock: Clock
) -> None:
    """Calls: 08:00-17:00, one a number a day, their own Do-Not-Call list."""
    with pytest.raises(ComplianceError, match="Do-Not-Call snapshot for call"):
        await guard.reserve_calls([A, B])
    await guard.load_do_not_call([B], snapshot="2026-11-29", channel="call")
    for number in (A, B):
        await guard.consent(number, how="form", channel="call", at=vn(1, 8))
    clock.at(vn(1, 7, 59))
    with pytest.raises(OutsideWindow):
        await guard.reserve_calls([A, B])
    clock.at(vn(1, 16, 59))
    checked = await guard.reserve_calls(["84912345678", B, C])
    assert checked.allowed == ("84912345678",)
    # B is on the calls' list; C consented to SMS only (consent is per channel).
    assert {n.rule for n in checked.blocked} == {Rule.DO_NOT_CALL, Rule.NO_CONSENT}
    again = await guard.reserve_calls([A])
    assert again.allowed == () and again.blocked[0].rule is Rule.CAP
    assert "1 advertising calls" in again.blocked[0].reason
    clock.at(vn(2, 17))
    with pytest.raises(OutsideWindow):
        await guard.reserve_calls([A])
    clock.at(vn(2, 16, 59, 1))
    assert (await guard.reserve_calls([A])).allowed == (A,)


async def test_a_reply_to_the_registration_message_records_consent(
    clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """Art. 11(2): a reply to the registration SMS is a consent; a "Y" from a number that
    never got one is not."""
    D, E = "0701234567", "0701234568"
    rules = ad.Rules(advertiser="Shop ABC", brandname="SMSVN", consent_words=("Y", "DONG Y"))
    with pytest.raises(ValidationError, match="both refuse and consent"):
        ad.Rules(advertiser="x", consent_words=("TC",))
    async with ad.Guard(rules, clock=clock) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.send(sms, D, "DKQC Shop ABC: soan Y gui 8079", purpose="registration")
        assert await guard.inbound(InboundSms(provider="speedsms", phone=D, content="y"), sms) == (
            "consent"
        )
        assert (
            await guard.inbound(InboundSms(provider="speedsms", phone=E, content="Y"), sms) is None
        )
        result = await guard.send(sms, [D, E], AD, purpose="advertising")
        assert result.recipients == (D,)
        assert [n.rule for n in result.invalid if isinstance(n, BlockedNumber)] == [Rule.NO_CONSENT]
        consents = [e async for e in guard.records(kind="consent")]
        assert [(e.phone, (e.detail or "").split(":")[0]) for e in consents] == [(D, "reply")]


async def test_one_number_written_twice_takes_one_share_of_the_cap(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    await guard.send(sms, [A, "+84 912 345 678"], AD, purpose="advertising")
    assert sent_to(sb) == [A]
    assert len([e async for e in guard.records(kind="sent")]) == 1
