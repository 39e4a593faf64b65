"""Advertising that keeps Vietnam's anti-spam rules (Decree 91/2020/ND-CP, Circular 22/2021).

    from smsvn import advertising as ad

    rules = ad.Rules(advertiser="Shop ABC", brandname="SHOPABC")
    async with smsvn.Journal("campaigns.db") as journal, ad.Guard(rules, journal) as guard:
        await guard.load_do_not_call("dnc-2026-11-30.csv", snapshot="2026-11-30")
        await guard.consent("0912345678", how="form")
        result = await guard.send(sms, "0912345678", "[QC] Giam 20% ... Tu choi: TC",
                                  purpose="advertising")     # blocked numbers in result.invalid
        report = await campaign.run(sms, guard=guard)         # pauses 22:00-07:00 by itself

A message's ``purpose`` is stated, never guessed: customer care and OTP go straight through;
advertising and registration messages are checked before anything leaves: the message (label,
opt-out, brandname; ``ComplianceError``), the hour (``OutsideWindow``), and each number
(Do-Not-Call snapshot, refusals, consent, the 24-hour cap, the one registration message; kept
numbers come back as ``BlockedNumber`` with their reason, like invalid numbers). Replies that
refuse (``Guard.inbound`` / ``Guard.handler`` for ``smsvn.webhooks``) are recorded at once and
confirmed once. Records (sends, registrations, consents, refusals, confirmations) are kept in
the journal's store, shared by every process using it, and exported with ``Guard.records`` or
``Guard.export_csv``. A tool to help follow the rules, not legal advice.
"""

from __future__ import annotations

from smsvn.advertising._guard import Checked, DoNotCallLoaded, Guard
from smsvn.advertising._memory import MemoryRecords
from smsvn.advertising._records import AdEvent, Records
from smsvn.advertising._rules import (
    VIETNAM,
    Blocked,
    BlockedNumber,
    ComplianceError,
    OutsideWindow,
    Purpose,
    Rule,
    Rules,
    Window,
)

__all__ = [
    "VIETNAM",
    "AdEvent",
    "Blocked",
    "BlockedNumber",
    "Checked",
    "ComplianceError",
    "DoNotCallLoaded",
    "Guard",
    "MemoryRecords",
    "OutsideWindow",
    "Purpose",
    "Records",
    "Rule",
    "Rules",
    "Window",
]
