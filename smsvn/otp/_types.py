"""What the verifier and its stores share: the errors, the check reasons, and the store protocol
with the records that cross it.

A store never sees a code or a phone number: it is given keyed digests (HMACs) of both, and the
times to use (the verifier's clock), and it does each step -- start a send, undo a send that
provably did not go out, check a code -- atomically, wherever its state lives.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec

from smsvn.errors import SmsError

__all__ = [
    "Blocked",
    "Checked",
    "Claim",
    "OtpError",
    "Reason",
    "Refusal",
    "Start",
    "Store",
    "StoreError",
    "TooSoon",
    "Window",
    "span",
    "ticks",
    "ticks_up",
]


class OtpError(SmsError):
    """A verification step that was refused (nothing sent, no attempt counted);
    ``retry_after`` is the number of seconds until it would be allowed."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooSoon(OtpError):
    """A code was sent to this number less than ``resend_after`` seconds ago."""


class Blocked(OtpError):
    """A cap holds this number (or every number) back: ``reason`` says which one --
    ``"too_many_attempts"`` (the live code's attempts are used up: until it expires),
    ``"number_hour"``, ``"number_day"`` (sends to this number) or ``"global_hour"`` (sends to
    all numbers: the SMS-pumping budget)."""

    def __init__(self, message: str, *, retry_after: float, reason: str) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason


class StoreError(SmsError):
    """The verification store failed (Redis unreachable, a timeout). For ``start``: nothing was
    sent. For ``check``: the code was not approved (an attempt may have been counted)."""


class Reason(enum.StrEnum):
    """Why a check answered as it did."""

    APPROVED = "approved"
    """The code was right; the verification is used up (a code works once)."""
    WRONG_CODE = "wrong_code"
    """The code was wrong; one attempt was counted."""
    EXPIRED = "expired"
    """The code's time is up (not counted)."""
    NOT_FOUND = "not_found"
    """No verification for this number: none started, already approved, or long expired."""
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    """The attempts are used up; nothing is compared until the verification expires."""


class Refusal(enum.IntEnum):
    """Why a store did not grant a send (``Claim.refusal``)."""

    NONE = 0
    LOCKED = 1
    """The live verification's attempts are used up."""
    TOO_SOON = 2
    """Inside the resend cooldown."""
    CAPPED = 3
    """A send cap is full (``Claim.cap`` says which)."""


class Window(NamedTuple):
    """A send cap: at most ``limit`` sends in any ``seconds``."""

    seconds: float
    limit: int


def ticks(seconds: float) -> int:
    """Seconds (a time of the verifier's clock, or a duration) as whole microseconds, rounded
    down, exactly (``seconds * 1e6`` may itself round up across a microsecond): the unit every
    store decides in, so that two stores given the same times decide alike at every instant.

    An instant is rounded down and so is a code's expiry (it dies at most a microsecond early);
    the end of a rule that holds sends back (a cooldown's end, the time a send is counted from
    in a cap) is rounded up (``ticks_up``), so that in doubt the rule holds.
    """
    numerator, denominator = seconds.as_integer_ratio()
    return numerator * 1_000_000 // denominator


def ticks_up(seconds: float) -> int:
    """``ticks`` rounded up."""
    numerator, denominator = seconds.as_integer_ratio()
    return -(-numerator * 1_000_000 // denominator)


def span(window: Window) -> int:
    """A cap's window in microseconds, rounded up, at least one."""
    return max(1, ticks_up(window.seconds))


class Start(msgspec.Struct, frozen=True, kw_only=True):
    """A request to send a new code: granted (and recorded) only if no rule holds it back.

    ``number`` is the keyed digest of the phone number and ``digest`` that of the new code (the
    store holds neither in clear); ``token`` names this send, so that it can be undone if it
    provably did not go out; ``now`` is the verifier's clock."""

    number: str
    purpose: str
    digest: str
    token: str
    now: float
    ttl: float
    resend_after: float
    max_attempts: int
    number_caps: tuple[Window, ...] = ()
    global_cap: Window | None = None


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A store's answer to a ``Start``.

    Granted: the new code is the live one (``sends`` codes were sent for this verification
    before it, ``attempts`` attempts carried over from them). Refused: ``refusal`` says why,
    ``retry_after`` for how long, and for ``CAPPED`` ``cap`` is the index of the full cap in
    ``Start.number_caps``, or -1 for the global one."""

    granted: bool
    refusal: Refusal = Refusal.NONE
    retry_after: float = 0.0
    cap: int = -1
    sends: int = 0
    attempts: int = 0


class Checked(NamedTuple):
    """A store's answer to a check: why, and the attempts counted so far."""

    reason: Reason
    attempts: int


@runtime_checkable
class Store(Protocol):
    """Where verifications live: ``otp.MemoryStore`` (one process) or ``otp.RedisStore`` (many).

    Each method is one atomic step. Expiry, cooldowns and caps are decided on the times it is
    given (``now``), never on a clock of its own, so a test's clock drives every store alike;
    the built-in stores decide in whole microseconds (``ticks``) of those times. A store may
    expire what it holds for cleanup, but later than any rule needs it.
    """

    async def begin(self, start: Start) -> Claim:
        """Grant a send, or say what holds it back, in one step.

        Refused while the number's live verification has used up its attempts
        (``LOCKED``, until it expires), inside the cooldown (``TOO_SOON``, until its
        ``resend_at``) or while a cap is full (``CAPPED``). Granted: the send is counted in
        every cap, and the new code replaces any live one (keeping its attempts and counting
        one more send of the verification; a verification that is not live starts afresh),
        expiring ``ttl`` and cooling down ``resend_after`` seconds from ``now``."""
        ...

    async def rollback(self, start: Start, now: float) -> None:
        """Undo a granted ``start`` that provably sent nothing: uncount it from every cap, and
        put back the verification it replaced (or none), keeping the attempts counted since --
        unless another send replaced it meanwhile."""
        ...

    async def check(
        self, number: str, purpose: str, digest: str, max_attempts: int, now: float
    ) -> Checked:
        """Count one attempt and compare ``digest`` with the live code's, in constant time;
        a match uses the verification up. Not counted: no verification, an expired one, or
        one whose attempts are used up."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds (a connection pool it created); safe to call twice."""
        ...
