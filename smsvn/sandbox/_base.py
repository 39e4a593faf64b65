"""What every simulated provider shares: accepted messages, the outbox, counters, the delivery
rules, pricing by segment, and Vietnam time.

A request the simulator accepts becomes one ``Batch``: the fields its recipients share plus
their numbers packed as 32-bit integers (``0912345678`` -> ``912345678``), so a million
recipients cost about 4 MB. ``Outbox`` shows the batches as one ``OutboxRecord`` per
recipient, built on demand.

Delivery rules (like a payment sandbox's test card numbers), by the national number's ending:

- ``...0000`` fails permanently;
- ``...0001`` fails temporarily once, then is delivered one ``delivery_delay`` later;
- every other number is delivered.

A batch's first delivery attempt happens ``delivery_delay`` seconds after it was accepted (or
after its scheduled ``SendDate``); its state at any moment follows from the clock, so status
queries need no timers. Voice calls follow the same clock: ``...0000`` is not answered.
"""

from __future__ import annotations

import base64
import math
import re
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, NamedTuple, overload

from aiohttp import web

from smsvn import phone, text
from smsvn.errors import ValidationError

__all__ = [
    "DELIVERED",
    "FAILED",
    "NOT_SENT",
    "PENDING",
    "TEMPORARY",
    "VN",
    "Batch",
    "Handler",
    "Outbox",
    "OutboxRecord",
    "Route",
    "Stats",
    "any_case",
    "basic_token",
    "format_seconds",
    "is_old_number",
    "json_number",
    "national",
    "number_text",
    "same_route",
    "segment_count",
    "too_many_html",
    "vn_now",
    "wcf_date",
]

VN: Final = timezone(timedelta(hours=7), "ICT")
"""Vietnam's time zone (UTC+7, no daylight saving): the providers' clocks."""

PENDING: Final = 0
"""Not attempted yet (before the batch's due time)."""
TEMPORARY: Final = 1
"""Failed temporarily once; delivered one delivery delay later (numbers ending 0001)."""
DELIVERED: Final = 2
"""Delivered (or, for a call, answered)."""
FAILED: Final = 3
"""Failed permanently (numbers ending 0000; a call not answered)."""
NOT_SENT: Final = 4
"""Created but never sent (eSMS ``Sandbox=1``)."""

Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]
"""An aiohttp.web request handler."""


class Route(NamedTuple):
    """One endpoint a simulated provider serves: method, path under its prefix, fault name."""

    method: str
    path: str
    name: str
    handler: Handler


class OutboxRecord(NamedTuple):
    """One message to one recipient that the simulator accepted (the ground truth of a test).

    ``phone`` is national (``0912345678``); ``request_id`` is the caller's id (eSMS
    ``RequestId``, Fibo ``smsGUID``; None for SpeedSMS); ``message_id`` is the provider's id
    (SpeedSMS ``tranId``, eSMS ``SMSID``, the simulator's own for Fibo); ``accepted_at`` is a
    Unix time; ``sandbox`` is True for eSMS ``Sandbox=1`` (created, never delivered or
    charged); ``kind`` is ``"sms"`` or ``"voice"``; ``sender`` the brandname or sender, if any.
    """

    provider: str
    phone: str
    content: str
    request_id: str | None
    message_id: str
    accepted_at: float
    sandbox: bool
    kind: str
    sender: str | None


def number_text(packed: int) -> str:
    """A packed number back to its national form (``912345678`` -> ``"0912345678"``)."""
    return f"0{packed:09d}"


def _pack(numbers: Sequence[str]) -> array[int]:
    """National numbers packed as unsigned 32-bit integers (4 bytes each)."""
    return array("I", [int(n[1:]) for n in numbers])


class Batch:
    """One accepted request: what its recipients share, and their numbers packed.

    ``due`` is the event-loop time of the first delivery attempt; ``retry_at`` the time a
    temporarily failed number (``...0001``) is delivered. ``unit_price`` is what one recipient
    cost (price x segments), ``segments`` the segments of one message.
    """

    __slots__ = (
        "accepted_at",
        "callback",
        "content",
        "due",
        "kind",
        "message_id",
        "numbers",
        "provider",
        "request_id",
        "retry_at",
        "sandbox",
        "segments",
        "sender",
        "sms_type",
        "unit_price",
    )

    def __init__(
        self,
        *,
        provider: str,
        kind: str,
        message_id: str,
        numbers: Sequence[str],
        content: str,
        accepted_at: float,
        due: float,
        retry_at: float,
        unit_price: float,
        segments: int,
        request_id: str | None = None,
        sender: str | None = None,
        sms_type: int = 0,
        sandbox: bool = False,
        callback: str | None = None,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.message_id = message_id
        self.numbers = _pack(numbers)
        self.content = content
        self.accepted_at = accepted_at
        self.due = due
        self.retry_at = retry_at
        self.unit_price = unit_price
        self.segments = segments
        self.request_id = request_id
        self.sender = sender
        self.sms_type = sms_type
        self.sandbox = sandbox
        self.callback = callback

    def state(self, packed: int, now: float) -> int:
        """Where the message to ``packed`` stands at loop time ``now`` (see the rules above)."""
        if self.sandbox:
            return NOT_SENT
        if now < self.due:
            return PENDING
        ending = packed % 10000
        if ending == 0:
            return FAILED
        if ending == 1 and now < self.retry_at:
            return TEMPORARY
        return DELIVERED

    def record(self, packed: int) -> OutboxRecord:
        """The outbox record of one recipient."""
        return OutboxRecord(
            self.provider,
            number_text(packed),
            self.content,
            self.request_id,
            self.message_id,
            self.accepted_at,
            self.sandbox,
            self.kind,
            self.sender,
        )

    def accepted_date(self) -> str:
        """The Vietnam calendar date (ISO) the batch was accepted on."""
        return datetime.fromtimestamp(self.accepted_at, VN).date().isoformat()


class Outbox(Sequence[OutboxRecord]):
    """Every message the simulator accepted, one ``OutboxRecord`` per recipient, in order.

    A read-only sequence (``len``, indexing, slicing, iteration) built on demand from the
    accepted batches, so it stays small however many recipients it holds.
    """

    def __init__(self) -> None:
        self._batches: list[Batch] = []
        self._ends: list[int] = []
        self._size = 0

    def add(self, batch: Batch) -> None:
        """Append an accepted batch (the simulator's side; tests only read)."""
        self._batches.append(batch)
        self._size += len(batch.numbers)
        self._ends.append(self._size)

    def clear(self) -> None:
        """Forget every record (say, between two phases of a test)."""
        self._batches.clear()
        self._ends.clear()
        self._size = 0

    def batches(self) -> list[Batch]:
        """The accepted batches, oldest first."""
        return self._batches

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> OutboxRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[OutboxRecord]: ...

    def __getitem__(self, index: int | slice) -> OutboxRecord | list[OutboxRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("outbox index out of range")
        position = bisect_right(self._ends, index)
        batch = self._batches[position]
        start = self._ends[position] - len(batch.numbers)
        return batch.record(batch.numbers[index - start])

    def __iter__(self) -> Iterator[OutboxRecord]:
        for batch in self._batches:
            for packed in batch.numbers:
                yield batch.record(packed)

    def for_provider(self, provider: str, kind: str | None = None) -> list[OutboxRecord]:
        """The records of one provider (and, if given, one kind: ``"sms"`` or ``"voice"``)."""
        return [
            batch.record(packed)
            for batch in self._batches
            if batch.provider == provider and (kind is None or batch.kind == kind)
            for packed in batch.numbers
        ]

    def phones(self, provider: str | None = None) -> list[str]:
        """Every accepted recipient's number (repeats included), optionally of one provider."""
        return [
            number_text(packed)
            for batch in self._batches
            if provider is None or batch.provider == provider
            for packed in batch.numbers
        ]

    def __repr__(self) -> str:
        return f"Outbox({self._size} records in {len(self._batches)} requests)"


@dataclass(slots=True)
class Stats:
    """What the simulator did, for tests and benchmarks to assert on.

    ``accepted``: recipients accepted per provider. ``rate_limited``: HTTP 429 answers (the
    SpeedSMS limit and forced ones). ``duplicates``: eSMS requests refused as already received
    (124). ``faults``: injected faults by kind. ``callback_attempts`` counts every HTTP call the
    simulator made to a callback URL, ``callbacks_delivered`` those answered 200 and
    ``callback_failures`` the others (non-200 answers and connection errors).
    """

    accepted: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    duplicates: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    callback_attempts: int = 0
    callbacks_delivered: int = 0
    callback_failures: int = 0


def national(raw: object) -> str | None:
    """A number as a provider receives it (``0912...`` or ``84912...``, digits only) in
    national form, or None when it cannot be a Vietnamese mobile number."""
    number = raw if isinstance(raw, str) else str(raw) if isinstance(raw, int) else None
    if not number or not number.isdigit() or not number.isascii():
        return None
    if number[:2] == "84" and len(number) == 11:
        number = "0" + number[2:]
    elif number[0] != "0":
        return None
    try:
        return phone.normalize(number)
    except ValidationError:
        return None


def is_old_number(raw: str) -> bool:
    """True for a pre-2018 11-digit ``01xx`` number that now has a 10-digit form."""
    if len(raw) != 11 or not raw.isdigit() or not raw.startswith("01"):
        return False
    return national(raw) is not None


def segment_count(content: str, unicode: bool) -> int:
    """Segments one message takes: as the content needs, or forced to UCS-2 by ``unicode``."""
    parts = text.segments(content)
    if not unicode or parts.unicode:
        return parts.segments
    units = len(content)
    return 1 if units <= 70 else math.ceil(units / 67)


def wcf_date(timestamp: float) -> str:
    """A Unix time in WCF's JSON date form, Vietnam offset (``/Date(1705484048995+0700)/``)."""
    return f"/Date({round(timestamp * 1000)}+0700)/"


def vn_now() -> datetime:
    """The current time in Vietnam."""
    return datetime.now(UTC).astimezone(VN)


def json_number(value: float) -> int | float:
    """A price or balance as JSON writes it: an integer when it is whole."""
    return int(value) if value == int(value) else value


_VARIABLE: Final = re.compile(r"\{[_a-zA-Z][_a-zA-Z0-9]*\}")


def any_case(root: str, path: str) -> str:
    """An aiohttp route path for ``root`` (matched exactly: the simulator's stand-in for a
    host) followed by ``path`` with its literal segments matched without regard to case, as
    IIS matches URLs; ``{name}`` segments of ``path`` stay variables.

    ``any_case("/fibo", "/service.asmx/SendMaskedSMS")`` matches ``/fibo/Service.asmx/
    sendmaskedsms`` too. Each literal segment becomes a variable ``_cN`` whose pattern is the
    segment, escaped, under a scoped ``(?i:...)`` flag; an empty segment (a trailing slash)
    stays empty.
    """
    if not path.startswith("/"):
        raise ValueError(f"a route path starts with '/', not {path!r}")
    parts: list[str] = []
    for n, segment in enumerate(path[1:].split("/")):
        if not segment or _VARIABLE.fullmatch(segment):
            parts.append(segment)
        else:
            parts.append(f"{{_c{n}:(?i:{re.escape(segment)})}}")
    return root + "/" + "/".join(parts)


def same_route(template: str, path: str) -> bool:
    """Whether a request ``path`` fits a route ``template`` (``{name}`` segments match any
    non-empty segment) with literal segments compared without regard to case."""
    want, got = template.split("/"), path.split("/")
    return len(want) == len(got) and all(
        w.casefold() == g.casefold() or (_VARIABLE.fullmatch(w) is not None and g != "")
        for w, g in zip(want, got, strict=True)
    )


def basic_token(header: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header, or None."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, _, _ = decoded.partition(":")
    return user


def format_seconds(seconds: float, whole: bool) -> str:
    """A wait hint for a header: whole seconds rounded up, or to the millisecond."""
    if whole:
        return str(max(1, math.ceil(seconds)))
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".")


def too_many_html(seconds: float) -> web.Response:
    """A generic HTTP 429 page (eSMS and Fibo document no limit) with both wait headers."""
    return web.Response(
        status=429,
        body=b"<html><head><title>429 Too Many Requests</title></head>"
        b"<body><h1>Too Many Requests</h1></body></html>",
        content_type="text/html",
        headers={
            "Retry-After": format_seconds(seconds, whole=True),
            "X-Rate-Limit-Reset": format_seconds(seconds, whole=False),
        },
    )
