"""The ``smsvn`` command (also ``python -m smsvn``): send, balance, status, bulk, campaign,
sandbox, demo.

Credentials come from flags or ``SMSVN_*`` environment variables (flags show up in the process
list: prefer the environment); ``--sandbox`` sends to an embedded simulator instead. Exit codes:
0 ok, 1 a provider or delivery error, 2 a usage error (bad flags, a bad number, no credentials).
A traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import logging
import os
import re
import shlex
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from typing import IO, Any, Final, NoReturn, TextIO

import msgspec

from smsvn import _cli_advertising, providers
from smsvn._cli_files import UsageError, cell, check_not_journal, printable
from smsvn._console import (
    CallLookup,
    DailyTotalsLookup,
    MessageLookup,
    amount,
    cost_text,
    join_titles,
    print_counts,
    print_report,
    progress_bars,
)
from smsvn._numbers_file import NumbersFile, NumbersFileError, open_numbers
from smsvn._shared_limits import DEFAULT_PREFIX, RedisLimiter
from smsvn.advertising import Guard
from smsvn.bulk import DEFAULT_CONCURRENCY, BulkOutcome, BulkReport, Outcome
from smsvn.errors import SmsError, ValidationError
from smsvn.journal import DEFAULT_LEASE, Campaign, Journal, LeaseLost
from smsvn.journal._campaign import redact_url
from smsvn.limits import RateLimit
from smsvn.models import SendResult
from smsvn.providers import Credential, Provider
from smsvn.providers._base import BaseClient, split_recipients
from smsvn.workers import JOURNAL_ENV, REDIS_ENV

__all__ = ["main"]

_FOR_WHAT_MATTERS: Final = (
    "For a campaign that must survive a crash or a redeploy (resume where it stopped, nobody "
    "sent twice, several runners), use `smsvn campaign run`."
)
_STATES: Final = ("pending", "in_flight", "sent", "failed", "unknown", "invalid", "duplicate")
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2


# -- the registry, as the command line shows it ---------------------------------------------


def _flag(name: str) -> str:
    """The command-line flag of a credential or option name: ``api_key`` -> ``--api-key``."""
    return "--" + name.replace("_", "-")


def _offering(capability: type) -> tuple[Provider, ...]:
    """The registered providers whose client class has ``capability`` (a protocol of
    ``_console``): the CLI asks the client what it can do, never the provider's name."""
    return tuple(p for p in providers.all_providers() if issubclass(p.client, capability))


def _credentials() -> dict[str, list[Credential]]:
    """Every provider's credentials by argument name, in registration order: one flag each,
    even where two providers share a name (each still reads its own variable)."""
    by_name: dict[str, list[Credential]] = {}
    for provider in providers.all_providers():
        for credential in provider.credentials:
            by_name.setdefault(credential.name, []).append(credential)
    return by_name


def _sender_options() -> dict[str, list[Provider]]:
    """The providers taking each sender option (``sender``, ``brandname``): one flag each."""
    by_option: dict[str, list[Provider]] = {}
    for provider in providers.all_providers():
        if provider.sender_option is not None:
            by_option.setdefault(provider.sender_option, []).append(provider)
    return by_option


def _default_provider() -> str:
    """``-p``'s default: ``$SMSVN_PROVIDER``, else the first registered provider."""
    return os.environ.get("SMSVN_PROVIDER") or providers.names()[0]


# -- argument parsing -----------------------------------------------------------------------

_PROG: Final = "smsvn"
_UNRECOGNIZED: Final = "unrecognized arguments: "
_URL_PASSWORD: Final = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@]*@")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors show no value of an argument it did not know (a
    token or a URL with a password given to the wrong command) and no URL's password, and
    whose error line starts ``smsvn: error:`` whatever the sub-command (naming it after), as
    every other usage error of the command line does."""

    def error(self, message: str) -> NoReturn:
        if message.startswith(_UNRECOGNIZED):
            words = message[len(_UNRECOGNIZED) :].split(" ")
            flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
            hidden = len(words) - len(flags) + sum("=" in w for w in words if w.startswith("-"))
            message = _UNRECOGNIZED + " ".join(flags)
            if hidden:
                message += f" ({hidden} value{'s' if hidden > 1 else ''} not shown)"
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix(_PROG).strip()  # "sandbox", "campaign run", ""
        where = f"{command}: " if command else ""
        message = _URL_PASSWORD.sub(r"\1***@", message)
        self.exit(EXIT_USAGE, f"{_PROG}: error: {where}{message}\n")


def _parser() -> argparse.ArgumentParser:
    """The command line, its provider-specific parts built from the provider registry."""
    everyone = providers.all_providers()
    credentials = _credentials()
    environment = [c.env for same_name in credentials.values() for c in same_name]
    parser = _Parser(
        prog=_PROG,
        description=f"Send SMS and voice OTPs through {join_titles(everyone)}.",
        epilog=f"Credentials: {', '.join(environment)} (or the flags of the same names). "
        "Each provider's sender, SMS type and base URL are read as its client's from_env() "
        "reads them (SMSVN_<PROVIDER>_SENDER, _SMS_TYPE, _BASE_URL, ...); flags win.",
    )
    parser.add_argument("--debug", action="store_true", help="log at DEBUG; tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_provider = _default_provider()

    def provider_command(
        name: str, help_text: str, parent: Any = commands, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text, epilog=epilog
        )
        sub.add_argument(
            "-p",
            "--provider",
            choices=providers.names(),
            default=default_provider,
            help=f"provider (default: $SMSVN_PROVIDER or {providers.names()[0]})",
        )
        sub.add_argument(
            "--sandbox", action="store_true", help="use an embedded simulator (no account)"
        )
        sub.add_argument("--base-url", help="the provider's base URL")
        for argument, same_name in credentials.items():
            helps = " / ".join(dict.fromkeys(c.help for c in same_name))
            variables = ", ".join(f"${c.env}" for c in same_name)
            sub.add_argument(_flag(argument), dest=argument, help=f"{helps} (or {variables})")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
        return sub

    def sending_options(sub: argparse.ArgumentParser, text: bool = True) -> None:
        if text:
            sub.add_argument("-m", "--text", required=True, help="the message content")
        for option, takers in _sender_options().items():
            names = " / ".join(p.title for p in takers)
            sub.add_argument(_flag(option), dest=option, help=f"{names} {option}")
        sub.add_argument("--sms-type", type=int, help="the SMS type, numbered as the provider does")
        sub.add_argument(
            "--strip-diacritics", action="store_true", help="send without Vietnamese marks"
        )
        if text:
            sub.add_argument(
                "--price", type=_price_flag, help="price per segment, for the estimate"
            )

    send = provider_command("send", "send one SMS to one number or more")
    send.add_argument("--to", action="append", required=True, help="a number (repeatable)")
    sending_options(send)

    provider_command("balance", "print the account balance")

    lookups = join_titles(_offering(MessageLookup))
    totals = join_titles(_offering(DailyTotalsLookup))
    calls = join_titles(_offering(CallLookup))
    status = provider_command(
        "status", f"look up a message ({lookups}) or today's totals ({totals})"
    )
    status.add_argument("id", nargs="?", help="the message id (or call id with --call)")
    status.add_argument("--call", action="store_true", help=f"a voice call's status ({calls})")

    bulk = provider_command(
        "bulk",
        "send one content to numbers from a file or stdin",
        epilog=_FOR_WHAT_MATTERS,
    )
    _numbers_options(bulk)
    bulk.add_argument("--csv", dest="csv_out", help="write each recipient's outcome to this CSV")
    bulk.add_argument("--concurrency", type=int, help="batches in flight (default 32)")
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")
    sending_options(bulk)
    _shared_limit_options(bulk)

    _campaign_parser(commands, provider_command, sending_options)

    sandbox = commands.add_parser("sandbox", help="run the simulator until Ctrl-C")
    sandbox.add_argument("--port", type=_port_flag, default=8787)
    sandbox.add_argument(
        "--latency", type=_delay_flag, default=0.0, help="seconds added per answer"
    )
    sandbox.add_argument(
        "--rate-limit",
        default="60/60",
        help="SpeedSMS limit as REQUESTS/SECONDS, or 'off' (default 60/60)",
    )
    sandbox.add_argument("--delivery-delay", type=_delay_flag, default=0.05)
    sandbox.add_argument("--webhook-url", help="where SpeedSMS delivery reports are POSTed")

    demo = commands.add_parser(
        "demo",
        help="a bulk campaign through every simulated provider, then one that survives SIGKILL",
    )
    demo.add_argument(
        "--numbers", type=int, default=30_000, help="campaign size (split between the providers)"
    )
    demo.add_argument(
        "--crash-numbers",
        type=int,
        default=6_000,
        help="size of part two, the campaign whose runners are killed (0: skip it)",
    )
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _campaign_parser(
    commands: Any,
    provider_command: Callable[..., argparse.ArgumentParser],
    sending_options: Callable[..., None],
) -> None:
    """``smsvn campaign run|work|status|export|resolve``."""
    about = (
        "durable campaigns in a journal (SQLite file or PostgreSQL): resume after a crash or "
        "redeploy, several runners at once, nobody sent twice"
    )
    campaign = commands.add_parser("campaign", help=about, description=about)
    steps = campaign.add_subparsers(dest="step", required=True, metavar="STEP")
    journal = os.environ.get("SMSVN_JOURNAL")

    def journal_options(sub: argparse.ArgumentParser, *, name: bool = True) -> None:
        sub.add_argument(
            "--journal",
            default=journal,
            required=journal is None,
            help="a SQLite file (or sqlite:/// URL) or a postgresql:// URL (or $SMSVN_JOURNAL)",
        )
        sub.add_argument("--name", required=name, help="the campaign's name")

    def runner_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="batches in flight"
        )
        sub.add_argument(
            "--lease",
            type=float,
            default=DEFAULT_LEASE,
            help="seconds a runner's claims outlive it (default 60)",
        )
        sub.add_argument("--rate-limit", help="the account's limit as REQUESTS/SECONDS, or 'off'")
        _shared_limit_options(sub)
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")

    run = provider_command(
        "run",
        "add numbers to a campaign (once) and send what is pending; the same command again resumes",
        parent=steps,
    )
    journal_options(run)
    _numbers_options(run)
    sending_options(run)
    runner_options(run)
    _cli_advertising.purpose_options(run)

    work = provider_command(
        "work",
        "send what is pending in a campaign: a runner for another process or machine",
        parent=steps,
    )
    journal_options(work)
    sending_options(work, text=False)
    runner_options(work)
    _cli_advertising.purpose_options(work)

    status = steps.add_parser("status", help="each state's count", description="counts")
    journal_options(status, name=False)

    export = steps.add_parser(
        "export", help="every input with its state, message id and request id, as CSV"
    )
    journal_options(export)
    export.add_argument("--csv", default="-", help="the file to write (default stdout)")
    export.add_argument("--state", choices=_STATES, help="only the inputs in this state")

    resolve = steps.add_parser(
        "resolve",
        help="settle unknown inputs by what you found out",
        description="settle unknown inputs (that may have been sent) by what you checked: "
        "sent, failed, or pending (it was not sent: send it again)",
    )
    journal_options(resolve)
    resolve.add_argument(
        "--as", dest="outcome", required=True, choices=("sent", "failed", "pending")
    )
    which = resolve.add_mutually_exclusive_group(required=True)
    which.add_argument("--phone", action="append", help="an unknown input's number (repeatable)")
    which.add_argument("--all", action="store_true", help="every unknown input")
    resolve.add_argument("--note", help="why (kept as the inputs' detail)")

    _cli_advertising.add_parser(commands, journal_options)


def _shared_limit_options(sub: argparse.ArgumentParser) -> None:
    """``--redis`` and ``--redis-prefix``: the account's limit shared by every process."""
    sub.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get(REDIS_ENV) or None,
        help="count the account's limit (--rate-limit, or the provider's) in this Redis, "
        f"together with every other process that uses it (or ${REDIS_ENV})",
    )
    sub.add_argument(
        "--redis-prefix",
        type=_text_flag,
        default=DEFAULT_PREFIX,
        help=f"the shared limiter's key prefix (default {DEFAULT_PREFIX!r})",
    )


def _numbers_options(sub: argparse.ArgumentParser) -> None:
    """``-f`` and ``--column``: where the numbers come from."""
    sub.add_argument(
        "-f",
        "--file",
        help="numbers: a text or CSV file (UTF-8 or UTF-16; comma, semicolon, tab or pipe; "
        "a header row is recognised); default stdin",
    )
    sub.add_argument(
        "--column",
        help="the numbers' column, by header name or 1-based index (default: the only column, "
        "or the one holding phone numbers)",
    )


_HIGHEST_PRICE: Final = 1_000_000.0
"""``--price`` above this (per segment) is a typo, not a price."""


def _price_flag(value: str) -> float:
    """``--price``: a number from 0 to ``_HIGHEST_PRICE`` (argparse makes anything else a
    usage error, exit 2)."""
    return _bounded_float(value, _HIGHEST_PRICE, "a price per segment", "")


def _bounded_float(value: str, highest: float, what: str, unit: str) -> float:
    """A flag's number from 0 to ``highest`` (NaN and infinity refused), or argparse's usage
    error naming ``what``."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= number <= highest:  # also refuses nan; inf is above
        raise argparse.ArgumentTypeError(f"{what} from 0 to {highest:,.0f}{unit}, not {value!r}")
    return number


_HIGHEST_PORT: Final = 65535
_LONGEST_DELAY: Final = 86400.0
"""``--latency`` or ``--delivery-delay`` above this (a day) is a typo, not a delay."""


def _port_flag(value: str) -> int:
    """``--port``: a TCP port from 0 (any free one) to 65535, checked here (exit 2) rather
    than by ``bind()`` (an OverflowError and its traceback)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= _HIGHEST_PORT:
        raise argparse.ArgumentTypeError(f"a port from 0 to {_HIGHEST_PORT}, not {value!r}")
    return port


def _delay_flag(value: str) -> float:
    """``--latency`` and ``--delivery-delay``: seconds from 0 to ``_LONGEST_DELAY``."""
    return _bounded_float(value, _LONGEST_DELAY, "seconds", " (a day)")


def _text_flag(value: str) -> str:
    """A flag's text that must be valid UTF-8 (it goes into Redis keys, a database): a byte
    that is not (the terminal's encoding, a file name) reaches Python as a lone surrogate,
    which nothing downstream can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("not valid UTF-8 text") from None
    return value


def _rate_limit(value: str) -> RateLimit | None:
    if value.lower() == "off":
        return None
    try:
        requests, seconds = value.split("/")
        return RateLimit(requests=int(requests), period=float(seconds))
    except ValueError:
        raise UsageError(f"--rate-limit must be REQUESTS/SECONDS or 'off', not {value!r}") from None


# -- clients ----------------------------------------------------------------------------------


def _provider(args: argparse.Namespace) -> Provider:
    """The registry entry ``-p`` names (``$SMSVN_PROVIDER`` may name any; argparse checks only
    the flag): ``ValidationError`` listing the known ones when it is not registered."""
    return providers.get(args.provider)


def _credential(args: argparse.Namespace, credential: Credential) -> str:
    """One credential from its flag or, failing that, its environment variable."""
    value: str | None = getattr(args, credential.name, None) or os.environ.get(credential.env)
    if not value:
        raise UsageError(
            f"no {_flag(credential.name)} given and ${credential.env} is not set (or use --sandbox)"
        )
    return value


def _options(args: argparse.Namespace, provider: Provider) -> dict[str, Any]:
    """The client's keyword options the flags set. A sender flag other than the provider's own
    ``sender_option`` (``--brandname`` on SpeedSMS) is ignored."""
    options: dict[str, Any] = {"timeout": args.timeout}
    if args.base_url:
        options["base_url"] = args.base_url
    if getattr(args, "sms_type", None) is not None:
        options["sms_type"] = args.sms_type
    option = provider.sender_option
    if option is not None and getattr(args, option, None):
        options[option] = getattr(args, option)
    if getattr(args, "rate_limit", None) is not None:
        options["rate_limit"] = _rate_limit(args.rate_limit)
    return options


@asynccontextmanager
async def _open_client(args: argparse.Namespace) -> AsyncIterator[BaseClient]:
    """The client the flags describe, on the real provider or an embedded simulator; with
    ``--redis``, its limit shared through Redis."""
    url = getattr(args, "redis", None)
    if not url:
        async with _client(args, {}) as client:
            yield client
        return
    shared = await _shared_limiter(url, args.redis_prefix)
    try:
        async with _client(args, {"limiter": shared}) as client:
            yield client
    finally:
        await shared.aclose()


async def _shared_limiter(url: str, prefix: str) -> RedisLimiter:
    """A ``RedisLimiter`` on ``url``, its Redis answering now: a usage error (the URL without
    its password) rather than a run that waits for a Redis that is not there."""
    try:
        shared = RedisLimiter(url, prefix=prefix)
    except ModuleNotFoundError:
        raise UsageError("--redis needs the redis extra: pip install 'smsvn[redis]'") from None
    failed: str | None = None
    try:
        await shared.redis.ping()
    except Exception as exc:
        failed = type(exc).__name__  # its message may quote the URL
    if failed is not None:
        await shared.aclose()
        raise UsageError(
            f"the shared limiter's Redis at {redact_url(url)} does not answer ({failed})"
        )
    return shared


@asynccontextmanager
async def _client(args: argparse.Namespace, extra: dict[str, Any]) -> AsyncIterator[BaseClient]:
    provider = _provider(args)
    options = {**_options(args, provider), **extra}
    if args.sandbox:
        from smsvn.sandbox import Sandbox

        async with Sandbox() as sb:
            options.pop("base_url", None)
            async with sb.client(provider.name, **options) as simulated:
                yield simulated
        return
    for credential in provider.credentials:
        options[credential.name] = _credential(args, credential)
    # The client's own from_env reads the sender, SMS type, base URL... (one source of truth);
    # the flags, passed as options, win over it.
    async with provider.client.from_env(**options) as client:
        yield client


def _send_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"strip_diacritics": True} if args.strip_diacritics else {}


def _estimate_line(args: argparse.Namespace, recipients: int | None) -> str:
    """Segments and estimated cost of the content, printed before sending."""
    provider = _provider(args)
    count = provider.client.count_segments(args.text, strip_diacritics=args.strip_diacritics)
    price = args.price if args.price is not None else provider.price
    line = (
        f"{count.characters} characters, {count.encoding.value}: "
        f"{count.segments} segment{'s' if count.segments != 1 else ''} a message"
    )
    cost = count.segments * price * (recipients or 1)
    if recipients is not None:
        line += f", {recipients} recipient{'s' if recipients != 1 else ''}"
    else:
        line += " each"
    line += (
        f"; estimated cost {amount(cost, provider.unit)} ({amount(price, provider.unit)} "
        "per segment)"
    )
    if count.unicode and not args.strip_diacritics:
        plain = provider.client.count_segments(args.text, strip_diacritics=True)
        line += (
            f" (--strip-diacritics: {plain.segments} segment{'s' if plain.segments != 1 else ''})"
        )
    return line


# -- commands ---------------------------------------------------------------------------------


async def _cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    # As the client will send: each valid number once, whatever form it is written in.
    print(_estimate_line(args, len(split_recipients(args.to).valid)), file=out)
    async with _open_client(args) as client:
        to: str | list[str] = args.to[0] if len(args.to) == 1 else args.to
        result = await client.send(to, args.text, **_send_options(args))
    message_id = result.message_id or "none (the provider returns no id)"
    print(f"sent via {result.provider}: message id {message_id}", file=out)
    print(f"recipients: {', '.join(result.recipients)}", file=out)
    for bad in result.invalid:
        print(f"refused: {bad} ({bad.reason})", file=out)
    print(_send_cost(args, result), file=out)
    return EXIT_OK


def _price(args: argparse.Namespace) -> float:
    """The price of a segment: ``--price``, else the registry's."""
    price: float = args.price if getattr(args, "price", None) is not None else _provider(args).price
    return price


def _send_cost(args: argparse.Namespace, result: SendResult) -> str:
    """What one send cost: the provider's figure, else segments times the price, labelled."""
    unit = _provider(args).unit
    if result.cost is not None:
        return cost_text(result.cost, None, unit)
    segments = result.segments
    if segments is None:  # counted as the client sends it, as the estimate before sending was
        count = _provider(args).client.count_segments(
            args.text, strip_diacritics=args.strip_diacritics
        )
        segments = count.segments * len(result.recipients)
    return cost_text(0.0, segments * _price(args), unit)


def _priced(args: argparse.Namespace, report: BulkReport) -> BulkReport:
    """``report`` with its estimate at ``--price`` when given (the engine used the client's
    price), so the summary agrees with the estimate printed before sending."""
    registered = _provider(args).price
    if report.estimated_cost is None or getattr(args, "price", None) is None or not registered:
        return report
    return msgspec.structs.replace(
        report, estimated_cost=report.estimated_cost * args.price / registered
    )


async def _cmd_balance(args: argparse.Namespace, out: TextIO) -> int:
    async with _open_client(args) as client:
        balance = await client.balance()
    unit = balance.currency or "messages"
    print(f"{balance.provider}: {balance.amount:,.0f} {unit}", file=out)
    return EXIT_OK


def _status_lookup(args: argparse.Namespace) -> type:
    """What ``status`` asks the client for (a protocol of ``_console``), decided from its class
    before any credential is read or request made: a message or call lookup when given an id
    (and the client has one), else today's totals, else a usage error saying what is missing."""
    provider = _provider(args)
    cls = provider.client
    wanted: type = CallLookup if args.call else MessageLookup
    if args.id and issubclass(cls, wanted):
        return wanted
    if issubclass(cls, DailyTotalsLookup):
        return DailyTotalsLookup
    if issubclass(cls, wanted):
        ids = "message (or call) id" if issubclass(cls, CallLookup) else "message id"
        raise UsageError(f"{provider.title} status needs the {ids}")
    if issubclass(cls, MessageLookup | CallLookup):
        kind = "call" if args.call else "message"
        raise UsageError(f"{provider.title} has no {kind} status lookup")
    hint = ": receive delivery reports by webhook" if provider.webhook is not None else ""
    raise UsageError(f"{provider.title} has no status lookup{hint}")


async def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    lookup = _status_lookup(args)
    async with _open_client(args) as client:
        if lookup is DailyTotalsLookup and isinstance(client, DailyTotalsLookup):
            totals = await client.daily_totals()
            print(
                f"{totals.provider} today: {totals.success} succeeded, {totals.failed} failed, "
                f"{totals.pending} pending",
                file=out,
            )
        elif lookup is CallLookup and isinstance(client, CallLookup):
            call = await client.call_status(args.id)
            print(
                f"call {call.reference_id}: {call.status.value}, {call.duration or 0} s, "
                f"ivr {call.ivr or '-'}",
                file=out,
            )
        elif lookup is MessageLookup and isinstance(client, MessageLookup):
            await _print_message_status(client, args.id, out)
        else:  # the registry's class and the client built differ: a registry mistake
            raise TypeError(f"{type(client).__name__} lacks the {lookup.__name__} its class has")
    return EXIT_OK


async def _print_message_status(client: MessageLookup, sms_id: str, out: TextIO) -> None:
    """A sent message's state and counts, then each receiver's outcome."""
    status = await client.status(sms_id)
    state = status.status.name.lower().replace("_", " ") if status.status else "unknown"
    print(
        f"message {status.message_id}: {state}; {status.succeeded} succeeded, "
        f"{status.failed} failed of {status.total_receivers}",
        file=out,
    )
    for receiver in await client.receivers(sms_id):
        outcome = {True: "delivered", False: "failed", None: "pending"}[receiver.succeeded]
        print(f"  {receiver.phone}: {outcome}", file=out)


def _numbers(args: argparse.Namespace, stack: ExitStack) -> NumbersFile:
    """The numbers of ``--file`` (or stdin), closed with ``stack``: encoding, delimiter, header
    and column sniffed, and a file on disk read once through by the reader, so that what it
    cannot read is refused (``NumbersFileError``, exit 2) before anything is sent (a pipe,
    like stdin, is streamed: what cannot be read stops it, after the summary)."""
    path = None if args.file == "-" else args.file  # -: standard input, as no -f
    source = open_numbers(path, args.column, _stdin(args), lambda path: open(path, "rb"))  # noqa: SIM115
    return stack.enter_context(source)


def _stdin(args: argparse.Namespace) -> IO[bytes]:
    """Standard input as bytes (its encoding is detected), when no ``--file`` is given; a
    ``UsageError`` when there is none to read (closed: ``<&-``, or not a byte stream)."""
    if args.file is not None and args.file != "-":
        return io.BytesIO()  # not read
    stdin: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
    if stdin is None:
        raise UsageError("no numbers: standard input is closed; give them with -f FILE")
    return stdin


def _check_text(args: argparse.Namespace) -> None:
    """Refuse an empty (or blank) ``-m`` before any file is read."""
    if not args.text.strip():
        raise UsageError("-m/--text is empty: give the message content")


def _check_csv_path(args: argparse.Namespace) -> None:
    """Refuse ``--csv`` naming the numbers file itself: writing it would truncate the input."""
    if not args.csv_out or not args.file or args.file == "-" or not os.path.exists(args.csv_out):
        return
    try:
        same = os.path.samefile(args.csv_out, args.file)
    except OSError:  # the numbers file is missing: opening it says so
        return
    if same:
        raise UsageError(
            f"--csv {args.csv_out} is the numbers file (-f {args.file}); writing the outcomes "
            "there would overwrite the numbers: give another --csv file"
        )


def _report_input(source: NumbersFile, out: TextIO) -> None:
    """After a run: the rows without a valid number, by line; then why reading stopped, if it
    did (a bad byte on stdin), as the usage error the command ends with."""
    for line in source.problems():
        print(line, file=out)
    if source.error is not None:
        raise UsageError(f"{source.error}; reading stopped there")


class _Tally:
    """Counts the inputs of each outcome as they stream to ``on_result`` (then passes them on):
    the summary of a run that ends without its report (Ctrl-C, a failing CSV file)."""

    def __init__(self, then: Callable[[BulkOutcome], None] | None) -> None:
        self.counts: Counter[Outcome] = Counter()
        self._then = then

    def __call__(self, outcome: BulkOutcome) -> None:
        self.counts[outcome.outcome] += len(outcome.recipients)
        if self._then is not None:
            self._then(outcome)

    def summary(self, provider: str) -> str:
        """One line, as far as the run went."""
        return f"{provider}: stopped with " + ", ".join(
            f"{self.counts[o]:,} {o.value}"
            + ("s" if o is Outcome.DUPLICATE and self.counts[o] != 1 else "")
            for o in Outcome
        )


class _OutputFailed(Exception):
    """The outcomes file could not be written (a full disk): the run stops, exit 1, and the
    summary says what was sent."""


class _CsvOutcomes:
    """Writes each recipient's outcome as it happens: number, outcome, message id, detail."""

    def __init__(self, handle: TextIO, *, owned: bool) -> None:
        self._handle = handle
        self._owned = owned  # a file of ours, not standard output
        self._writer = csv.writer(handle)
        self._row(["number", "outcome", "message_id", "detail"])

    def __call__(self, outcome: BulkOutcome) -> None:
        message_id = outcome.result.message_id if outcome.result else ""
        detail = outcome.reason or (str(outcome.error) if outcome.error else "")
        for number in outcome.recipients:
            self._row([number, outcome.outcome.value, message_id or "", detail])

    def _row(self, row: list[object]) -> None:
        try:
            self._writer.writerow([cell(value) for value in row])
        except OSError as exc:
            raise self._failed(exc) from None

    def finish(self) -> None:
        """Flush what is written (a failure: ``_OutputFailed``)."""
        try:
            self._handle.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> _OutputFailed:
        """The error of a write that failed; the file is closed with what it could not take
        dropped, so that closing it later (the ExitStack) raises nothing more."""
        if self._owned:
            with contextlib.suppress(OSError):
                self._handle.close()
        return _OutputFailed(f"cannot write the outcomes file: {exc.strerror or exc}")


def _open_csv(args: argparse.Namespace, stack: ExitStack, out: TextIO) -> TextIO | None:
    """The CSV of outcomes to write (``--csv``; ``-``: standard output), closed with
    ``stack``, or None."""
    if not args.csv_out:
        return None
    return _csv_file(args.csv_out, out, stack)


async def _cmd_bulk(args: argparse.Namespace, out: TextIO) -> int:
    _check_text(args)
    _check_csv_path(args)
    print(_estimate_line(args, None), file=out)
    with ExitStack() as stack:
        # Numbers are read lazily, a row at a time, as the engine takes them.
        source = _numbers(args, stack)
        print(source.describe(), file=out)
        csv_out = _open_csv(args, stack, out)
        outcomes = _CsvOutcomes(csv_out, owned=csv_out is not out) if csv_out else None
        tally = _Tally(outcomes)
        async with _open_client(args) as client:
            with progress_bars(not args.no_progress, out) as bars:
                bar = bars(client.provider, None)
                try:
                    report = await client.send_bulk(
                        source,
                        args.text,
                        concurrency=args.concurrency,
                        on_progress=bar,
                        on_result=tally,
                        keep_results=False,
                        **_send_options(args),
                    )
                except BaseException:  # Ctrl-C, a failing CSV: the summary, as far as it went
                    bar(None)
                    print(tally.summary(client.provider), file=out)
                    for line in source.problems():
                        print(line, file=out)
                    if csv_out is not None:
                        with contextlib.suppress(Exception):
                            csv_out.flush()
                        print(f"per-recipient outcomes so far: {args.csv_out}", file=out)
                    out.flush()
                    raise
                bar(None)
        written: _OutputFailed | None = None
        if outcomes is not None:
            try:
                outcomes.finish()
            except _OutputFailed as exc:
                written = exc
    print_report(_priced(args, report), out)
    if written is not None:
        # Sent all the same: the report above is the record; exit 1, not a usage error.
        print(f"smsvn: error: {written}", file=sys.stderr)
        _report_input(source, out)
        return EXIT_ERROR
    if args.csv_out:
        print(f"per-recipient outcomes: {args.csv_out}", file=out)
    print(_FOR_WHAT_MATTERS, file=out)
    _report_input(source, out)
    failed = report.aborted is not None or report.failed or report.unknown
    # Nothing accepted (an empty file, a column a spreadsheet turned into 8.49E+10) is no
    # success either.
    return EXIT_ERROR if failed or not report.accepted else EXIT_OK


# -- campaigns --------------------------------------------------------------------------------


async def _cmd_campaign(args: argparse.Namespace, out: TextIO) -> int:
    steps: dict[str, Callable[[argparse.Namespace, TextIO], Awaitable[int]]] = {
        "run": _campaign_send,
        "work": _campaign_send,
        "status": _campaign_status,
        "export": _campaign_export,
        "resolve": _campaign_resolve,
    }
    return await steps[args.step](args, out)


async def _campaign_send(args: argparse.Namespace, out: TextIO) -> int:
    """``campaign run`` (add the file's numbers once, then send) and ``campaign work`` (send)."""
    importing = args.step == "run"
    _cli_advertising.check_args(args)  # before anything is added
    with ExitStack() as stack:
        source = None
        if importing:
            _check_text(args)
            print(_estimate_line(args, None), file=out)
            source = _numbers(args, stack)  # a file that cannot be read: refused here
            print(source.describe(), file=out)
        return await _campaign_run(args, source, out)


async def _campaign_run(args: argparse.Namespace, source: NumbersFile | None, out: TextIO) -> int:
    """Add ``source``'s numbers (``campaign run``), then send what is pending."""
    async with Journal(args.journal) as journal:
        campaign = await journal.campaign(args.name, create=source is not None)
        if source is not None:
            try:
                await _import(campaign, source, args, out)
            except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C while adding
                with contextlib.suppress(Exception):
                    print_counts(campaign.name, await campaign.counts(), out)
                print(
                    f"stopped while adding; resume with: {_resume_command(args)}",
                    file=out,
                    flush=True,
                )
                raise
            for line in source.problems():
                print(line, file=out)
        async with _open_client(args) as client, _guarded(args, journal, client) as guard:
            pending = (await campaign.counts()).pending
            with progress_bars(not args.no_progress, out) as bars:
                bar = bars(f"{client.provider}", pending)
                try:
                    report = await campaign.run(
                        client,
                        concurrency=args.concurrency,
                        lease=args.lease,
                        on_progress=bar,
                        guard=guard,
                        purpose=args.purpose,
                        **_send_options(args),
                    )
                except BaseException:  # Ctrl-C, a lost lease, a failing journal: the summary
                    bar(None)
                    with contextlib.suppress(Exception):
                        print_counts(campaign.name, await campaign.counts(), out)
                    resume = _resume_command(args, added=True)
                    print(f"stopped; resume with: {resume}", file=out, flush=True)
                    raise
                bar(None)
        print_report(_priced(args, report), out)
        counts = await campaign.counts()
    print_counts(campaign.name, counts, out)
    if counts.unknown:
        print(
            f"{counts.unknown:,} unknown: they may have been sent and are never resent "
            f"automatically; list them with `smsvn campaign export --state unknown`, check "
            "them with the provider, then `smsvn campaign resolve`",
            file=out,
        )
    if counts.unsettled:
        print(f"not finished; resume with: {_resume_command(args, added=True)}", file=out)
    unsettled = counts.unsettled or counts.unknown or counts.failed
    nothing = not counts.sent  # nothing in the campaign was ever sent: all invalid, or empty
    return EXIT_ERROR if unsettled or nothing or report.aborted is not None else EXIT_OK


@asynccontextmanager
async def _guarded(
    args: argparse.Namespace, journal: Journal, client: BaseClient
) -> AsyncIterator[Guard | None]:
    """The advertising guard of ``--purpose advertising|registration`` (records in the
    journal), open for the run; None for any other purpose."""
    guard = _cli_advertising.guard_for(args, journal, client)
    if guard is None:
        yield None
        return
    async with guard:
        yield guard


def _csv_file(path: str, out: TextIO, stack: ExitStack) -> TextIO:
    """Where a CSV goes: the file ``path`` (closed with ``stack``), or ``out`` for -."""
    if path == "-":
        return out
    return stack.enter_context(open(path, "w", newline="", encoding="utf-8"))


async def _import(
    campaign: Campaign, source: NumbersFile, args: argparse.Namespace, out: TextIO
) -> None:
    """Add the file's numbers with the text (once: the same file again adds nothing). A
    campaign started with another text is refused: every number would get both."""
    texts = await campaign.texts()
    if texts and args.text not in texts:
        raise UsageError(
            f"campaign {campaign.name!r} was started with another text; each number would get "
            "both. Use another --name, or `smsvn campaign work` to finish it"
        )
    added = await campaign.add(source, content=args.text)
    print(
        f"{campaign.name}: {added.read:,} read: {added.added:,} new, {added.already:,} already "
        f"in the campaign, {added.invalid:,} invalid, {added.duplicates:,} duplicates",
        file=out,
    )
    if source.error is not None:  # stdin: nothing sent yet; the numbers before it are kept
        for line in source.problems():
            print(line, file=out)
        raise UsageError(
            f"{source.error}; nothing was sent. Fix the input and run the same command again "
            "(the numbers already added are not added twice)"
        )


def _resume_command(args: argparse.Namespace, *, added: bool = False) -> str:
    """The command that resumes this run, without credentials (those come from the
    environment) and without a PostgreSQL password; a journal from ``$SMSVN_JOURNAL`` is left
    to it. ``added``: every number of the input is in the campaign (then a run fed on
    standard input resumes as ``campaign work``, which reads no input)."""
    from_stdin = args.step == "run" and args.file in (None, "-")
    step = "work" if from_stdin and added else args.step
    words = ["smsvn", "campaign", step]
    if args.journal != os.environ.get(JOURNAL_ENV):
        words += ["--journal", redact_url(args.journal)]
    words += ["--name", args.name, "-p", args.provider]
    if step == "run":
        words += ["-f", args.file or "-"]  # -: the same input again, on standard input
        if args.column:
            words += ["--column", args.column]
        words += ["-m", args.text]
    if args.purpose:
        words += ["--purpose", args.purpose]
    if args.advertiser:
        words += ["--advertiser", args.advertiser]
    words += _cli_advertising.resume_words(args)
    if args.sandbox:
        words.append("--sandbox")
    if args.base_url:
        words += ["--base-url", args.base_url]
    for option in _sender_options():
        if getattr(args, option, None):
            words += [_flag(option), getattr(args, option)]
    if args.sms_type is not None:
        words += ["--sms-type", str(args.sms_type)]
    if args.strip_diacritics:
        words.append("--strip-diacritics")
    if args.rate_limit is not None:
        words += ["--rate-limit", args.rate_limit]
    if args.redis and args.redis != os.environ.get(REDIS_ENV):
        words += ["--redis", redact_url(args.redis)]
    if args.redis_prefix != DEFAULT_PREFIX:
        words += ["--redis-prefix", args.redis_prefix]
    return shlex.join(words)


async def _campaign_status(args: argparse.Namespace, out: TextIO) -> int:
    async with Journal(args.journal) as journal:
        names = [args.name] if args.name else await journal.campaigns()
        for name in names:
            campaign = await journal.campaign(name, create=False)
            print_counts(name, await campaign.counts(), out)
    if not names:
        print("no campaign in this journal", file=out)
    return EXIT_OK


async def _campaign_export(args: argparse.Namespace, out: TextIO) -> int:
    check_not_journal(args.csv, args.journal, "--csv")
    async with Journal(args.journal) as journal:
        # The campaign first: a mistyped --name leaves an existing --csv file as it was.
        campaign = await journal.campaign(args.name, create=False)
        with ExitStack() as stack:
            writer = csv.writer(_csv_file(args.csv, out, stack))
            writer.writerow(
                ["phone", "state", "message_id", "request_id", "provider", "attempts", "detail",
                 "content"]
            )  # fmt: skip
            rows = 0
            async for r in campaign.recipients(state=args.state):
                writer.writerow(
                    [cell(v) for v in (r.phone, r.state, r.message_id or "", r.request_id or "",
                     r.provider or "", r.attempts, r.error or "", r.content)]
                )  # fmt: skip
                rows += 1
    if args.csv != "-":
        print(f"{rows:,} inputs written to {args.csv}", file=out)
    return EXIT_OK


async def _campaign_resolve(args: argparse.Namespace, out: TextIO) -> int:
    async with Journal(args.journal) as journal:
        campaign = await journal.campaign(args.name, create=False)
        changed = await campaign.resolve(
            args.outcome, phones=None if args.all else args.phone, note=args.note
        )
        counts = await campaign.counts()
    print(f"{changed:,} unknown input(s) resolved as {args.outcome}", file=out)
    print_counts(campaign.name, counts, out)
    if not args.all and changed < len(set(args.phone)):
        # A number named that was not unknown (or not in the campaign): say so, exit 1.
        print(
            f"{len(set(args.phone)) - changed:,} of the numbers given were not unknown in "
            f"{campaign.name!r}: nothing changed for them",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK


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
        numbers=args.numbers,
        seed=args.seed,
        progress=not args.no_progress,
        out=out,
        crash_numbers=args.crash_numbers,
    )


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, TextIO], Any]]] = {
    "send": _cmd_send,
    "balance": _cmd_balance,
    "status": _cmd_status,
    "bulk": _cmd_bulk,
    "campaign": _cmd_campaign,
    "advertising": _cli_advertising.command,
    "sandbox": _cmd_sandbox,
    "demo": _cmd_demo,
}


# -- entry point ------------------------------------------------------------------------------


_STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


async def _stoppable(command: Awaitable[int]) -> int:
    """Run ``command`` so that SIGTERM and SIGHUP (systemd, Docker, Kubernetes stopping a
    ``campaign work``) stop it as Ctrl-C does: cancelled, with its summary and the command
    that resumes it, rather than killed mid-request."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []
    for number in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(number, task.cancel if task is not None else _nothing)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            continue
        installed.append(number)
    try:
        return await command
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


def _nothing() -> None:
    """A signal handler with nothing to stop."""


class _PrintableFormatter(logging.Formatter):
    """The log's lines with control characters escaped: a provider's message goes into them,
    and a terminal would act on its escape sequences."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return printable(self._inner.format(record))


def _fail(message: str, code: int) -> NoReturn:
    print(f"smsvn: error: {printable(message)}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_PrintableFormatter(handler.formatter))
    for stream in (sys.stdout, sys.stderr):
        # A console that cannot show Vietnamese (cp1252, a redirect) gets \u escapes, not a
        # traceback after the messages were sent.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    out = sys.stdout
    try:
        return int(asyncio.run(_stoppable(_COMMANDS[args.command](args, out))))
    except KeyboardInterrupt:
        print("smsvn: interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM or SIGHUP, handled as Ctrl-C is
        print("smsvn: terminated", file=sys.stderr)
        return 143
    except (LeaseLost, _OutputFailed) as exc:
        if args.debug:
            raise
        _fail(str(exc), EXIT_ERROR)
    except (UsageError, ValidationError, NumbersFileError) as exc:
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
