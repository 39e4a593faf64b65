"""The ``smsvn`` command (also ``python -m smsvn``): send, balance, status, bulk, sandbox, demo.

Credentials come from flags or ``SMSVN_*`` environment variables (flags show up in the process
list: prefer the environment); ``--sandbox`` sends to an embedded simulator instead. Exit codes:
0 ok, 1 a provider or delivery error, 2 a usage error (bad flags, a bad number, no credentials).
A traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import IO, Any, Final, NoReturn, TextIO

from smsvn import text
from smsvn.bulk import BulkOutcome, BulkProgress, BulkReport
from smsvn.errors import SmsError, ValidationError
from smsvn.limits import RateLimit
from smsvn.providers._base import BaseClient
from smsvn.providers.esms import ESMS
from smsvn.providers.fibo import Fibo
from smsvn.providers.speedsms import SpeedSMS

__all__ = ["main"]

PROVIDERS: Final = ("speedsms", "esms", "fibo")
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2

PRICES: Final = {"speedsms": 250.0, "esms": 350.0, "fibo": 1.0}
"""Default price per segment for the estimate printed before a send (override with --price);
Fibo counts messages, not VND."""
_UNITS: Final = {"speedsms": "VND", "esms": "VND", "fibo": "messages"}

_ENV: Final = {
    "token": "SMSVN_SPEEDSMS_TOKEN",
    "api_key": "SMSVN_ESMS_API_KEY",
    "secret_key": "SMSVN_ESMS_SECRET_KEY",
    "client_no": "SMSVN_FIBO_CLIENT_NO",
    "client_pass": "SMSVN_FIBO_CLIENT_PASS",
}


class UsageError(Exception):
    """A mistake in the command line: exit 2 with a one-line message."""


# -- argument parsing -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsvn",
        description="Send SMS and voice OTPs through SpeedSMS, eSMS and Fibo.",
        epilog="Credentials: SMSVN_SPEEDSMS_TOKEN, SMSVN_ESMS_API_KEY, SMSVN_ESMS_SECRET_KEY, "
        "SMSVN_FIBO_CLIENT_NO, SMSVN_FIBO_CLIENT_PASS (or the flags of the same names).",
    )
    parser.add_argument("--debug", action="store_true", help="log at DEBUG; tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def provider_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "-p",
            "--provider",
            choices=PROVIDERS,
            default=os.environ.get("SMSVN_PROVIDER", "speedsms"),
            help="provider (default: $SMSVN_PROVIDER or speedsms)",
        )
        sub.add_argument(
            "--sandbox", action="store_true", help="use an embedded simulator (no account)"
        )
        sub.add_argument("--base-url", help="the provider's base URL")
        sub.add_argument("--token", help="SpeedSMS access token")
        sub.add_argument("--api-key", help="eSMS ApiKey")
        sub.add_argument("--secret-key", help="eSMS SecretKey")
        sub.add_argument("--client-no", help="Fibo clientNo")
        sub.add_argument("--client-pass", help="Fibo clientPass")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
        return sub

    def sending_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-m", "--text", required=True, help="the message content")
        sub.add_argument("--sender", help="SpeedSMS sender / Fibo sender name")
        sub.add_argument("--brandname", help="eSMS brandname")
        sub.add_argument("--sms-type", type=int, help="SpeedSMS 2-5 / eSMS 1, 2 or 8")
        sub.add_argument(
            "--strip-diacritics", action="store_true", help="send without Vietnamese marks"
        )
        sub.add_argument("--price", type=float, help="price per segment, for the estimate")

    send = provider_command("send", "send one SMS (to up to 100 numbers on SpeedSMS)")
    send.add_argument("--to", action="append", required=True, help="a number (repeatable)")
    sending_options(send)

    provider_command("balance", "print the account balance")

    status = provider_command("status", "look up a message (eSMS) or today's totals (Fibo)")
    status.add_argument("id", nargs="?", help="eSMS SMSID (or call id with --call)")
    status.add_argument("--call", action="store_true", help="an eSMS voice call's status")

    bulk = provider_command("bulk", "send one content to numbers from a file or stdin")
    bulk.add_argument("-f", "--file", help="numbers, one a line (first CSV column); default stdin")
    bulk.add_argument("--csv", dest="csv_out", help="write each recipient's outcome to this CSV")
    bulk.add_argument("--concurrency", type=int, help="batches in flight (default 32)")
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")
    sending_options(bulk)

    sandbox = commands.add_parser("sandbox", help="run the simulator until Ctrl-C")
    sandbox.add_argument("--port", type=int, default=8787)
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    sandbox.add_argument(
        "--rate-limit",
        default="60/60",
        help="SpeedSMS limit as REQUESTS/SECONDS, or 'off' (default 60/60)",
    )
    sandbox.add_argument("--delivery-delay", type=float, default=0.05)
    sandbox.add_argument("--webhook-url", help="where SpeedSMS delivery reports are POSTed")

    demo = commands.add_parser("demo", help="a bulk campaign through all three providers")
    demo.add_argument("--numbers", type=int, default=30_000, help="campaign size (split 3 ways)")
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _rate_limit(value: str) -> RateLimit | None:
    if value.lower() == "off":
        return None
    try:
        requests, seconds = value.split("/")
        return RateLimit(requests=int(requests), period=float(seconds))
    except ValueError:
        raise UsageError(f"--rate-limit must be REQUESTS/SECONDS or 'off', not {value!r}") from None


# -- clients ----------------------------------------------------------------------------------


def _credential(args: argparse.Namespace, name: str) -> str:
    value: str | None = getattr(args, name, None) or os.environ.get(_ENV[name])
    if not value:
        flag = "--" + name.replace("_", "-")
        raise UsageError(f"no {flag} given and ${_ENV[name]} is not set (or use --sandbox)")
    return value


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": args.timeout}
    if args.base_url:
        options["base_url"] = args.base_url
    if getattr(args, "sms_type", None) is not None:
        options["sms_type"] = args.sms_type
    if args.provider in ("speedsms", "fibo") and getattr(args, "sender", None):
        options["sender"] = args.sender
    if args.provider == "esms" and getattr(args, "brandname", None):
        options["brandname"] = args.brandname
    return options


@asynccontextmanager
async def _open_client(args: argparse.Namespace) -> AsyncIterator[BaseClient]:
    """The client the flags describe, on the real provider or an embedded simulator."""
    options = _options(args)
    if args.sandbox:
        from smsvn.sandbox import Sandbox

        async with Sandbox() as sb:
            options.pop("base_url", None)
            async with sb.client(args.provider, **options) as simulated:
                yield simulated
        return
    client: BaseClient
    if args.provider == "speedsms":
        client = SpeedSMS(_credential(args, "token"), **options)
    elif args.provider == "esms":
        client = ESMS(_credential(args, "api_key"), _credential(args, "secret_key"), **options)
    else:
        client = Fibo(_credential(args, "client_no"), _credential(args, "client_pass"), **options)
    async with client:
        yield client


def _send_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"strip_diacritics": True} if args.strip_diacritics else {}


def _estimate_line(args: argparse.Namespace, recipients: int | None) -> str:
    """Segments and estimated cost of the content, printed before sending."""
    content = text.strip_diacritics(args.text) if args.strip_diacritics else args.text
    count = text.segments(content)
    price = args.price if args.price is not None else PRICES[args.provider]
    line = (
        f"{count.characters} characters, {count.encoding.value}: "
        f"{count.segments} segment{'s' if count.segments != 1 else ''} a message"
    )
    if recipients is not None:
        cost = text.estimate(content, recipients, price).cost
        line += f", {recipients} recipient{'s' if recipients != 1 else ''}"
    else:
        cost = count.segments * price
        line += " each"
    line += f"; estimated cost {cost:,.0f} {_UNITS[args.provider]} at {price:g} a segment"
    if count.unicode and not args.strip_diacritics:
        plain = text.segments(text.strip_diacritics(args.text))
        line += (
            f" (--strip-diacritics: {plain.segments} segment{'s' if plain.segments != 1 else ''})"
        )
    return line


# -- commands ---------------------------------------------------------------------------------


async def _cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    print(_estimate_line(args, len(args.to)), file=out)
    async with _open_client(args) as client:
        to: str | list[str] = args.to[0] if len(args.to) == 1 else args.to
        result = await client.send(to, args.text, **_send_options(args))
    print(f"sent via {result.provider}: message id {result.message_id}", file=out)
    print(f"recipients: {', '.join(result.recipients)}", file=out)
    for bad in result.invalid:
        print(f"refused: {bad} ({bad.reason})", file=out)
    if result.cost is not None:
        print(f"cost: {result.cost:,.0f}", file=out)
    return EXIT_OK


async def _cmd_balance(args: argparse.Namespace, out: TextIO) -> int:
    async with _open_client(args) as client:
        balance = await client.balance()
    unit = balance.currency or "messages"
    print(f"{balance.provider}: {balance.amount:,.0f} {unit}", file=out)
    return EXIT_OK


async def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    if args.provider == "speedsms":
        raise UsageError("SpeedSMS has no status lookup: receive delivery reports by webhook")
    async with _open_client(args) as client:
        if isinstance(client, Fibo):
            totals = await client.daily_totals()
            print(
                f"fibo today: {totals.success} succeeded, {totals.failed} failed, "
                f"{totals.pending} pending",
                file=out,
            )
            return EXIT_OK
        assert isinstance(client, ESMS)
        if not args.id:
            raise UsageError("eSMS status needs the message (or call) id")
        if args.call:
            call = await client.call_status(args.id)
            print(
                f"call {call.reference_id}: {call.status.value}, {call.duration or 0} s, "
                f"ivr {call.ivr or '-'}",
                file=out,
            )
            return EXIT_OK
        status = await client.status(args.id)
        state = status.status.name.lower().replace("_", " ") if status.status else "unknown"
        print(
            f"message {status.message_id}: {state}; {status.succeeded} succeeded, "
            f"{status.failed} failed of {status.total_receivers}",
            file=out,
        )
        for receiver in await client.receivers(args.id):
            outcome = {True: "delivered", False: "failed", None: "pending"}[receiver.succeeded]
            print(f"  {receiver.phone}: {outcome}", file=out)
    return EXIT_OK


def _read_numbers(source: IO[str]) -> Iterator[str]:
    """Numbers from a file or stdin, one a line; the first column of a CSV; comments skipped."""
    for line in source:
        number = line.split(",", 1)[0].strip().strip('"')
        if number and not number.startswith("#"):
            yield number


class _CsvOutcomes:
    """Writes each recipient's outcome as it happens: number, outcome, message id, detail."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle)
        self._writer.writerow(["number", "outcome", "message_id", "detail"])

    def __call__(self, outcome: BulkOutcome) -> None:
        message_id = outcome.result.message_id if outcome.result else ""
        detail = outcome.reason or (str(outcome.error) if outcome.error else "")
        for number in outcome.recipients:
            self._writer.writerow([number, outcome.outcome.value, message_id or "", detail])


def _open_files(args: argparse.Namespace, stack: ExitStack) -> tuple[IO[str], TextIO | None]:
    """The numbers' source (a file or stdin) and the CSV to write, closed with ``stack``."""
    source: IO[str] = sys.stdin
    if args.file:
        source = stack.enter_context(open(args.file, encoding="utf-8-sig"))  # noqa: SIM115
    csv_out = None
    if args.csv_out:
        csv_out = stack.enter_context(open(args.csv_out, "w", newline="", encoding="utf-8"))  # noqa: SIM115
    return source, csv_out


async def _cmd_bulk(args: argparse.Namespace, out: TextIO) -> int:
    print(_estimate_line(args, None), file=out)
    with ExitStack() as stack:
        # Numbers are read lazily, a line at a time, as the engine takes them.
        source, csv_out = _open_files(args, stack)
        on_result = _CsvOutcomes(csv_out) if csv_out else None
        async with _open_client(args) as client:
            with _progress_bars(not args.no_progress, out) as bars:
                bar = bars(client.provider, None)
                report = await client.send_bulk(
                    _read_numbers(source),
                    args.text,
                    concurrency=args.concurrency,
                    on_progress=bar,
                    on_result=on_result,
                    keep_results=False,
                    **_send_options(args),
                )
                bar(None)
    _print_report(report, out)
    if args.csv_out:
        print(f"per-recipient outcomes: {args.csv_out}", file=out)
    failed = report.aborted is not None or report.failed or report.unknown
    return EXIT_ERROR if failed else EXIT_OK


def _print_report(report: BulkReport, out: TextIO) -> None:
    rate = report.accepted / report.elapsed if report.elapsed else 0.0
    print(
        f"{report.provider}: {report.accepted} accepted, {len(report.invalid)} invalid, "
        f"{report.duplicates} duplicates, {report.failed_count} failed, "
        f"{report.unknown_count} unknown, {len(report.skipped)} skipped; "
        f"{report.requests} requests in {report.elapsed:.1f} s ({rate:,.0f}/s); "
        f"cost {report.cost:,.0f}",
        file=out,
    )
    if report.aborted is not None:
        print(f"stopped: {report.aborted}", file=out)
    for numbers, error in report.unknown[:5]:
        print(f"unknown (may have been sent; not resent): {numbers[0]}...: {error}", file=out)


async def _cmd_sandbox(args: argparse.Namespace, out: TextIO) -> int:
    from smsvn.sandbox import serve

    await serve(
        args.port,
        speedsms_rate_limit=_rate_limit(args.rate_limit),
        delivery_delay=args.delivery_delay,
        latency=args.latency,
        speedsms_webhook_url=args.webhook_url,
        out=out,
    )
    return EXIT_OK


async def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from smsvn._demo import run_demo

    return await run_demo(
        numbers=args.numbers, seed=args.seed, progress=not args.no_progress, out=out
    )


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, TextIO], Any]]] = {
    "send": _cmd_send,
    "balance": _cmd_balance,
    "status": _cmd_status,
    "bulk": _cmd_bulk,
    "sandbox": _cmd_sandbox,
    "demo": _cmd_demo,
}


# -- progress bars ----------------------------------------------------------------------------

ProgressCallback = Callable[[BulkProgress | None], None]


class _Bars:
    """Progress bars with rich when it is installed (the ``cli`` extra), plain lines otherwise."""

    def __init__(self, enabled: bool, out: TextIO) -> None:
        self._out = out
        self._rich: Any = None
        if enabled:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:  # pragma: no cover - rich is in the cli extra
                self._rich = None
            else:
                self._rich = Progress(
                    TextColumn("{task.description:<9}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[detail]}"),
                    TimeElapsedColumn(),
                    console=_console(out),
                )

    def __enter__(self) -> Callable[[str, int | None], ProgressCallback]:
        if self._rich is not None:
            self._rich.start()
        return self.bar

    def __exit__(self, *exc_info: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def bar(self, name: str, total: int | None) -> ProgressCallback:
        """A callback for ``on_progress``; call it with None at the end."""
        if self._rich is None:
            last = [0.0]

            def plain(snapshot: BulkProgress | None) -> None:
                now = time.monotonic()
                if snapshot is not None and now - last[0] >= 2.0:
                    last[0] = now
                    print(
                        f"{name}: {snapshot.done} done, {snapshot.accepted} accepted, "
                        f"{snapshot.rate:,.0f}/s",
                        file=self._out,
                        flush=True,
                    )

            return plain
        task = self._rich.add_task(name, total=total, detail="")

        def update(snapshot: BulkProgress | None) -> None:
            if snapshot is None:
                done = self._rich.tasks[task].completed
                self._rich.update(task, total=done if total is None else total, completed=done)
                return
            self._rich.update(
                task,
                completed=snapshot.done,
                detail=f"{snapshot.accepted:,} accepted  {snapshot.rate:,.0f}/s",
            )

        return update


def _console(out: TextIO) -> Any:
    from rich.console import Console

    return Console(file=out)


def _progress_bars(enabled: bool, out: TextIO) -> _Bars:
    return _Bars(enabled and out.isatty(), out)


# -- entry point ------------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    print(f"smsvn: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    out = sys.stdout
    try:
        return int(asyncio.run(_COMMANDS[args.command](args, out)))
    except KeyboardInterrupt:
        print("smsvn: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValidationError) as exc:
        if args.debug:
            raise
        _fail(str(exc), EXIT_USAGE)
    except SmsError as exc:
        if args.debug:
            raise
        _fail(str(exc), EXIT_ERROR)
    except OSError as exc:
        if args.debug:
            raise
        _fail(
            f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or type(exc).__name__})",
            EXIT_USAGE,
        )
