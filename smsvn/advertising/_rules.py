"""The rules of Decree 91/2020/ND-CP as settings, and the checks that need no records.

Article numbers are those of Decree 91/2020/ND-CP on fighting spam messages, emails and calls,
and of Circular 22/2021/TT-BTTTT; see the README's "Advertising" section. This is a tool to help
follow the rules, not legal advice: every default can be changed.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Final, cast

from smsvn.advertising._records import normal_advertiser
from smsvn.errors import RateLimited, SmsError, ValidationError
from smsvn.models import InvalidNumber

__all__ = [
    "DAY",
    "VIETNAM",
    "Blocked",
    "BlockedNumber",
    "ComplianceError",
    "OutsideWindow",
    "Purpose",
    "Rule",
    "Rules",
    "Window",
    "content_problems",
    "first_word",
    "message_problems",
]

VIETNAM: Final = timezone(timedelta(hours=7), "ICT")
"""Vietnam's time (Asia/Ho_Chi_Minh): UTC+7 all year, no daylight saving since 1975."""
DAY: Final = 24 * 3600.0
YEAR: Final = 365 * DAY
SNAPSHOT_MAX_AGE: Final = 7 * DAY
"""``Rules.snapshot_max_age`` by default: a Do-Not-Call snapshot serves for a week."""


class Purpose(enum.StrEnum):
    """Why a message is sent: stated, never guessed (customer care and OTP are not
    advertising, and the rules apply only to advertising and its registration message)."""

    ADVERTISING = "advertising"
    REGISTRATION = "registration"
    """The one message that asks a number to agree to advertising (``DKQC ...``)."""
    CUSTOMER_CARE = "customer_care"
    OTP = "otp"


class Rule(enum.StrEnum):
    """Which rule kept a number from a message."""

    DO_NOT_CALL = "do_not_call"
    """Art. 7(3), 11(1), 13(1): the number is on the Do-Not-Call list."""
    REFUSED = "refused"
    """Art. 13(3)-(4): the number refused advertising (and has not consented since)."""
    NO_CONSENT = "no_consent"
    """Art. 11(2): no consent is recorded for the number."""
    CAP = "cap"
    """Art. 13(5): the number already got its advertising for the last 24 hours."""
    REGISTERED = "registered"
    """Art. 13(2), Circular 22 Art. 8: the number already got its one registration message."""


class BlockedNumber(InvalidNumber):
    """A number the guard kept from a message: reported like an invalid number (``reason``
    says why in words), with the ``rule`` that kept it."""

    __slots__ = ("rule",)
    rule: Rule

    def __new__(cls, number: str, reason: str, rule: Rule) -> BlockedNumber:
        self = cast("BlockedNumber", super().__new__(cls, number, reason))
        self.rule = rule
        return self

    def __repr__(self) -> str:
        return f"BlockedNumber({str(self)!r}, reason={self.reason!r}, rule={self.rule.value!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (BlockedNumber, (str(self), self.reason, self.rule))


class ComplianceError(ValidationError):
    """The message itself breaks a rule (no ``[QC]`` label, no opt-out, a registration message
    that does not start with ``DKQC``, a malformed brandname): nothing was sent. ``problems``
    lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class OutsideWindow(RateLimited):
    """Advertising is not allowed at this hour (Art. 13(6)); nothing was sent. ``opens_at`` is
    when it is next allowed (Vietnam time) and ``retry_after`` the seconds until then. A
    ``RateLimited``: a bulk run or a campaign stops and hands its batches back, unsent."""

    def __init__(self, message: str, *, opens_at: datetime, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.opens_at = opens_at


class Blocked(SmsError):
    """Every recipient of a send was kept from it by a rule: nothing was sent. ``blocked``
    holds each number with its reason."""

    def __init__(self, blocked: tuple[BlockedNumber, ...]) -> None:
        reasons = sorted({n.reason for n in blocked})
        super().__init__(f"every recipient is blocked ({'; '.join(reasons)})")
        self.blocked = blocked


@dataclass(frozen=True)
class Window:
    """Hours of the day (Vietnam time) when advertising is allowed: from ``start`` up to, not
    including, ``end`` (whether ``end`` itself is inside is an open question: the safe
    reading)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if not isinstance(value, time) or value.tzinfo is not None:
                raise ValidationError("a window's start and end are naive datetime.time values")
        if not self.start < self.end:
            raise ValidationError("a window's start must come before its end, the same day")

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (any aware datetime) falls inside, in Vietnam time."""
        local = moment.astimezone(VIETNAM).time().replace(tzinfo=None)
        return self.start <= local < self.end

    def opens_at(self, moment: datetime) -> datetime:
        """``moment`` itself when it is inside, else the next start (Vietnam time)."""
        local = moment.astimezone(VIETNAM)
        if self.contains(local):
            return local
        start = datetime.combine(local.date(), self.start, VIETNAM)
        if local < start:
            return start
        return datetime.combine(local.date() + timedelta(days=1), self.start, VIETNAM)

    def closes_at(self, moment: datetime) -> datetime:
        """The end of the period ``moment`` is in, or of the next one."""
        opens = self.opens_at(moment)
        return datetime.combine(opens.date(), self.end, VIETNAM)


_LABELS: Final = ("[QC]", "[AD]")
_REFUSAL_WORDS: Final = ("TC", "HUY", "STOP")
_BRANDNAME_MAX: Final = 11


@dataclass(frozen=True, kw_only=True)
class Rules:
    """What the guard enforces, each default with its article (README, "Advertising").

    ``advertiser`` names whose caps and records these are (Art. 13(5): per advertiser, per
    number). Records are kept under its normal form (``normal_advertiser``: NFC, case folded,
    whitespace collapsed), so "Shop ABC" and " shop  abc" share them; the name stays as given
    here (the confirmation message names it). ``brandname``: the registered sender advertising
    goes under (Art. 13(8), 23; at most 11 characters, not all digits); the client must send
    under it.
    """

    advertiser: str
    brandname: str | None = None
    sms_window: Window = field(default_factory=lambda: Window(time(7), time(22)))
    """Art. 13(6): advertising SMS between 07:00 and 22:00."""
    call_window: Window = field(default_factory=lambda: Window(time(8), time(17)))
    """Art. 13(6): advertising calls between 08:00 and 17:00."""
    sms_per_day: int = 3
    """Art. 13(5): advertising SMS per number per 24 hours."""
    calls_per_day: int = 1
    """Art. 13(5): advertising calls per number per 24 hours."""
    labels: tuple[str, ...] = _LABELS
    """Art. 15: an advertising SMS starts with one of these."""
    refusal_words: tuple[str, ...] = _REFUSAL_WORDS
    """An inbound SMS whose first word is one of these (any case, accents ignored) refuses; an
    advertisement must name one in its last ``opt_out_tail`` characters (Art. 13(4), 16)."""
    opt_out_tail: int = 80
    consent_words: tuple[str, ...] = ()
    """A reply whose first word is one of these (any case, accents ignored; say ``("Y",)`` when
    the registration message asks for "soan Y gui 8079"), from a number that got the
    registration message, is recorded as its consent (Art. 11(2): a reply to the registration
    SMS). None by default: the registration message names its own word."""
    require_consent: bool = True
    """Art. 11(2): advertising only to numbers that consented (``Guard.consent``)."""
    registration_prefix: str = "DKQC"
    """Art. 13(2), Circular 22 Art. 8: the registration message starts with it."""
    confirmation: str = "Ban da tu choi nhan tin quang cao tu {advertiser}. Cam on quy khach."
    """Art. 13(4): the one message that confirms a refusal (no advertising in it)."""
    keep_for: float = YEAR
    """Art. 11: records are kept at least a year (``Guard.prune`` keeps this long)."""
    snapshot_max_age: float | None = SNAPSHOT_MAX_AGE
    """Seconds from the start (Vietnam time) of the day a Do-Not-Call snapshot was taken after
    which no advertising or registration message goes out under it: numbers join the list
    every day (Art. 7(3)), and a stale copy lets their messages through. The Decree sets no
    period; a week is this library's choice. None: any age."""

    def __post_init__(self) -> None:
        if not isinstance(self.advertiser, str) or not normal_advertiser(self.advertiser):
            raise ValidationError("rules need an advertiser (whose caps and records they are)")
        if self.brandname is not None:
            problem = brandname_problem(self.brandname)
            if problem:
                raise ValidationError(problem)
        for name in ("sms_per_day", "calls_per_day", "opt_out_tail"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValidationError(f"{name} must be a non-negative integer")
        for name in ("sms_window", "call_window"):
            if not isinstance(getattr(self, name), Window):
                raise ValidationError(f"{name} must be an advertising.Window")
        labels = self.labels
        if (
            not isinstance(labels, tuple | list)
            or not labels
            or not all(isinstance(x, str) and x.strip() for x in labels)
        ):
            raise ValidationError("labels must be a tuple of non-empty strings, such as ('[QC]',)")
        words = self.refusal_words
        if (
            not isinstance(words, tuple | list)
            or not words
            or not all(isinstance(w, str) and _plain(w).strip() for w in words)
        ):
            raise ValidationError(
                "refusal_words must be a tuple of non-empty strings, such as ('TC', 'HUY')"
            )
        consent = self.consent_words
        if not isinstance(consent, tuple | list) or not all(
            isinstance(w, str) and _plain(w).strip() for w in consent
        ):
            raise ValidationError("consent_words must be a tuple of non-empty strings")
        if {first_word(w) for w in consent} & {first_word(w) for w in words}:
            raise ValidationError("a word cannot both refuse and consent")
        if not isinstance(self.registration_prefix, str) or not self.registration_prefix.strip():
            raise ValidationError("registration_prefix must be a non-empty string")
        if not isinstance(self.opt_out_tail, int) or self.opt_out_tail < 1:
            raise ValidationError("opt_out_tail must be a positive number of characters")
        if not isinstance(self.confirmation, str) or not self.confirmation.strip():
            raise ValidationError("the confirmation must be a non-empty string")
        keep_for = self.keep_for
        if (
            not isinstance(keep_for, int | float)
            or isinstance(keep_for, bool)
            or keep_for != keep_for
        ):
            raise ValidationError("keep_for is a number of seconds")
        if not keep_for >= YEAR:
            raise ValidationError(
                "records are kept at least a year (Art. 11): keep_for >= 365 days"
            )
        age = self.snapshot_max_age
        if age is not None and (
            not isinstance(age, int | float) or isinstance(age, bool) or not 0 < age < 10 * YEAR
        ):
            raise ValidationError(
                "snapshot_max_age is a positive number of seconds (such as 7 * 86400), or None"
            )

    def window(self, channel: str) -> Window:
        return self.call_window if channel == "call" else self.sms_window

    def per_day(self, channel: str) -> int:
        return self.calls_per_day if channel == "call" else self.sms_per_day

    def confirmation_text(self) -> str:
        return self.confirmation.replace("{advertiser}", self.advertiser)


def brandname_problem(name: object) -> str | None:
    """Why ``name`` cannot be a brandname (Art. 13(8), 23), or None."""
    if not isinstance(name, str) or not name.strip():
        return "a brandname is a non-empty string"
    if len(name) > _BRANDNAME_MAX:
        return f"a brandname has at most {_BRANDNAME_MAX} characters, not {len(name)}"
    if name.isdigit():
        return "a brandname may not be all digits"
    return None


def _plain(text: str) -> str:
    """``text`` without accents, upper case: how refusal words are compared (``Hủy`` = HUY)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


_WORD: Final = re.compile(r"[A-Z0-9]+")


def first_word(text: str) -> str:
    """The first word of an inbound SMS, accents removed, upper case ('' when none)."""
    found = _WORD.search(_plain(text))
    return found.group() if found else ""


def message_problems(rules: Rules, content: str, purpose: Purpose, channel: str) -> list[str]:
    """What is wrong with the message itself, for its purpose (empty when nothing)."""
    if purpose not in (Purpose.ADVERTISING, Purpose.REGISTRATION) or channel == "call":
        return []
    problems = []
    if rules.brandname is None:
        problems.append(
            "advertising goes under a registered brandname (Art. 13(8)): set Rules(brandname=...)"
        )
    return problems + content_problems(rules, content, purpose)


def content_problems(rules: Rules, content: str, purpose: Purpose) -> list[str]:
    """What is wrong with an SMS's text for its purpose: the label and the way to refuse of an
    advertisement, the prefix of a registration message (empty when nothing)."""
    body = content.lstrip()
    if purpose is Purpose.REGISTRATION:
        if not body.startswith(rules.registration_prefix):
            return [
                f"a registration message starts with {rules.registration_prefix!r} "
                "(Circular 22/2021 Art. 8)"
            ]
        return []
    if purpose is not Purpose.ADVERTISING:
        return []
    problems = []
    if not body.startswith(rules.labels):
        labels = " or ".join(repr(x) for x in rules.labels)
        problems.append(f"an advertising SMS starts with {labels} (Art. 15)")
    tail = set(_WORD.findall(_plain(content[-rules.opt_out_tail :])))
    if not tail.intersection(_plain(w).strip() for w in rules.refusal_words):
        words = ", ".join(rules.refusal_words)
        problems.append(
            f"an advertising SMS ends with how to refuse: one of {words} in its last "
            f"{rules.opt_out_tail} characters (Art. 13(4), 16)"
        )
    return problems
