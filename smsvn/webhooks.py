"""Receive providers' callbacks: delivery reports, inbound SMS and voice-call results.

Providers sign nothing, retry on failure (eSMS up to 5 times) and send duplicates, so the
receiver built by :func:`app` authenticates each callback by an unguessable secret in its URL
path (compared in constant time), caps and strictly parses the body, suppresses duplicates, and
answers 200 only once the user's handler has succeeded (500 otherwise, so the provider retries
and nothing is lost).

Routes of the application (relative to wherever it is mounted)::

    POST /speedsms/{secret}   SpeedSMS webhook: JSON delivery report or inbound SMS
    GET  /esms/{secret}       eSMS CallbackUrl: SMS delivery result or voice-call result

Answers: 200 ``OK`` (processed, or a duplicate of something processed); 404 with an empty body
for a wrong secret or an unknown path; 405 for a wrong method (only with the right secret);
413 for a body over the cap; 400 with a short reason for a malformed callback; 500 when the
handler raised.

The path holds the secret, and aiohttp's access log prints paths: run the application with
:class:`MaskedAccessLogger` (``web.run_app(app, access_log_class=MaskedAccessLogger)``,
``web.AppRunner(app, access_log_class=MaskedAccessLogger)``, or :func:`run`), which writes
``/speedsms/***`` instead.

eSMS SMS callbacks carry per-number counts (``SendSuccess``, ``SendFailed``) and the message's
``SendStatus`` (1 waiting approval, 2 waiting to send, 3 sending, 4 rejected, 5 sent,
6 deleted). They map to a :class:`~smsvn.models.DeliveryState` by the first rule that holds:

1. ``SendSuccess`` >= 1 -> DELIVERED
2. ``SendFailed`` >= 1, or ``SendStatus`` 4 or 6 -> FAILED
3. ``SendStatus`` 1, 2, 3, or 5 (handed to the carrier, no handset result yet) -> PENDING

SpeedSMS ``status`` maps 0 -> DELIVERED, 1..63 -> TEMPORARY_FAILURE, 64 and above -> FAILED.

Duplicates: a delivery report is the same as another when (provider, message id, phone, raw
status, state) agree, a call result when (reference id, status, sent, duration) agree. The key
is remembered only after the handler succeeded, so a retry after a 500 is processed; a
duplicate arriving while the first is being handled waits for it. Inbound SMS carry no id and
are never suppressed (a retry cannot be told from a second identical reply).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import math
import re
import secrets as _secrets
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias, cast

import msgspec
from aiohttp import web
from aiohttp.web_log import AccessLogger
from yarl import URL

from smsvn import phone
from smsvn.errors import ValidationError
from smsvn.models import (
    CallReport,
    CallStatus,
    DeliveryReport,
    DeliveryState,
    InboundSms,
)

__all__ = [
    "DEFAULT_DEDUP_MAX",
    "DEFAULT_DEDUP_WINDOW",
    "DEFAULT_MAX_BODY",
    "MIN_SECRET_LENGTH",
    "PROVIDERS",
    "TRACKER_KEY",
    "DeliveryTracker",
    "Event",
    "Handler",
    "MaskedAccessLogger",
    "SpeedSmsInbound",
    "SpeedSmsReport",
    "app",
    "callback_url",
    "new_secret",
    "parse_esms",
    "parse_speedsms",
    "run",
]

Event: TypeAlias = DeliveryReport | InboundSms | CallReport
"""Everything a webhook can deliver to the handler."""

Handler: TypeAlias = Callable[[Event], Awaitable[None]]
"""The user's ``async def handler(event) -> None``; raising makes the provider retry."""

DEFAULT_DEDUP_WINDOW: Final = 3600.0
DEFAULT_MAX_BODY: Final = 64 * 1024
DEFAULT_DEDUP_MAX: Final = 100_000
DEFAULT_TRACKER_MAX: Final = 100_000
MIN_SECRET_LENGTH: Final = 16
PROVIDERS: Final = ("speedsms", "esms")

_log = logging.getLogger("smsvn.webhooks")

_SPEEDSMS: Final = "speedsms"
_ESMS: Final = "esms"
_MAX_ID: Final = 256
_MAX_REASON: Final = 200
_HISTORY_MAX: Final = 32
_SECRET_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-_.~")
# The path segment after /speedsms/ or /esms/ is a secret: mask it wherever it appears.
_SECRET_SEGMENT: Final = re.compile(r"(?:(?<=/speedsms/)|(?<=/esms/))[^/?#\s]+")

_RANK: Final[dict[DeliveryState, int]] = {
    DeliveryState.PENDING: 0,
    DeliveryState.TEMPORARY_FAILURE: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.FAILED: 2,
}


# --------------------------------------------------------------------------------------------
# SpeedSMS


class SpeedSmsReport(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="report"):
    """SpeedSMS delivery-report webhook body, as sent (the ``raw`` of its DeliveryReport)."""

    tran_id: int | str = msgspec.field(name="tranId")
    phone: str
    status: int | str


class SpeedSmsInbound(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="sms"):
    """SpeedSMS inbound-SMS webhook body, as sent (the ``raw`` of its InboundSms)."""

    phone: str
    content: str


_speedsms_decoder: Final = msgspec.json.Decoder(SpeedSmsReport | SpeedSmsInbound)


def parse_speedsms(body: bytes) -> DeliveryReport | InboundSms:
    """Decode one SpeedSMS webhook body (JSON, tagged by ``type``) into a typed event.

    ``tranId`` may be a number or a string and is carried as a string; ``status`` may be a
    number or a numeric string. Anything malformed raises :class:`ValidationError`.
    """
    try:
        wire = _speedsms_decoder.decode(body)
    except msgspec.MsgspecError as exc:
        raise _invalid(_SPEEDSMS, f"malformed body: {_clip(str(exc))}") from None
    number = _phone(_SPEEDSMS, wire.phone)
    if isinstance(wire, SpeedSmsInbound):
        return InboundSms(provider=_SPEEDSMS, phone=number, content=wire.content, raw=wire)
    message_id = _identifier(_SPEEDSMS, "tranId", str(wire.tran_id))
    status = _speedsms_status(wire.status)
    return DeliveryReport(
        provider=_SPEEDSMS,
        message_id=message_id,
        phone=number,
        state=_speedsms_state(status),
        raw_status=str(status),
        raw=wire,
    )


def _speedsms_status(value: int | str) -> int:
    """Read SpeedSMS's ``status`` (a non-negative number, maybe written as a string)."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise _invalid(_SPEEDSMS, "status is not a non-negative integer")
        return int(text)
    if value < 0:
        raise _invalid(_SPEEDSMS, "status is negative")
    return value


def _speedsms_state(status: int) -> DeliveryState:
    """Map a SpeedSMS status: 0 delivered, 1..63 temporary failure, 64 and above failed."""
    if status == 0:
        return DeliveryState.DELIVERED
    if status < 64:
        return DeliveryState.TEMPORARY_FAILURE
    return DeliveryState.FAILED


# --------------------------------------------------------------------------------------------
# eSMS

_SMS_ID: Final = ("SMSID",)
_SEND_STATUS: Final = ("SendStatus",)
_SEND_SUCCESS: Final = ("SendSuccess",)
_SEND_FAILED: Final = ("SendFailed",)
_TOTAL_PRICE: Final = ("TotalPrice",)
_PHONE: Final = ("phonenumber", "PhoneNumber", "Phone")
_REFERENCE_ID: Final = ("ReferenceId", "referenceid")
_CALL_DURATION: Final = ("CallDuration", "callduration")
_CALL_STATUS: Final = ("CallStatus", "callstatus")
_IVR: Final = ("Ivr", "ivr")
_PRICE: Final = ("Price", "price")
_SENT_RESULT: Final = ("SentResult", "sentresult")
_CID: Final = ("CID", "cid")

_CALL_STATUSES: Final[dict[str, CallStatus]] = {
    "ANSWERED": CallStatus.ANSWERED,
    "NOANSWER": CallStatus.NO_ANSWER,
    "NOANSWERED": CallStatus.NO_ANSWER,
    "PENDING": CallStatus.PENDING,
}
_BOOLS: Final[dict[str, bool]] = {"0": False, "1": True, "false": False, "true": True}


def parse_esms(query: Mapping[str, str]) -> DeliveryReport | CallReport:
    """Decode an eSMS CallbackUrl query (SMS delivery result or voice-call result).

    An SMS callback carries ``SMSID`` (and ``SendStatus``); a call callback carries
    ``ReferenceId``. Accepts any ``Mapping[str, str]``, aiohttp's ``request.query`` included.
    Empty optional fields mean absent; ``CallDuration`` is whole seconds (a fraction is
    dropped); a ``CallStatus`` other than ANSWERED / NO ANSWER / PENDING becomes UNKNOWN (the
    raw query is kept). Anything malformed raises :class:`ValidationError`.
    """
    sms_id = _get(query, _SMS_ID)
    reference_id = _get(query, _REFERENCE_ID)
    if sms_id is not None and (reference_id is None or _get(query, _SEND_STATUS) is not None):
        return _esms_delivery(query, sms_id)
    if reference_id is not None:
        return _esms_call(query, reference_id)
    raise _invalid(_ESMS, "neither SMSID nor ReferenceId in the callback")


def _esms_delivery(query: Mapping[str, str], sms_id: str) -> DeliveryReport:
    """Build the DeliveryReport of one number from an eSMS SMS callback."""
    message_id = _identifier(_ESMS, "SMSID", sms_id)
    number = _get(query, _PHONE)
    if number is None:
        raise _invalid(_ESMS, "phonenumber missing")
    raw_status = _get(query, _SEND_STATUS)
    if raw_status is None:
        raise _invalid(_ESMS, "SendStatus missing")
    raw_status = raw_status.strip()
    status = _count(raw_status, "SendStatus")
    success = _count(_get(query, _SEND_SUCCESS) or "0", "SendSuccess")
    failed = _count(_get(query, _SEND_FAILED) or "0", "SendFailed")
    if success >= 1:
        state = DeliveryState.DELIVERED
    elif failed >= 1 or status in (4, 6):
        state = DeliveryState.FAILED
    elif status in (1, 2, 3, 5):
        state = DeliveryState.PENDING
    else:
        raise _invalid(_ESMS, f"unknown SendStatus {status}")
    return DeliveryReport(
        provider=_ESMS,
        message_id=message_id,
        phone=_phone(_ESMS, number),
        state=state,
        raw_status=raw_status,
        cost=_amount(_get(query, _TOTAL_PRICE), "TotalPrice"),
        raw=dict(query),
    )


def _esms_call(query: Mapping[str, str], reference_id: str) -> CallReport:
    """Build a CallReport from an eSMS voice-call callback."""
    duration = _amount(_get(query, _CALL_DURATION), "CallDuration")
    sent = _get(query, _SENT_RESULT)
    sent_flag: bool | None = None
    if sent is not None and sent.strip():
        flag = _BOOLS.get(sent.strip().lower())
        if flag is None:
            raise _invalid(_ESMS, "SentResult is not 0 or 1")
        sent_flag = flag
    return CallReport(
        provider=_ESMS,
        reference_id=_identifier(_ESMS, "ReferenceId", reference_id),
        status=_call_status(_get(query, _CALL_STATUS)),
        duration=None if duration is None else int(duration),
        ivr=_optional_text(_get(query, _IVR)),
        price=_amount(_get(query, _PRICE), "Price"),
        sent=sent_flag,
        caller_id=_optional_text(_get(query, _CID)),
        raw=dict(query),
    )


def _call_status(value: str | None) -> CallStatus:
    """Map eSMS ``CallStatus`` (``ANSWERED``, ``NO ANSWER``, ...); unlisted values -> UNKNOWN."""
    if value is None:
        return CallStatus.UNKNOWN
    key = "".join(value.upper().replace("_", " ").split())
    return _CALL_STATUSES.get(key, CallStatus.UNKNOWN)


def _optional_text(value: str | None) -> str | None:
    """Return a text field stripped, with empty meaning absent."""
    if value is None:
        return None
    return value.strip() or None


def _get(query: Mapping[str, str], names: Iterable[str]) -> str | None:
    """Return the first of ``names`` present in ``query`` (a str), or None."""
    for name in names:
        value = query.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise _invalid(_ESMS, f"{name} is not a string")
            return value
    return None


def _count(text: str, field: str) -> int:
    """Read a non-negative integer count or status from an eSMS field."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise _invalid(_ESMS, f"{field} is not a non-negative integer")
    return int(text)


def _amount(text: str | None, field: str) -> float | None:
    """Read an optional non-negative finite number (price, duration); empty means absent."""
    if text is None or not text.strip():
        return None
    stripped = text.strip()
    if not stripped.isascii() or len(stripped) > 32:
        raise _invalid(_ESMS, f"{field} is not a number")
    try:
        value = float(stripped)
    except ValueError:
        raise _invalid(_ESMS, f"{field} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise _invalid(_ESMS, f"{field} is not a non-negative finite number")
    return value


# --------------------------------------------------------------------------------------------
# Shared parsing helpers


def _identifier(provider: str, field: str, value: str) -> str:
    """Check an opaque id (tranId, SMSID, ReferenceId): non-empty, bounded, surrounding
    whitespace dropped (eSMS has been seen to pad SMSIDs)."""
    text = value.strip()
    if not text:
        raise _invalid(provider, f"{field} is empty")
    if len(text) > _MAX_ID:
        raise _invalid(provider, f"{field} is longer than {_MAX_ID} characters")
    return text


def _phone(provider: str, number: str) -> str:
    """Normalise a callback's phone number, naming the provider on failure."""
    try:
        return phone.normalize(number)
    except ValidationError as exc:
        raise _invalid(provider, f"bad phone number: {exc.message}") from None


def _invalid(provider: str, reason: str) -> ValidationError:
    """Build the ValidationError of a malformed callback."""
    return ValidationError(reason, provider=provider, endpoint="webhook")


def _clip(text: str) -> str:
    """Bound attacker-controlled text that goes into an error message."""
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "..."


# --------------------------------------------------------------------------------------------
# Forward-only delivery state


class _Tracked:
    """One message to one number: its current state and the reports received for it."""

    __slots__ = ("history", "state")

    def __init__(self, report: DeliveryReport) -> None:
        self.state = report.state
        self.history: collections.deque[DeliveryReport] = collections.deque(
            (report,), maxlen=_HISTORY_MAX
        )


class DeliveryTracker:
    """Delivery state per (provider, message id, phone) that only moves forward.

    The rank is PENDING < TEMPORARY_FAILURE < DELIVERED = FAILED: a report of a lower or equal
    rank (a late "temporary failure" after "delivered") is kept in the history but does not
    change the state, and a final state is never overwritten. Memory is bounded: beyond
    ``max_entries`` messages the least recently updated are forgotten, and each history keeps
    its last 32 reports.
    """

    def __init__(self, max_entries: int = DEFAULT_TRACKER_MAX) -> None:
        if max_entries < 1:
            raise ValidationError("max_entries must be at least 1")
        self._max = max_entries
        self._entries: collections.OrderedDict[tuple[str, str, str], _Tracked] = (
            collections.OrderedDict()
        )
        self._counts: collections.Counter[DeliveryState] = collections.Counter()

    def record(self, report: DeliveryReport) -> DeliveryState:
        """Add a report and return the message's state after it (which may be unchanged)."""
        key = (report.provider, report.message_id, report.phone)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Tracked(report)
            self._counts[report.state] += 1
            while len(self._entries) > self._max:
                _, evicted = self._entries.popitem(last=False)
                self._counts[evicted.state] -= 1
            return report.state
        self._entries.move_to_end(key)
        entry.history.append(report)
        if _RANK[report.state] > _RANK[entry.state]:
            self._counts[entry.state] -= 1
            self._counts[report.state] += 1
            entry.state = report.state
        return entry.state

    def state(self, provider: str, message_id: str, phone: str) -> DeliveryState | None:
        """Return the current state of one message to one number, or None if never reported."""
        entry = self._entries.get((provider, message_id, phone))
        return None if entry is None else entry.state

    def history(self, provider: str, message_id: str, phone: str) -> tuple[DeliveryReport, ...]:
        """Return the reports received for one message to one number, oldest first."""
        entry = self._entries.get((provider, message_id, phone))
        return () if entry is None else tuple(entry.history)

    def counts(self) -> dict[DeliveryState, int]:
        """Return how many tracked messages are in each state (every state listed)."""
        return {state: self._counts[state] for state in DeliveryState}

    def __len__(self) -> int:
        """Return the number of (provider, message id, phone) entries tracked."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DeliveryTracker(entries={len(self._entries)}, max_entries={self._max})"


# --------------------------------------------------------------------------------------------
# Duplicate suppression

_DedupKey: TypeAlias = tuple[str, str, str, str, str]


def _dedup_key(event: Event) -> _DedupKey | None:
    """Return what makes two callbacks the same report, or None for inbound SMS.

    The state joins (provider, id, phone, raw status) because eSMS's SendStatus alone does not
    distinguish "sent, no result yet" from "sent and delivered". Inbound SMS carry no id, so a
    retry cannot be told from a second identical reply: they are never suppressed.
    """
    if isinstance(event, DeliveryReport):
        return (
            event.provider,
            event.message_id,
            event.phone,
            event.raw_status,
            event.state.value,
        )
    if isinstance(event, CallReport):
        return (
            event.provider,
            "call:" + event.reference_id,
            "",
            event.status.value,
            f"{event.sent}:{event.duration}",
        )
    return None


class _Deduplicator:
    """Keys processed within the last ``window`` seconds, at most ``max_entries`` of them,
    plus the keys whose handler is running right now."""

    def __init__(
        self,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._done: collections.OrderedDict[_DedupKey, float] = collections.OrderedDict()
        self.in_flight: dict[_DedupKey, asyncio.Event] = {}

    def seen(self, key: _DedupKey) -> bool:
        """Return whether ``key`` was processed and has not expired."""
        expiry = self._done.get(key)
        if expiry is None:
            return False
        if expiry > self._clock():
            return True
        del self._done[key]
        return False

    def add(self, key: _DedupKey) -> None:
        """Remember ``key`` as processed; drop expired keys and the oldest beyond the cap."""
        now = self._clock()
        self._done[key] = now + self._window
        self._done.move_to_end(key)
        done = self._done
        while done:
            oldest, expiry = next(iter(done.items()))
            if expiry > now and len(done) <= self._max:
                break
            del done[oldest]


# --------------------------------------------------------------------------------------------
# The aiohttp application

TRACKER_KEY: Final = web.AppKey("smsvn_delivery_tracker", DeliveryTracker)
"""``application[TRACKER_KEY]`` is the DeliveryTracker the receiver records reports in."""


class _Body413(Exception):
    """The request body is larger than the cap."""


def app(
    handler: Handler,
    *,
    secret: str | Sequence[str],
    dedup_window: float = DEFAULT_DEDUP_WINDOW,
    max_body: int = DEFAULT_MAX_BODY,
    store: DeliveryTracker | None = None,
    dedup_max: int = DEFAULT_DEDUP_MAX,
) -> web.Application:
    """Build the aiohttp application that receives SpeedSMS and eSMS callbacks.

    ``handler`` is awaited once per new event; if it raises, the callback is answered 500 so
    the provider retries. ``secret`` is one secret, or several during a rotation (each at least
    16 URL-safe characters; see :func:`new_secret`). Duplicates within ``dedup_window``
    seconds are answered 200 without calling the handler. Delivery reports are recorded in
    ``store`` (a new :class:`DeliveryTracker` by default), reachable as ``app[TRACKER_KEY]``.
    Mount it with ``parent.add_subapp("/hooks", app(...))`` or run it alone with :func:`run`.
    """
    if not callable(handler):
        raise TypeError("handler must be an async callable taking one event")
    accepted = tuple(s.encode("ascii") for s in _check_secrets(secret))
    if not (isinstance(max_body, int) and max_body > 0):
        raise ValidationError("max_body must be a positive integer")
    if not (math.isfinite(dedup_window) and dedup_window >= 0):
        raise ValidationError("dedup_window must be a non-negative number of seconds")
    if not (isinstance(dedup_max, int) and dedup_max > 0):
        raise ValidationError("dedup_max must be a positive integer")
    tracker = DeliveryTracker() if store is None else store
    dedup = _Deduplicator(dedup_window, dedup_max)

    def authentic(request: web.Request) -> bool:
        """Compare the path's secret with every accepted one, in constant time."""
        given = request.match_info.get("secret", "").encode("utf-8", "replace")
        ok = False
        for candidate in accepted:
            ok |= hmac.compare_digest(candidate, given)
        return ok

    async def process(event: Event) -> web.Response:
        """Call the handler once per distinct event, then record it; 500 if it raised."""
        key = _dedup_key(event)
        if key is None:
            return _ok() if await _call(handler, event, tracker) else _failed()
        while True:
            if dedup.seen(key):
                _log.debug("%s webhook: duplicate suppressed", event.provider)
                return _ok()
            running = dedup.in_flight.get(key)
            if running is None:
                break
            await running.wait()
        finished = asyncio.Event()
        dedup.in_flight[key] = finished
        try:
            ok = await _call(handler, event, tracker)
            if ok:
                dedup.add(key)
        finally:
            del dedup.in_flight[key]
            finished.set()
        return _ok() if ok else _failed()

    async def speedsms(request: web.Request) -> web.StreamResponse:
        """POST /speedsms/{secret}: a SpeedSMS delivery report or inbound SMS."""
        if not authentic(request):
            _log.info("speedsms webhook: wrong secret from %s", request.remote)
            return _not_found()
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        try:
            body = await _read_capped(request, max_body)
        except _Body413:
            return web.Response(status=413, text="body too large")
        try:
            event: Event = parse_speedsms(body)
        except ValidationError as exc:
            return _bad_request(exc)
        return await process(event)

    async def esms(request: web.Request) -> web.StreamResponse:
        """GET /esms/{secret}: an eSMS SMS delivery result or call result."""
        if not authentic(request):
            _log.info("esms webhook: wrong secret from %s", request.remote)
            return _not_found()
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        try:
            event: Event = parse_esms(request.query)
        except ValidationError as exc:
            return _bad_request(exc)
        return await process(event)

    application = web.Application(client_max_size=max_body, middlewares=[_quiet_not_found])
    application[TRACKER_KEY] = tracker
    application.router.add_route("*", "/speedsms/{secret}", speedsms, name="smsvn-speedsms")
    application.router.add_route("*", "/esms/{secret}", esms, name="smsvn-esms")
    return application


async def _call(handler: Handler, event: Event, tracker: DeliveryTracker) -> bool:
    """Await the user's handler; on success record a delivery report and return True."""
    try:
        await handler(event)
    except Exception as exc:
        _log.warning(
            "%s webhook handler raised %s: answering 500 so the provider retries",
            event.provider,
            type(exc).__name__,
        )
        _log.debug("webhook handler traceback", exc_info=True)
        return False
    if isinstance(event, DeliveryReport):
        tracker.record(event)
    return True


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """Read the body, raising _Body413 past ``limit`` bytes (Content-Length is not trusted)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _Body413
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _Body413
        chunks.append(chunk)


@web.middleware
async def _quiet_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer unknown paths with the same empty 404 as a wrong secret."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _not_found()


def _ok() -> web.Response:
    """The 200 that tells a provider to stop retrying."""
    return web.Response(text="OK")


def _failed() -> web.Response:
    """The 500 that makes a provider retry after the handler failed."""
    return web.Response(status=500, text="handler failed")


def _not_found() -> web.Response:
    """An empty 404 that reveals nothing about the routes or secrets."""
    return web.Response(status=404)


def _bad_request(exc: ValidationError) -> web.Response:
    """A 400 naming what was wrong with the callback (no secret can be in it)."""
    _log.info("%s webhook: rejected malformed callback: %s", exc.provider, exc.message)
    return web.Response(status=400, text=f"bad request: {_clip(exc.message)}")


# --------------------------------------------------------------------------------------------
# Secrets, URLs and logging


def new_secret() -> str:
    """Return a fresh random secret for a callback URL (32 URL-safe characters)."""
    return _secrets.token_urlsafe(24)


def _check_secrets(secret: str | Sequence[str]) -> tuple[str, ...]:
    """Validate one secret or a rotation list; the messages never quote a secret."""
    candidates = (secret,) if isinstance(secret, str) else tuple(secret)
    if not candidates:
        raise ValidationError("at least one webhook secret is required")
    for candidate in candidates:
        _check_secret(candidate)
    return candidates


def _check_secret(secret: object) -> None:
    """Require a str of at least 16 URL-safe characters (letters, digits, ``-_.~``)."""
    if not isinstance(secret, str):
        raise ValidationError(f"a webhook secret must be a str, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            f"a webhook secret must be at least {MIN_SECRET_LENGTH} characters "
            "(use smsvn.webhooks.new_secret())"
        )
    if not _SECRET_CHARS.issuperset(secret):
        raise ValidationError(
            "a webhook secret may contain only letters, digits and '-', '_', '.', '~'"
        )


def callback_url(base_url: str, provider: str, secret: str) -> str:
    """Return the URL to register with ``provider`` ("speedsms" or "esms").

    ``base_url`` is where the application is reachable, mount prefix included: for
    ``parent.add_subapp("/hooks", app(...))`` served at https://example.com, pass
    ``"https://example.com/hooks"``.
    """
    if provider not in PROVIDERS:
        raise ValidationError(f"provider must be one of {', '.join(PROVIDERS)}")
    _check_secret(secret)
    try:
        base = URL(base_url)
    except (TypeError, ValueError):
        raise ValidationError("base_url is not a URL") from None
    if base.scheme not in ("http", "https") or not base.host:
        raise ValidationError("base_url must be an absolute http(s) URL")
    if base.query_string or base.fragment:
        raise ValidationError("base_url must not have a query or a fragment")
    return f"{str(base).rstrip('/')}/{provider}/{secret}"


def _mask(text: str) -> str:
    """Replace the secret segment after /speedsms/ or /esms/ with ``***``."""
    return _SECRET_SEGMENT.sub("***", text)


class _MaskedRequest:
    """A stand-in for a request whose path (and URL) has its secret segment masked."""

    __slots__ = ("_request", "path", "path_qs", "raw_path")

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        self.path = _mask(request.path)
        self.path_qs = _mask(request.path_qs)
        self.raw_path = _mask(request.raw_path)

    @property
    def rel_url(self) -> URL:
        """The request's relative URL, secret masked."""
        return URL(self.path_qs)

    @property
    def url(self) -> URL:
        """The request's absolute URL, secret masked."""
        return self._request.url.with_path(self.path, encoded=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class MaskedAccessLogger(AccessLogger):
    """aiohttp's access logger, with the secret of ``/speedsms/{secret}`` and
    ``/esms/{secret}`` written as ``***`` (in the message and the record's extras alike).

    Give it to the runner: ``web.run_app(app, access_log_class=MaskedAccessLogger)`` or
    ``web.AppRunner(app, access_log_class=MaskedAccessLogger)``.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log the request with its secret masked."""
        super().log(cast(web.BaseRequest, _MaskedRequest(request)), response, time)


def run(
    application: web.Application,
    *,
    host: str | None = None,
    port: int = 8080,
    **kwargs: Any,
) -> None:
    """Serve ``application`` alone (blocking), with the masked access log."""
    kwargs.setdefault("access_log_class", MaskedAccessLogger)
    web.run_app(application, host=host, port=port, **kwargs)
