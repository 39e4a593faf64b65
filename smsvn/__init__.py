"""smsvn: async client for Vietnam's SMS and voice-OTP providers (SpeedSMS, eSMS, Fibo).

The public surface: the three clients, ``Failover``, the result types, ``smsvn.errors``, and the
modules ``smsvn.phone``, ``smsvn.text``, ``smsvn.otp`` (one-time codes), ``smsvn.advertising``
(Vietnam's anti-spam rules), ``smsvn.webhooks`` and ``smsvn.sandbox`` (the simulator). The last
two need ``aiohttp.web``, so they load on first use, as httpx loads its CLI: a web app that only
sends pays for neither; ``smsvn.otp`` and ``smsvn.advertising`` load on first use too (and
import redis or asyncpg only for a store that needs them).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from smsvn import errors, phone, text
from smsvn._shared_limits import RedisLimiter
from smsvn.bulk import BulkOutcome, BulkProgress, BulkReport, Outcome
from smsvn.failover import Failover
from smsvn.journal import Journal
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
    "Journal",
    "Message",
    "MessageStatus",
    "Outcome",
    "RateLimit",
    "ReceiverStatus",
    "RedisLimiter",
    "RetryPolicy",
    "SendResult",
    "SendStatus",
    "SentMessage",
    "SpeedSMS",
    "advertising",
    "errors",
    "otp",
    "phone",
    "sandbox",
    "text",
    "webhooks",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from smsvn import advertising, otp, sandbox, webhooks

_LAZY = frozenset({"advertising", "otp", "sandbox", "webhooks"})


def __getattr__(name: str) -> ModuleType:
    """Load ``smsvn.advertising``, ``smsvn.otp``, ``smsvn.sandbox`` and ``smsvn.webhooks`` on
    first use (PEP 562)."""
    if name in _LAZY:
        return importlib.import_module(f"smsvn.{name}")
    raise AttributeError(f"module 'smsvn' has no attribute {name!r}")
