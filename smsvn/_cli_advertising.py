"""The command line's part of ``smsvn.advertising``: ``smsvn advertising dnc|consent|refuse|
export``, and the guard a ``smsvn campaign run|work --purpose advertising`` runs with.

Records live in the campaign journal (``--journal``), so every runner of a campaign, on any
machine sharing a PostgreSQL journal, keeps the same caps and sees the same refusals."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import time
from typing import Any, TextIO

from smsvn._cli_files import check_not_journal
from smsvn.advertising import ComplianceError, Guard, Purpose, Rules, Window
from smsvn.advertising._rules import DAY, content_problems
from smsvn.errors import ValidationError
from smsvn.journal import Journal
from smsvn.providers._base import BaseClient

__all__ = ["add_parser", "check_args", "command", "guard_for", "purpose_options", "resume_words"]

_PURPOSES = tuple(p.value for p in Purpose)
_WAYS = ("reply", "form", "message", "software")


def purpose_options(sub: argparse.ArgumentParser) -> None:
    """``--purpose`` and ``--advertiser`` for ``campaign run|work``."""
    sub.add_argument(
        "--purpose",
        choices=_PURPOSES,
        help="why the campaign is sent; advertising and registration run within Decree 91's "
        "rules (hours, caps, Do-Not-Call, consent; see `smsvn advertising -h`)",
    )
    sub.add_argument("--advertiser", help="whose caps and records (with --purpose advertising)")
    sub.add_argument(
        "--sms-window",
        type=_window,
        help="the hours advertising SMS may go out, Vietnam time (default 07:00-22:00, Art. "
        "13(6); only narrower if agreed otherwise): HH:MM-HH:MM, 24:00 for the day's end",
    )
    sub.add_argument(
        "--sms-per-day",
        type=int,
        help="advertising SMS per number per 24 hours (default 3, Art. 13(5))",
    )
    sub.add_argument(
        "--snapshot-max-age",
        type=_max_age,
        metavar="DAYS",
        help="days from the start of the Do-Not-Call snapshot's date after which nothing is "
        "advertised under it (default 7; 'none': any age; the Decree sets no period)",
    )


def check_args(args: argparse.Namespace) -> None:
    """Refuse a ``--purpose`` run that could not go ahead, before anything is added: no
    ``--advertiser``, or a text (``campaign run``) that breaks the rules of its purpose."""
    purpose = getattr(args, "purpose", None)
    if purpose not in (Purpose.ADVERTISING, Purpose.REGISTRATION):
        return
    if not args.advertiser:
        raise ValidationError(f"--purpose {purpose} needs --advertiser (whose caps and records)")
    text = getattr(args, "text", None)
    if text is not None:
        problems = content_problems(Rules(advertiser=args.advertiser), text, Purpose(purpose))
        if problems:
            raise ComplianceError(problems)


def guard_for(args: argparse.Namespace, journal: Journal, client: BaseClient) -> Guard | None:
    """The guard ``campaign run|work`` runs with: None unless the purpose is advertising or
    registration. The brandname is the client's sender (its flag or its environment)."""
    purpose = getattr(args, "purpose", None)
    if purpose not in (Purpose.ADVERTISING, Purpose.REGISTRATION):
        return None
    check_args(args)
    option = type(client).sender_option
    sender = getattr(client, option, None) if option else None
    settings: dict[str, Any] = {}
    if args.sms_window is not None:
        settings["sms_window"] = args.sms_window
    if args.sms_per_day is not None:
        settings["sms_per_day"] = args.sms_per_day
    if args.snapshot_max_age is not None:
        settings["snapshot_max_age"] = args.snapshot_max_age or None
    rules = Rules(advertiser=args.advertiser, brandname=sender or None, **settings)
    return Guard(rules, journal)


def resume_words(args: argparse.Namespace) -> list[str]:
    """The advertising limits a run was given (``--sms-window``, ``--sms-per-day``,
    ``--snapshot-max-age``), as flags for the command that resumes it: without them it would
    advertise under the defaults, not what was agreed."""
    words: list[str] = []
    window = getattr(args, "sms_window", None)
    if window is not None:
        end = "24:00" if window.end == time.max else f"{window.end:%H:%M}"
        words += ["--sms-window", f"{window.start:%H:%M}-{end}"]
    if getattr(args, "sms_per_day", None) is not None:
        words += ["--sms-per-day", str(args.sms_per_day)]
    age = getattr(args, "snapshot_max_age", None)
    if age is not None:
        words += ["--snapshot-max-age", f"{age / DAY:g}" if age else "none"]
    return words


def _max_age(text: str) -> float:
    """``--snapshot-max-age``: days as seconds; ``none`` as 0.0 (no limit)."""
    if text.strip().lower() == "none":
        return 0.0
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not 0 < days < 3650:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (or 'none')")
    return days * DAY


def _window(text: str) -> Window:
    """``HH:MM-HH:MM`` (``24:00``: the end of the day) as a ``Window``."""
    try:
        start, end = (part.strip() for part in text.split("-"))
        return Window(_hour(start), time.max if end == "24:00" else _hour(end))
    except (ValueError, ValidationError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not HH:MM-HH:MM ({exc})") from None


def _hour(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def add_parser(commands: Any, journal_options: Callable[..., None]) -> None:
    """``smsvn advertising dnc|consent|refuse|export``."""
    about = (
        "Decree 91/2020/ND-CP records in a campaign journal: the Do-Not-Call snapshot, "
        "consents, refusals; export them"
    )
    top = commands.add_parser("advertising", help=about, description=about)
    steps = top.add_subparsers(dest="step", required=True, metavar="STEP")

    dnc = steps.add_parser("dnc", help="load a Do-Not-Call snapshot (replaces the last one)")
    journal_options(dnc, name=False)
    dnc.add_argument(
        "-f", "--file", required=True, help="one number a line (or CSV: the first column)"
    )
    dnc.add_argument("--snapshot", required=True, help="the date the list was taken (YYYY-MM-DD)")
    dnc.add_argument("--channel", choices=("sms", "call"), default="sms")

    consent = steps.add_parser("consent", help="record the consent of the numbers of a file")
    journal_options(consent, name=False)
    consent.add_argument("--advertiser", required=True)
    consent.add_argument("-f", "--file", required=True, help="one number a line (or CSV)")
    consent.add_argument(
        "--how", required=True, choices=_WAYS, help="how it was given (Art. 11(2))"
    )

    refuse = steps.add_parser("refuse", help="record a refusal: nothing more to that number")
    journal_options(refuse, name=False)
    refuse.add_argument("--advertiser", required=True)
    refuse.add_argument("--phone", action="append", required=True, help="repeatable")

    export = steps.add_parser("export", help="every record, as CSV")
    journal_options(export, name=False)
    export.add_argument("--advertiser", required=True)
    export.add_argument("--csv", required=True, help="the file to write")
    export.add_argument(
        "--kind", choices=("sent", "registration", "consent", "refusal", "confirmation")
    )


async def command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``smsvn advertising STEP``."""
    if args.step == "export":
        check_not_journal(args.csv, args.journal, "--csv")  # the refusals would go with it
    advertiser = getattr(args, "advertiser", None) or "-"
    async with (
        Journal(args.journal) as journal,
        Guard(Rules(advertiser=advertiser), journal) as guard,
    ):
        if args.step == "dnc":
            loaded = await guard.load_do_not_call(
                args.file, snapshot=args.snapshot, channel=args.channel
            )
            print(
                f"Do-Not-Call ({loaded.channel}) snapshot of {loaded.snapshot}: "
                f"{loaded.numbers:,} numbers, {loaded.skipped:,} lines skipped",
                file=out,
            )
        elif args.step == "consent":
            recorded, skipped = await guard.import_consents(args.file, how=args.how)
            print(
                f"{recorded:,} consents recorded ({args.how}), {skipped:,} lines skipped", file=out
            )
        elif args.step == "refuse":
            for number in args.phone:
                await guard.refuse(number, detail="recorded by hand")
            print(f"{len(args.phone):,} refusals recorded", file=out)
        else:
            count = await guard.export_csv(args.csv, kind=args.kind)
            print(f"{count:,} records written to {args.csv}", file=out)
    return 0
