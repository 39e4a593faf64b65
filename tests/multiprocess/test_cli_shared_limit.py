"""``smsvn campaign work --redis``: two runner processes of one campaign share the account's
limit through Redis. The simulator (in this process; the ground truth) holds SpeedSMS to the
same limit (in a slightly shorter window) and answers 429 to a request over it: two processes
that each kept the limit by themselves would send twice the limit and earn 429s."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from smsvn import Journal
from smsvn.limits import RateLimit
from smsvn.sandbox import Sandbox
from tests.multiprocess.harness import max_in_window
from tests.services import redis_prefix, redis_url
from tests.test_cli import smsvn as run_cli

__all__ = ["redis_prefix", "redis_url"]

LIMIT = 20
"""Requests a second, at the simulator and at the runners (100 numbers a request)."""
REQUESTS = 40
WINDOW = 0.95
"""The simulator's window (seconds)."""


async def test_two_cli_runners_share_the_account_limit_through_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    journal = str(tmp_path / "campaigns.db")
    async with Journal(journal) as opened:
        campaign = await opened.campaign("shared")
        await campaign.add([f"0912{i:06d}" for i in range(REQUESTS * 100)], content="Khuyen mai")
    # The simulator counts LIMIT in any 0.95 s: the runners keep LIMIT in any 1.02 s, and the
    # difference is the trip's jitter (a runner's first request opens its connection).
    async with Sandbox(
        speedsms_rate_limit=RateLimit(requests=LIMIT, period=WINDOW), delivery_delay=3600.0
    ) as sb:
        args = [
            "campaign", "work", "--journal", journal, "--name", "shared", "-p", "speedsms",
            "--base-url", sb.speedsms_url, "--sender", "SMSVN", "--no-progress",
            "--rate-limit", f"{LIMIT}/1", "--concurrency", "4",
            "--redis", redis_url, "--redis-prefix", redis_prefix,
        ]  # fmt: skip
        env = {"SMSVN_SPEEDSMS_TOKEN": sb.speedsms_token}
        results = await asyncio.gather(run_cli(*args, env=env), run_cli(*args, env=env))
        for code, _, err in results:
            assert code == 0, err
        assert sb.stats.rate_limited == 0, "the simulator answered 429: the limit was not shared"
        requests: dict[str, float] = {}
        for record in sb.outbox.for_provider("speedsms"):
            requests.setdefault(record.message_id, record.accepted_at)
        assert len(requests) == REQUESTS
        assert max_in_window(list(requests.values()), WINDOW) <= LIMIT
        # Both runners sent (each its own share), every number once between them.
        accepted = [
            int(re.search(r"speedsms: ([\d,]+) accepted", out).group(1).replace(",", ""))  # type: ignore[union-attr]
            for _, out, _ in results
        ]
        assert all(accepted) and sum(accepted) == REQUESTS * 100, accepted
        assert len({r.phone for r in sb.outbox.for_provider("speedsms")}) == REQUESTS * 100
    async with Journal(journal) as opened:
        counts = await (await opened.campaign("shared")).counts()
    assert counts.sent == REQUESTS * 100
