"""``smsvn advertising`` and ``smsvn campaign run --purpose advertising``, as a user runs them
(the real command in its own process, against the simulator)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from smsvn.advertising import VIETNAM
from smsvn.sandbox import Sandbox
from tests.test_cli import campaign_args, fibo_env, smsvn

AD = "[QC] Giam 20% den het 30/11. Tu choi: soan TC gui 8079"
ALL_DAY = ("--sms-window", "00:00-24:00")
"""The hours widened to the whole day, so that the test passes at any hour of it (the hours
themselves are tested with a controlled clock in tests/test_advertising.py)."""
TODAY = datetime.now(VIETNAM).date().isoformat()
"""The Do-Not-Call snapshot's date: today's, which serves whenever the test runs."""


async def test_an_advertising_campaign_from_the_command_line(tmp_path: Path) -> None:
    journal = tmp_path / "campaigns.db"
    numbers = [f"0912{i:06d}" for i in range(30)]
    (tmp_path / "numbers.txt").write_text("\n".join([*numbers, "not-a-number"]))
    (tmp_path / "dnc.csv").write_text("phone\n" + "\n".join(numbers[:3]) + "\n")
    (tmp_path / "consents.txt").write_text("\n".join(numbers[:25]))
    async with Sandbox(speedsms_rate_limit=None) as sb:
        code, out, err = await smsvn(
            "advertising", "dnc", "--journal", str(journal), "-f", str(tmp_path / "dnc.csv"),
            "--snapshot", TODAY,
        )  # fmt: skip
        assert code == 0, err
        assert f"Do-Not-Call (sms) snapshot of {TODAY}: 3 numbers, 1 lines skipped" in out
        code, out, err = await smsvn(
            "advertising", "consent", "--journal", str(journal), "--advertiser", "Shop ABC",
            "-f", str(tmp_path / "consents.txt"), "--how", "form",
        )  # fmt: skip
        assert code == 0, err
        assert "25 consents recorded (form), 0 lines skipped" in out

        base = campaign_args(sb, journal, "-f", str(tmp_path / "numbers.txt"))
        # No advertiser, a text without its label: refused, nothing sent.
        code, _, err = await smsvn(*base, "-m", AD, "--purpose", "advertising", env=fibo_env(sb))
        assert code == 2 and "--advertiser" in err
        code, _, err = await smsvn(
            *base, "-m", "Giam 20%. Tu choi: TC", "--purpose", "advertising",
            "--advertiser", "Shop ABC", *ALL_DAY, env=fibo_env(sb),
        )  # fmt: skip
        assert code == 2 and "[QC]" in err
        assert len(sb.outbox) == 0

        args = [*base, "-m", AD, "--purpose", "advertising", "--advertiser", "Shop ABC", *ALL_DAY]
        code, out, err = await smsvn(*args, env=fibo_env(sb))
        assert code == 0, err
        assert "promo: 22 sent, 0 failed, 0 unknown, 0 pending" in out
        assert sorted(r.phone for r in sb.outbox) == numbers[3:25]
        code, out, _ = await smsvn(
            "campaign", "export", "--journal", str(journal), "--name", "promo",
            "--csv", "-", "--state", "invalid",
        )  # fmt: skip
        reasons = {row["phone"]: row["detail"] for row in csv.DictReader(out.splitlines())}
        assert reasons[numbers[0]] == f"blocked: Do-Not-Call list (snapshot of {TODAY})"
        assert reasons[numbers[29]] == "blocked: no consent recorded"

        code, out, err = await smsvn(
            "advertising", "refuse", "--journal", str(journal), "--advertiser", "Shop ABC",
            "--phone", numbers[5],
        )  # fmt: skip
        assert code == 0, err
        export = tmp_path / "records.csv"
        code, out, err = await smsvn(
            "advertising", "export", "--journal", str(journal), "--advertiser", "Shop ABC",
            "--csv", str(export),
        )  # fmt: skip
        assert code == 0, err
        with export.open(encoding="utf-8") as handle:
            kinds = [row["kind"] for row in csv.DictReader(handle)]
        assert kinds.count("consent") == 25 and kinds.count("sent") == 22
        assert kinds.count("refusal") == 2  # sms and calls
