"""Defects found reviewing one day's changes to ``smsvn/`` (each test fails on that code)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from smsvn._shared_limits import RedisLimiter
from smsvn.errors import OutcomeUnknown, SmsError
from smsvn.limits import RateLimit, account_key
from smsvn.transport import RetryPolicy, Transport

FAST = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02, max_rate_limit_wait=1.0)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_limiter_pause_error_after_an_unknown_outcome_stays_unknown(
    redis_url: str, redis_prefix: str
) -> None:
    """Finding: ``RedisAccountLimit.pause`` now raises ``LimiterUnavailable`` (a
    ``ConnectError``: "nothing was sent, safe to retry") for a Redis error reply, and
    ``Transport.call`` awaits ``limiter.pause`` inside its ``except RateLimited`` handler with no
    ``_still_unknown`` wrapping. A deduplicated send whose first attempt ended unknown and whose
    retry met a 429 then reports "nothing was sent": a Failover sends the message again."""
    calls = 0
    redis = aioredis.Redis.from_url(redis_url)

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        await request.read()
        if calls == 1:
            assert request.transport is not None
            request.transport.close()  # processed, maybe; the answer is lost
            await asyncio.sleep(0.05)
            return web.Response(text="never")
        # Redis refuses the pause's write (a key of the wrong type: WRONGTYPE).
        key = f"{redis_prefix}:limit:{{toy:{account_key('acct')}}}"
        await redis.delete(key)
        await redis.rpush(key, "x")
        return web.Response(status=429, text="slow down")

    app = web.Application()
    app.router.add_post("/send", handler)
    runner, root = await _serve(app)
    limiter = RedisLimiter(redis_url, prefix=redis_prefix)
    transport = Transport(
        provider="toy",
        account="acct",
        retry=FAST,
        rate_limit=RateLimit(requests=100, period=1.0),
        limiter=limiter,
    )
    try:
        with pytest.raises(SmsError) as raised:
            await transport.call(
                "POST",
                root + "/send",
                endpoint="send",
                parse=lambda r: r.status,
                data=b"x",
                idempotent=False,
                deduplicated=True,
            )
    finally:
        await transport.aclose()
        await limiter.aclose()
        await redis.aclose()
        await runner.cleanup()
    assert calls == 2
    assert isinstance(raised.value, OutcomeUnknown), repr(raised.value)


async def test_a_turn_given_back_does_not_lift_the_window_rule_for_max_wait() -> None:
    """Finding: ``AccountLimiter._give_back`` removes a cancelled waiter's slot from
    ``_reserved`` (a deque with ``maxlen=requests``), but that slot's reservation had already
    pushed the oldest one out of the deque, which is not put back: the window rule
    (``len(reserved) == maxlen``) is then off for the next reservation, which is granted "now"
    within its ``max_wait`` and then sleeps in the hard rule for the rest of the window. A call
    with ``max_wait=0.1`` waits a whole window instead of ``WaitTooLong`` at once (what the
    code before the give-back did), so a Failover does not move on."""
    from smsvn.limits import AccountLimiter, WaitTooLong

    limiter = AccountLimiter(RateLimit(requests=2, period=1.0, burst=2))
    await limiter.acquire()
    await limiter.acquire()  # the window is full
    waiting = asyncio.create_task(limiter.acquire())  # reserved at the window's end
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(WaitTooLong):
        async with asyncio.timeout(0.5):
            await limiter.acquire(max_wait=0.1)
    assert loop.time() - started < 0.2


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_csv_that_fills_up_mid_run_exits_1_not_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``bulk --csv`` on a full disk with more rows than the file's buffer: a row's
    write fails mid-run (``_CsvOutcomes._row`` raises ``_OutputFailed`` but leaves the file
    open with its unwritten buffer), the run stops and re-raises, then the ``ExitStack`` closes
    the file, whose flush fails again: that ``OSError`` replaces ``_OutputFailed`` and ``main``
    maps it to exit 2 ("usage error, nothing sent") after 600 messages were sent. Only the
    case where every row fits the buffer (``finish``) was fixed to exit 1."""
    from smsvn.cli import main

    for name in [n for n in os.environ if n.startswith("SMSVN_")]:
        monkeypatch.delenv(name)
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(f"0912{i:06d}" for i in range(600)) + "\n")
    argv = ["bulk", "--sandbox", "-p", "speedsms", "-m", "Khuyen mai", "--no-progress",
            "-f", str(source), "--csv", "/dev/full"]  # fmt: skip
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr().out
    assert "600 sent" in out, out
    assert code == 1, code
