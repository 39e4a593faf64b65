"""``Verifier``: start a verification (send a code by SMS or voice call), check the code.

How a ``start`` goes:

1. The number is normalised (``ValidationError`` for one that cannot be a Vietnamese mobile)
   and the channel checked, before anything else.
2. A fresh code is drawn (``secrets``) and the store is asked, in one atomic step, to grant the
   send: refused while the number's live code has used up its attempts (``Blocked``), inside
   the cooldown (``TooSoon``) or while a cap is full (``Blocked``). Granted, the new code's
   HMAC is the number's live code at once, and the send is counted in every cap: of 40
   concurrent starts for one number, exactly one gets this far.
3. The code goes out by the channel's senders in turn (a ``Failover``'s clients one by one),
   bounded by ``max_wait`` (an account's turn) and ``deadline`` (all of the start's sends
   together): a sender that provably sent nothing (an
   error in ``smsvn.failover.NOTHING_SENT``: a ``RateLimited`` turn too far away, a refused
   account, a provider that is down) hands on to the next; ``"auto"`` goes from SMS to a voice
   call (or, on a resend, the other way round).
4. Sent: the verification. ``OutcomeUnknown`` (the request left, no answer): the code may
   arrive, so the verification stays live, no other code is sent at once, and the result says
   ``outcome="unknown"``. Any other smsvn error proves nothing was sent: the grant is undone
   (the previous code is live again, the caps uncounted, no cooldown) and the error raised.
   Cancelled (an impatient web request): while no request of the start can have left (it
   waited for the store's answer or the account's turn, through smsvn clients, whose
   transport says when a request leaves), the grant is undone as for an error that sent
   nothing; once one may have left, or with a sender of another kind, it stays: the code may
   arrive. An exception that is not an smsvn error leaves the grant in place too.

Secrets: the HMAC key and the codes never appear in a log line, an exception (its message, its
chain, or the traceback's frames: errors from a send are raised without the provider's frames,
which hold the code), a repr, a result or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import re
import secrets
import string
import time
from collections.abc import Callable
from typing import Final, Literal, Protocol, cast, runtime_checkable

import msgspec

from smsvn import phone
from smsvn._checks import checked_seconds
from smsvn.errors import OutcomeUnknown, SmsError, ValidationError
from smsvn.failover import NOTHING_SENT, Failover
from smsvn.models import SendResult
from smsvn.otp._types import (
    Blocked,
    Claim,
    Reason,
    Refusal,
    Start,
    Store,
    StoreError,
    TooSoon,
    Window,
)
from smsvn.providers._base import BaseClient
from smsvn.transport import Departure, bounded, departure

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_WAIT",
    "CheckResult",
    "SmsSender",
    "Verification",
    "Verifier",
    "VoiceSender",
]

_log = logging.getLogger("smsvn.otp")

Channel = Literal["sms", "voice", "auto"]
"""How ``start`` sends: by SMS, by a voice call, or SMS first and a call on the resend."""
Sent = Literal["sms", "voice"]
"""How a code went out."""

DEFAULT_MAX_WAIT: Final = 3.0
"""Seconds a send may wait for the account's turn before the next sender is tried."""
DEFAULT_DEADLINE: Final = 15.0
"""Seconds one send may take in all (attempts and backoff included)."""
MIN_SECRET_BYTES: Final = 16
"""The shortest HMAC key accepted (``secrets.token_bytes(32)`` is a good one)."""
MAX_CODE_INPUT: Final = 64
"""Characters of a submitted code that are looked at; longer input is a wrong code."""
_HOUR: Final = 3600.0
_DAY: Final = 86400.0
_PURPOSE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@runtime_checkable
class SmsSender(Protocol):
    """What sends the SMS: any provider's client, or a ``Failover``."""

    async def send(self, to: str, content: str) -> SendResult: ...


@runtime_checkable
class VoiceSender(Protocol):
    """What places the voice call: ``SpeedSMS`` and ``ESMS`` (``voice_otp``)."""

    async def voice_otp(self, to: str, code: str) -> SendResult: ...


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """A code that went out (never the code itself).

    ``to``: the number, normalised (``0912345678``). ``channel``: how the code went out.
    ``expires_at`` / ``resend_at``: Unix times (the verifier's clock) when the code stops
    working and when another may be sent. ``attempts_left``: checks it may still take
    (attempts carry over resends of one verification). ``outcome``: ``"sent"`` (the provider
    accepted it) or ``"unknown"`` (it may have gone out: the code stays live; do not send
    another before ``resend_at``). ``provider`` and ``message_id``: who took it, under which
    id (None when unknown)."""

    to: str
    channel: Sent
    expires_at: float
    resend_at: float
    attempts_left: int
    outcome: Literal["sent", "unknown"]
    provider: str | None = None
    message_id: str | None = None


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a check found: ``approved`` only for the live code, once; ``reason`` says why;
    ``attempts_left`` how many more checks the verification takes (0 once it is gone)."""

    approved: bool
    reason: Reason
    attempts_left: int


class _Code:
    """A code, kept out of reprs and tracebacks' locals (``reveal()`` gives the digits)."""

    __slots__ = ("_digits",)

    def __init__(self, digits: str) -> None:
        self._digits = digits

    def reveal(self) -> str:
        return self._digits

    def __repr__(self) -> str:
        return "<otp code>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an OTP code cannot be pickled")


class _Key:
    """The HMAC key: it computes digests and never shows itself."""

    __slots__ = ("_key",)

    def __init__(self, secret: object) -> None:
        if isinstance(secret, str):
            encoded = _utf8(secret)
            if encoded is None:
                # Raised outside the ``except``: the UnicodeEncodeError's ``object`` is the
                # secret, and a chained exception would carry it into tracebacks and reports.
                raise ValidationError("secret must be a str that encodes as UTF-8, or bytes")
            secret = encoded
        if not isinstance(secret, bytes | bytearray):
            raise ValidationError("secret must be bytes or a str")
        if len(secret) < MIN_SECRET_BYTES:
            raise ValidationError(
                f"secret must be at least {MIN_SECRET_BYTES} bytes "
                "(secrets.token_hex(32) makes a good one)"
            )
        self._key = bytes(secret)

    def digest(self, *parts: str) -> str:
        """HMAC-SHA256 of ``parts`` (NUL-separated, so no two lists of parts collide), in hex."""
        # surrogatepass: a lone surrogate (JSON's "\ud800" decodes to one) is hashed, not a
        # UnicodeEncodeError whose ``object`` would show the number in clear.
        message = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "<otp secret>"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an OTP secret cannot be pickled")


def _utf8(text: str) -> bytes | None:
    """``text`` in UTF-8, or None when it cannot be (a lone surrogate)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


class _Template:
    """An SMS text with exactly one ``{code}`` (``{{`` and ``}}`` are literal braces)."""

    __slots__ = ("head", "tail")

    def __init__(self, template: object) -> None:
        if not isinstance(template, str):
            raise ValidationError("template must be a str holding {code}")
        try:
            pieces = list(string.Formatter().parse(template))
        except ValueError:
            raise ValidationError(
                "template has an unmatched brace: write a literal { or } as {{ or }}"
            ) from None
        head: list[str] = []
        tail: list[str] = []
        seen = 0
        for literal, field, spec, conversion in pieces:
            (tail if seen else head).append(literal)
            if field is None:
                continue
            if field != "code" or spec or conversion:
                raise ValidationError(
                    f"template may hold only {{code}}, not {{{field}"
                    f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
                )
            seen += 1
        if seen != 1:
            raise ValidationError(f"template must hold {{code}} exactly once, not {seen} times")
        self.head = "".join(head)
        self.tail = "".join(tail)

    def render(self, code: _Code) -> str:
        return self.head + code.reveal() + self.tail


class _Trying:
    """The sender a start is trying now and the mark its transport sets when a request leaves
    (``transport.Departure``), to tell a cancelled start that certainly sent nothing."""

    __slots__ = ("mark", "marked")

    def __init__(self) -> None:
        self.mark = Departure()
        self.marked = True  # no sender tried yet: nothing left

    def now(self, sender: object) -> Departure:
        """A fresh mark for ``sender``; only smsvn's clients (and Failovers of them) set it."""
        self.mark = Departure()
        self.marked = isinstance(sender, BaseClient | Failover)
        return self.mark

    def may_have_left(self) -> bool:
        """Whether a request of the current sender may have left (unknown for other kinds)."""
        return not self.marked or self.mark.left


class Verifier:
    """One-time codes sent by SMS or voice call, checked against a ``Store``.

    ``client``: sends the SMS (any provider's client, or a ``Failover``). ``voice``: places
    calls (``SpeedSMS`` / ``ESMS``, or a ``Failover`` of them); by default the ``client``'s own
    ``voice_otp`` (a Failover's clients that have one, in order). ``secret``: the HMAC key
    (bytes or str, at least 16 bytes; keep it in your settings: changing it voids live codes and
    restarts the per-number caps). ``template``: the SMS text, holding ``{code}`` exactly once;
    it is checked with each SMS client, with a sample code, here.

    ``length`` digits a code (4-10), valid ``ttl`` seconds, checked at most ``max_attempts``
    times (over every code of one verification); another code may be sent ``resend_after``
    seconds after the last. At most ``max_sends_per_hour`` and ``max_sends_per_day`` codes a
    number (None: no cap), and ``global_sends_per_hour`` codes to all numbers (None: none) --
    the SMS-pumping budget. The caps count per number over every ``purpose``; a code is valid
    only for its own ``purpose`` (``"login"``, ``"reset"``: each its own live code).

    ``max_wait`` bounds the wait for an account's turn (``smsvn.transport.bounded``): a turn
    further away fails at once and the next sender is tried; ``deadline`` bounds a start's
    sends all together (every provider and channel, attempts and backoff included).
    ``clock``: Unix time for expiry, cooldown and caps (a test's controllable clock).

    The verifier closes neither the clients nor the store.
    """

    def __init__(
        self,
        client: SmsSender,
        *,
        store: Store,
        secret: bytes | str,
        template: str,
        length: int = 6,
        ttl: float = 300.0,
        max_attempts: int = 5,
        resend_after: float = 60.0,
        voice: VoiceSender | Failover | None = None,
        purpose: str = "verify",
        max_sends_per_hour: int | None = 5,
        max_sends_per_day: int | None = 10,
        global_sends_per_hour: int | None = None,
        max_wait: float | None = DEFAULT_MAX_WAIT,
        deadline: float | None = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(client, SmsSender):
            raise ValidationError("client must be an smsvn client or a Failover (it has send())")
        if not isinstance(store, Store):
            raise ValidationError("store must be an otp.MemoryStore, an otp.RedisStore or a Store")
        self._key = _Key(secret)
        self._template = _Template(template)
        self.length = _int(length, "length", 4, 10)
        self.ttl = checked_seconds(ttl, "ttl")
        self.max_attempts = _int(max_attempts, "max_attempts", 1, 1000)
        self.resend_after = checked_seconds(resend_after, "resend_after", zero=True)
        if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
            raise ValidationError("purpose must be 1-64 letters, digits, '_', '.' or '-'")
        self.purpose = purpose
        caps: list[Window] = []
        self._cap_names: list[str] = []
        for limit, seconds, option, name in (
            (max_sends_per_hour, _HOUR, "max_sends_per_hour", "number_hour"),
            (max_sends_per_day, _DAY, "max_sends_per_day", "number_day"),
        ):
            if limit is not None:
                caps.append(Window(seconds, _int(limit, option)))
                self._cap_names.append(name)
        self._number_caps = tuple(caps)
        self._global_cap = (
            None
            if global_sends_per_hour is None
            else Window(_HOUR, _int(global_sends_per_hour, "global_sends_per_hour"))
        )
        self.max_wait = (
            None if max_wait is None else checked_seconds(max_wait, "max_wait", zero=True)
        )
        self.deadline = None if deadline is None else checked_seconds(deadline, "deadline")
        if not callable(clock):
            raise ValidationError("clock must be a function returning Unix time in seconds")
        self._clock = clock
        self._store = store
        # A Failover's clients are tried here in turn, as its send() does (moving on only after
        # an error in NOTHING_SENT), so that one deadline covers every provider and channel.
        self._sms: tuple[SmsSender, ...] = (
            client.clients if isinstance(client, Failover) else (client,)
        )
        self._voice: tuple[VoiceSender, ...] = _voice_senders(client, voice)
        _check_template(self._sms, self._template, self.length)

    def __repr__(self) -> str:
        return (
            f"Verifier(purpose={self.purpose!r}, store={self._store!r}, length={self.length}, "
            f"ttl={self.ttl:g}, max_attempts={self.max_attempts}, "
            f"resend_after={self.resend_after:g}, voice={bool(self._voice)})"
        )

    @property
    def channels(self) -> tuple[Sent, ...]:
        """The channels this verifier can send by: SMS, and voice when it has a voice sender."""
        return ("sms", "voice") if self._voice else ("sms",)

    # -- start -----------------------------------------------------------------------------------

    async def start(self, to: str, channel: Channel = "sms") -> Verification:
        """Send a new code to ``to``; it replaces the number's live code, if any.

        Raises ``ValidationError`` (a bad number or channel, before anything else), ``TooSoon``,
        ``Blocked`` or ``StoreError`` (nothing sent), or the send's error when every sender
        failed in a way that proves nothing was sent (then the grant is undone: no cooldown,
        no cap counted). ``OutcomeUnknown`` is not raised: see ``Verification.outcome``.
        """
        number = phone.normalize(to) if isinstance(to, str) else _bad_number(to)
        if channel not in ("sms", "voice", "auto"):
            raise ValidationError(f"channel must be 'sms', 'voice' or 'auto', not {channel!r}")
        if channel == "voice" and not self._voice:
            raise ValidationError(
                "no voice channel: give voice= a SpeedSMS or ESMS client (Fibo has no calls)"
            )
        code = _Code(f"{secrets.randbelow(10**self.length):0{self.length}d}")
        number_id = self._number_id(number)
        now = self._clock()
        request = Start(
            number=number_id,
            purpose=self.purpose,
            digest=self._code_digest(number, code.reveal()),
            token=secrets.token_hex(16),
            now=now,
            ttl=self.ttl,
            resend_after=self.resend_after,
            max_attempts=self.max_attempts,
            number_caps=self._number_caps,
            global_cap=self._global_cap,
        )
        try:
            claim = await self._store.begin(request)
        except (asyncio.CancelledError, StoreError):
            # The grant may have been made (Redis ran the script, its answer was lost on the
            # way): undo it, if it was; a token the store never granted changes nothing.
            await asyncio.shield(self._undo(request, number_id))
            raise
        if not claim.granted:
            _log.debug(
                "otp %s %s: start refused (%s)", self.purpose, number_id[:8], claim.refusal.name
            )
            raise self._refused(claim)
        plan = self._plan(channel, claim.sends)
        failure: BaseException | None = None
        trying = _Trying()
        try:
            sent, result, error = await self._deliver(number, code, plan, trying)
        except asyncio.CancelledError:
            if trying.may_have_left():
                raise  # the code may arrive: the grant stays
            await asyncio.shield(self._undo(request, number_id))
            raise
        except Exception as exc:
            # Not an smsvn error (a sender's own bug or SDK): it may have been sent, so the
            # code stays live, as with OutcomeUnknown; it leaves with the code masked and
            # without the sender's frames, which hold the text.
            _log.warning(
                "otp %s %s: the send failed with %s; the code stays live",
                self.purpose,
                number_id[:8],
                type(exc).__name__,
            )
            failure = _scrubbed(exc, code)
        if failure is not None:
            # Raised here, outside the ``except``: a replacement must not carry the original
            # as its context.
            raise failure
        if error is not None and not isinstance(error, OutcomeUnknown):
            await self._undo(request, number_id)
            _log.debug(
                "otp %s %s: nothing sent (%s)", self.purpose, number_id[:8], type(error).__name__
            )
            raise _scrubbed(error, code)
        if error is not None:
            _log.warning(
                "otp %s %s: the %s may have been sent (%s); the code stays live",
                self.purpose,
                number_id[:8],
                sent,
                type(error).__name__,
            )
        else:
            _log.debug("otp %s %s: sent by %s", self.purpose, number_id[:8], sent)
        provider = result.provider if result is not None else None
        if error is not None:
            provider = error.provider
        return Verification(
            to=number,
            channel=sent,
            expires_at=now + self.ttl,
            resend_at=now + self.resend_after,
            attempts_left=max(0, self.max_attempts - claim.attempts),
            outcome="unknown" if error is not None else "sent",
            provider=provider,
            message_id=None if result is None else result.message_id,
        )

    async def _undo(self, request: Start, number_id: str) -> None:
        """Undo a grant whose send provably went nowhere (a store that fails is logged: the
        number then waits out the cooldown)."""
        try:
            await self._store.rollback(request, self._clock())
        except StoreError as exc:
            _log.warning(
                "otp %s %s: a send that went nowhere could not be undone (%s); the number "
                "waits out the cooldown",
                self.purpose,
                number_id[:8],
                exc,
            )

    def _plan(self, channel: Channel, sends: int) -> tuple[Sent, ...]:
        """The channels to try, in order: ``auto`` sends by SMS first (a call when it provably
        failed) and by a call on a resend (``sends``: codes already sent for this
        verification), SMS when the call provably failed."""
        if channel == "sms" or (channel == "auto" and not self._voice):
            return ("sms",)
        if channel == "voice":
            return ("voice",)
        return ("sms", "voice") if sends == 0 else ("voice", "sms")

    async def _deliver(
        self, number: str, code: _Code, plan: tuple[Sent, ...], trying: _Trying
    ) -> tuple[Sent, SendResult | None, SmsError | None]:
        """Send by each channel of ``plan``, each by its senders in turn, until one sends or
        may have sent: (the channel, its result, None), or (the channel, None, its
        ``OutcomeUnknown``); otherwise (the channel, None, the error that stopped it: the last
        ``NOTHING_SENT`` one when every sender was tried, or the budget ran out).

        ``deadline`` is the budget of all the sends together: each is bounded by what is left,
        and a sender is not tried once nothing is."""
        loop = asyncio.get_running_loop()
        end = None if self.deadline is None else loop.time() + self.deadline
        error: SmsError | None = None
        channel: Sent = plan[0]
        for channel in plan:
            senders: tuple[SmsSender | VoiceSender, ...] = (
                self._sms if channel == "sms" else self._voice
            )
            for sender in senders:
                left = None if end is None else end - loop.time()
                if left is not None and left <= 0.0 and error is not None:
                    _log.debug(
                        "otp: the send deadline passed; %s by %s not tried", channel, _name(sender)
                    )
                    return channel, None, error
                # A fresh mark per sender: the ones before it provably sent nothing.
                mark = trying.now(sender)
                reset = departure.set(mark)
                try:
                    with bounded(
                        max_wait=self.max_wait, deadline=None if left is None else max(left, 0.0)
                    ):
                        result = await self._send_by(channel, sender, number, code)
                except NOTHING_SENT as exc:
                    error = exc
                    _log.debug(
                        "otp: %s by %s sent nothing (%s); trying the next sender",
                        channel,
                        _name(sender),
                        type(exc).__name__,
                    )
                    continue
                except SmsError as exc:  # may have been sent, or a refusal no other sender helps
                    return channel, None, exc
                finally:
                    departure.reset(reset)
                return channel, result, None
        assert error is not None
        return channel, None, error

    async def _send_by(
        self, channel: Sent, sender: SmsSender | VoiceSender, number: str, code: _Code
    ) -> SendResult:
        """One send of ``code``: the SMS text to ``client``, or the digits to a voice sender
        (the code is revealed only in the call's arguments, never into a local variable)."""
        if channel == "sms":
            return await cast(SmsSender, sender).send(number, self._template.render(code))
        return await cast(VoiceSender, sender).voice_otp(number, code.reveal())

    def _refused(self, claim: Claim) -> SmsError:
        """The error a refused grant stands for."""
        wait = max(0.0, claim.retry_after)
        if claim.refusal is Refusal.TOO_SOON:
            return TooSoon(
                f"a code was sent less than {self.resend_after:g} s ago; "
                f"another may be sent in {math.ceil(wait)} s",
                retry_after=wait,
            )
        if claim.refusal is Refusal.LOCKED:
            return Blocked(
                "the live code's attempts are used up; a new code may be sent when it expires, "
                f"in {math.ceil(wait)} s",
                retry_after=wait,
                reason="too_many_attempts",
            )
        name = "global_hour" if claim.cap < 0 else self._cap_names[claim.cap]
        what = {
            "number_hour": "codes to this number in an hour",
            "number_day": "codes to this number in a day",
            "global_hour": "codes to all numbers in an hour",
        }[name]
        return Blocked(
            f"the cap on {what} is reached; another may be sent in {math.ceil(wait)} s",
            retry_after=wait,
            reason=name,
        )

    # -- check -----------------------------------------------------------------------------------

    async def check(self, to: str, code: str) -> CheckResult:
        """Check ``code`` for ``to``: approved once for the live code, within its time and
        attempts. Every check of a live verification counts as an attempt (whatever the code
        looks like; surrounding whitespace is ignored). Raises ``ValidationError`` for a number
        that cannot be one (nothing counted) and ``StoreError``."""
        number = phone.normalize(to) if isinstance(to, str) else _bad_number(to)
        if not isinstance(code, str):
            raise ValidationError(f"code must be a str, not {type(code).__name__}")
        given = code.strip()
        if len(given) > MAX_CODE_INPUT or not given.isascii():
            # Matches no code (codes are ASCII digits): no hashing of a huge input, nothing
            # that could not be encoded (a lone surrogate).
            given = ""
        number_id = self._number_id(number)
        checked = await self._store.check(
            number_id,
            self.purpose,
            self._code_digest(number, given),
            self.max_attempts,
            self._clock(),
        )
        # Attempts are left only after a wrong code: an approved verification is used up, and
        # none is left of a missing, expired or locked one.
        wrong = checked.reason is Reason.WRONG_CODE
        left = max(0, self.max_attempts - checked.attempts) if wrong else 0
        _log.debug("otp %s %s: check %s", self.purpose, number_id[:8], checked.reason.value)
        return CheckResult(
            approved=checked.reason is Reason.APPROVED, reason=checked.reason, attempts_left=left
        )

    # -- digests ---------------------------------------------------------------------------------

    def _number_id(self, number: str) -> str:
        """The number as the store knows it: a keyed digest (128 bits)."""
        return self._key.digest("smsvn.otp/number", number)[:32]

    def _code_digest(self, number: str, code: str) -> str:
        """A code as the store knows it: a keyed digest bound to the number and purpose, so it
        is worth nothing for another number or purpose."""
        return self._key.digest("smsvn.otp/code", self.purpose, number, code)


def _bad_number(to: object) -> str:
    raise ValidationError(f"to must be a phone number (str), not {type(to).__name__}")


def _int(value: object, name: str, low: int = 1, high: int | None = None) -> int:
    """An int in ``[low, high]``, or ``ValidationError`` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValidationError(f"{name} must be an int >= {low}")
    if high is not None and value > high:
        raise ValidationError(f"{name} must be an int from {low} to {high}")
    return value


def _name(sender: object) -> str:
    """A sender's provider name, for the log."""
    return str(getattr(sender, "provider", type(sender).__name__))


def _voice_senders(
    client: SmsSender, voice: VoiceSender | Failover | None
) -> tuple[VoiceSender, ...]:
    """Who places calls, in order: ``voice`` (a Failover's clients that can), else the
    ``client`` (likewise)."""
    source: object = client if voice is None else voice
    members = source.clients if isinstance(source, Failover) else (source,)
    senders = tuple(m for m in members if isinstance(m, VoiceSender))
    if voice is not None and not senders:
        raise ValidationError("voice must be a SpeedSMS or ESMS client (it has voice_otp())")
    return senders


def _check_template(senders: tuple[SmsSender, ...], template: _Template, length: int) -> None:
    """Have every SMS client check the content with a sample code, as it checks a campaign's
    content before sending (``batch_sender``): what a provider would refuse fails here."""
    sample = template.render(_Code("0" * length))
    for member in senders:
        check = getattr(member, "batch_sender", None)
        if not callable(check):
            continue
        try:
            check(content=sample)
        except ValidationError as exc:
            raise ValidationError(
                f"the template, with a {length}-digit code, would be refused: {exc.message}",
                provider=exc.provider,
            ) from None


def _scrubbed(error: BaseException, code: _Code) -> BaseException:
    """``error`` fit to leave ``start``: the code masked in the message, arguments, notes and
    every string attribute of it and of every exception reachable from it (cause, context, an
    exception group's members: a provider might echo the request, in an error's ``code`` too),
    and no traceback, whose frames (the client's ``send`` and ``voice_otp``) hold the code.
    An exception that still shows the code after that (one that builds its text from objects,
    such as aiohttp's ``ClientResponseError`` from its request's URL) is replaced by a plain
    ``RuntimeError`` naming its type. Raising it again adds the frames of the caller's side."""
    digits = code.reveal()
    mask = "*" * len(digits)
    chain = _reachable(error)
    for exc in chain:
        exc.args = tuple(a.replace(digits, mask) if isinstance(a, str) else a for a in exc.args)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            exc.__notes__ = [n.replace(digits, mask) if isinstance(n, str) else n for n in notes]
        with contextlib.suppress(TypeError):  # an exception without a ``__dict__``
            for name, value in list(vars(exc).items()):
                if isinstance(value, str) and digits in value:
                    setattr(exc, name, value.replace(digits, mask))
        exc.__traceback__ = None
    # What still shows the code after that: an exception that is not smsvn's building its text
    # from objects. (An smsvn error's text is its string fields, masked above; its numbers,
    # such as a 429's ``retry_after``, may hold the code's digits by chance and are no echo.)
    foreign = [exc for exc in chain if not isinstance(exc, SmsError)]
    if not any(digits in text for exc in foreign for text in _shown(exc)):
        return error
    if isinstance(error, SmsError):
        # Its own text is clean: it keeps its type (what the caller handles), not the chain.
        error.__cause__ = error.__context__ = None
        error.__suppress_context__ = True
        return error
    return RuntimeError(
        f"the OTP sender failed with {type(error).__name__}, whose text held the code (so it "
        "is not shown); the code may have been sent and stays live"
    )


def _reachable(error: BaseException) -> list[BaseException]:
    """``error`` and every exception reachable from it: cause, context, a group's members."""
    found: list[BaseException] = []
    seen: set[int] = set()
    pending = [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        found.append(exc)
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
    return found


def _shown(exc: BaseException) -> list[str]:
    """What a log handler or an error tracker may show of one exception."""
    texts = [_safe(str, exc), _safe(repr, exc), _safe(repr, exc.args)]
    with contextlib.suppress(TypeError):
        texts.extend(_safe(repr, value) for value in vars(exc).values())
    return texts


def _safe(show: Callable[[object], str], value: object) -> str:
    """``show(value)``, or "" when showing it fails (a broken ``__repr__`` shows nothing)."""
    try:
        return show(value)
    except Exception:
        return ""
