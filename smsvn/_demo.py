"""``smsvn demo`` / ``make demo``: a bulk campaign through all three providers, on the simulator.

It starts the simulator and a webhook receiver on 127.0.0.1, generates a campaign of tens of
thousands of numbers in every written form (some invalid, some repeated, some in the old 11-digit
form), splits it between SpeedSMS (batches of 100 under a compressed rate limit), eSMS and Fibo
(one number a request, bounded concurrency), sends the three parts at once with progress bars,
waits for the delivery reports, and ends with a table per provider.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final, TextIO

from aiohttp import web

from smsvn import webhooks
from smsvn.bulk import BulkReport
from smsvn.limits import RateLimit
from smsvn.models import CallReport, DeliveryReport, DeliveryState, InboundSms
from smsvn.providers._base import BaseClient
from smsvn.providers.fibo import Fibo

__all__ = ["campaign", "run_demo"]

CONTENT: Final = "Ưu đãi 20% cho khách hàng thân thiết đến hết 30/11. Từ chối: TC"
"""The campaign's message: Vietnamese with diacritics, so UCS-2, one segment."""
DEMO_RATE_LIMIT: Final = RateLimit(requests=60, period=1.0)
"""SpeedSMS's 60 requests a minute, compressed to a second so the demo ends in seconds."""
_CONCURRENCY: Final = {"speedsms": 8, "esms": 48, "fibo": 48}
_NEW_TO_OLD: Final = {
    "032": "0162", "033": "0163", "034": "0164", "035": "0165", "036": "0166", "037": "0167",
    "038": "0168", "039": "0169", "070": "0120", "079": "0121", "077": "0122", "076": "0126",
    "078": "0128", "083": "0123", "084": "0124", "085": "0125", "081": "0127", "082": "0129",
    "056": "0186", "058": "0188", "059": "0199",
}  # fmt: skip
_PREFIXES: Final = (
    *("086", "096", "097", "098", "088", "091", "094", "089", "090", "093", "092", "099"),
    *_NEW_TO_OLD,
)
_INVALID: Final = (
    "024 3826 1234",  # a Hanoi landline
    "+1 415 555 0100",  # not Vietnamese
    "091234567",  # too short
    "09123456789",  # too long
    "0951234567",  # an unallocated prefix
    "không có số",  # not a number at all
)


def _written(national: str, rng: random.Random) -> str:
    """``national`` in one of the ways people write Vietnamese numbers."""
    prefix, rest = national[:3], national[3:]
    form = rng.randrange(10)
    if form == 0 and prefix in _NEW_TO_OLD:
        return _NEW_TO_OLD[prefix] + rest  # the pre-2018 11-digit form
    if form == 1:
        return "84" + national[1:]
    if form == 2:
        return f"+84 {national[1:4]} {national[4:7]} {national[7:]}"
    if form == 3:
        return f"{national[:4]}.{national[4:7]}.{national[7:]}"
    if form == 4:
        return f"(+84) {national[1:4]}-{national[4:7]}-{national[7:]}"
    if form == 5:
        return f"{national[:4]} {national[4:7]} {national[7:]}"
    return national


def campaign(size: int, seed: int) -> Iterator[str]:
    """``size`` numbers as a campaign list would hold them: about 2 % invalid, 1 % repeated,
    1 % ending in 0000 (the simulator fails them) and 0.5 % in 0001 (fail once, then arrive)."""
    rng = random.Random(seed)
    seen: list[str] = []
    for _ in range(size):
        roll = rng.random()
        if roll < 0.02:
            yield rng.choice(_INVALID)
            continue
        if roll < 0.03 and seen:
            yield _written(rng.choice(seen), rng)
            continue
        ending = (
            "0000" if roll < 0.04 else "0001" if roll < 0.045 else f"{rng.randrange(10**4):04d}"
        )
        national = f"{rng.choice(_PREFIXES)}{rng.randrange(1000):03d}{ending}"
        if len(seen) < 5000:
            seen.append(national)
        yield _written(national, rng)


class _Reports:
    """Delivery reports received by the webhook receiver, counted per provider."""

    def __init__(self) -> None:
        self.final: dict[str, Counter[DeliveryState]] = {}

    async def __call__(self, event: DeliveryReport | InboundSms | CallReport) -> None:
        if isinstance(event, DeliveryReport) and event.state in (
            DeliveryState.DELIVERED,
            DeliveryState.FAILED,
        ):
            self.final.setdefault(event.provider, Counter())[event.state] += 1

    def count(self, provider: str, state: DeliveryState) -> int:
        return self.final.get(provider, Counter())[state]


async def _receiver(reports: _Reports, secret: str) -> tuple[web.AppRunner, str]:
    """The webhook receiver on a free loopback port, and its base URL."""
    runner = web.AppRunner(webhooks.app(reports, secret=secret), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def run_demo(*, numbers: int, seed: int, progress: bool, out: TextIO) -> int:
    """Run the demo campaign; returns the exit code (0 when every part ran to the end)."""
    from smsvn.cli import _print_report, _progress_bars
    from smsvn.sandbox import Sandbox

    reports = _Reports()
    secret = webhooks.new_secret()
    runner, hooks_url = await _receiver(reports, secret)
    try:
        sandbox = Sandbox(
            speedsms_rate_limit=DEMO_RATE_LIMIT,
            delivery_delay=0.5,
            speedsms_webhook_url=webhooks.callback_url(hooks_url, "speedsms", secret),
            record_outbox=True,
            seed=seed,
        )
        async with sandbox as sb:
            print(
                f"smsvn demo: {numbers:,} numbers split between SpeedSMS, eSMS and Fibo "
                f"on the simulator at {sb.url}",
                file=out,
            )
            print(f"message: {CONTENT!r}", file=out)
            clients: dict[str, BaseClient] = {
                "speedsms": sb.client("speedsms", rate_limit=DEMO_RATE_LIMIT),
                "esms": sb.client("esms"),
                "fibo": sb.client("fibo"),
            }
            options: dict[str, dict[str, Any]] = {
                "speedsms": {},
                "esms": {"callback_url": webhooks.callback_url(hooks_url, "esms", secret)},
                "fibo": {},
            }
            parts: dict[str, list[str]] = {name: [] for name in clients}
            names = list(clients)
            for i, number in enumerate(campaign(numbers, seed)):
                parts[names[i % 3]].append(number)
            before = {name: sb.balance(name) for name in clients}
            started = time.monotonic()
            with _progress_bars(progress, out) as bars:
                runs = [
                    clients[name].send_bulk(
                        parts[name],
                        CONTENT,
                        concurrency=_CONCURRENCY[name],
                        on_progress=bars(name, len(parts[name])),
                        keep_results=False,
                        **options[name],
                    )
                    for name in names
                ]
                results: list[BulkReport] = await asyncio.gather(*runs)
            sent_in = time.monotonic() - started
            print(f"all three sent in {sent_in:.1f} s; waiting for delivery reports...", file=out)
            await sb.settle(within=30.0)
            fibo = clients["fibo"]
            assert isinstance(fibo, Fibo)
            totals = await fibo.daily_totals()
            for client in clients.values():
                await client.aclose()
            costs = {name: before[name] - sb.balance(name) for name in clients}
            outbox = {name: len(sb.outbox.for_provider(name)) for name in clients}
    finally:
        await runner.cleanup()
    delivered = {
        "speedsms": reports.count("speedsms", DeliveryState.DELIVERED),
        "esms": reports.count("esms", DeliveryState.DELIVERED),
        "fibo": totals.success,
    }
    undelivered = {
        "speedsms": reports.count("speedsms", DeliveryState.FAILED),
        "esms": reports.count("esms", DeliveryState.FAILED),
        "fibo": totals.failed,
    }
    _table(results, delivered, undelivered, costs, outbox, out)
    for report in results:
        if report.aborted is not None or report.failed or report.unknown:
            _print_report(report, out)
    ok = all(r.aborted is None and not r.failed and not r.unknown for r in results)
    return 0 if ok else 1


def _table(
    results: list[BulkReport],
    delivered: dict[str, int],
    undelivered: dict[str, int],
    costs: dict[str, float],
    outbox: dict[str, int],
    out: TextIO,
) -> None:
    """The summary: one row a provider."""
    headers = (
        "provider", "numbers", "accepted", "refused locally", "failed", "delivered",
        "undelivered", "cost", "requests", "elapsed", "msg/s",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    units = {"speedsms": "VND", "esms": "VND", "fibo": "msgs"}
    for report in results:
        name = report.provider
        refused = len(report.invalid) + report.duplicates
        failed = report.failed_count + report.unknown_count
        rate = report.accepted / report.elapsed if report.elapsed else 0.0
        rows.append(
            (
                name,
                f"{report.taken:,}",
                f"{report.accepted:,}",
                f"{refused:,}",
                f"{failed:,}",
                f"{delivered[name]:,}",
                f"{undelivered[name]:,}",
                f"{costs[name]:,.0f} {units[name]}",
                f"{report.requests:,}",
                f"{report.elapsed:.1f} s",
                f"{rate:,.0f}",
            )
        )
        if outbox[name] != report.accepted:
            rows.append((f"  ! outbox holds {outbox[name]:,} for {name}",))
    widths = [max(len(h), *(len(r[i]) for r in rows if len(r) > i)) for i, h in enumerate(headers)]
    print(file=out)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)), file=out)
    print(
        "\nrefused locally = invalid numbers + repeats (never sent); undelivered = numbers "
        "ending 0000, which the simulator fails; delivered comes from the webhook receiver "
        "(SpeedSMS, eSMS) and Fibo's SOAP GetTotalMt.",
        file=out,
    )
