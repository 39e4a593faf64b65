"""The ``smsvn`` command, run for real (subprocesses) against the simulator: output and exits."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsvn.sandbox import Sandbox


async def smsvn(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``python -m smsvn ARGS``; the event loop keeps serving the sandbox meanwhile."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smsvn",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), timeout=120
    )
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sb:
        yield sb


async def test_send_on_the_embedded_simulator() -> None:
    code, out, err = await smsvn(
        "send", "--sandbox", "-p", "speedsms", "--to", "0912 345 678", "--to", "123", "-m",
        "Mã OTP của bạn là 1234",
    )  # fmt: skip
    assert code == 0, err
    assert "UCS-2: 1 segment a message, 2 recipients" in out
    assert "estimated cost" in out
    assert "--strip-diacritics: 1 segment" in out
    assert "sent via speedsms" in out
    assert "recipients: 0912345678" in out
    assert "refused: 123" in out


@pytest.mark.parametrize("provider", ["speedsms", "esms", "fibo"])
async def test_balance_with_credentials_from_the_environment(
    sandbox: Sandbox, provider: str
) -> None:
    env = {
        "SMSVN_SPEEDSMS_TOKEN": sandbox.speedsms_token,
        "SMSVN_ESMS_API_KEY": sandbox.esms_api_key,
        "SMSVN_ESMS_SECRET_KEY": sandbox.esms_secret_key,
        "SMSVN_FIBO_CLIENT_NO": sandbox.fibo_client_no,
        "SMSVN_FIBO_CLIENT_PASS": sandbox.fibo_client_pass,
    }
    url = {"speedsms": sandbox.speedsms_url, "esms": sandbox.esms_url, "fibo": sandbox.fibo_url}
    code, out, err = await smsvn("balance", "-p", provider, "--base-url", url[provider], env=env)
    assert code == 0, err
    assert out.startswith(f"{provider}: ")
    assert ("messages" if provider == "fibo" else "VND") in out


async def test_wrong_credentials_exit_1_with_one_line(sandbox: Sandbox) -> None:
    code, out, err = await smsvn(
        "balance", "-p", "esms", "--base-url", sandbox.esms_url,
        "--api-key", "WRONG-KEY-SENTINEL", "--secret-key", "WRONG-SECRET-SENTINEL",
    )  # fmt: skip
    assert code == 1
    assert err.startswith("smsvn: error: esms.GetBalance")
    assert len(err.strip().splitlines()) == 1
    assert "SENTINEL" not in err + out
    assert "Traceback" not in err


async def test_connection_refused_exits_1(closed_port: int) -> None:
    code, _, err = await smsvn(
        "balance", "--token", "test-token-abc", "--base-url", f"http://127.0.0.1:{closed_port}"
    )
    assert code == 1
    assert "could not connect" in err


async def test_debug_shows_the_traceback(closed_port: int) -> None:
    code, _, err = await smsvn(
        "--debug",
        "balance",
        "--token",
        "test-token-abc",
        "--base-url",
        f"http://127.0.0.1:{closed_port}",
    )
    assert code == 1
    assert "Traceback" in err
    assert "ConnectError" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["balance", "-p", "esms"], "SMSVN_ESMS_API_KEY"),
        (["send", "--sandbox", "--to", "123", "-m", "hi"], "no valid recipient"),
        (["status", "--sandbox", "-p", "speedsms", "x"], "no status lookup"),
        (["send", "--sandbox", "--to", "0912345678"], "required: -m/--text"),
        (["sandbox", "--rate-limit", "fast"], "REQUESTS/SECONDS"),
    ],
)
async def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    code, _, err = await smsvn(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


async def test_status_of_an_unknown_esms_message_exits_1() -> None:
    code, _, err = await smsvn("status", "--sandbox", "-p", "esms", "no-such-id")
    assert code == 1
    assert "code 105" in err


async def test_fibo_status_prints_todays_totals() -> None:
    code, out, err = await smsvn("status", "--sandbox", "-p", "fibo")
    assert code == 0, err
    assert out.startswith("fibo today: 0 succeeded")


async def test_bulk_from_stdin_writes_a_csv_of_outcomes(tmp_path: Path) -> None:
    numbers = [f"0912{i:06d}" for i in range(150)] + ["0912000001", "12345", "# a comment", ""]
    report = tmp_path / "outcomes.csv"
    code, out, err = await smsvn(
        "bulk", "--sandbox", "-p", "speedsms", "-m", "Khuyen mai", "--csv", str(report),
        stdin="\n".join(numbers),
    )  # fmt: skip
    assert code == 0, err
    assert "GSM-7: 1 segment a message each" in out
    assert "150 accepted, 1 invalid, 1 duplicates, 0 failed" in out
    with report.open() as f:
        rows = list(csv.DictReader(f))
    outcomes = [row["outcome"] for row in rows]
    assert outcomes.count("sent") == 150
    assert outcomes.count("invalid") == 1
    assert outcomes.count("duplicate") == 1
    assert {row["number"] for row in rows if row["outcome"] == "sent"} == set(numbers[:150])


async def test_bulk_from_a_file_reads_the_first_csv_column(tmp_path: Path) -> None:
    source = tmp_path / "numbers.csv"
    source.write_text("\ufeff0987654321,Nguyen Van A\n+84 912 345 678,Tran Thi B\n")
    code, out, err = await smsvn(
        "bulk", "--sandbox", "-p", "fibo", "-m", "Chao ban", "--file", str(source),
        "--strip-diacritics",
    )  # fmt: skip
    assert code == 0, err
    assert "2 accepted" in out


async def test_bulk_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = await smsvn("bulk", "--sandbox", "-m", "x", "--file", str(tmp_path / "nope"))
    assert code == 2
    assert "No such file" in err


async def test_sandbox_command_serves_until_stopped(free_port: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsvn", "sandbox", "--port", str(free_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert f"listening on http://127.0.0.1:{free_port}" in line.decode()
        code, out, err = await smsvn(
            "balance", "--token", Sandbox.speedsms_token,
            "--base-url", f"http://127.0.0.1:{free_port}/speedsms/index.php",
        )  # fmt: skip
        assert code == 0, err
        assert out.startswith("speedsms: ")
    finally:
        process.terminate()
        await process.wait()


async def test_demo_runs_a_small_campaign_through_all_three() -> None:
    code, out, err = await smsvn("demo", "--numbers", "900", "--no-progress")
    assert code == 0, err
    for provider in ("speedsms", "esms", "fibo"):
        assert any(line.startswith(provider) for line in out.splitlines())
    assert "refused locally" in out
    assert "! outbox" not in out
