"""smsvn: async client for Vietnam's SMS and voice-OTP providers (SpeedSMS, eSMS, Fibo)."""

from __future__ import annotations

from smsvn import errors
from smsvn.models import Balance, InvalidNumber, Message, SendResult

__all__ = ["Balance", "InvalidNumber", "Message", "SendResult", "errors"]
__version__ = "0.1.0"
