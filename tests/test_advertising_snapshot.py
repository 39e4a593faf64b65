"""How old a Do-Not-Call snapshot may be (``Rules.snapshot_max_age``): numbers join the list
every day, so nothing is advertised under a stale copy, whether sent at once, scheduled, called
or run as a campaign (which stops claiming before the copy grows too old and says why); a
snapshot dated after today is refused. The simulator's outbox is the ground truth."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

import smsvn
from smsvn import advertising as ad
from smsvn.advertising import ComplianceError
from smsvn.advertising._rules import DAY, SNAPSHOT_MAX_AGE
from smsvn.errors import ValidationError
from smsvn.limits import RateLimit
from smsvn.providers.esms import ESMS
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY
from tests.test_advertising import AD, RULES, A, B, C, Clock, sent_to, vn
from tests.test_cli import campaign_args, fibo_env
from tests.test_cli import smsvn as run_cli

SNAPSHOT = "2026-11-30"
AGED = ad.Rules(advertiser="Shop ABC", brandname="SMSVN", snapshot_max_age=6.5 * DAY)
ENDS = vn(6, 12)
"""When a snapshot of 2026-11-30 stops serving under ``AGED``: in the hours advertising may go
out (the default, a week, ends at midnight, outside them)."""


class _Running(Clock):
    """A clock that runs with real time from ``start`` (a campaign's claiming is timed by it)."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._began = time.monotonic()

    def __call__(self) -> float:
        return super().__call__() + time.monotonic() - self._began


async def _guard(clock: Clock, rules: ad.Rules = AGED, **kw: object) -> ad.Guard:
    guard = ad.Guard(rules, clock=clock, **kw)  # type: ignore[arg-type]
    await guard.open()
    await guard.load_do_not_call([C], snapshot=SNAPSHOT)
    await guard.load_do_not_call([C], snapshot=SNAPSHOT, channel="call")
    for number in (A, B):
        await guard.consent(number, how="form", at=vn(1, 8))
        await guard.consent(number, how="form", channel="call", at=vn(1, 8))
    return guard


def test_the_default_is_a_week_and_bad_settings_are_refused() -> None:
    assert RULES.snapshot_max_age == SNAPSHOT_MAX_AGE == 7 * DAY
    for bad in (0, -1.0, float("nan"), float("inf"), True, "7", 11 * 365 * DAY):
        with pytest.raises(ValidationError, match="snapshot_max_age"):
            ad.Rules(advertiser="Shop ABC", snapshot_max_age=bad)  # type: ignore[arg-type]
    assert ad.Rules(advertiser="Shop ABC", snapshot_max_age=None).snapshot_max_age is None


async def test_nothing_goes_out_under_a_snapshot_past_its_age(sms: SpeedSMS, sb: Sandbox) -> None:
    clock = Clock(ENDS - timedelta(seconds=1))
    guard = await _guard(clock)
    try:
        result = await guard.send(sms, [A, C], AD, purpose="advertising")
        assert result.recipients == (A,)  # the last second it serves
        clock.at(ENDS)
        for attempt in (
            guard.send(sms, B, AD, purpose="advertising"),
            guard.check(B, AD, purpose="advertising"),
            guard.send(sms, B, "DKQC Shop ABC: soan Y gui 8079", purpose="registration"),
        ):
            with pytest.raises(ComplianceError) as caught:
                await attempt
            assert f"snapshot for sms (of {SNAPSHOT})" in str(caught.value)
            assert "2026-12-06 12:00" in str(caught.value)
        # Customer care and OTP are not advertising: the list's age is not theirs to keep.
        await guard.send(sms, B, "Ma OTP cua ban la 123456", purpose="otp")
        # A newer snapshot serves again.
        await guard.load_do_not_call([C], snapshot=date(2026, 12, 6))
        await guard.send(sms, B, AD, purpose="advertising")
    finally:
        await guard.aclose()
    assert sent_to(sb) == [A, B, B]


async def test_calls_keep_their_own_snapshots_age() -> None:
    clock = Clock(vn(7, 9))
    guard = await _guard(clock)
    try:
        await guard.load_do_not_call([C], snapshot="2026-12-06")  # the SMS list only
        with pytest.raises(ComplianceError, match="snapshot for call"):
            await guard.reserve_calls(A)
        await guard.load_do_not_call([C], snapshot="2026-12-06", channel="call")
        assert (await guard.reserve_calls(A)).allowed == (A,)
    finally:
        await guard.aclose()


async def test_a_scheduled_send_is_checked_at_its_delivery_time(sb: Sandbox) -> None:
    guard = await _guard(Clock(vn(6, 10)))
    async with sb.client("esms", rate_limit=None, retry=FAST_RETRY) as esms:
        try:
            with pytest.raises(ComplianceError, match="Do-Not-Call snapshot"):
                await guard.send(esms, A, AD, purpose="advertising", send_date=vn(7, 9))
            with pytest.raises(ComplianceError, match="Do-Not-Call snapshot"):
                await guard.check(A, AD, purpose="advertising", at=vn(7, 9))
            assert (await guard.check(A, AD, purpose="advertising", at=vn(6, 11))).allowed == (A,)
        finally:
            await guard.aclose()
    assert sent_to(sb) == []


async def test_the_age_limit_can_be_widened_or_lifted(sms: SpeedSMS, sb: Sandbox) -> None:
    for age in (30 * DAY, None):
        rules = ad.Rules(advertiser="Shop ABC", brandname="SMSVN", snapshot_max_age=age)
        guard = await _guard(Clock(vn(28, 10)), rules)
        try:
            await guard.send(sms, A, AD, purpose="advertising")
        finally:
            await guard.aclose()
    assert sent_to(sb) == [A, A]


async def test_a_snapshot_dated_after_today_is_refused() -> None:
    clock = Clock(vn(1, 23, 59))
    guard = ad.Guard(RULES, clock=clock)
    async with guard:
        with pytest.raises(ValidationError, match="after today"):
            await guard.load_do_not_call([C], snapshot="2026-12-02")
        # The old snapshot stays; today's (Vietnam time) is taken, in ISO form.
        loaded = await guard.load_do_not_call([C], snapshot="20261201")
        assert loaded.snapshot == "2026-12-01"


async def test_a_campaign_stops_claiming_before_its_snapshot_grows_old(
    tmp_path: Path, sb: Sandbox
) -> None:
    """The run claims nothing in the last ``_LEAD`` seconds of the snapshot's age: it stops,
    the rest pending, with the reason; nothing it sent left after the snapshot's end; a newer
    snapshot and a resume send the rest, once each."""
    numbers = [f"09{n:08d}" for n in range(1, 201)]
    clock = _Running(ENDS - timedelta(seconds=300 + 1.5))  # 1.5 s of claiming left
    async with (
        smsvn.Journal(str(tmp_path / "campaigns.db")) as journal,
        ad.Guard(AGED, journal, clock=clock, sleep=clock.sleep) as guard,
        sb.client("esms", rate_limit=RateLimit(requests=40, period=1.0), retry=FAST_RETRY) as esms,
    ):
        assert isinstance(esms, ESMS)
        await guard.load_do_not_call([C], snapshot=SNAPSHOT)
        for number in numbers:
            await guard.consent(number, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add(numbers, content=AD)
        report = await campaign.run(esms, guard=guard, concurrency=4)
        assert isinstance(report.aborted, ComplianceError), report.aborted
        assert "Do-Not-Call snapshot" in str(report.aborted)
        counts = await campaign.counts()
        assert 0 < counts.sent < 200 and counts.sent + counts.pending == 200, counts
        assert len(sb.outbox) == counts.sent
        # Run again under the same snapshot: refused before anything is claimed.
        with pytest.raises(ComplianceError):
            await campaign.run(esms, guard=guard)
        assert (await campaign.counts()).sent == counts.sent
        await guard.load_do_not_call([C], snapshot=date(2026, 12, 6))
        report = await campaign.run(esms, guard=guard, concurrency=8)
        assert report.aborted is None
    assert sorted(sent_to(sb)) == numbers  # each once


async def test_the_command_line_takes_a_max_age(tmp_path: Path) -> None:
    journal = tmp_path / "campaigns.db"
    numbers = [f"0912{i:06d}" for i in range(5)]
    (tmp_path / "numbers.txt").write_text("\n".join(numbers))
    (tmp_path / "dnc.txt").write_text(numbers[0])
    (tmp_path / "consents.txt").write_text("\n".join(numbers))
    old = (date.today() - timedelta(days=10)).isoformat()
    async with Sandbox(speedsms_rate_limit=None) as sb:
        for args in (
            ("dnc", "--journal", str(journal), "-f", str(tmp_path / "dnc.txt"),
             "--snapshot", old),
            ("consent", "--journal", str(journal), "--advertiser", "Shop ABC",
             "-f", str(tmp_path / "consents.txt"), "--how", "form"),
        ):  # fmt: skip
            code, _, err = await run_cli("advertising", *args)
            assert code == 0, err
        base = [
            *campaign_args(sb, journal, "-f", str(tmp_path / "numbers.txt")),
            "-m", AD, "--purpose", "advertising", "--advertiser", "Shop ABC",
            "--sms-window", "00:00-24:00",
        ]  # fmt: skip
        code, _, err = await run_cli(*base, env=fibo_env(sb))
        assert code == 2 and "Do-Not-Call snapshot" in err and old in err, err
        code, _, err = await run_cli(*base, "--snapshot-max-age", "soon", env=fibo_env(sb))
        assert code == 2 and "number of days" in err
        code, out, err = await run_cli(*base, "--snapshot-max-age", "30", env=fibo_env(sb))
        assert code == 0, err
        assert "promo: 4 sent, 0 failed, 0 unknown, 0 pending" in out
        assert sorted(r.phone for r in sb.outbox) == numbers[1:]
