"""One-time codes: start a verification (a code by SMS or voice call), check the code.

    from smsvn import otp

    store = otp.MemoryStore()                     # one process; otp.RedisStore(url) for many
    verifier = otp.Verifier(sms, store=store, secret=HMAC_KEY, template="Ma xac thuc: {code}")
    v = await verifier.start("0912345678")        # otp.Verification: .to .channel .expires_at ...
    res = await verifier.check("0912345678", "123456")   # otp.CheckResult: .approved .reason ...

What it takes care of: codes drawn from ``secrets`` (uniform digits); the store keeps keyed
HMACs of the code and of the number, never either in clear; comparison in constant time; a code
works once, and a number has one live code (per ``purpose``); attempts counted atomically (of
40 concurrent wrong guesses with ``max_attempts=5``, 5 are compared, and then not even the
right code passes, until the code expires); a cooldown between sends (``TooSoon``), caps per
number per hour and day and an optional global budget per hour (``Blocked``) -- all atomic, so
40 concurrent starts send one code; sends bounded in time, moving to the next provider or
channel when one provably sent nothing; a send whose outcome is unknown keeps its code live.

``RedisStore`` needs the ``redis`` extra and imports redis only when one is made.
"""

from __future__ import annotations

from smsvn.otp._memory import MemoryStore
from smsvn.otp._redis import RedisStore
from smsvn.otp._types import (
    Blocked,
    Checked,
    Claim,
    OtpError,
    Reason,
    Refusal,
    Start,
    Store,
    StoreError,
    TooSoon,
    Window,
)
from smsvn.otp._verifier import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_WAIT,
    Channel,
    CheckResult,
    SmsSender,
    Verification,
    Verifier,
    VoiceSender,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_WAIT",
    "Blocked",
    "Channel",
    "CheckResult",
    "Checked",
    "Claim",
    "MemoryStore",
    "OtpError",
    "Reason",
    "RedisStore",
    "Refusal",
    "SmsSender",
    "Start",
    "Store",
    "StoreError",
    "TooSoon",
    "Verification",
    "Verifier",
    "VoiceSender",
    "Window",
]
