"""The account limiter: never more than N requests in any window of T seconds, and 429 pauses."""

from __future__ import annotations

import asyncio
import bisect

import pytest

from smsvn.errors import ValidationError
from smsvn.limits import AccountLimiter, RateLimit, WaitTooLong, account_key, limiter_for


def max_in_window(times: list[float], period: float) -> int:
    """The most admissions that fall in any half-open window [t, t + period)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + period) - i for i, t in enumerate(times))


@pytest.mark.parametrize(("requests", "burst"), [(20, 1), (20, 5), (20, 20), (3, 1), (1, 1)])
async def test_never_more_than_n_in_any_sliding_window(requests: int, burst: int) -> None:
    period = 0.5
    limiter = AccountLimiter(RateLimit(requests=requests, period=period, burst=burst))
    loop = asyncio.get_running_loop()
    admitted: list[float] = []

    async def worker() -> None:
        for _ in range(3):
            await limiter.acquire()
            admitted.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(max(requests, 4))))
    assert max_in_window(admitted, period) <= requests
    # A plain AsyncLimiter(N, T) would admit about 2N in the first window: show we do not.
    assert max_in_window(admitted, period * 2) <= 2 * requests


async def test_sustained_rate_is_close_to_the_limit() -> None:
    limit = RateLimit(requests=50, period=0.5)
    limiter = AccountLimiter(limit)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(50):
        await limiter.acquire()
    elapsed = loop.time() - start
    # 50 admissions: 1 at once and 49 at 98/s -> about 0.5 s; never faster than the window allows.
    assert elapsed >= 0.48
    assert limit.sustained_rate == pytest.approx(98.0)


async def test_pause_holds_every_request_of_the_account() -> None:
    limiter = AccountLimiter(RateLimit(requests=1000, period=1.0, burst=1000))
    loop = asyncio.get_running_loop()
    limiter.pause_now(0.2)
    start = loop.time()
    await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert loop.time() - start >= 0.19
    assert limiter.pauses == 1
    limiter.pause_now(0.0)  # a shorter pause never shortens a longer one
    assert limiter.paused_for == 0.0


async def test_one_limiter_per_account_shared_across_clients() -> None:
    limit = RateLimit(requests=60, period=60.0)
    a = limiter_for("speedsms", account_key("token-a"), limit)
    assert limiter_for("speedsms", account_key("token-a"), limit) is a
    assert limiter_for("speedsms", account_key("token-b"), limit) is not a
    assert limiter_for("esms", account_key("token-a"), limit) is not a


def test_account_key_hides_the_credential() -> None:
    assert "secret" not in account_key("secret")
    assert account_key("x") == account_key("x") != account_key("y")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests": 0, "period": 1.0},
        {"requests": 5, "period": 0.0},
        {"requests": 5, "period": 1.0, "burst": 6},
        {"requests": 5, "period": 1.0, "burst": 0},
        {"requests": 5, "period": float("nan")},
        {"requests": 5, "period": float("inf")},
        {"requests": 5.5, "period": 1.0},
        {"requests": 5, "period": "1"},
    ],
)
def test_rate_limit_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="RateLimit"):
        RateLimit(**kwargs)  # type: ignore[arg-type]


async def test_max_wait_refuses_at_once_and_reserves_nothing() -> None:
    """A turn further away than max_wait is refused before any waiting, and the refused call
    does not push later callers back."""
    limiter = AccountLimiter(RateLimit(requests=2, period=0.4))
    loop = asyncio.get_running_loop()
    await limiter.acquire()
    await limiter.acquire()  # burst + 1 at once from idle; the next turn is ~0.4 s away
    start = loop.time()
    with pytest.raises(WaitTooLong) as info:
        await limiter.acquire(max_wait=0.1)
    assert loop.time() - start < 0.05
    assert 0.3 < info.value.wait <= 0.42
    for _ in range(5):
        with pytest.raises(WaitTooLong):
            await limiter.acquire(max_wait=0.0)
    await limiter.acquire(max_wait=1.0)  # waited for the turn the refusals did not take
    assert 0.35 < loop.time() - start < 0.5


async def test_max_wait_counts_a_pause() -> None:
    limiter = AccountLimiter(RateLimit(requests=100, period=1.0, burst=10))
    limiter.pause_now(5.0)
    with pytest.raises(WaitTooLong) as info:
        await limiter.acquire(max_wait=1.0)
    assert info.value.wait > 4.9
