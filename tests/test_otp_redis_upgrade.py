"""``otp.RedisStore`` now decides in microseconds; the version before it (whole milliseconds)
may share the keys during a rolling deploy, and what it wrote is still there after one.

Each test drives both versions' stores on one prefix of a real Redis (``tests/otp_earlier.py``
has the earlier version's scripts as it ran them) and checks that a code, a cooldown, a cap and
an undone send mean the same whichever version wrote them and whichever reads them.
"""

from __future__ import annotations

import pytest

from smsvn import otp
from smsvn.otp._types import Refusal, Start, Window
from tests.otp_earlier import granted, new, old

__all__ = ["new", "old"]

T = 1_700_000_000.0005
"""A start time half a millisecond past a whole one: where the two units differ."""
TTL = 300.0
RESEND = 60.0
ATTEMPTS = 5


def start(
    now: float,
    token: str,
    *,
    digest: str = "code-a",
    number: str = "number-1",
    purpose: str = "verify",
    caps: tuple[Window, ...] = (),
    resend_after: float = RESEND,
) -> Start:
    return Start(
        number=number,
        purpose=purpose,
        digest=digest,
        token=token,
        now=now,
        ttl=TTL,
        resend_after=resend_after,
        max_attempts=ATTEMPTS,
        number_caps=caps,
    )


async def reason(store: otp.Store, digest: str, now: float, number: str = "number-1") -> str:
    checked = await store.check(number, "verify", digest, ATTEMPTS, now)
    return checked.reason.value


async def test_an_earlier_versions_code_lives_until_its_expiry_here(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    await granted(old, start(T, "t1", number="n1"))
    await granted(old, start(T, "t2", number="n2"))
    assert await reason(new, "code-a", T + TTL - 0.002, "n1") == "approved"
    assert await reason(new, "code-a", T + TTL, "n2") == "expired"


async def test_this_versions_code_lives_until_its_expiry_for_an_earlier_worker(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    await granted(new, start(T, "t1", number="n1"))
    await granted(new, start(T, "t2", number="n2"))
    assert await reason(old, "code-a", T + TTL - 0.002, "n1") == "approved"
    assert await reason(old, "code-a", T + TTL + 0.001, "n2") == "expired"


async def test_a_cooldown_holds_across_the_versions(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    await granted(old, start(T, "t1"))
    early = await new.begin(start(T + RESEND - 0.1, "t2"))
    assert early.refusal is Refusal.TOO_SOON
    assert early.retry_after == pytest.approx(0.1, abs=0.001)
    second = T + RESEND + 0.001
    await granted(new, start(second, "t3"))
    refused = await old.begin(start(second + RESEND - 0.1, "t4"))
    assert refused.refusal is Refusal.TOO_SOON
    await granted(old, start(second + RESEND + 0.002, "t5"))


async def test_a_cap_counts_the_sends_of_both_versions(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    caps = (Window(3600.0, 2),)
    await granted(old, start(T, "t1", caps=caps, resend_after=1.0))
    await granted(new, start(T + 10, "t2", caps=caps, resend_after=1.0))
    for store in (old, new):
        capped = await store.begin(start(T + 20, f"t3-{id(store)}", caps=caps, resend_after=1.0))
        assert capped.refusal is Refusal.CAPPED
        assert capped.retry_after == pytest.approx(3580.0, abs=0.002)
    await granted(new, start(T + 3600.001, "t4", caps=caps, resend_after=1.0))


async def test_an_earlier_worker_replacing_a_code_leaves_no_stale_microseconds(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    """The earlier version writes ``e``/``r`` and leaves ``E``/``R``: this version must read
    the code that worker sent (expiring ``TTL`` after it), not the one it replaced."""
    await granted(new, start(T, "t1", digest="code-a"))
    await granted(old, start(T + RESEND + 1, "t2", digest="code-b"))
    # Past code-a's expiry, within code-b's.
    assert await reason(new, "code-b", T + TTL + 1) == "approved"


async def test_an_undone_send_puts_back_the_other_versions_code(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    # This version undoes a send that replaced an earlier worker's code ...
    await granted(old, start(T, "t1", digest="code-a", number="n1"))
    replacing = start(T + RESEND + 1, "t2", digest="code-b", number="n1")
    await granted(new, replacing)
    await new.rollback(replacing, T + RESEND + 2)
    assert await reason(new, "code-a", T + TTL - 0.002, "n1") == "approved"
    # ... and an earlier worker undoes one that replaced this version's.
    await granted(new, start(T, "t3", digest="code-a", number="n2"))
    replacing = start(T + RESEND + 1, "t4", digest="code-b", number="n2")
    await granted(old, replacing)
    await old.rollback(replacing, T + RESEND + 2)
    assert await reason(new, "code-a", T + TTL - 0.002, "n2") == "approved"
    await granted(new, start(T, "t5", digest="code-a", number="n3"))
    replacing = start(T + RESEND + 1, "t6", digest="code-b", number="n3")
    await granted(old, replacing)
    await old.rollback(replacing, T + RESEND + 2)
    assert await reason(new, "code-a", T + TTL, "n3") == "expired"
