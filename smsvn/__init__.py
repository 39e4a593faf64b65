"""smsvn: async client for Vietnam's SMS and voice-OTP providers (SpeedSMS, eSMS, Fibo).

The public surface: the three clients, ``Failover``, the result types, ``smsvn.errors``, and the
modules ``smsvn.phone``, ``smsvn.text`` and ``smsvn.webhooks``; the simulator is
``smsvn.sandbox`` (imported on first use, since a sending service does not need a server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsvn import errors, phone, text, webhooks
from smsvn.bulk import BulkOutcome, BulkProgress, BulkReport, Outcome
from smsvn.failover import Failover
from smsvn.limits import RateLimit
from smsvn.models import (
    Balance,
    Brandname,
    BrandnameType,
    CallReport,
    CallResult,
    CallStatus,
    DailyTotals,
    DeliveryReport,
    DeliveryState,
    FailoverAttempt,
    InboundSms,
    InvalidNumber,
    Message,
    MessageStatus,
    ReceiverStatus,
    SendResult,
    SendStatus,
    SentMessage,
)
from smsvn.providers.esms import ESMS
from smsvn.providers.fibo import Fibo
from smsvn.providers.speedsms import SpeedSMS
from smsvn.transport import AttemptInfo, Hooks, RetryPolicy

if TYPE_CHECKING:
    from smsvn import sandbox

__all__ = [
    "ESMS",
    "AttemptInfo",
    "Balance",
    "Brandname",
    "BrandnameType",
    "BulkOutcome",
    "BulkProgress",
    "BulkReport",
    "CallReport",
    "CallResult",
    "CallStatus",
    "DailyTotals",
    "DeliveryReport",
    "DeliveryState",
    "Failover",
    "FailoverAttempt",
    "Fibo",
    "Hooks",
    "InboundSms",
    "InvalidNumber",
    "Message",
    "MessageStatus",
    "Outcome",
    "RateLimit",
    "ReceiverStatus",
    "RetryPolicy",
    "SendResult",
    "SendStatus",
    "SentMessage",
    "SpeedSMS",
    "errors",
    "phone",
    "sandbox",
    "text",
    "webhooks",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``smsvn.sandbox`` works after a plain ``import smsvn``, without loading it eagerly.
    if name == "sandbox":
        import importlib

        return importlib.import_module("smsvn.sandbox")
    raise AttributeError(f"module 'smsvn' has no attribute {name!r}")
