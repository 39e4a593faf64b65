"""The ``smsvn`` command, run for real (subprocesses) against the simulator: output and exits;
and, in this process, with a toy fourth provider registered: the command and the demo take
everything provider-specific from the registry."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Unpack

import pytest
from aiohttp import web

from smsvn import providers
from smsvn._demo import _simulated_clients, run_demo
from smsvn.bulk import BatchSender
from smsvn.cli import main
from smsvn.models import Balance, DailyTotals, SendResult
from smsvn.providers import Credential, Provider
from smsvn.providers._base import BaseClient, ClientOptions, split_recipients
from smsvn.sandbox import Fault, Sandbox
from smsvn.sandbox._base import Handler, Route


async def smsvn(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int, str, str]:
    """Run ``python -m smsvn ARGS`` (in ``cwd``); the event loop keeps serving the sandbox
    meanwhile."""
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
        cwd=cwd,
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
    # The estimate counts what will be sent: the one valid number ("123" is refused).
    assert "UCS-2: 1 segment a message, 1 recipient;" in out
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
    assert re.search(r"^speedsms: \d+ done, \d+ accepted, ", out, re.M)  # progress, plain
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
    code, out, err = await smsvn(
        "demo", "--numbers", "900", "--crash-numbers", "1800", "--no-progress"
    )
    assert code == 0, err
    part_one, _, part_two = out.partition("part two")
    table = {
        line.split()[0]: line.split()
        for line in part_one.splitlines()
        if line.startswith(("speedsms ", "esms ", "fibo "))
    }
    assert set(table) == {"speedsms", "esms", "fibo"}
    header = next(line.split() for line in part_one.splitlines() if line.startswith("provider"))
    assert header[3:6] == ["invalid", "repeats", "retried"]
    counted = {p: [int(c.replace(",", "")) for c in row[2:7]] for p, row in table.items()}
    for accepted, invalid, repeats, retried, failed in counted.values():
        assert accepted + invalid + repeats == 300
        assert retried >= 3 and failed == 0  # the injected faults, survived
    assert sum(c[1] for c in counted.values()) > 0  # invalid numbers and repeats, told apart
    assert sum(c[2] for c in counted.values()) > 0
    # Cost: SpeedSMS's as reported, the others estimated (~) from segments; both with a unit.
    assert table["speedsms"][9:11] == [f"{int(table['speedsms'][2]) * 250:,}", "VND"]
    assert table["esms"][9:11] == [f"~{int(table['esms'][2]) * 350:,}", "VND"]
    assert table["fibo"][9:11] == [f"~{int(table['fibo'][2])}", "messages"]
    assert "the simulator's balances fell by exactly these amounts" in part_one
    assert "with nothing failed or unknown and nobody sent twice" in part_one
    assert "! outbox" not in out
    assert " done, " not in out  # --no-progress: no progress lines either
    # Part two: each runner really killed, and the outbox shows nobody got a message twice.
    for provider in ("speedsms", "esms", "fibo"):
        assert f"  {provider}: killed (SIGKILL)" in part_two
    rows = {
        line.split()[0]: line.split()
        for line in part_two.splitlines()
        if line.startswith(("speedsms ", "esms ", "fibo "))
    }
    assert set(rows) == {"speedsms", "esms", "fibo"}
    assert all(row[-1] == "0" for row in rows.values())  # sent twice
    assert rows["esms"][3] == "0"  # unknown: resent under its RequestId instead


# -- a toy fourth provider, registered by the tests below ---------------------------------------
# Everything the CLI and the demo know of a provider comes from the registry: a provider they
# have never heard of must get its -p choice, its credential flag and variable, its price and
# unit, its sender option and its status behaviour, and a row in the demo's table.

TOY = "toysms"
TOY_ENV = "SMSVN_TOY_KEY"
TOY_SIMULATOR_KEY = "toy-simulator-key"


class ToyClient(BaseClient):
    """A client that sends nowhere: it accepts every valid number and remembers how it was
    built, so that a test can see what the command line gave it."""

    provider: ClassVar[str] = TOY
    batch_size: ClassVar[int] = 10
    price: ClassVar[float | None] = 2.0
    unit: ClassVar[str | None] = "messages"
    built: ClassVar[list[ToyClient]] = []

    def __init__(
        self,
        toy_key: str,
        *,
        base_url: str = "https://toy.invalid",
        sender: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.toy_key = toy_key
        self.sender = sender
        self.options = dict(options)
        super().__init__(base_url=base_url, account=toy_key, secrets=(toy_key,), options=options)
        ToyClient.built.append(self)

    async def send(self, to: str | Sequence[str], content: str) -> SendResult:
        """Accept the valid numbers of ``to``."""
        numbers = split_recipients(to)
        return SendResult(
            provider=TOY,
            message_id="toy-1",
            recipients=tuple(numbers.valid),
            invalid=tuple(numbers.invalid),
        )

    async def balance(self) -> Balance:
        """A fixed balance, counted in messages."""
        return Balance(provider=TOY, amount=42.0, currency=None)

    def batch_sender(self, *, content: str | None) -> BatchSender:
        """Batches are accepted whole."""

        async def send_batch(numbers: list[str], text: str, request_id: str | None) -> SendResult:
            return SendResult(provider=TOY, message_id=request_id, recipients=tuple(numbers))

        return send_batch


class ToyTotalsClient(ToyClient):
    """The toy client, able to count today's messages (as Fibo's can)."""

    async def daily_totals(self) -> DailyTotals:
        """Fixed counts."""
        return DailyTotals(provider=TOY, success=3, failed=1, pending=0)


class ToySimulator:
    """The toy's simulator: it serves nothing (its client sends nowhere), but gives the sandbox
    what every simulator gives it, so that the sandbox and the demo take the toy in."""

    provider: ClassVar[str] = TOY
    default_balance: ClassVar[float] = 1000.0
    default_prices: ClassVar[Mapping[str, float]] = {TOY: 2.0}

    def __init__(self, engine: object, settings: object) -> None:
        self.engine = engine

    def routes(self) -> list[Route]:
        return []

    def fallbacks(self) -> list[tuple[str, str, Handler]]:
        return []

    def too_many(self, seconds: float) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": f"{seconds:g}"})

    def client_options(self, root: str) -> dict[str, Any]:
        return {"toy_key": TOY_SIMULATOR_KEY, "base_url": f"{root}/{TOY}"}

    def describe(self, root: str) -> list[str]:
        return [f"base_url={root}/{TOY}  toy_key={TOY_SIMULATOR_KEY}"]


@pytest.fixture
def register_toy() -> Iterator[Callable[[type[ToyClient]], Provider]]:
    """Registers the toy provider with the given client class; unregisters it afterwards."""
    ToyClient.built.clear()

    def register(client: type[ToyClient]) -> Provider:
        return providers.register(
            Provider(
                name=TOY,
                title="ToySMS",
                client=client,
                credentials=(Credential(name="toy_key", env=TOY_ENV, help="ToySMS key"),),
                price=2.0,  # the client's own price and unit, as the real providers write them
                unit="messages",
                simulator=f"{__name__}:ToySimulator",
                sender_option="sender",
            )
        )

    try:
        yield register
    finally:
        providers.unregister(TOY)
        ToyClient.built.clear()


def run(argv: list[str]) -> int:
    """``smsvn ARGV`` in this process (where the toy is registered): the exit code, whether
    main returns it or exits with it (argparse's --help, usage errors)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_help_lists_the_registered_providers_and_their_credentials(
    register_toy: Callable[[type[ToyClient]], Provider],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one help entry a line
    register_toy(ToyClient)
    assert run(["--help"]) == 0
    top = capsys.readouterr().out
    assert "through SpeedSMS, eSMS, Fibo and ToySMS." in top
    assert f"SMSVN_FIBO_CLIENT_PASS, {TOY_ENV} (or the flags" in top

    assert run(["send", "--help"]) == 0
    send = capsys.readouterr().out
    assert "{speedsms,esms,fibo,toysms}" in send
    assert re.search(rf"--toy-key TOY_KEY +ToySMS key \(or \${TOY_ENV}\)\n", send)
    assert "--client-pass CLIENT_PASS" in send
    assert "SpeedSMS / Fibo / ToySMS sender" in send

    providers.unregister(TOY)
    assert run(["send", "--help"]) == 0
    without = capsys.readouterr().out
    assert "toysms" not in without
    assert "--toy-key" not in without
    assert "{speedsms,esms,fibo}" in without


def test_a_registered_provider_is_built_from_its_flags_and_variables(
    register_toy: Callable[[type[ToyClient]], Provider],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_toy(ToyClient)
    monkeypatch.setenv(TOY_ENV, "key-from-the-environment")
    send = ["send", "-p", TOY, "--to", "0912345678", "-m", "hi", "--timeout", "5"]
    assert run([*send, "--sender", "TOY", "--brandname", "NOT-MINE"]) == 0
    out = capsys.readouterr().out
    assert "estimated cost 2 messages (2 messages per segment)" in out
    assert "\nestimated cost 2 messages (the provider reports no price)\n" in out
    assert "sent via toysms: message id toy-1" in out
    (client,) = ToyClient.built
    assert client.toy_key == "key-from-the-environment"
    assert client.sender == "TOY"
    assert client.options == {"timeout": 5.0}  # --brandname is eSMS's, not the toy's

    assert run(["balance", "-p", TOY, "--toy-key", "key-from-the-flag"]) == 0
    assert capsys.readouterr().out == "toysms: 42 messages\n"
    assert ToyClient.built[-1].toy_key == "key-from-the-flag"


def test_a_missing_credential_names_its_flag_and_variable(
    register_toy: Callable[[type[ToyClient]], Provider],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_toy(ToyClient)
    monkeypatch.delenv(TOY_ENV, raising=False)
    assert run(["balance", "-p", TOY]) == 2
    err = capsys.readouterr().err
    assert err == f"smsvn: error: no --toy-key given and ${TOY_ENV} is not set (or use --sandbox)\n"
    assert ToyClient.built == []


def test_status_follows_what_the_client_offers(
    register_toy: Callable[[type[ToyClient]], Provider],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOY_ENV, "toy")
    register_toy(ToyClient)
    assert run(["status", "-p", TOY, "some-id"]) == 2
    assert capsys.readouterr().err == "smsvn: error: ToySMS has no status lookup\n"
    assert ToyClient.built == []  # refused before any client was built

    providers.unregister(TOY)
    register_toy(ToyTotalsClient)
    assert run(["status", "-p", TOY]) == 0
    assert capsys.readouterr().out == "toysms today: 3 succeeded, 1 failed, 0 pending\n"


async def test_the_demo_takes_in_a_provider_it_does_not_know(
    register_toy: Callable[[type[ToyClient]], Provider],
) -> None:
    register_toy(ToyClient)
    out = io.StringIO()
    code = await run_demo(numbers=400, seed=3, progress=False, out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "split between SpeedSMS, eSMS, Fibo and ToySMS" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(
        ("speedsms ", "esms ", "fibo ", "toysms "))}  # fmt: skip
    assert set(rows) == {"speedsms", "esms", "fibo", TOY}
    assert rows[TOY][1] == "100"  # a quarter of the campaign
    # The toy reports no price: its cost is estimated at its client's price (2 a segment)...
    assert rows[TOY][9:11] == [f"~{int(rows[TOY][2]) * 2}", "messages"]
    # ... but its client sends nowhere: nothing reached the simulator's outbox, and its balance
    # did not fall, which the demo points out.
    assert "! outbox holds 0 for toysms" in text
    assert "the simulator's balances fell by toysms 0 messages" in text
    assert "! outbox holds 0 for speedsms" not in text


async def test_the_demo_leaves_out_a_provider_the_sandbox_does_not_simulate(
    register_toy: Callable[[type[ToyClient]], Provider],
) -> None:
    async with Sandbox() as sb:
        register_toy(ToyClient)  # after the sandbox was made: it does not simulate the toy
        clients, missing = _simulated_clients(sb)
        try:
            assert [provider.name for provider, _ in clients] == ["speedsms", "esms", "fibo"]
            assert [provider.name for provider in missing] == [TOY]
        finally:
            for _, client in clients:
                await client.aclose()


# -- campaign: a durable campaign from the command line -------------------------------------------


def fibo_env(sb: Sandbox) -> dict[str, str]:
    return {
        "SMSVN_FIBO_CLIENT_NO": sb.fibo_client_no,
        "SMSVN_FIBO_CLIENT_PASS": sb.fibo_client_pass,
    }


def campaign_args(sb: Sandbox, journal: Path, *rest: str) -> list[str]:
    return [
        "campaign", "run", "--journal", str(journal), "--name", "promo", "-p", "fibo",
        "--base-url", sb.fibo_url, "--sender", "SMSVN", "--no-progress", "--rate-limit", "off",
        *rest,
    ]  # fmt: skip


async def test_campaign_run_again_resumes_and_sends_nothing_twice(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("\n".join([*(f"0912{i:06d}" for i in range(40)), "0912000001", "x1"]))
    journal = tmp_path / "campaigns.db"
    async with Sandbox(speedsms_rate_limit=None) as sb:
        args = campaign_args(sb, journal, "-f", str(numbers), "-m", "Khuyen mai")
        code, out, err = await smsvn(*args, env=fibo_env(sb))
        assert code == 0, err
        assert "promo: 42 read: 40 new, 0 already in the campaign, 1 invalid, 1 duplicates" in out
        assert "promo: 40 sent, 0 failed, 0 unknown, 0 pending" in out
        assert len(sb.outbox) == 40
        code, out, err = await smsvn(*args, env=fibo_env(sb))
        assert code == 0, err
        assert "0 new, 42 already in the campaign" in out
        assert len(sb.outbox) == 40  # the same command again sends nothing
        code, out, err = await smsvn(
            "campaign", "run", "--journal", str(journal), "--name", "promo", "-p", "fibo",
            "--sandbox", "-f", str(numbers), "-m", "Another text",
        )  # fmt: skip
        assert code == 2 and "started with another text" in err
        code, out, _ = await smsvn("campaign", "status", "--journal", str(journal))
        assert out.startswith("promo: 40 sent, 0 failed, 0 unknown, 0 pending, 0 in flight, 1 "
                              "invalid, 1 duplicates (42 inputs)")  # fmt: skip
        export = tmp_path / "sent.csv"
        code, out, _ = await smsvn(
            "campaign", "export", "--journal", str(journal), "--name", "promo",
            "--csv", str(export), "--state", "sent",
        )  # fmt: skip
        assert code == 0 and "40 inputs written" in out
        with export.open() as handle:
            exported = list(csv.DictReader(handle))
        assert {r["phone"] for r in exported} == {f"0912{i:06d}" for i in range(40)}
        assert all(r["provider"] == "fibo" and r["attempts"] == "1" for r in exported)


async def test_campaign_unknowns_are_shown_and_resolved(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(f"0912{i:06d}" for i in range(10)))
    journal = tmp_path / "campaigns.db"
    async with Sandbox(speedsms_rate_limit=None) as sb:
        sb.faults.add(Fault(kind="drop_after", provider="fibo", route="send", times=2))
        args = campaign_args(sb, journal, "-f", str(numbers), "-m", "Khuyen mai")
        code, out, err = await smsvn(*args, env=fibo_env(sb))
        assert code == 1, err
        assert "8 sent, 0 failed, 2 unknown" in out
        assert "`smsvn campaign export --state unknown`" in out
        code, out, _ = await smsvn(
            "campaign", "export", "--journal", str(journal), "--name", "promo",
            "--state", "unknown",
        )  # fmt: skip
        unknown = [row["phone"] for row in csv.DictReader(io.StringIO(out))]
        assert len(unknown) == 2
        code, out, _ = await smsvn(
            "campaign", "resolve", "--journal", str(journal), "--name", "promo",
            "--as", "sent", "--phone", unknown[0],
        )  # fmt: skip
        assert code == 0 and "1 unknown input(s) resolved as sent" in out
        code, out, _ = await smsvn(
            "campaign", "resolve", "--journal", str(journal), "--name", "promo",
            "--as", "pending", "--all",
        )  # fmt: skip
        assert "1 unknown input(s) resolved as pending" in out
        code, out, err = await smsvn(*args, env=fibo_env(sb))
        assert code == 0, err
        assert "promo: 10 sent, 0 failed, 0 unknown" in out


async def test_campaign_ctrl_c_prints_the_summary_and_how_to_resume(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(f"0912{i:06d}" for i in range(300)))
    journal = tmp_path / "campaigns.db"
    async with Sandbox(speedsms_rate_limit=None) as sb:
        sb.faults.add(Fault(kind="latency", provider="fibo", route="send", seconds=0.05))
        args = campaign_args(sb, journal, "-f", str(numbers), "-m", "Khuyen mai")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsvn", *args, "--concurrency", "4",
            env={**environment, **fibo_env(sb)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        while len(sb.outbox) < 30:  # noqa: ASYNC110 (the outbox has no event to wait on)
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), timeout=60)
        out, err = out_bytes.decode(), err_bytes.decode()
        assert process.returncode == 130, err
        assert "interrupted" in err
        summary = re.search(
            r"promo: (\d+) sent, 0 failed, (\d+) unknown, (\d+) pending, 0 in flight", out
        )
        assert summary, out
        sent, unknown, pending = map(int, summary.groups())
        assert sent + unknown + pending == 300 and pending > 0
        assert sent == len(sb.outbox) - unknown or sent <= len(sb.outbox)
        resume = re.search(r"stopped; resume with: (.*)", out)
        assert resume and "--journal" in resume.group(1) and "-m 'Khuyen mai'" in resume.group(1)
        assert sb.fibo_client_pass not in out + err
        code, out, err = await smsvn(*args, env=fibo_env(sb))
        assert code in (0, 1), err
        accepted = Counter(r.phone for r in sb.outbox)
        assert max(accepted.values()) == 1
        assert f"{300 - unknown} sent, 0 failed, {unknown} unknown, 0 pending" in out


def test_bulk_points_to_campaigns_for_anything_that_matters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["bulk", "--help"]) == 0
    assert "smsvn campaign run" in " ".join(capsys.readouterr().out.split())
    assert run(["campaign", "--help"]) == 0
    helped = capsys.readouterr().out
    for step in ("run", "work", "status", "export", "resolve"):
        assert step in helped


# -- the shared limiter (--redis) ---------------------------------------------------------------


async def test_a_redis_that_does_not_answer_is_a_usage_error_without_its_password() -> None:
    """Refused before anything is sent (not a run that waits for Redis), the URL's password
    nowhere in the output."""
    for url in ("redis://:s3cret-pw@127.0.0.1:1/0", "redis://:s3cret/pw@127.0.0.1:6379/0"):
        code, out, err = await smsvn(
            "bulk", "--sandbox", "-p", "speedsms", "-m", "Khuyen mai", "--redis", url,
            stdin="0912345678\n",
        )  # fmt: skip
        assert code == 2, (out, err)
        assert "s3cret" not in out + err
        assert "Redis" in err
        assert "sent via" not in out and "accepted" not in out


def test_the_resume_command_keeps_the_shared_limiter_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smsvn.cli import _parser, _resume_command

    monkeypatch.delenv("SMSVN_REDIS_URL", raising=False)
    base = ["campaign", "work", "--journal", "j.db", "--name", "promo", "-p", "speedsms"]
    args = _parser().parse_args(
        [*base, "--redis", "redis://:s3cret@10.0.0.5:6379/0", "--redis-prefix", "staging"]
    )
    command = _resume_command(args)
    assert "--redis 'redis://:***@10.0.0.5:6379/0' --redis-prefix staging" in command
    assert "s3cret" not in command
    # Given by the environment, it comes from there again: not written out.
    monkeypatch.setenv("SMSVN_REDIS_URL", "redis://:s3cret@10.0.0.5:6379/0")
    args = _parser().parse_args(base)
    assert args.redis == "redis://:s3cret@10.0.0.5:6379/0"
    assert "--redis" not in _resume_command(args)
