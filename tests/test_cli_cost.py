"""One cost story: what the provider reports (SpeedSMS), else an estimate from segments and the
registered price, labelled so (eSMS, Fibo), always with its unit: in ``BulkReport``, in the
``smsvn`` command's summaries, and in ``smsvn send``. And the command's configuration from the
same ``SMSVN_<PROVIDER>_*`` variables as the clients' ``from_env``, which makes the README's
Fibo example work on a real (here: a separately served) provider, outside ``--sandbox``."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import msgspec
import pytest

from smsvn import providers
from smsvn.bulk import BulkReport
from smsvn.sandbox import Sandbox
from tests.test_cli import smsvn
from tests.test_cli_numbers import run

NUMBERS = [f"0912{i:06d}" for i in range(30)]
UCS2_TWO_SEGMENTS = "Ưu đãi " * 12  # 84 characters of UCS-2: 2 segments


@pytest.mark.parametrize("provider", ["speedsms", "esms", "fibo"])
async def test_bulk_report_costs_reported_or_estimated_with_a_unit(provider: str) -> None:
    registered = providers.get(provider)
    async with Sandbox(speedsms_rate_limit=None) as sb, sb.client(provider) as client:
        report = await client.send_bulk(NUMBERS, UCS2_TWO_SEGMENTS)
        spent = sb.balance(provider)
    assert report.accepted == 30
    assert report.unit == registered.unit
    if provider == "speedsms":  # SpeedSMS reports its price: nothing estimated
        assert report.cost == 30 * 2 * registered.price
        assert report.estimated_cost is None
    else:  # eSMS and Fibo report none: segments x the registered price
        assert report.cost == 0.0
        assert report.estimated_cost == 30 * 2 * registered.price
    assert spent  # the simulator charged something


def test_a_merged_report_takes_its_parts_estimates() -> None:
    def part(estimate: float | None, unit: str | None) -> BulkReport:
        return BulkReport(
            provider="p", sent=[], failed=[], unknown=[], invalid=[], skipped=[], duplicates=0,
            accepted=1, cost=0.0, segments=1, requests=1, taken=1, elapsed=0.0,
            estimated_cost=estimate, unit=unit,
        )  # fmt: skip

    old_style = BulkReport(
        provider="p", sent=[], failed=[], unknown=[], invalid=[], skipped=[], duplicates=0,
        accepted=0, cost=0.0, segments=0, requests=0, taken=0, elapsed=0.0,
    )  # fmt: skip
    assert old_style.estimated_cost is None and old_style.unit is None  # defaults: compatible
    merged = msgspec.structs.replace(old_style, parts=(part(350, "VND"), part(700, "VND")))
    assert (merged.estimated_cost, merged.unit) == (1050, "VND")
    mixed = msgspec.structs.replace(old_style, parts=(part(350, "VND"), part(1, "messages")))
    assert (mixed.estimated_cost, mixed.unit) == (None, None)  # no sum across units


@pytest.mark.parametrize(
    ("provider", "summary", "sent"),
    [
        ("speedsms", "; cost 7,500 VND\n", "\ncost 250 VND\n"),
        ("esms", "; estimated cost 10,500 VND (the provider reports no price)\n",
         "\nestimated cost 350 VND (the provider reports no price)\n"),
        ("fibo", "; estimated cost 30 messages (the provider reports no price)\n",
         "\nestimated cost 1 message (the provider reports no price)\n"),
    ],
)  # fmt: skip
def test_the_command_prints_one_cost_story(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    summary: str,
    sent: str,
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(NUMBERS).encode())))
    assert run(["bulk", "--sandbox", "-p", provider, "-m", "Khuyen mai", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert summary in out
    unit = providers.get(provider).unit
    assert re.search(rf"estimated cost [\d,]+ {unit[:-1] if unit == 'messages' else unit} \(", out)
    assert " per segment)" in out and "message a segment" not in out
    assert run(["send", "--sandbox", "-p", provider, "--to", NUMBERS[0], "-m", "Xin chao"]) == 0
    assert sent in capsys.readouterr().out


def test_price_flag_prices_the_estimate_and_the_summary_alike(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(NUMBERS).encode())))
    argv = ["bulk", "--sandbox", "-p", "esms", "-m", "Khuyen mai", "--no-progress"]
    argv += ["--price", "300"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "estimated cost 300 VND (300 VND per segment)" in out
    assert "; estimated cost 9,000 VND (the provider reports no price)" in out


# -- configuration from the environment, outside --sandbox -----------------------------------


def fibo_env(sb: Sandbox, **more: str) -> dict[str, str]:
    return {
        "SMSVN_FIBO_CLIENT_NO": sb.fibo_client_no,
        "SMSVN_FIBO_CLIENT_PASS": sb.fibo_client_pass,
        "SMSVN_FIBO_BASE_URL": sb.fibo_url,
        **more,
    }


async def test_the_readme_fibo_example_works_outside_the_sandbox_flag(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    (line,) = [x for x in readme.splitlines() if re.match(r"smsvn bulk +-p fibo", x)]
    argv = shlex.split(line.split("#")[0])[1:]
    assert "--sender" in argv  # Fibo needs its registered brandname on every send
    (tmp_path / "numbers.csv").write_text("SĐT,Tên\n0912345678,An\n0987654321,Bình\n")
    async with Sandbox() as sb:
        # The README's placeholder brandname becomes the one registered with the simulator;
        # the base URL comes from SMSVN_FIBO_BASE_URL, as Fibo.from_env() reads it.
        argv[argv.index("--sender") + 1] = sb.fibo_sender
        code, out, err = await smsvn(*argv, "--no-progress", env=fibo_env(sb), cwd=tmp_path)
        assert code == 0, err
        assert "fibo: 2 accepted" in out
        assert {r.sender for r in sb.outbox} == {sb.fibo_sender}
        assert (tmp_path / "outcomes.csv").exists()


async def test_the_sender_and_sms_type_come_from_the_environment(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("0912345678\n")
    bulk = ["bulk", "-p", "fibo", "-m", "Khuyen mai", "-f", str(numbers), "--no-progress"]
    async with Sandbox() as sb:
        code, _, err = await smsvn(*bulk, env=fibo_env(sb))
        assert code == 2 and "Fibo needs a sender" in err  # none given anywhere
        registered = fibo_env(sb, SMSVN_FIBO_SENDER=sb.fibo_sender)
        code, out, err = await smsvn(*bulk, env=registered)
        assert code == 0, err
        assert [r.sender for r in sb.outbox] == [sb.fibo_sender]
        code, out, err = await smsvn(*bulk, "--sender", "NOT-REGISTERED", env=registered)
        assert code == 1 and "brandname / service not declared" in out + err  # the flag won
        assert len(sb.outbox) == 1
        code, _, err = await smsvn(
            "balance", "-p", "speedsms", "--token", "x",
            env={"SMSVN_SPEEDSMS_SMS_TYPE": "three"},
        )  # fmt: skip
        assert code == 2 and "SMSVN_SPEEDSMS_SMS_TYPE must be a whole number" in err


# -- red-team findings ---------------------------------------------------------------------------


def test_fibos_estimate_counts_segments_as_fibo_sends_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    # "è" is GSM-7, but Fibo sends plain text only when it is ASCII: 91 of them go as Unicode,
    # 2 segments of UCS-2 (not 1 of GSM-7, which the estimate used to say).
    assert providers.get("fibo").client.count_segments("è" * 91).segments == 2
    assert providers.get("esms").client.count_segments("è" * 91).segments == 1
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(NUMBERS).encode())))
    assert run(["bulk", "--sandbox", "-p", "fibo", "-m", "è" * 91, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "91 characters, UCS-2: 2 segments a message each; estimated cost 2 messages" in out
    assert "; estimated cost 60 messages (the provider reports no price)" in out
    assert run(["send", "--sandbox", "-p", "fibo", "--to", NUMBERS[0], "-m", "è" * 91]) == 0
    out = capsys.readouterr().out
    assert "UCS-2: 2 segments a message" in out and "\nestimated cost 2 messages (" in out


@pytest.mark.parametrize("price", ["-1", "nan", "inf", "1e12", "abc"])
def test_a_price_that_is_no_price_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], price: str
) -> None:
    argv = ["send", "--sandbox", "-p", "esms", "--to", NUMBERS[0], "-m", "hi", "--price", price]
    assert run(argv) == 2
    assert "--price" in capsys.readouterr().err


def test_a_fractional_price_is_printed_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["send", "--sandbox", "-p", "esms", "--to", NUMBERS[0], "-m", "hi", "--price", "0.5"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "estimated cost 0.5 VND (0.5 VND per segment)" in out
    assert "\nestimated cost 0.5 VND (the provider reports no price)" in out
