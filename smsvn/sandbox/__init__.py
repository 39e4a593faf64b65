"""An embedded simulator of SpeedSMS, eSMS and Fibo (and of any provider registered in
``smsvn.providers``) on 127.0.0.1, for demos, tests, fault injection and benchmarks: no account,
no network.

    async with Sandbox() as sb:
        async with sb.client("speedsms") as sms:
            await sms.send(["0912345678"], "Xin chao")
        assert [r.phone for r in sb.outbox] == ["0912345678"]

Delivery rules, by the national number's ending: ``0000`` fails permanently, ``0001`` fails
temporarily once and is delivered one ``delivery_delay`` later, everything else is delivered
``delivery_delay`` seconds after the send was accepted. Each provider module documents its wire
format and codes; ``faults`` documents the fault switches; ``_simulator`` documents what a
provider's simulator implements (``Sandbox.client(name)`` and ``Sandbox.client_options(name)``
work for every simulated provider).
"""

from __future__ import annotations

from smsvn.sandbox._base import Outbox, OutboxRecord, Stats
from smsvn.sandbox._server import (
    DEFAULT_BALANCES,
    DEFAULT_PRICES,
    DEFAULT_SPEEDSMS_RATE_LIMIT,
    Sandbox,
    serve,
)
from smsvn.sandbox.faults import Fault, FaultKind, Faults

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_PRICES",
    "DEFAULT_SPEEDSMS_RATE_LIMIT",
    "Fault",
    "FaultKind",
    "Faults",
    "Outbox",
    "OutboxRecord",
    "Sandbox",
    "Stats",
    "serve",
]
