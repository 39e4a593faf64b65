"""Provider-neutral results: frozen, typed, and cheap to build on the hot path.

Each result keeps the decoded wire struct it came from as ``raw`` (never holding a secret), so a
caller who needs a field smsvn does not model can still reach it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "Balance",
    "Brandname",
    "BrandnameType",
    "CallReport",
    "CallResult",
    "CallStatus",
    "DailyTotals",
    "DeliveryReport",
    "DeliveryState",
    "FailoverAttempt",
    "InboundSms",
    "InvalidNumber",
    "Message",
    "MessageStatus",
    "ReceiverStatus",
    "SendResult",
    "SendStatus",
    "SentMessage",
]


class InvalidNumber(str):
    """A recipient number refused before or by the provider: the number as given, plus why.

    It is a ``str`` (so ``"0123" in result.invalid`` works) that also carries ``reason``.
    """

    __slots__ = ("reason",)
    reason: str

    def __new__(cls, number: str, reason: str) -> InvalidNumber:
        self = super().__new__(cls, number)
        self.reason = reason
        return self

    def __repr__(self) -> str:
        return f"InvalidNumber({str(self)!r}, reason={self.reason!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (InvalidNumber, (str(self), self.reason))


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """The provider accepted a send (an SMS, a batch of SMS, or a voice call).

    ``message_id`` is the provider's id (SpeedSMS ``tranId``, eSMS ``SMSID``) or, for Fibo, the
    caller's ``sms_guid`` (None when none was given: Fibo returns no id of its own). For eSMS it
    is None when a resend was answered "already received" and the first attempt's id never
    reached us (``request_id`` then identifies it).
    """

    provider: str
    message_id: str | None
    recipients: tuple[str, ...]
    invalid: tuple[InvalidNumber, ...] = ()
    segments: int | None = None
    cost: float | None = None
    request_id: str | None = None
    raw: Any = None
    failovers: tuple[FailoverAttempt, ...] = ()
    """Behind ``Failover``: the providers tried before this one, and why each was passed over."""


class FailoverAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """A provider ``Failover`` tried and moved past, with the error that proved nothing was sent."""

    provider: str
    error: Any


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    """An account balance: VND, or a count of messages where ``currency`` is None."""

    provider: str
    amount: float
    currency: str | None
    raw: Any = None


class Message(msgspec.Struct, frozen=True):
    """One personalised message for ``send_many``: a recipient, its content, and optionally the
    id (eSMS ``RequestId``) that makes a resend of it recognisable."""

    to: str
    content: str
    request_id: str | None = None


class SendStatus(enum.IntEnum):
    """eSMS ``SendStatus`` of a message."""

    WAITING_APPROVAL = 1
    WAITING_TO_SEND = 2
    SENDING = 3
    REJECTED = 4
    SENT = 5
    DELETED = 6


class MessageStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a sent message stands: its status and how many receivers it reached."""

    provider: str
    message_id: str
    status: SendStatus | None
    total_receivers: int
    total_sent: int
    succeeded: int
    failed: int
    raw: Any = None


class ReceiverStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient of a sent message: whether it went out and whether it succeeded."""

    phone: str
    is_sent: bool
    succeeded: bool | None


class SentMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message in the account's sent list."""

    message_id: str
    phone: str
    content: str
    sms_type: int | None
    sent_at: datetime | None
    status: str | None


class BrandnameType(enum.IntEnum):
    """What a registered brandname may send."""

    ADVERTISING = 1
    CUSTOMER_CARE = 2


class Brandname(msgspec.Struct, frozen=True, kw_only=True):
    """A brandname registered on the account."""

    name: str
    type: BrandnameType | None


class CallStatus(enum.Enum):
    """How a voice call ended, as far as the provider knows."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"


class CallResult(msgspec.Struct, frozen=True, kw_only=True):
    """The state of a voice call: outcome, duration in seconds and the key pressed (IVR)."""

    provider: str
    reference_id: str
    status: CallStatus
    duration: int | None
    ivr: str | None
    raw: Any = None


class DailyTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Today's message counts on a Fibo account."""

    provider: str
    success: int
    failed: int
    pending: int
    raw: Any = None


class DeliveryState(enum.Enum):
    """Where a message stands with the recipient's handset, in the order a report may move."""

    PENDING = "pending"
    TEMPORARY_FAILURE = "temporary_failure"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryReport(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's delivery report for one message to one number (from a webhook)."""

    provider: str
    message_id: str
    phone: str
    state: DeliveryState
    raw_status: str
    cost: float | None = None
    raw: Any = None


class InboundSms(msgspec.Struct, frozen=True, kw_only=True):
    """A reply from a recipient (SpeedSMS inbound-SMS webhook)."""

    provider: str
    phone: str
    content: str
    raw: Any = None


class CallReport(msgspec.Struct, frozen=True, kw_only=True):
    """The result of a voice call (eSMS call callback)."""

    provider: str
    reference_id: str
    status: CallStatus
    duration: int | None
    ivr: str | None
    price: float | None
    sent: bool | None
    caller_id: str | None
    raw: Any = None
