"""A bulk send through the simulator whose every delivery report reaches the receiver once."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from smsvn import webhooks
from smsvn.models import CallReport, DeliveryReport, DeliveryState, InboundSms
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY


async def test_every_delivery_report_of_a_bulk_send_arrives_exactly_once() -> None:
    handled: Counter[tuple[str, str, str, DeliveryState]] = Counter()
    failed_once: set[str] = set()

    async def handler(event: DeliveryReport | InboundSms | CallReport) -> None:
        assert isinstance(event, DeliveryReport)
        # The first report for every tenth eSMS number fails: eSMS retries until it gets 200.
        if (
            event.provider == "esms"
            and event.phone.endswith("0")
            and event.phone not in failed_once
        ):
            failed_once.add(event.phone)
            raise RuntimeError("database briefly unavailable")
        handled[(event.provider, event.message_id, event.phone, event.state)] += 1

    secret = webhooks.new_secret()
    runner = web.AppRunner(webhooks.app(handler, secret=secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    numbers = [f"0913{i:06d}" for i in range(1, 401)]  # none ends in 0000 or 0001
    try:
        async with Sandbox(
            speedsms_rate_limit=None,
            delivery_delay=0.05,
            speedsms_webhook_url=webhooks.callback_url(base, "speedsms", secret),
            callback_retry_delay=0.01,
        ) as sb:
            async with sb.client("speedsms", retry=FAST_RETRY) as sms:
                speedsms = await sms.send_bulk(numbers, "Thong bao")
            async with sb.client("esms", retry=FAST_RETRY) as esms:
                hook = webhooks.callback_url(base, "esms", secret)
                esms_report = await esms.send_bulk(numbers, "Thong bao", callback_url=hook)
            await sb.settle()
            assert sb.stats.callback_failures == len(failed_once)  # each failed once, retried
    finally:
        await runner.cleanup()

    assert speedsms.accepted == esms_report.accepted == len(numbers)
    assert len(failed_once) == 40
    assert set(handled.values()) == {1}  # nothing handled twice
    for provider, report in (("speedsms", speedsms), ("esms", esms_report)):
        delivered = {
            (message_id, phone)
            for (p, message_id, phone, state) in handled
            if p == provider and state is DeliveryState.DELIVERED
        }
        sent = {(r.message_id, phone) for r in report.sent for phone in r.recipients}
        assert delivered == sent  # every accepted recipient's report, none lost
