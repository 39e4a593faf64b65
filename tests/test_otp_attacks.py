"""Attacks on ``smsvn.otp``: each test here was a finding of a red-team pass and failed
before its fix (see the CHANGELOG).

The sender is an in-process fake (``FakeSms``, ``Choking``); the stores under attack are the
real ``MemoryStore`` and the real ``RedisStore`` on the Redis of ``tests.services`` (reached
directly, or through ``SlowProxy``, a loopback TCP relay that holds back one answer of Redis
to play a busy server). Time is a controllable clock given to the verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from smsvn import otp
from smsvn.errors import SmsError, ValidationError
from smsvn.models import SendResult
from tests.test_otp import PHONE, SECRET, TEMPLATE, Clock, clock, store, verifier

__all__ = ["clock", "store"]  # fixtures

OTHER = "0987654321"


class FakeSms:
    """An SMS sender that accepts everything and remembers what it sent."""

    provider = "fake"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, content: str) -> SendResult:
        self.sent.append((to, content))
        return SendResult(provider="fake", message_id=str(len(self.sent)), recipients=(to,))

    def last_code(self, to: str = PHONE) -> str:
        texts = [content for number, content in self.sent if number == to]
        assert texts, f"nothing sent to {to}"
        return texts[-1].rsplit(" ", 1)[-1]


class Choking(FakeSms):
    """A sender whose gateway library fails with a plain (non-smsvn) exception that echoes
    the request, as many HTTP and SDK libraries do."""

    async def send(self, to: str, content: str) -> SendResult:
        self.sent.append((to, content))
        raise RuntimeError(f"gateway choked on the request body {content!r}")


def wrong(code: str) -> str:
    """A code of the same length that is not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


class SlowProxy:
    """A loopback TCP relay to Redis that holds back Redis's answer to the next ``EVALSHA``
    (once, after ``arm()``) for ``delay`` seconds: a Redis that did the work but answers late,
    as a busy or briefly paused server does."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.host, self.port, self.delay = host, port, delay
        self.scripts = 0
        self._armed = False
        self._closing = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._done: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    def arm(self) -> None:
        self._armed = True
        self.scripts = 0

    async def __aenter__(self) -> SlowProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.close()
        for done in self._done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 2.0)
        for writer in self._writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        done = asyncio.Event()
        self._done.append(done)
        self._writers.append(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client_w.close()
            done.set()
            return
        self._writers.append(server_w)
        hold = asyncio.Event()
        hold.set()

        async def upstream() -> None:
            with contextlib.suppress(Exception):
                while data := await client_r.read(65536):
                    if b"EVALSHA" in data.upper():
                        self.scripts += 1
                        if self._armed:
                            self._armed = False
                            hold.clear()
                    server_w.write(data)
                    await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            with contextlib.suppress(Exception):
                while data := await server_r.read(65536):
                    if not hold.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._closing.wait(), self.delay)
                        hold.set()
                    client_w.write(data)
                    await client_w.drain()
            client_w.close()

        try:
            await asyncio.gather(upstream(), downstream())
        finally:
            done.set()


@pytest.fixture
async def slow_redis(redis_url: str) -> AsyncIterator[SlowProxy]:
    parts = urlsplit(redis_url)
    async with SlowProxy(parts.hostname or "127.0.0.1", parts.port or 6379, delay=0.4) as proxy:
        yield proxy


# -- caps ----------------------------------------------------------------------------------------


async def test_a_purpose_with_a_shorter_cap_keeps_the_daily_cap_of_another(
    store: otp.Store, clock: Clock
) -> None:
    """Attack: two verifiers on one store, as an app has for two purposes -- "login" capped
    per hour only (``max_sends_per_day=None``), "reset" capped at 2 codes a day. Use up the
    reset's daily cap, wait two hours, ask for one login code, then ask for reset codes again.

    Before the fix: the login start trims the number's send log to *its* longest window (one
    hour; MemoryStore ``_begin`` ``log.trim(now - max(w.seconds ...))``, RedisStore ``BEGIN``
    ``ZREMRANGEBYSCORE ... now - keep`` and ``PEXPIRE ... keep``), deleting the reset sends
    the daily cap still needs: the next reset start is granted, and the attacker can repeat
    it -- 3 and more reset SMS in a day against a cap of 2.

    What should happen: "caps per number ... over every purpose" (README): the reset start
    is ``Blocked(reason="number_day")`` until a day after the first reset send."""
    sms = FakeSms()
    login = verifier(sms, store, clock, purpose="login", max_sends_per_day=None)
    reset = verifier(
        sms,
        store,
        clock,
        purpose="reset",
        resend_after=0.0,
        max_sends_per_hour=None,
        max_sends_per_day=2,
    )
    await reset.start(PHONE)
    await reset.start(PHONE)
    with pytest.raises(otp.Blocked) as capped:
        await reset.start(PHONE)
    assert capped.value.reason == "number_day"

    clock.advance(2 * 3600.0)
    await login.start(PHONE)  # one login code: the log now holds only what an hour needs

    with pytest.raises(otp.Blocked) as still_capped:
        await reset.start(PHONE)
    assert still_capped.value.reason == "number_day"
    assert len(sms.sent) == 3


# -- Redis answering late --------------------------------------------------------------------------


async def test_a_late_redis_answer_counts_one_check_once(
    redis_url: str, redis_prefix: str, slow_redis: SlowProxy, clock: Clock
) -> None:
    """Attack: Redis runs a ``CHECK`` script but its answer comes later than the store's
    ``timeout`` (a busy server, a short network stall).

    Before the fix: the store's own client is built with ``retry=Retry(NoBackoff(), 1)``
    (``_redis.py`` ``RedisStore.__init__``), and redis-py retries on ``TimeoutError`` too: the
    non-idempotent script runs a second time on a fresh connection. One wrong guess costs two
    attempts (``attempts_left`` 3 instead of 4); with the right code, the first run approves
    and deletes the verification and the second answers ``not_found``: the user's correct
    code is consumed and refused.

    What should happen: each check is one atomic step counted once ("attempts are counted
    atomically"); a lost answer is ``StoreError`` ("the code was not approved (an attempt may
    have been counted)") -- one attempt, not two."""
    sms = FakeSms()
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as direct:
        fast = verifier(sms, direct, clock)
        await fast.start(PHONE)  # also loads the scripts into Redis
        code = sms.last_code()
        await fast.check(OTHER, "000000")

        slow_redis.arm()
        async with otp.RedisStore(slow_redis.url, prefix=redis_prefix, timeout=0.15) as late:
            with contextlib.suppress(otp.StoreError):
                await verifier(sms, late, clock).check(PHONE, wrong(code))
        runs = slow_redis.scripts

        after = await fast.check(PHONE, wrong(code))
    assert after.attempts_left == 3, (
        f"two checks left {after.attempts_left} of 5 attempts: the late check ran the CHECK "
        f"script {runs} times"
    )


async def test_a_late_redis_answer_to_the_right_code_still_approves_it(
    redis_url: str, redis_prefix: str, slow_redis: SlowProxy, clock: Clock
) -> None:
    """The right code, its answer late: the first run approves and removes the verification;
    the client's resend of the same call gets that answer back (approved), not ``not_found``.
    Then the code is used up."""
    sms = FakeSms()
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as direct:
        fast = verifier(sms, direct, clock)
        await fast.start(PHONE)
        code = sms.last_code()
        slow_redis.arm()
        async with otp.RedisStore(slow_redis.url, prefix=redis_prefix, timeout=0.15) as late:
            result = await verifier(sms, late, clock).check(PHONE, code)
        assert slow_redis.scripts >= 2, "the client did not send the check again"
        assert result.approved, result
        assert not (await fast.check(PHONE, code)).approved


async def test_a_late_redis_answer_to_a_start_is_not_refused_by_its_own_grant(
    redis_url: str, redis_prefix: str, slow_redis: SlowProxy, clock: Clock
) -> None:
    """Attack: Redis runs the ``BEGIN`` script of a start but answers later than ``timeout``.

    Before the fix: redis-py retries the script (see the test above); the retry finds the grant
    the first run made and refuses it: ``start`` raises ``TooSoon`` ("a code was sent less
    than 60 s ago") although no code was ever sent, and the number now holds a live code
    nobody received, a cooldown and a counted cap.

    What should happen: a store that did not answer in time is ``StoreError`` ("For
    ``start``: nothing was sent"), never a refusal caused by the same start's own grant."""
    sms = FakeSms()
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as direct:
        await verifier(sms, direct, clock).start(OTHER)  # loads BEGIN into Redis
        slow_redis.arm()
        async with otp.RedisStore(slow_redis.url, prefix=redis_prefix, timeout=0.15) as late:
            try:
                await verifier(sms, late, clock).start(PHONE)
            except otp.StoreError:
                pass
            except otp.TooSoon as too_soon:
                pytest.fail(
                    f"start answered TooSoon ({too_soon.message}) but sent no code: "
                    f"{[n for n, _ in sms.sent].count(PHONE)} sent to {PHONE}"
                )


# -- expiry edges ---------------------------------------------------------------------------------


async def test_redis_refuses_a_code_at_its_expires_at(redis_url: str, redis_prefix: str) -> None:
    """Attack: a verifier with a ttl that is not a whole number of seconds (300.001 s) and a
    clock with millisecond resolution; check the right code at exactly
    ``Verification.expires_at``.

    Before the fix: ``RedisStore`` stores ``floor(now*1000) + floor(ttl*1000)`` (``_ms`` of
    each, added in ``BEGIN``) and compares it with ``floor(check_time*1000)``; the sum of two
    floors can exceed the floor of the sum, so the code is still live at ``expires_at`` and is
    approved (``MemoryStore`` correctly answers ``expired``).

    What should happen: "a code is not accepted at or after ``expires_at``" (a check at
    exactly ttl is ``expired``, as ``tests/test_otp.py`` asserts for whole seconds)."""
    clock = Clock(1_700_000_000.014)
    sms = FakeSms()
    async with otp.RedisStore(redis_url, prefix=redis_prefix) as store:
        v = verifier(sms, store, clock, ttl=300.001)
        started = await v.start(PHONE)
        clock.now = started.expires_at
        result = await v.check(PHONE, sms.last_code())
    assert result == otp.CheckResult(approved=False, reason=otp.Reason.EXPIRED, attempts_left=0)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["\ud800", "12345\udcff"])
async def test_a_lone_surrogate_in_a_code_is_a_wrong_code(
    store: otp.Store, clock: Clock, code: str
) -> None:
    """Attack: submit a code holding a lone UTF-16 surrogate -- what ``json.loads`` gives for
    a JSON body ``{"code": "\\ud800"}``, so any client of a JSON endpoint can send it.

    Before the fix: ``Verifier.check`` hashes the input with ``"...".encode()`` (``_Key.digest``,
    ``_verifier.py``), which raises a bare ``UnicodeEncodeError`` -- a 500 in the app instead
    of an answer; and the exception's ``object`` is the HMAC message, holding the phone number
    in clear.

    What should happen: "any other input counts as a wrong code" (README): a plain
    ``wrong_code`` (or a ``ValidationError``), never an untyped error carrying the number."""
    sms = FakeSms()
    v = verifier(sms, store, clock)
    await v.start(PHONE)
    outcome: otp.CheckResult | BaseException
    try:
        outcome = await v.check(PHONE, code)
    except Exception as exc:
        outcome = exc
    if isinstance(outcome, otp.CheckResult):
        assert (outcome.approved, outcome.reason) == (False, otp.Reason.WRONG_CODE)
    else:
        assert isinstance(outcome, ValidationError), (
            f"check raised a bare {type(outcome).__name__}: {outcome!r}"
        )
        assert PHONE not in repr(vars(outcome))


# -- secrets -------------------------------------------------------------------------------------


async def test_a_plain_exception_from_the_sender_leaves_without_the_code(clock: Clock) -> None:
    """Attack: the SMS sender fails with an exception that is not an smsvn error and echoes
    the request (an SDK's ``RuntimeError``/``KeyError``, a custom sender's bug).

    Before the fix: ``Verifier.start`` lets it through untouched (``_deliver`` catches only
    ``SmsError``; ``_scrubbed`` runs only on smsvn errors): the code is in the exception's
    message and in the traceback, whose frames (the sender's ``send``) hold the SMS text --
    exactly what error trackers and log handlers record.

    What should happen: "Codes ... appear in no ... exception (message, chain or traceback
    frames)" (README, ``_verifier.py`` docstring): the code masked in the exception that
    leaves ``start`` (and its chain), and the sender's frames dropped."""
    sender = Choking()
    v = verifier(sender, otp.MemoryStore(), clock)
    with pytest.raises(Exception) as failed:  # noqa: PT011 - any type: the code is the finding
        await v.start(PHONE)
    code = sender.last_code()
    error = failed.value
    assert not isinstance(error, SmsError)  # a plain exception, let through as documented
    assert code not in str(error)
    assert code not in "".join(traceback.format_exception(error))
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code is test_a_plain_exception_from_the_sender_leaves_without_the_code.__code__:
            continue  # this test's own frame, which holds the code it read from the sender
        for name, value in frame.f_locals.items():
            assert code not in repr(value), (frame.f_code.co_name, name)


@pytest.mark.parametrize("option", ["ttl", "resend_after", "max_wait", "deadline"])
async def test_a_duration_past_a_year_is_refused_before_any_store_sees_it(option: str) -> None:
    """A ``ttl`` of 1e17 s passed the checks and would have broken the Redis scripts (their
    millisecond times formatted with ``%d``) after they had written their changes."""
    with pytest.raises(ValidationError, match=option):
        otp.Verifier(
            FakeSms(), store=otp.MemoryStore(), secret=SECRET, template=TEMPLATE,
            **{option: 1e17},
        )  # fmt: skip
    otp.Verifier(
        FakeSms(), store=otp.MemoryStore(), secret=SECRET, template=TEMPLATE,
        **{option: 365 * 86400.0},
    )  # fmt: skip
