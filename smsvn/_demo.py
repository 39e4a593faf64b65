"""``smsvn demo`` / ``make demo``: a bulk campaign through every simulated provider, then a
durable campaign that survives a real crash.

Part one starts the simulator and a webhook receiver on 127.0.0.1, generates a campaign of tens
of thousands of numbers in every written form (some invalid, some repeated, some in the old
11-digit form), splits it between the registered providers the simulator serves (SpeedSMS in
batches of 100 under a compressed rate limit, eSMS and Fibo one number a request at bounded
concurrency), sends the parts at once with progress bars while the simulator injects faults
(429s, and answers lost after sending where the provider recognises a resent request id), waits
for the delivery reports, and ends with a table, one row a provider: the faults survived,
invalid numbers and repeats apart, and the cost as the provider reports it or as estimated. A
registered provider the simulator does not serve is named and left out.

Part two runs a campaign from a journal (a temporary SQLite file): the simulator stays in this
process, and each provider's part is sent by a child process (``smsvn campaign work``). Part
way through, each child is killed with SIGKILL — a real crash — and started again; it resumes
from the journal. The table is drawn from the simulator's outbox, the ground truth: nobody got a
message twice, and it shows where the ``unknown`` messages (in flight at the crash) are, and
which of them the delivery reports settle.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

from aiohttp import web

from smsvn import providers, webhooks
from smsvn._console import (
    DailyTotalsLookup,
    amount,
    join_titles,
    print_report,
    print_table,
    progress_bars,
)
from smsvn.bulk import BulkReport
from smsvn.journal import Campaign, Counts, Journal
from smsvn.limits import RateLimit
from smsvn.models import CallReport, DeliveryReport, DeliveryState, InboundSms
from smsvn.providers import Provider
from smsvn.providers._base import BaseClient
from smsvn.transport import AttemptInfo, Hooks

if TYPE_CHECKING:
    from smsvn.sandbox import Sandbox

__all__ = ["campaign", "crash_demo", "run_demo"]

CONTENT: Final = "Ưu đãi 20% cho khách hàng thân thiết đến hết 30/11. Từ chối: TC"
"""The campaign's message: Vietnamese with diacritics, so UCS-2, one segment."""
DEMO_RATE_LIMIT: Final = RateLimit(requests=60, period=1.0)
"""SpeedSMS's 60 requests a minute, compressed to a second so the demo ends in seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Tuning:
    """How the demo drives one provider's part of the campaign."""

    concurrency: int = 32
    """Requests in flight: few where batches are large and rate-limited, many for one number
    a request."""
    callback_per_send: bool = False
    """Delivery reports are asked for with each send (``callback_url``), rather than set up
    once for the account (SpeedSMS: the sandbox's webhook URL)."""


_TUNING: Final = {
    "speedsms": _Tuning(concurrency=8),
    "esms": _Tuning(concurrency=48, callback_per_send=True),
    "fibo": _Tuning(concurrency=48),
}
"""The demo's settings for the providers it knows; any other one gets ``_Tuning()``."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    """One provider's part of the campaign: what was sent, and what the account shows after."""

    provider: Provider
    report: BulkReport
    delivered: int | None
    """Numbers that reached the handset (None: the demo has no way to know)."""
    undelivered: int | None
    counted_by: str | None
    """Where the delivery counts come from: ``_BY_TOTALS``, ``_BY_WEBHOOK`` or None."""
    spent: float
    """What the simulator's balance lost: the cost's cross-check."""
    outbox: int
    retried: int
    """Requests the client sent again (after the injected faults, or a 429 they led to)."""


_BY_TOTALS: Final = "the account's daily totals"
_BY_WEBHOOK: Final = "the webhook receiver"


async def _receiver(reports: _Reports, secret: str) -> tuple[web.AppRunner, str]:
    """The webhook receiver on a free loopback port, and its base URL."""
    runner = web.AppRunner(webhooks.app(reports, secret=secret), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _simulated_clients(
    sb: Sandbox, hooks: Hooks | None = None
) -> tuple[list[tuple[Provider, BaseClient]], list[Provider]]:
    """A client on the sandbox ``sb`` for each registered provider it simulates (with
    ``hooks``), in registration order; and the registered providers it does not simulate
    (those registered after it was made)."""
    clients: list[tuple[Provider, BaseClient]] = []
    missing: list[Provider] = []
    options = {} if hooks is None else {"hooks": hooks}
    for provider in providers.all_providers():
        try:
            clients.append((provider, sb.client(provider.name, **options)))
        except ValueError:  # the sandbox has no simulator for it
            missing.append(provider)
    return clients, missing


_FAULTS: Final = 3
"""Faults of each kind the simulator injects into each provider's sends in part one."""


def _inject_faults(sb: Sandbox, chosen: list[Provider]) -> str:
    """Arm part one's faults, each to be survived: 429s on every provider's sends (retried:
    nothing was sent), and answers lost after sending where the provider recognises a resent
    request id (``Provider.resent_code``: resent under it, accepted once). Returns what was
    injected, for the table's note."""
    from smsvn.sandbox import Fault

    hit: dict[str, list[Provider]] = {"rate_limit": [], "drop_after": []}
    for provider in chosen:
        for kind in ("rate_limit", "drop_after"):
            if kind == "drop_after" and provider.resent_code is None:
                continue  # a lost answer would leave the message unknown, not survived
            fault = Fault(
                kind=kind,
                provider=provider.name,
                route="send",
                times=_FAULTS,
                seconds=0.2,
            )
            try:
                sb.faults.add(fault)
            except ValueError:  # its simulator has no "send" route
                continue
            hit[kind].append(provider)
    said = []
    if hit["rate_limit"]:
        said.append(f"{_FAULTS} 429s to each of {join_titles(hit['rate_limit'])}")
    if hit["drop_after"]:
        said.append(
            f"{_FAULTS} answers lost after sending to {join_titles(hit['drop_after'])} "
            "(resent under the same request id, accepted once)"
        )
    return "; ".join(said) or "none"


class _Retries:
    """Counts the client's retries per provider (its ``on_retry`` hook)."""

    def __init__(self) -> None:
        self.by_provider: Counter[str] = Counter()

    def __call__(self, attempt: AttemptInfo) -> None:
        self.by_provider[attempt.provider] += 1


def _split(count: int, numbers: int, seed: int) -> list[list[str]]:
    """The campaign of ``numbers`` dealt out in turn into ``count`` parts."""
    parts: list[list[str]] = [[] for _ in range(count)]
    for i, number in enumerate(campaign(numbers, seed)):
        parts[i % count].append(number)
    return parts


async def _send(
    clients: list[tuple[Provider, BaseClient]],
    parts: list[list[str]],
    callback: Callable[[str], str],
    progress: bool,
    out: TextIO,
) -> list[BulkReport]:
    """Send every part through its client at once, with a progress bar each; ``callback``
    gives a provider's webhook URL, for those that take one with each send."""
    with progress_bars(progress, out) as bars:
        runs = []
        for (provider, client), part in zip(clients, parts, strict=True):
            tuning = _TUNING.get(provider.name, _Tuning())
            options: dict[str, Any] = {}
            if tuning.callback_per_send:
                options["callback_url"] = callback(provider.name)
            runs.append(
                client.send_bulk(
                    part,
                    CONTENT,
                    concurrency=tuning.concurrency,
                    on_progress=bars(provider.name, len(part)),
                    keep_results=False,
                    **options,
                )
            )
        return list(await asyncio.gather(*runs))


async def _row(
    sb: Sandbox,
    provider: Provider,
    client: BaseClient,
    report: BulkReport,
    spent: float,
    reports: _Reports,
    retried: int,
) -> _Row:
    """``provider``'s row, once the sandbox has settled: deliveries from the account's daily
    totals where the client has them, else from the reports the webhook receiver got where the
    provider sends any; ``spent`` is what its balance lost."""
    name = provider.name
    delivered: int | None = None
    undelivered: int | None = None
    counted_by: str | None = None
    if isinstance(client, DailyTotalsLookup):
        totals = await client.daily_totals()
        delivered, undelivered, counted_by = totals.success, totals.failed, _BY_TOTALS
    elif provider.webhook is not None:
        delivered = reports.count(name, DeliveryState.DELIVERED)
        undelivered = reports.count(name, DeliveryState.FAILED)
        counted_by = _BY_WEBHOOK
    return _Row(
        provider=provider,
        report=report,
        delivered=delivered,
        undelivered=undelivered,
        counted_by=counted_by,
        spent=spent,
        outbox=len(sb.outbox.for_provider(name)),
        retried=retried,
    )


async def run_demo(
    *, numbers: int, seed: int, progress: bool, out: TextIO, crash_numbers: int = 0
) -> int:
    """Run the demo campaign, then (with ``crash_numbers``) the crash demo; returns the exit
    code (0 when every part ran to the end and nobody got a message twice)."""
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
        retries = _Retries()
        async with sandbox as sb:
            clients, missing = _simulated_clients(sb, Hooks(on_retry=retries))
            try:
                if not clients:
                    print("smsvn demo: the simulator serves no registered provider", file=out)
                    return 1
                titles = join_titles(provider for provider, _ in clients)
                print(
                    f"smsvn demo: {numbers:,} numbers split between {titles} "
                    f"on the simulator at {sb.url}",
                    file=out,
                )
                print(f"message: {CONTENT!r}", file=out)
                faults = _inject_faults(sb, [provider for provider, _ in clients])
                parts = _split(len(clients), numbers, seed)
                before = [sb.balance(provider.name) for provider, _ in clients]
                started = time.monotonic()
                results = await _send(
                    clients,
                    parts,
                    lambda name: webhooks.callback_url(hooks_url, name, secret),
                    progress,
                    out,
                )
                sent_in = time.monotonic() - started
                print(f"all sent in {sent_in:.1f} s; waiting for delivery reports...", file=out)
                await sb.settle(within=30.0)
                rows = [
                    await _row(
                        sb,
                        p,
                        client,
                        report,
                        balance - sb.balance(p.name),
                        reports,
                        retries.by_provider[p.name],
                    )
                    for (p, client), report, balance in zip(clients, results, before, strict=True)
                ]
            finally:
                for _, client in clients:
                    await client.aclose()
    finally:
        await runner.cleanup()
    _table(rows, faults, out)
    if missing:
        print(f"not simulated, so left out: {join_titles(missing)}", file=out)
    for row in rows:
        if row.report.aborted is not None or row.report.failed or row.report.unknown:
            print_report(row.report, out)
    ok = all(
        r.report.aborted is None and not r.report.failed and not r.report.unknown for r in rows
    )
    if crash_numbers:
        print(file=out)
        ok = await crash_demo(numbers=crash_numbers, seed=seed, out=out) and ok
    return 0 if ok else 1


def _table(rows: list[_Row], faults: str, out: TextIO) -> None:
    """The summary: one row a provider, then what the columns mean."""
    headers = (
        "provider", "numbers", "accepted", "invalid", "repeats", "retried", "failed",
        "delivered", "undelivered", "cost", "requests", "elapsed", "msg/s",
    )  # fmt: skip
    cells: list[tuple[str, ...]] = []
    for row in rows:
        report, name = row.report, row.provider.name
        failed = report.failed_count + report.unknown_count
        rate = report.accepted / report.elapsed if report.elapsed else 0.0
        cells.append(
            (
                name,
                f"{report.taken:,}",
                f"{report.accepted:,}",
                f"{len(report.invalid):,}",
                f"{report.duplicates:,}",
                f"{row.retried:,}",
                f"{failed:,}",
                "-" if row.delivered is None else f"{row.delivered:,}",
                "-" if row.undelivered is None else f"{row.undelivered:,}",
                _cost_cell(report),
                f"{report.requests:,}",
                f"{report.elapsed:.1f} s",
                f"{rate:,.0f}",
            )
        )
        if row.outbox != report.accepted:
            cells.append((f"  ! outbox holds {row.outbox:,} for {name}",))
    print(file=out)
    print_table(headers, cells, out)
    sources = [
        f"{source} ({join_titles(row.provider for row in rows if row.counted_by == source)})"
        for source in (_BY_WEBHOOK, _BY_TOTALS)
        if any(row.counted_by == source for row in rows)
    ]
    print(
        "\ninvalid = numbers that are not Vietnamese mobile numbers, repeats = a number already "
        "in the campaign (neither is sent); retried = requests smsvn sent again after a 429 or a "
        f"lost answer, surviving the faults the simulator injected ({faults})"
        f"{_SURVIVED if _survived(rows) else ''}; undelivered = numbers "
        "ending 0000, which the simulator fails",
        end="",
        file=out,
    )
    print(f"; delivered comes from {' and '.join(sources)}." if sources else ".", file=out)
    print(_cost_note(rows), file=out)


_SURVIVED: Final = " with nothing failed or unknown and nobody sent twice"


def _survived(rows: list[_Row]) -> bool:
    """Whether every part ended with nothing failed or unknown and the outbox holding each
    accepted message once: the faults were survived."""
    return all(
        not r.report.failed and not r.report.unknown and r.outbox == r.report.accepted for r in rows
    )


def _cost_cell(report: BulkReport) -> str:
    """The run's cost as the provider reported it, or ``~`` and the estimate where it reports
    none (segments x the registered price), with its unit."""
    if report.estimated_cost is None:
        return amount(report.cost, report.unit)
    return "~" + amount(report.cost + report.estimated_cost, report.unit)


def _cost_note(rows: list[_Row]) -> str:
    """What the cost column means, and whether the simulator's balances agree with it."""
    estimated = [row.provider for row in rows if row.report.estimated_cost is not None]
    reported = [row.provider for row in rows if row.report.estimated_cost is None]
    parts = []
    if reported:
        parts.append(f"cost = as {join_titles(reported)} reported it")
    if estimated:
        parts.append(
            f"~ = estimated, segments x the usual price ({join_titles(estimated)} report no "
            "price per send)"
        )
    off = [
        f"{row.provider.name} {amount(row.spent, row.report.unit)}"
        for row in rows
        if abs(row.spent - row.report.cost - (row.report.estimated_cost or 0.0)) >= 0.5
    ]
    check = (
        f"the simulator's balances fell by {', '.join(off)}"
        if off
        else "the simulator's balances fell by exactly these amounts"
    )
    return "; ".join(parts) + "; " + check + "."


# -- part two: a durable campaign survives SIGKILL -----------------------------------------------

CRASH_CONTENT: Final = "Thông báo: đơn hàng của bạn đã được giao. Cảm ơn quý khách!"
"""Part two's message (another text than part one's, so the outbox tells them apart)."""
CRASH_AT: Final = 0.4
"""The share of a part accepted by the simulator when its runner is killed."""
_CRASH_SPEEDSMS_LIMIT: Final = RateLimit(requests=10, period=1.0)
"""SpeedSMS's limit for part two: slow enough that its runner is killed part way through."""
_CRASH_LATENCY: Final = 0.02
"""Seconds the simulator takes to answer in part two (a real provider is tens of ms away)."""
_CHILD_TIMEOUT: Final = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _CrashRow:
    """One provider's part of the crash demo: the journal's account and the outbox's truth."""

    provider: Provider
    counts: Counts
    in_flight_at_kill: int
    """Inputs the journal held in flight when the runner was killed."""
    outbox: int
    """Distinct numbers of the campaign the simulator accepted."""
    twice: int
    """Numbers the simulator accepted more than once (the promise: 0)."""
    unknown_reached: int
    """Unknown inputs the outbox shows were accepted after all (a person must check these)."""
    settled_by_reports: int
    """Unknown inputs that delivery reports proved sent (``campaign.apply``)."""


class _Events:
    """Every delivery report the receiver gets, kept to settle unknowns afterwards."""

    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []

    async def __call__(self, event: DeliveryReport | InboundSms | CallReport) -> None:
        if isinstance(event, DeliveryReport):
            self.reports.append(event)


async def _child_providers() -> set[str]:
    """The providers a fresh ``python -m smsvn`` knows (this process may have registered more)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from smsvn import providers; print(' '.join(providers.names()))",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    printed, _ = await process.communicate()
    return set(printed.decode().split())


def _worker(
    sb: Sandbox, provider: Provider, journal: str, name: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a ``smsvn campaign work`` child sending ``name``
    through ``provider`` on ``sb``: credentials in the environment, never on the command line."""
    options = sb.client_options(provider.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
    for credential in provider.credentials:
        env[credential.env] = str(options[credential.name])
    single = provider.client.batch_size == 1
    argv = [
        sys.executable, "-m", "smsvn", "campaign", "work", "--journal", journal,
        "--name", name, "-p", provider.name, "--base-url", str(options["base_url"]),
        "--no-progress", "--concurrency", "8" if single else "2",
        "--rate-limit", "off" if single else f"{_CRASH_SPEEDSMS_LIMIT.requests}/1",
    ]  # fmt: skip
    sender = provider.sender_option
    if sender is not None and options.get(sender):
        argv += ["--" + sender.replace("_", "-"), str(options[sender])]
    if options.get("sms_type") is not None:
        argv += ["--sms-type", str(options["sms_type"])]
    return argv, env


async def _spawn(command: tuple[list[str], dict[str, str]]) -> asyncio.subprocess.Process:
    argv, env = command
    return await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


def _accepted(sb: Sandbox, provider: str) -> Counter[str]:
    """How many times the simulator accepted part two's message to each number."""
    return Counter(r.phone for r in sb.outbox.for_provider(provider) if r.content == CRASH_CONTENT)


async def crash_demo(*, numbers: int, seed: int, out: TextIO) -> bool:
    """Part two (see the module's docstring); True when every runner finished its part and the
    outbox holds nobody twice."""
    from smsvn.sandbox import Sandbox

    known = await _child_providers()
    events = _Events()
    secret = webhooks.new_secret()
    receiver, hooks_url = await _receiver_for(events, secret)
    try:
        sandbox = Sandbox(
            speedsms_rate_limit=_CRASH_SPEEDSMS_LIMIT,
            latency=_CRASH_LATENCY,
            delivery_delay=0.2,
            speedsms_webhook_url=webhooks.callback_url(hooks_url, "speedsms", secret),
            record_outbox=True,
            seed=seed,
        )
        with tempfile.TemporaryDirectory(prefix="smsvn-demo-") as folder:
            journal_path = os.path.join(folder, "campaigns.db")
            async with sandbox as sb, Journal(journal_path) as journal:
                clients, _ = _simulated_clients(sb)
                for _, client in clients:
                    await client.aclose()
                chosen = [p for p, _ in clients if p.name in known]
                if not chosen:
                    print("crash demo: no simulated provider a child process knows", file=out)
                    return False
                rows, ok = await _crash_parts(sb, journal, journal_path, chosen, numbers, seed, out)
                await sb.settle(within=30.0)
                rows = [await _settle_row(sb, journal, row, events) for row in rows]
    finally:
        await receiver.cleanup()
    _crash_table(rows, out)
    return ok and all(row.twice == 0 and not row.counts.unsettled for row in rows)


async def _receiver_for(
    handler: Callable[[DeliveryReport | InboundSms | CallReport], Any], secret: str
) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(webhooks.app(handler, secret=secret), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _crash_parts(
    sb: Sandbox,
    journal: Journal,
    path: str,
    chosen: list[Provider],
    numbers: int,
    seed: int,
    out: TextIO,
) -> tuple[list[_CrashRow], bool]:
    """Add each part, start its runner, kill it part way with SIGKILL, start it again, and wait
    for every runner to finish."""
    parts = _split(len(chosen), numbers, seed + 1)
    campaigns: dict[str, Campaign] = {}
    targets: dict[str, int] = {}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}
    for provider, part in zip(chosen, parts, strict=True):
        name = f"demo-{provider.name}"
        campaigns[provider.name] = campaign = await journal.campaign(name)
        added = await campaign.add(part, content=CRASH_CONTENT)
        targets[provider.name] = int(added.added * CRASH_AT)
        commands[provider.name] = _worker(sb, provider, path, name)
    titles = join_titles(chosen)
    print(
        f"smsvn demo, part two: {numbers:,} numbers in a journal ({path}), sent by one "
        f"`smsvn campaign work` process each for {titles}; each is killed with SIGKILL part way "
        "through and started again",
        file=out,
        flush=True,
    )
    running = {name: await _spawn(command) for name, command in commands.items()}
    killed: dict[str, int] = {}
    ok = True
    deadline = time.monotonic() + _CHILD_TIMEOUT
    while running and time.monotonic() < deadline:
        for name, process in list(running.items()):
            if name not in killed and len(_accepted(sb, name)) >= targets[name]:
                process.send_signal(signal.SIGKILL)
                await process.wait()
                held = (await campaigns[name].counts()).in_flight
                killed[name] = held
                print(
                    f"  {name}: killed (SIGKILL) with {len(_accepted(sb, name)):,} accepted and "
                    f"{held:,} in flight; started again",
                    file=out,
                    flush=True,
                )
                running[name] = await _spawn(commands[name])
            elif process.returncode is not None:
                del running[name]
                if name not in killed or process.returncode not in (0, 1):
                    ok = False
                    _, err = await process.communicate()
                    print(f"  {name}: the runner ended early: {err.decode()[-300:]}", file=out)
        await asyncio.sleep(0.02)
    for process in running.values():
        ok = False
        process.kill()
        await process.wait()
    rows = [
        _CrashRow(
            provider=provider,
            counts=await campaigns[provider.name].counts(),
            in_flight_at_kill=killed.get(provider.name, 0),
            outbox=0,
            twice=0,
            unknown_reached=0,
            settled_by_reports=0,
        )
        for provider in chosen
    ]
    return rows, ok


async def _settle_row(sb: Sandbox, journal: Journal, row: _CrashRow, events: _Events) -> _CrashRow:
    """The row with what the delivery reports settle and what the outbox shows."""
    name = row.provider.name
    campaign = await journal.campaign(f"demo-{name}", create=False)
    settled = 0
    for report in events.reports:
        if report.provider == name and await campaign.apply(report):
            settled += 1
    accepted = _accepted(sb, name)
    reached = 0
    async for recipient in campaign.recipients(state="unknown"):
        reached += recipient.phone in accepted
    return _CrashRow(
        provider=row.provider,
        counts=await campaign.counts(),
        in_flight_at_kill=row.in_flight_at_kill,
        outbox=len(accepted),
        twice=sum(1 for n in accepted.values() if n > 1),
        unknown_reached=reached,
        settled_by_reports=settled,
    )


def _crash_table(rows: list[_CrashRow], out: TextIO) -> None:
    headers = (
        "provider", "inputs", "sent", "unknown", "invalid", "repeats", "in flight at kill",
        "settled by reports", "in outbox", "sent twice",
    )  # fmt: skip
    cells = [
        (
            row.provider.name,
            f"{row.counts.total:,}",
            f"{row.counts.sent:,}",
            f"{row.counts.unknown:,}",
            f"{row.counts.invalid:,}",
            f"{row.counts.duplicate:,}",
            f"{row.in_flight_at_kill:,}",
            f"{row.settled_by_reports:,}",
            f"{row.outbox:,}",
            f"{row.twice:,}",
        )
        for row in rows
    ]
    print(file=out)
    print_table(headers, cells, out)
    print(
        "\nin outbox = distinct numbers the simulator accepted (the ground truth); sent twice = "
        "numbers it accepted more than once. A request in flight at the kill may have been "
        "sent: it is unknown and never resent, except under a request id the provider "
        "deduplicates (eSMS RequestId: resent, accepted once). Delivery reports settle the "
        "unknowns that went out (campaign.apply).",
        file=out,
    )
    for row in rows:
        left = row.counts.unknown
        if left:
            print(
                f"{row.provider.name}: {left:,} still unknown, of which the outbox shows "
                f"{row.unknown_reached:,} went out and {left - row.unknown_reached:,} never "
                "left (a person checks them with the provider, then `smsvn campaign resolve`)",
                file=out,
            )
