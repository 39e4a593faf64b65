"""Red team of debc664 ("otp: both stores decide in whole microseconds"): ``MemoryStore`` and
``RedisStore`` deciding on ``ticks()``, and the Redis data an earlier worker (whole
milliseconds, ``tests/otp_earlier.py``) shares with this version's during a rolling deploy.

Findings fail on the code they describe; the tests marked "passes: regression guard" hold
promises that the change keeps."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio

from smsvn import otp
from smsvn.errors import SmsError
from smsvn.models import SendResult
from smsvn.otp._types import Refusal, Start, Window, ticks
from tests.otp_earlier import granted, new, old

__all__ = ["new", "old"]

SECRET = "otp-ticks-redteam-hmac-key-0123456789abcdef"
TEMPLATE = "Ma xac thuc cua ban la {code}"


class Sender:
    """An SMS sender that always sends."""

    provider = "fake"

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, to: str, content: str) -> SendResult:
        self.calls += 1
        return SendResult(provider="fake", message_id=str(self.calls), recipients=(to,))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def start(
    now: float,
    token: str,
    *,
    number: str = "number-1",
    digest: str = "code-a",
    ttl: float = 300.0,
    resend_after: float = 0.0,
    max_attempts: int = 5,
    caps: tuple[Window, ...] = (),
    glob: Window | None = None,
) -> Start:
    return Start(
        number=number,
        purpose="verify",
        digest=digest,
        token=token,
        now=now,
        ttl=ttl,
        resend_after=resend_after,
        max_attempts=max_attempts,
        number_caps=caps,
        global_cap=glob,
    )


async def what(call: Awaitable[object]) -> str:
    try:
        result = await call
    except SmsError as exc:
        return f"{type(exc).__name__}:{getattr(exc, 'reason', '')}"
    return type(result).__name__


# -- findings: mixed versions --------------------------------------------------------------------

T = 1_700_000_000.0
"""A whole second: the milliseconds below are the ones each scenario names."""


@pytest.mark.parametrize("scenario", ["starts_out_of_order", "two_resends_undone"])
async def test_an_earlier_workers_write_never_revives_a_stale_microsecond_expiry(
    old: otp.RedisStore, new: otp.RedisStore, scenario: str
) -> None:
    """Finding: a code is approved after its ``expires_at`` when an earlier worker wrote ``e``
    in the same millisecond as a stale ``E`` this version left in the hash.

    ``us()`` in ``_TIMES`` (``smsvn/otp/_redis.py``) takes ``E`` as a refinement of ``e``
    whenever ``floor(E / 1000) == e``; an earlier worker's ``BEGIN`` (or ``ROLLBACK`` putting
    back an entry) writes ``e``/``r`` and leaves ``E``/``R`` of another send, and with two
    sends in one millisecond (``resend_after=0``, a double tap) the stale ``E`` passes the
    test. ``starts_out_of_order``: this worker's start (clock .9 ms) runs before an earlier
    worker's (clock .2 ms); the earlier one's code, ``expires_at`` = T+300.0002, is approved at
    T+300.0005 (either version alone says expired). ``two_resends_undone``: codes A (.1 ms)
    and B (.8 ms) from this version, C from an earlier worker; B's and C's sends fail and are
    undone; A is back with B's ``E`` and is approved 0.4 ms after its ``expires_at``. Broken:
    the code's life ends at ``Verification.expires_at``, and "``E``/``R`` are used only while
    they refine ``e``/``r``"."""
    if scenario == "starts_out_of_order":
        await granted(new, start(T + 0.0009, "t-new", digest="code-a"))
        await granted(old, start(T + 0.0002, "t-old", digest="code-b"))  # expires T+300.0002
        late, code = T + 300.0005, "code-b"
    else:
        await granted(new, start(T + 0.0001, "t-a", digest="code-a"))  # expires T+300.0001
        b = start(T + 0.0008, "t-b", digest="code-b")
        await granted(new, b)
        c = start(T + 1.0, "t-c", digest="code-c")
        await granted(old, c)
        await new.rollback(b, T + 2.0)  # B's send went nowhere (C replaced it meanwhile)
        await old.rollback(c, T + 3.0)  # C's too: A is put back
        late, code = T + 300.0005, "code-a"
    assert (await old.check("number-1", "verify", code, 5, late)).reason is otp.Reason.EXPIRED
    assert (await new.check("number-1", "verify", code, 5, late)).reason is otp.Reason.EXPIRED


async def test_an_earlier_worker_never_opens_a_cap_early_on_this_versions_sends(
    old: otp.RedisStore, new: otp.RedisStore
) -> None:
    """Found: an earlier worker, refusing a start on a cap that holds a send of this version,
    answers a ``retry_after`` up to 1 ms short (its ``over()`` computes ``score + window - now``
    with this version's fractional score and Redis truncates the Lua number it replies), and
    at its end refuses again with ``retry_after=0``. Accepted for the deploy window (that
    script cannot change; ``smsvn/otp/_redis.py`` says so): the hint is short, the rule is not.
    Guarded here: the cap is never opened before the hour, and opens within a millisecond."""
    caps = (Window(3600.0, 1),)
    t = T + 0.0005
    await granted(new, start(t, "m1", caps=caps, resend_after=1.0))
    refused = await old.begin(start(t + 10, "m2", caps=caps, resend_after=1.0))
    assert refused.refusal is Refusal.CAPPED
    assert refused.retry_after == pytest.approx(3590.0, abs=0.001)
    early = await old.begin(start(t + 3600 - 0.0002, "m3", caps=caps, resend_after=1.0))
    assert early.refusal is Refusal.CAPPED
    await granted(old, start(t + 3600 + 0.001, "m4", caps=caps, resend_after=1.0))


# -- findings: the two stores ---------------------------------------------------------------------


@pytest.fixture
async def stores(redis_url: str, redis_prefix: str) -> AsyncIterator[dict[str, otp.Store]]:
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as redis_store:
        yield {"memory": otp.MemoryStore(), "redis": redis_store}


SUB_US = 1_700_000_000.0005004
"""A ``time.time()`` reading 0.4 us past a microsecond (a float here is 0.24 us apart)."""


@pytest.mark.parametrize("rule", ["cooldown", "hour_cap"])
async def test_no_store_lets_a_start_through_a_fraction_of_a_microsecond_early(
    stores: dict[str, otp.Store], rule: str
) -> None:
    """Finding (both stores): a start 0.4 us before ``Verification.resend_at`` is granted, and
    with ``max_sends_per_hour=1`` a second code goes out 0.4 us before the hour has passed.

    ``ticks()`` (``smsvn/otp/_types.py``) floors every instant, the rule's end as much as the
    start's time: the cooldown's end ``ticks(now + resend_after)`` and the logged send's
    ``ticks(now)`` drop their fraction of a microsecond, so a start in that fraction before
    the end falls on the same tick and is let through (``MemoryStore._begin``
    ``record.resend > now``, ``_Log.wait``; ``BEGIN``'s ``cooldown > now`` and ``ZCOUNT``).
    Before this change ``MemoryStore`` compared the floats and refused. Broken: "a resend
    inside ``resend_after`` raises ``otp.TooSoon``" and "at most ``limit`` sends in any hour"
    -- the same promises as the three fixed findings of ``test_otp_differential.py``, at a
    finer grain."""
    answers = {}
    for name, store in stores.items():
        clock = Clock(SUB_US)
        hourly = 1 if rule == "hour_cap" else None
        v = otp.Verifier(
            Sender(), store=store, secret=SECRET, template=TEMPLATE, clock=clock,
            max_sends_per_hour=hourly, resend_after=1.0 if hourly else 60.0,
        )  # fmt: skip
        sent = await v.start("0912345678")
        end = sent.resend_at if rule == "cooldown" else SUB_US + 3600.0
        clock.now = math.nextafter(end, 0.0)
        assert clock.now < end and ticks(clock.now) == ticks(end)
        answers[name] = await what(v.start("0912345678"))
    expected = "TooSoon:" if rule == "cooldown" else "Blocked:number_hour"
    assert answers == {"memory": expected, "redis": expected}


async def test_a_verifier_without_number_caps_starts_on_every_store(
    stores: dict[str, otp.Store],
) -> None:
    """Finding (``MemoryStore``; not new in this change, on a line it rewrote): with
    ``max_sends_per_hour=None, max_sends_per_day=None`` (documented: "None: no cap") every
    ``start`` on a ``MemoryStore`` raises ``TypeError: 'int' object is not iterable``;
    ``RedisStore`` sends the code.

    ``MemoryStore._begin`` (``smsvn/otp/_memory.py``): ``keep = max(_HORIZON, *spans)``
    with ``spans`` empty is ``max(<an int>)``. Broken: the documented option, and the two
    stores' sameness."""
    answers = {}
    for name, store in stores.items():
        v = otp.Verifier(
            Sender(), store=store, secret=SECRET, template=TEMPLATE, clock=Clock(T),
            max_sends_per_hour=None, max_sends_per_day=None,
        )  # fmt: skip
        try:
            answers[name] = await what(v.start("0912345678"))
        except TypeError as exc:
            answers[name] = f"TypeError: {exc}"
    assert answers == {"memory": "Verification", "redis": "Verification"}


async def test_the_stores_agree_on_a_caps_retry_after_on_a_later_clock(
    stores: dict[str, otp.Store],
) -> None:
    """Finding (low: clocks from 2^42 ms, 4.4e9 s, May 2109): a capped start's ``retry_after``
    is 1 us longer from ``RedisStore`` than from ``MemoryStore`` (3590.000001 s against
    3590.0 s at 5e9 s).

    ``BEGIN``'s ``over()`` (``smsvn/otp/_redis.py``) turns a send's score back into
    microseconds as ``math.floor(score * 1000 + 0.5)``: from 2^42 ms the score's rounding
    (its ulp near 0.001 ms) and the product's (a double there holds halves at best) add up to
    half a tick and the floor lands one up (about a quarter of all microseconds at 4.4e9 s).
    The comment's "exact" and the commit's "they agree at every instant" hold only below that
    (and scores stop being distinct at 2^43 ms, 2248; Lua's doubles stop holding ticks at
    2^53 us, 2255); nothing bounds the verifier's clock."""
    later = 5_000_000_000.000001  # 2128
    caps = (Window(3600.0, 1),)
    claims = {}
    for name, store in stores.items():
        await granted(store, start(later, f"f1-{name}", caps=caps, resend_after=1.0))
        claims[name] = await store.begin(start(later + 10, f"f2-{name}", caps=caps))
    assert claims["memory"].refusal is Refusal.CAPPED
    assert claims["redis"] == claims["memory"]


# -- regression guards ----------------------------------------------------------------------------

EDGE_BASES = (1_700_000_000.0005, SUB_US, 1_000_000.0)
DELTAS = (-1e-6, -3e-7, 0.0, 3e-7, 1e-6)
DAY = (Window(86_400.0, 1000),)
"""A number cap that never fills (``MemoryStore`` needs one: see the finding above)."""


async def test_the_stores_answer_alike_to_the_microsecond_at_every_edge(
    stores: dict[str, otp.Store],
) -> None:
    """passes: regression guard. ``MemoryStore`` and ``RedisStore`` given the same ``Start``s
    and times answer exactly alike (grant or refusal, ``retry_after`` to the microsecond,
    check reasons and attempts) within a microsecond either side of a code's expiry (locked
    or not), a cooldown's end and a cap's window, with durations from 1e-7 s to a year. (The
    differential state machine rounds ``retry_after`` to a millisecond and its times are
    whole seconds.)"""
    n = 0
    mismatches = []

    async def both(method: str, *args: object) -> None:
        answers = [await getattr(store, method)(*args) for store in stores.values()]
        if answers[0] != answers[1]:
            mismatches.append((method, args, *answers))

    for base in EDGE_BASES:
        for ttl in (1e-7, 1e-6, 0.0007, 300.0, 31_536_000.0):
            for delta in DELTAS:
                n += 1
                num, at = f"e{n}", base + ttl + delta
                first = start(base, f"e{n}", number=num, ttl=ttl, max_attempts=1, caps=DAY)
                await both("begin", first)
                await both("check", num, "verify", "wrong", 1, base)
                again = start(at, f"e{n}b", number=num, ttl=ttl, max_attempts=1, caps=DAY)
                await both("begin", again)
                await both("check", num, "verify", "code-a", 1, at)
        for resend in (1e-7, 0.0015, 60.0, 31_536_000.0):
            for delta in DELTAS:
                n += 1
                num = f"r{n}"
                first = start(base, f"r{n}", number=num, resend_after=resend, caps=DAY)
                await both("begin", first)
                again = start(
                    base + resend + delta, f"r{n}b", number=num, resend_after=resend, caps=DAY
                )
                await both("begin", again)
        for seconds in (1e-7, 0.0005, 3600.0):
            for delta in DELTAS:
                n += 1
                num, caps, glob = f"c{n}", (Window(seconds, 1),), Window(seconds, 1)
                first = start(base, f"c{n}", number=num, caps=caps, glob=glob, ttl=1e-7)
                await both("begin", first)
                again = start(base + seconds + delta, f"c{n}b", number=num, caps=caps, glob=glob)
                await both("begin", again)
                # The global budget is one per store: uncount both for the next window.
                await both("rollback", first, base)
                await both("rollback", again, base)
    assert mismatches == []


async def test_both_versions_read_each_others_and_legacy_records_and_keep_every_key_expiring(
    old: otp.RedisStore, new: otp.RedisStore, redis_url: str, redis_prefix: str
) -> None:
    """passes: regression guard. A record an older version left (``pd``/``pe``/``pr``/``pn``),
    then this version's and an earlier worker's starts, undos and checks in turn on it
    (``p`` entries of 5 and 7 elements): no script fails in either version, the undos put
    the legacy code back (approved, its attempts carried), and after every step every key
    expires, never before the verification's expiry or cooldown end (``PEXPIRE`` stays a
    positive whole number)."""
    raw = redis.asyncio.Redis.from_url(redis_url)
    key = f"{redis_prefix}:{{otp}}:v:verify:number-1"
    now = T + 0.0005
    ms = math.floor(now * 1000)
    await raw.hset(
        key,
        mapping={
            "d": "code-b", "e": ms + 300_000, "r": ms + 60_000, "a": 1, "n": 2, "t": "t-b",
            "pd": "code-a", "pe": ms + 200_000, "pr": ms, "pn": 1,
        },
    )  # fmt: skip
    await raw.pexpire(key, 960_000)

    async def every_key_expires(at: float) -> None:
        keys = [k async for k in raw.scan_iter(match=f"{redis_prefix}:*")]
        assert keys
        for k in keys:
            left = await raw.pttl(k)
            assert left > 0, (k, left)
        fields = await raw.hmget(key, "e", "r", "E", "R")
        if fields[0] is not None:
            ends = [int(f) * 1000 for f in fields[:2]] + [int(f) for f in fields[2:] if f]
            assert await raw.pttl(key) >= (max(ends) - ticks(at)) / 1000, fields

    try:
        c = start(now + 61, "t-c", digest="code-c", resend_after=60.0)
        await granted(new, c)
        await every_key_expires(now + 61)
        d = start(now + 122, "t-d", digest="code-d", resend_after=60.0)
        await granted(old, d)
        await every_key_expires(now + 122)
        e = start(now + 183, "t-e", digest="code-e", resend_after=60.0)
        await granted(new, e)
        await every_key_expires(now + 183)
        await new.rollback(e, now + 184)
        await every_key_expires(now + 184)
        wrong = await old.check("number-1", "verify", "nope", 5, now + 185)
        assert wrong.reason is otp.Reason.WRONG_CODE
        await old.rollback(d, now + 186)
        await every_key_expires(now + 186)
        await new.rollback(c, now + 187)
        await every_key_expires(now + 187)
        checked = await old.check("number-1", "verify", "code-b", 5, now + 188)
        assert checked == (otp.Reason.APPROVED, 3)
        assert await raw.exists(key) == 0
    finally:
        await raw.aclose()
