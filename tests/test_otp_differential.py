"""``smsvn.otp`` differentially: one sequence of operations driven through a ``MemoryStore``
verifier and a ``RedisStore`` verifier (the real Redis of ``tests.services``) on the same
controlled clock, with the same codes drawn (``secrets`` in ``smsvn.otp._verifier`` is
replaced by a namespace whose ``randbelow`` gives the code the test chose), every observable
compared; and checked against a small reference model of the contract (README, DESIGN.md
"OTP verification").

The stateful test and the burst test pass (regression guards). The tests under "findings"
were found by it. Two overlapping resends that both sent nothing put back the wrong code (a
store kept one earlier verification to restore, not one per send in flight): fixed, the test
failed before. So did the three that compare the stores within a millisecond of an edge
(RedisStore kept whole milliseconds, MemoryStore floats; both now decide in microseconds).
"""

from __future__ import annotations

import asyncio
import secrets
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from smsvn import otp
from smsvn.errors import ConnectError, InvalidRequest, OutcomeUnknown, SmsError
from smsvn.models import SendResult
from tests.services import delete_keys

SECRET = "otp-differential-hmac-key-0123456789abcdef"
TEMPLATE = "Ma xac thuc cua ban la {code}"
NUMBERS = ("0912345678", "0987654321", "0351234567")
START = 1_000_000.0
GRACE = 600.0  # smsvn.otp._memory.EXPIRED_GRACE: a store may forget an expired code after it


class Clock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Codes:
    """Stands in for ``secrets`` inside ``smsvn.otp._verifier``: ``randbelow`` gives the code
    the test set (so both verifiers draw the same one); tokens stay random."""

    def __init__(self) -> None:
        self.next = 0
        self.namespace = types.SimpleNamespace(
            randbelow=lambda n: self.next % n, token_hex=secrets.token_hex
        )


@contextmanager
def fixed_codes() -> Iterator[Codes]:
    codes = Codes()
    with mock.patch("smsvn.otp._verifier.secrets", codes.namespace):
        yield codes


OK, CONNECT, INVALID, UNKNOWN, PLAIN = "ok", "connect", "invalid", "unknown", "plain"
OUTCOMES = (OK, CONNECT, INVALID, UNKNOWN, PLAIN)


class Sender:
    """An SMS and voice sender whose next answers the test sets: ``ok``, or an error that
    proves nothing was sent (``connect``: ``ConnectError``, in ``NOTHING_SENT``; ``invalid``:
    ``InvalidRequest``, a refusal no other sender helps), ``unknown`` (``OutcomeUnknown``) or
    ``plain`` (a non-smsvn exception: it may have gone out)."""

    provider = "fake"

    def __init__(self) -> None:
        self.sms = OK
        self.voice = OK
        self.calls = 0
        self.delivered: list[tuple[str, str, str]] = []  # (to, channel, code) that may arrive

    def _answer(self, outcome: str, to: str, channel: str, code: str) -> SendResult:
        self.calls += 1
        if outcome in (OK, UNKNOWN, PLAIN):
            self.delivered.append((to, channel, code))
        if outcome == CONNECT:
            raise ConnectError("refused", provider="fake")
        if outcome == INVALID:
            raise InvalidRequest("refused the content", provider="fake")
        if outcome == UNKNOWN:
            raise OutcomeUnknown("no answer", provider="fake")
        if outcome == PLAIN:
            raise RuntimeError("the SDK broke")
        return SendResult(provider="fake", message_id=str(self.calls), recipients=(to,))

    async def send(self, to: str, content: str) -> SendResult:
        return self._answer(self.sms, to, "sms", content.rsplit(" ", 1)[-1])

    async def voice_otp(self, to: str, code: str) -> SendResult:
        return self._answer(self.voice, to, "voice", code)


# Two purposes with different rules, sharing each number's caps (and one global budget).
PROFILES: dict[str, dict[str, Any]] = {
    "login": {
        "ttl": 300.0,
        "resend_after": 60.0,
        "max_attempts": 3,
        "max_sends_per_hour": 4,
        "max_sends_per_day": 6,
        "global_sends_per_hour": 5,
    },
    "reset": {
        "ttl": 120.0,
        "resend_after": 0.0,
        "max_attempts": 2,
        "max_sends_per_hour": None,
        "max_sends_per_day": 3,
        "global_sends_per_hour": None,
    },
}


def make_verifier(sender: Sender, store: otp.Store, clock: Clock, purpose: str) -> otp.Verifier:
    return otp.Verifier(
        sender,
        store=store,
        secret=SECRET,
        template=TEMPLATE,
        clock=clock,
        purpose=purpose,
        voice=sender,  # type: ignore[arg-type]
        **PROFILES[purpose],
    )


def observe(value: object) -> tuple[Any, ...]:
    """What a caller can see of a result or an exception, comparable across stores."""
    if isinstance(value, otp.Verification | otp.CheckResult):
        return (type(value).__name__, *(getattr(value, f) for f in value.__struct_fields__))
    assert isinstance(value, BaseException), value
    wait = getattr(value, "retry_after", None)
    return (
        type(value).__name__,
        getattr(value, "reason", None),
        None if wait is None else round(wait, 3),
        value.message if isinstance(value, SmsError) else None,
    )


async def outcome(call: Any) -> object:
    try:
        return await call
    except Exception as exc:
        return exc


# -- the reference model -------------------------------------------------------------------------


@dataclass
class Live:
    code: str
    expires: float
    resend: float
    sends: int


@dataclass
class Entry:
    """One (purpose, number) as the contract describes it."""

    live: Live | None = None  # the last code granted (live or expired), None once approved
    attempts: int = 0
    approved: list[str] = field(default_factory=list)


@dataclass
class Model:
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    sends: dict[str, list[float]] = field(default_factory=dict)  # per number, every purpose
    budget: list[float] = field(default_factory=list)  # sends of verifiers with a global cap

    def entry(self, purpose: str, number: str) -> Entry:
        return self.entries.setdefault((purpose, number), Entry())

    def refusal(self, purpose: str, number: str, now: float) -> str | None:
        """Why a start would be refused now: a ``Blocked`` reason, "too_soon", or None."""
        profile = PROFILES[purpose]
        e = self.entry(purpose, number)
        if e.live is not None:
            if e.live.expires > now and e.attempts >= profile["max_attempts"]:
                return "too_many_attempts"
            if e.live.resend > now:
                return "too_soon"
        log = self.sends.get(number, [])
        full = []
        for option, seconds, name in (
            ("max_sends_per_hour", 3600.0, "number_hour"),
            ("max_sends_per_day", 86400.0, "number_day"),
        ):
            limit = profile[option]
            if limit is not None and sum(t > now - seconds for t in log) >= limit:
                full.append(name)
        limit = profile["global_sends_per_hour"]
        if limit is not None and sum(t > now - 3600.0 for t in self.budget) >= limit:
            full.append("global_hour")
        return full[0] if len(full) == 1 else ("capped" if full else None)

    def grant(self, purpose: str, number: str, code: str, now: float) -> tuple[int, int]:
        """Record a send that may have gone out: (sends before it, attempts carried)."""
        profile = PROFILES[purpose]
        e = self.entry(purpose, number)
        carried = e.live is not None and e.live.expires > now
        before = e.live.sends if carried and e.live is not None else 0
        if not carried:
            e.attempts = 0
        e.live = Live(code, now + profile["ttl"], now + profile["resend_after"], before + 1)
        self.sends.setdefault(number, []).append(now)
        if profile["global_sends_per_hour"] is not None:
            self.budget.append(now)
        return before, e.attempts

    def check(self, purpose: str, number: str, code: str, now: float) -> set[otp.Reason]:
        """The reasons the contract allows for this check (and the model's new state)."""
        e = self.entry(purpose, number)
        if e.live is None:
            return {otp.Reason.NOT_FOUND}
        if e.live.expires <= now:
            # Forgotten, or refused as expired: both are allowed once the code is expired.
            return {otp.Reason.EXPIRED, otp.Reason.NOT_FOUND}
        if e.attempts >= PROFILES[purpose]["max_attempts"]:
            return {otp.Reason.TOO_MANY_ATTEMPTS}
        e.attempts += 1
        if code == e.live.code:
            e.approved.append(code)
            e.live = None
            return {otp.Reason.APPROVED}
        return {otp.Reason.WRONG_CODE}


# -- the differential state machine ----------------------------------------------------------------


class Differential(RuleBasedStateMachine):
    """Memory and Redis side by side, and the model beside them."""

    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.prefix = f"smsvn-test-diff-{uuid.uuid4().hex[:12]}"
        self.clock = Clock()
        self.model = Model()
        self.memory = otp.MemoryStore()
        self.redis = otp.RedisStore(self.redis_url, prefix=self.prefix)
        self.senders = {"memory": Sender(), "redis": Sender()}
        self.verifiers = {
            (side, purpose): make_verifier(
                self.senders[side], self.memory if side == "memory" else self.redis,
                self.clock, purpose,
            )
            for side in ("memory", "redis")
            for purpose in PROFILES
        }  # fmt: skip
        self.codes_patch = fixed_codes()
        self.codes = self.codes_patch.__enter__()

    def teardown(self) -> None:
        try:
            self.codes_patch.__exit__(None, None, None)
            self.loop.run_until_complete(self.redis.aclose())
            self.loop.close()
        finally:
            delete_keys(self.redis_url, self.prefix)

    def both(self, purpose: str, make: Any) -> tuple[object, object]:
        async def run() -> tuple[object, object]:
            mem = await outcome(make(self.verifiers["memory", purpose]))
            red = await outcome(make(self.verifiers["redis", purpose]))
            return mem, red

        return self.loop.run_until_complete(run())

    @initialize()
    def warm(self) -> None:
        self.loop.run_until_complete(self.redis.check("0" * 32, "login", "x", 1, START))

    @rule(
        number=st.sampled_from(NUMBERS[:2]),
        purpose=st.sampled_from(tuple(PROFILES)),
        channel=st.sampled_from(("sms", "voice", "auto")),
        sms=st.sampled_from((OK, OK, OK, *OUTCOMES)),
        voice=st.sampled_from((OK, *OUTCOMES)),
        code=st.integers(0, 999_999),
    )
    def start(
        self, number: str, purpose: str, channel: str, sms: str, voice: str, code: int
    ) -> None:
        for sender in self.senders.values():
            sender.sms, sender.voice = sms, voice
        self.codes.next = code
        digits = f"{code:06d}"
        now = self.clock.now
        refusal = self.model.refusal(purpose, number, now)
        e = self.model.entry(purpose, number)
        sends_before = e.live.sends if e.live is not None and e.live.expires > now else 0
        mem, red = self.both(purpose, lambda v: v.start(number, channel))
        assert observe(mem) == observe(red), (mem, red)

        # The model: which channels are tried, and whether the grant stays.
        if refusal is not None:
            if refusal == "too_soon":
                assert isinstance(mem, otp.TooSoon), (refusal, mem)
            elif refusal == "capped":
                assert isinstance(mem, otp.Blocked), (refusal, mem)
            else:
                assert isinstance(mem, otp.Blocked), (refusal, mem)
                assert mem.reason == refusal, (refusal, mem.reason)
            return
        plan = {"sms": ("sms",), "voice": ("voice",)}.get(
            channel, ("sms", "voice") if sends_before == 0 else ("voice", "sms")
        )
        final, went = CONNECT, plan[-1]
        for went in plan:
            final = sms if went == "sms" else voice
            if final != CONNECT:
                break
        if final in (CONNECT, INVALID):
            assert isinstance(mem, ConnectError | InvalidRequest), mem
            return  # undone: the model is unchanged (no cooldown, no cap counted)
        before, carried = self.model.grant(purpose, number, digits, now)
        if final == PLAIN:
            assert isinstance(mem, RuntimeError), mem
            return
        assert isinstance(mem, otp.Verification), mem
        profile = PROFILES[purpose]
        assert mem.expires_at == now + profile["ttl"]
        assert mem.resend_at == now + profile["resend_after"]
        assert mem.attempts_left == profile["max_attempts"] - carried
        assert mem.outcome == ("unknown" if final == UNKNOWN else "sent")
        assert mem.channel == went
        assert before == sends_before

    @rule(
        number=st.sampled_from(NUMBERS[:2]),
        purpose=st.sampled_from(tuple(PROFILES)),
        which=st.sampled_from(("last", "last", "older", "wrong", "wrong", "wrong", "junk")),
        pick=st.integers(0, 7),
    )
    def check(self, number: str, purpose: str, which: str, pick: int) -> None:
        live = sorted(k for k, e in self.model.entries.items() if e.live is not None)
        if live and pick:  # mostly a verification that holds a code
            purpose, number = live[pick % len(live)]
        e = self.model.entry(purpose, number)
        delivered = [c for to, _, c in self.senders["memory"].delivered if to == number]
        if which == "junk":
            code = " 12ab "
        elif which == "wrong":
            code = f"{(int(e.live.code) + 1) % 10**6:06d}" if e.live else "000000"
        elif which == "older" and len(delivered) > 1:
            code = delivered[-2]
        else:
            code = e.live.code if e.live else (delivered[-1] if delivered else "123456")
        now = self.clock.now
        mem, red = self.both(purpose, lambda v: v.check(number, code))
        assert isinstance(mem, otp.CheckResult), mem
        assert isinstance(red, otp.CheckResult), red
        if mem != red:
            # MemoryStore forgets an expired code GRACE seconds after it expired (on this
            # clock), Redis by its own TTL (on its clock): "not found" and "expired" are both
            # right then, and nothing else may differ.
            live = e.live
            assert live is not None and now >= max(live.expires, live.resend) + GRACE, (mem, red)
            assert {mem.reason, red.reason} == {otp.Reason.EXPIRED, otp.Reason.NOT_FOUND}
            assert not mem.approved and not red.approved
        allowed = self.model.check(purpose, number, code.strip(), now)
        assert mem.reason in allowed, (mem, allowed)
        left = PROFILES[purpose]["max_attempts"] - e.attempts
        assert mem.attempts_left == (left if mem.reason is otp.Reason.WRONG_CODE else 0)

    @rule(seconds=st.sampled_from((0.5, 1.0, 30.0, 59.0, 60.0, 61.0, 119.0, 120.0, 300.0, 900.0)))
    def wait(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(hours=st.sampled_from((1.0, 23.0, 24.0)))
    def wait_hours(self, hours: float) -> None:
        self.clock.now += hours * 3600.0

    @invariant()
    def promises(self) -> None:
        for (purpose, _), e in self.model.entries.items():
            assert 0 <= e.attempts <= PROFILES[purpose]["max_attempts"]
        granted = len(self.senders["memory"].delivered)
        assert sum(len(e.approved) for e in self.model.entries.values()) <= granted
        assert self.senders["memory"].delivered == self.senders["redis"].delivered
        # No window ever held more sends than its cap.
        for number, log in self.model.sends.items():
            del number
            for t in log:
                assert sum(t - 3600.0 < s <= t for s in log) <= 4
                assert sum(t - 86400.0 < s <= t for s in log) <= 6
        for t in self.model.budget:
            assert sum(t - 3600.0 < s <= t for s in self.model.budget) <= 5


def test_memory_and_redis_stores_agree_on_every_sequence(redis_url: str) -> None:
    """passes: regression guard. Random sequences of starts (every channel, every kind of send
    failure), checks (the live code, an older one, a wrong one, junk), two purposes on three
    numbers, and time passing: ``MemoryStore`` and ``RedisStore`` give the same
    ``Verification``, ``CheckResult`` and exceptions, and both follow the reference model."""
    Differential.redis_url = redis_url
    run_state_machine_as_test(
        Differential,
        settings=settings(
            max_examples=25,
            stateful_step_count=40,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- bursts on the real Redis ---------------------------------------------------------------------


async def test_a_mixed_burst_through_two_redis_stores_counts_each_attempt_once(
    redis_url: str, redis_prefix: str
) -> None:
    """passes: regression guard. Two ``RedisStore`` instances (two connection pools, as two
    workers have) on one prefix; a burst of 30 concurrent checks, the right code among wrong
    ones, interleaved over both, with ``max_attempts=4``: at most 4 are compared, the right
    code is approved at most once, and never after the attempts are used up; then a burst of
    starts on two purposes keeps every cap."""
    clock = Clock()
    sender = Sender()
    async with (
        otp.RedisStore(redis_url, prefix=redis_prefix) as one,
        otp.RedisStore(redis_url, prefix=redis_prefix) as two,
    ):
        with fixed_codes() as codes:
            codes.next = 424242
            first = otp.Verifier(
                sender, store=one, secret=SECRET, template=TEMPLATE, clock=clock, max_attempts=4
            )
            second = otp.Verifier(
                sender, store=two, secret=SECRET, template=TEMPLATE, clock=clock, max_attempts=4
            )
            await first.start(NUMBERS[0])
            guesses = ["424242" if n % 7 == 3 else f"{n:06d}" for n in range(30)]
            results = await asyncio.gather(
                *((first if n % 2 else second).check(NUMBERS[0], g) for n, g in enumerate(guesses))
            )
        reasons = [r.reason for r in results]
        counted = reasons.count(otp.Reason.WRONG_CODE) + reasons.count(otp.Reason.APPROVED)
        assert counted <= 4, reasons
        assert reasons.count(otp.Reason.APPROVED) <= 1, reasons
        assert all(r.attempts_left >= 0 for r in results)
        after = await first.check(NUMBERS[0], "424242")
        assert not after.approved

        login = [make_verifier(sender, store, clock, "login") for store in (one, two)]
        reset = [make_verifier(sender, store, clock, "reset") for store in (one, two)]
        starts = [(login if n % 3 else reset)[n % 2].start(NUMBERS[n % 3]) for n in range(60)]
        outcomes = await asyncio.gather(*(outcome(s) for s in starts))
    sent = [o for o in outcomes if isinstance(o, otp.Verification)]
    assert all(isinstance(o, otp.Verification | otp.OtpError) for o in outcomes), outcomes
    per_number = [sum(v.to == n for v in sent) for n in NUMBERS]
    assert max(per_number) <= 4  # login's hourly cap (reset counts in it too)
    assert len(sent) <= 5 + 3 * 3  # login's global budget, and reset's daily cap per number


# -- findings ------------------------------------------------------------------------------------


@pytest.fixture
async def stores(redis_url: str, redis_prefix: str) -> AsyncIterator[dict[str, otp.Store]]:
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as redis_store:
        yield {"memory": otp.MemoryStore(), "redis": redis_store}


# A clock with sub-millisecond digits, as ``time.time()`` has (microseconds): 0.5 ms past a
# millisecond.
SUB_MS = 1_700_000_000.0005


async def test_no_store_grants_a_resend_inside_resend_after(stores: dict[str, otp.Store]) -> None:
    """Finding (fixed): a resend 0.3 ms before ``Verification.resend_at``.

    ``MemoryStore`` raised ``TooSoon`` (it compared the float times). ``RedisStore`` granted it
    and sent a second code: ``RedisStore.begin`` (``_redis.py``) stored the cooldown's end
    as ``floor((now + resend_after) * 1000)`` and the next start's time as
    ``floor(now * 1000)``; both fell on the same millisecond, and ``BEGIN`` refused only while
    ``r > now``. The promise: "a resend inside ``resend_after`` raises ``otp.TooSoon``", and
    the stores behave the same."""
    answers = {}
    for name, store in stores.items():
        clock = Clock(SUB_MS)
        v = otp.Verifier(Sender(), store=store, secret=SECRET, template=TEMPLATE, clock=clock)
        sent = await v.start(NUMBERS[0])
        clock.now = sent.resend_at - 0.0003
        answers[name] = type(await outcome(v.start(NUMBERS[0]))).__name__
    assert answers == {"memory": "TooSoon", "redis": "TooSoon"}


async def test_every_store_approves_the_right_code_before_its_expires_at(
    stores: dict[str, otp.Store],
) -> None:
    """Finding (fixed): the right code checked 0.3 ms before ``Verification.expires_at``.

    ``MemoryStore`` approved it; ``RedisStore`` answered ``expired``: ``RedisStore.begin``
    stored ``floor((now + ttl) * 1000)`` and ``RedisStore.check`` compared it with
    ``floor(check_time * 1000)`` (``CHECK``: ``e <= now`` is expired), so a code died up to a
    millisecond before the ``expires_at`` the verifier reported. The stores disagreed on
    whether the same user with the same code at the same instant is verified."""
    answers = {}
    for name, store in stores.items():
        clock = Clock(SUB_MS)
        sender = Sender()
        v = otp.Verifier(sender, store=store, secret=SECRET, template=TEMPLATE, clock=clock)
        sent = await v.start(NUMBERS[1])
        clock.now = sent.expires_at - 0.0003
        answers[name] = (await v.check(NUMBERS[1], sender.delivered[-1][2])).reason
    assert answers == {"memory": otp.Reason.APPROVED, "redis": otp.Reason.APPROVED}


async def test_no_store_opens_the_hourly_cap_before_the_hour_has_passed(
    stores: dict[str, otp.Store],
) -> None:
    """Finding (fixed): ``max_sends_per_hour=1``, a second start 0.3 ms before an hour after the
    first. ``MemoryStore`` raised ``Blocked(reason="number_hour")``; ``RedisStore`` sent a
    second code inside the hour: ``BEGIN`` counted sends with a score above
    ``floor(now*1000) - 3600000`` and the first send's score was ``floor(t*1000)``, the same
    millisecond. The cap promise ("at most ``limit`` sends in any hour") and the stores'
    sameness both broke."""
    answers = {}
    for name, store in stores.items():
        clock = Clock(SUB_MS)
        v = otp.Verifier(
            Sender(), store=store, secret=SECRET, template=TEMPLATE, clock=clock,
            max_sends_per_hour=1,
        )  # fmt: skip
        await v.start(NUMBERS[2])
        clock.now = SUB_MS + 3600.0 - 0.0003
        answers[name] = observe(await outcome(v.start(NUMBERS[2])))[:2]
    assert answers == {"memory": ("Blocked", "number_hour"), "redis": ("Blocked", "number_hour")}


class Held(Sender):
    """A sender whose every send waits at a gate of its own (``gate(n)``: the n-th send, from
    0) until the test opens it, then answers as ``sms`` says."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: dict[int, asyncio.Event] = {}
        self.opened: dict[int, asyncio.Event] = {}
        self.count = 0

    def gate(self, n: int) -> tuple[asyncio.Event, asyncio.Event]:
        return self.entered.setdefault(n, asyncio.Event()), self.opened.setdefault(
            n, asyncio.Event()
        )

    async def send(self, to: str, content: str) -> SendResult:
        n, self.count = self.count, self.count + 1
        entered, opened = self.gate(n)
        entered.set()
        await opened.wait()
        return self._answer(self.sms, to, "sms", content.rsplit(" ", 1)[-1])


@pytest.mark.parametrize("kind", ["memory", "redis"])
@pytest.mark.parametrize("first_to_fail", ["later_start", "earlier_start"])
async def test_two_overlapping_resends_that_sent_nothing_leave_the_delivered_code_dead(
    stores: dict[str, otp.Store], kind: str, first_to_fail: str
) -> None:
    """Finding (both stores): code P is delivered; then two resends overlap (``resend_after=0``,
    a valid option; or any cooldown shorter than a slow send's ``deadline``): resend A is
    granted and its provider hangs, resend B is granted meanwhile, and both fail with
    ``ConnectError`` -- each provably sent nothing, so each start must be undone.

    What happens: B's grant recorded A's verification as the one to put back, and A's undo
    finds the record no longer its own (``MemoryStore._rollback`` ``record.token !=
    s.token``, ``_memory.py``; ``ROLLBACK`` ``HGET t ~= token``, ``_redis.py``), so it puts
    back nothing. Whichever fails first, the live code ends as A's -- a code that never left,
    and that is approved -- and P, the code the user holds, is ``wrong_code`` (and costs an
    attempt). The promise: "Any other smsvn error proves nothing was sent: the grant is
    undone (the previous code is live again ...)"."""
    store = stores[kind]
    sender = Held()
    v = otp.Verifier(
        sender, store=store, secret=SECRET, template=TEMPLATE, clock=Clock(), resend_after=0.0
    )
    with fixed_codes() as codes:
        codes.next = 111111
        sender.gate(0)[1].set()
        await v.start(NUMBERS[0])  # P, delivered
        sender.sms = CONNECT
        codes.next = 222222
        resend_a = asyncio.ensure_future(v.start(NUMBERS[0]))
        await sender.gate(1)[0].wait()
        codes.next = 333333
        resend_b = asyncio.ensure_future(v.start(NUMBERS[0]))
        await sender.gate(2)[0].wait()
    order = [(2, resend_b), (1, resend_a)]
    if first_to_fail == "earlier_start":
        order.reverse()
    for n, task in order:
        sender.gate(n)[1].set()
        with pytest.raises(ConnectError):
            await task
    assert [c for _, _, c in sender.delivered] == ["111111"]
    result = await v.check(NUMBERS[0], "111111")
    never_sent = await v.check(NUMBERS[0], "222222")
    assert result.approved, (
        f"the delivered code is {result.reason.value}; the never-sent code of the failed "
        f"resend A is {never_sent.reason.value}"
    )
