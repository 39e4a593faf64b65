"""Red-team tests of ``smsvn.advertising``: each tries to break one of its promises.

A test marked "holds" pins a guarantee the code kept when it was attacked. Every other test
is a regression test: it failed on the first version of the guard, and its docstring says what
the bug was and how it was fixed. The simulator's outbox is the ground truth of what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import smsvn
from smsvn import advertising as ad
from smsvn.advertising import Blocked, OutsideWindow, Rule
from smsvn.advertising._rules import YEAR
from smsvn.errors import OutcomeUnknown, SmsError, ValidationError
from smsvn.limits import RateLimit
from smsvn.models import InboundSms
from smsvn.providers.esms import ESMS
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Fault, Sandbox
from tests.conftest import FAST_RETRY
from tests.test_advertising import AD, CARE, RULES, A, B, C, Clock, sent_to, vn

REG = "DKQC Shop ABC: soan Y gui 8079 de nhan uu dai"


@pytest.fixture
def clock() -> Clock:
    return Clock(vn(1, 10))


@pytest.fixture
async def esms(sb: Sandbox) -> AsyncIterator[ESMS]:
    async with sb.client("esms", rate_limit=None, retry=FAST_RETRY) as client:
        yield client


async def _ready(guard: ad.Guard) -> ad.Guard:
    await guard.load_do_not_call([C], snapshot="2026-11-30")
    for number in (A, B, C):
        await guard.consent(number, how="form", at=vn(1, 8))
    return guard


@pytest.fixture
async def guard(clock: Clock) -> AsyncIterator[ad.Guard]:
    async with ad.Guard(RULES, clock=clock, sleep=clock.sleep) as g:
        yield await _ready(g)


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[smsvn.Journal]:
    async with smsvn.Journal(str(tmp_path / "campaigns.db")) as j:
        yield j


@pytest.fixture(params=["memory", "sqlite"])
async def any_guard(
    request: pytest.FixtureRequest, clock: Clock, tmp_path: Path
) -> AsyncIterator[ad.Guard]:
    """A ready guard over each store of this machine: in memory, and in a journal's file."""
    if request.param == "memory":
        async with ad.Guard(RULES, clock=clock, sleep=clock.sleep) as g:
            yield await _ready(g)
        return
    async with (
        smsvn.Journal(str(tmp_path / "guard.db")) as j,
        ad.Guard(RULES, j, clock=clock, sleep=clock.sleep) as g,
    ):
        yield await _ready(g)


async def kinds(guard: ad.Guard, kind: str) -> list[ad.AdEvent]:
    return [e async for e in guard.records(kind=kind)]  # type: ignore[arg-type]


# == the 24-hour cap ==========================================================================


async def test_holds_concurrent_sends_to_one_number_never_pass_the_cap(
    any_guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    """holds: ten ``guard.send`` at once to one number (written three ways, and twice in one
    list) -> exactly 3 reach the simulator, and exactly 3 are recorded."""
    forms = [A, "+84 912 345 678", "84912345678", [A, "0912.345.678"]]

    async def one(i: int) -> str:
        try:
            await any_guard.send(sms, forms[i % len(forms)], AD, purpose="advertising")
        except Blocked as exc:
            return f"blocked: {[n.rule.value for n in exc.blocked]}"
        return "sent"

    outcomes = Counter(await asyncio.gather(*(one(i) for i in range(10))))
    assert outcomes == {"sent": 3, "blocked: ['cap']": 7}
    assert sent_to(sb) == [A] * 3
    assert len(await kinds(any_guard, "sent")) == 3


async def test_a_send_cancelled_after_its_request_left_keeps_its_cap(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: a send cancelled (a web request's timeout, ``asyncio.wait_for``) after its request
    reached the provider gives its cap back (``_admit`` forgets on every ``BaseException`` but
    ``OutcomeUnknown``), so the message is delivered and never counted: 4+ advertising SMS to
    one number in minutes.

    Fix (``Guard._admit``): tell "nothing left" from "may have left" with the transport's
    ``Departure`` (as the bulk engine does); forget only when ``not mark.left``::

        mark = transport.Departure()
        token = transport.departure.set(mark)
        try:
            result = await send(list(taken))
        except OutcomeUnknown:
            raise
        except BaseException as exc:
            if not mark.left or isinstance(exc, NOTHING_SENT):
                await asyncio.shield(self._records.forget(list(taken.values())))
            raise
        finally:
            transport.departure.reset(token)

    (in the campaign path the engine has set its own ``Departure`` already: read it with
    ``transport.departure.get()`` instead of setting a new one)."""
    sb.faults.add(Fault(kind="latency", provider="speedsms", route="send", seconds=0.5))
    for _ in range(5):
        with contextlib.suppress(TimeoutError, Blocked):
            await asyncio.wait_for(guard.send(sms, A, AD, purpose="advertising"), 0.15)
    await asyncio.sleep(0.6)  # the last answers arrive (and are thrown away)
    assert len(sent_to(sb)) <= 3, f"{len(sent_to(sb))} advertising SMS reached {A} in a day"
    assert len(await kinds(guard, "sent")) >= len(sent_to(sb))


async def test_holds_a_send_refused_by_the_provider_gives_the_cap_back(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    """holds: a send that certainly sent nothing (the provider refused it: no balance) does
    not use the number's cap; one that may have been sent (``OutcomeUnknown``) keeps it."""
    sb.set_balance("speedsms", 0)
    for _ in range(4):
        with pytest.raises(smsvn.errors.InsufficientBalance):
            await guard.send(sms, A, AD, purpose="advertising")
    assert await kinds(guard, "sent") == []
    sb.set_balance("speedsms", 1_000_000)
    # The connection drops after the request was processed: unknown, and it counts.
    sb.faults.add(Fault(kind="drop_after", provider="speedsms", route="send", times=1))
    with pytest.raises(OutcomeUnknown):
        await guard.send(sms, A, AD, purpose="advertising")
    for _ in range(2):
        await guard.send(sms, A, AD, purpose="advertising")
    with pytest.raises(Blocked):
        await guard.send(sms, A, AD, purpose="advertising")
    assert sent_to(sb) == [A] * 3


async def test_an_at_that_is_not_when_the_message_leaves_is_refused(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: ``at=`` ("the time a scheduled send is delivered at") is trusted as given, while the
    message leaves when the client sends it. SpeedSMS cannot schedule at all, so: (1) at 23:00
    with ``at`` = 21:00 (past) it leaves at 23:00; (2) at 23:00 with ``at`` = tomorrow 09:00 it
    leaves at 23:00; (3) at 21:00, three sends with ``at`` = yesterday 10:00 are counted a day
    ago, so three more "now" pass the cap too: 6 advertising SMS in a minute.

    Fix (``Guard.send``/``check``): an ``at`` before now is a ``ValidationError`` (a second of
    slack); a future ``at`` is taken only with the client's own schedule option set to the same
    time (eSMS ``send_date``), or derived from it; else ``ValidationError("at needs the
    client's schedule option")``."""
    problems = []
    clock.at(vn(1, 23))
    for case, at in (("past at, 23:00", vn(1, 21)), ("future at, 23:00", vn(2, 9))):
        before = len(sb.outbox)
        with contextlib.suppress(OutsideWindow, ValidationError):
            await guard.send(sms, A, AD, purpose="advertising", at=at)
        if len(sb.outbox) > before:
            problems.append(f"{case}: an advertising SMS left at 23:00")
    clock.at(vn(2, 21))
    yesterday: list[datetime | None] = [vn(1, 10)] * 3
    for when in [*yesterday, None, None, None]:
        with contextlib.suppress(OutsideWindow, ValidationError, Blocked):
            await guard.send(sms, B, AD, purpose="advertising", at=when)
    if sent_to(sb).count(B) > 3:
        problems.append(f"past at: {sent_to(sb).count(B)} advertising SMS to one number at 21:00")
    assert problems == [], "\n".join(problems)


async def test_an_esms_send_date_outside_the_hours_is_refused(
    guard: ad.Guard, esms: ESMS, sb: Sandbox
) -> None:
    """BUG: ``guard.send`` passes eSMS's ``send_date`` (a scheduled delivery) through without
    looking at it: at 10:00 an advertisement scheduled for 23:00 is accepted and delivered at
    23:00. (A campaign's ``send_date`` option, given to every batch, is the same hole.)

    Fix (``Guard.send``; ``Guard.run`` for campaign options): when ``options`` hold
    ``send_date`` (a naive one is Vietnam time, as eSMS reads it), check the hour (and take
    the cap) at that time: ``when = self._when(at or _aware(options['send_date']))``, and a
    ``ValidationError`` when ``at`` and ``send_date`` disagree."""
    late = datetime(2026, 12, 1, 23, 0)  # naive: Vietnam time for eSMS
    with pytest.raises((OutsideWindow, ValidationError)):
        await guard.send(esms, A, AD, purpose="advertising", send_date=late)
    assert sent_to(sb) == [], "an advertisement was scheduled for 23:00"


# == the hours ================================================================================


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 12, 1, 15, 0, tzinfo=UTC),  # 22:00 in Vietnam
        datetime(2026, 12, 1, 23, 59, tzinfo=timezone(timedelta(hours=-8))),  # 14:59 next day
        datetime(2026, 12, 1, 21, 59, 59, 999999, tzinfo=ad.VIETNAM),
    ],
)
async def test_holds_a_scheduled_time_in_any_zone_is_read_in_vietnam_time(
    guard: ad.Guard, at: datetime
) -> None:
    """holds: ``at`` in any zone is compared in Vietnam time; 22:00 itself is outside."""
    inside = 7 <= at.astimezone(ad.VIETNAM).hour < 22
    if inside:
        assert (await guard.check(A, AD, purpose="advertising", at=at)).allowed == (A,)
    else:
        with pytest.raises(OutsideWindow):
            await guard.check(A, AD, purpose="advertising", at=at)


# == refusals and consent =====================================================================


async def test_a_refusal_at_the_same_moment_as_a_consent_wins(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: a consent and a refusal with the same time (a coarse clock, records imported with
    whole seconds, a number that signs up and texts STOP at once) -> the consent wins
    (``_screen``: ``consented < refused``), and advertising goes to a number that refused.

    Fix (``Guard._screen``): the refusal wins a tie, the safe reading::

        elif refused is not None and (consented is None or consented <= refused):
    """
    D = "0701234567"
    await guard.consent(D, how="form")  # now
    assert await guard.inbound(InboundSms(provider="speedsms", phone=D, content="TC"), sms)
    checked = await guard.check(D, AD, purpose="advertising")
    assert checked.allowed == (), "a number that refused may get advertising"
    with pytest.raises(Blocked):
        await guard.send(sms, D, AD, purpose="advertising")
    assert D not in [r.phone for r in sb.outbox if r.content == AD]


async def test_refusal_words_given_as_one_str_are_not_silently_split(sms: SpeedSMS) -> None:
    """BUG: ``Rules(refusal_words="TC")`` (a str, not a tuple: an easy slip) is accepted and
    iterated letter by letter: the refusal words become {"T", "C"}, so the reply "TC" is not a
    refusal (``inbound`` returns False and nothing is recorded), and an advertisement ending
    in "... C" passes the opt-out check. ``labels="[QC]"`` is accepted the same way.

    Fix (``Rules.__post_init__``): ``labels`` and ``refusal_words`` must be tuples (or
    lists) of str, never one str::

        for name in ("labels", "refusal_words"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise ValidationError(f"{name} is a tuple of str, not {type(value).__name__}")
    """
    try:
        rules = ad.Rules(advertiser="Shop ABC", brandname="SMSVN", refusal_words="TC")  # type: ignore[arg-type]
    except ValidationError:
        return  # refused when made: fixed
    async with ad.Guard(rules) as g:
        await g.load_do_not_call([], snapshot="2026-11-30")
        reply = InboundSms(provider="speedsms", phone=A, content="TC")
        assert await g.inbound(reply), "the reply TC was not taken as a refusal"


async def test_holds_a_refusal_is_kept_when_its_confirmation_fails_and_confirmed_once_after(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    """holds: the confirmation's send fails (nothing sent) -> ``inbound`` raises (the webhook
    answers 500, the provider retries), the refusal is already recorded; the retry confirms
    once; later retries confirm no more."""
    reply = InboundSms(provider="speedsms", phone="84987654321", content="Huỷ")
    async with sb.client("speedsms", token="wrong", retry=FAST_RETRY) as broken:
        with pytest.raises(smsvn.errors.AuthenticationError) as caught:
            await guard.inbound(reply, broken)
        assert "wrong" not in str(caught.value)
    assert (await guard.check(B, AD, purpose="advertising")).allowed == ()
    for _ in range(3):
        assert await guard.inbound(reply, sms)
    assert [r.phone for r in sb.outbox] == [B]
    assert sb.outbox[0].content == RULES.confirmation_text()
    assert len(await kinds(guard, "confirmation")) == 1


async def test_a_confirmation_cancelled_before_it_left_is_sent_on_the_retry(
    guard: ad.Guard, sb: Sandbox, sms: SpeedSMS
) -> None:
    """BUG: the confirmation's send cancelled while it waits for the account's turn (nothing
    left: the webhook's request timed out, the server shut down) keeps its one-confirmation
    reservation (``inbound`` forgets only on ``SmsError``), so the provider's retry of the
    webhook finds it taken: the refusal is never confirmed (Art. 13(4)).

    Fix (``Guard.inbound``): as in ``_admit``, watch the transport's ``Departure`` and forget
    the reservation on any exception when the request never left::

        mark = transport.Departure()
        token = transport.departure.set(mark)
        try:
            await client.send(number, self.rules.confirmation_text())
        except OutcomeUnknown:
            raise
        except BaseException as exc:
            if isinstance(exc, SmsError) or not mark.left:
                await asyncio.shield(self._records.forget([ids[0]]))
            raise
        finally:
            transport.departure.reset(token)
    """
    slow = sb.client("speedsms", rate_limit=RateLimit(requests=1, period=3600.0))
    async with slow:
        await slow.send(C, CARE)  # the account's one request of the hour
        reply = InboundSms(provider="speedsms", phone=A, content="STOP")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(guard.inbound(reply, slow), 0.3)
    assert [r.phone for r in sb.outbox] == [C]  # nothing left for A
    assert await guard.inbound(reply, sms)  # the webhook's retry
    confirmations = [r for r in sb.outbox if r.phone == A]
    assert len(confirmations) == 1, "the refusal was never confirmed"


# == Do-Not-Call ==============================================================================


@pytest.mark.parametrize(
    "text",
    [
        "338123456\n",  # a spreadsheet dropped the leading 0
        "0338123456;2026-11-30\n",  # a Vietnamese-locale Excel CSV: ';' separates
        "stt,so_dien_thoai\n1,0338123456\n",  # the number is not the first column
    ],
    ids=["leading-zero-lost", "semicolons", "second-column"],
)
async def test_a_do_not_call_file_read_as_no_numbers_does_not_empty_the_list(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox, tmp_path: Path, text: str
) -> None:
    """BUG (fails open): a Do-Not-Call file in which no line reads as a number (leading zeros
    lost in Excel, ';'-separated, the number in another column) *replaces* the list with an
    empty one (``skipped`` counts them, nothing else says so), and every listed number gets
    advertising. C is on the list loaded before, and on the new file too.

    Fix (``Guard.load_do_not_call``): read Do-Not-Call lines generously (over-blocking is the
    safe side: 9 digits with a mobile prefix -> prefix a 0; split on ',', ';' and tab; look at
    every column), and refuse a load in which lines were skipped and no number was read
    (or, say, more than 1 % skipped): ``ValidationError``, the old snapshot kept::

        if skipped and (count == 0 or skipped > count // 100):
            raise ValidationError(f"{skipped} lines of {source} are not phone numbers ...")

    (the check has to come before the new load becomes current: count in ``chunks`` and raise
    from inside the generator, which makes the store's load roll back)."""
    path = tmp_path / "dnc.csv"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ValidationError):  # refused: the old list stays
        await guard.load_do_not_call(path, snapshot="2026-12-01")
    with pytest.raises(Blocked):
        await guard.send(sms, C, AD, purpose="advertising")
    assert C not in sent_to(sb), "a number on the Do-Not-Call list got advertising"


async def test_holds_a_do_not_call_file_with_bom_crlf_quotes_and_a_huge_line(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox, tmp_path: Path
) -> None:
    """holds: BOM, CRLF, quoted numbers in any written form, blank lines and a 4 MB line of
    garbage: the numbers are read, the rest skipped and counted."""
    path = tmp_path / "dnc.csv"
    lines = ['"0912345678",x', '"+84 987 654 321"', "", "X" * 4_000_000, "84338123456"]
    path.write_bytes("\ufeff".encode() + "\r\n".join(lines).encode() + b"\r\n")
    loaded = await guard.load_do_not_call(path, snapshot="2026-12-01")
    assert (loaded.numbers, loaded.skipped) == (3, 1)
    checked = await guard.check([A, B, C], AD, purpose="advertising")
    assert checked.allowed == ()
    assert {n.rule for n in checked.blocked} == {Rule.DO_NOT_CALL}


# == bad input ================================================================================


async def test_bad_do_not_call_sources_are_validation_errors(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox, tmp_path: Path
) -> None:
    """BUG: a wrong Do-Not-Call source must be a ``ValidationError``. A UTF-16 file (Excel's
    "Unicode text" export) escapes as a bare ``UnicodeDecodeError`` from the reading thread.
    (Numbers as ints, an int, a file opened "rb" escaped as ``AttributeError``/``TypeError``
    when this was written; ``_Numbers`` refuses them now. The old list stays: holds.)

    Fix (``_Numbers.chunks``): turn a decoding error into ``ValidationError``::

        try:
            while (part := await asyncio.to_thread(next, parts, None)) is not None:
                yield part
        except UnicodeDecodeError as exc:
            raise ValidationError(f"{source} is not UTF-8 text (save it as CSV UTF-8)") from exc
    """
    utf16 = tmp_path / "dnc-utf16.txt"
    utf16.write_text("0912345678\n0987654321\n", encoding="utf-16")
    binary = io.BytesIO(b"0912345678\n0987654321\n")  # a file opened "rb"
    wrong: list[object] = [[912345678, 987654321], 12345, utf16, binary]
    problems = []
    for source in wrong:
        try:
            await guard.load_do_not_call(source, snapshot="2026-12-01")  # type: ignore[arg-type]
        except ValidationError:
            continue
        except Exception as exc:
            problems.append(f"{type(source).__name__}: {type(exc).__name__}: {exc}")
        else:
            problems.append(f"{type(source).__name__}: accepted")
    # The old list (C) stays whatever happened.
    assert (await guard.check(C, AD, purpose="advertising")).allowed == ()
    assert problems == [], "\n".join(problems)


async def test_bad_arguments_are_validation_errors(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG (small): ``refuse(number, detail=123)`` is a bare ``TypeError`` (``_clip`` takes
    ``len`` of it); ``Rules(keep_for="1y")`` a bare ``TypeError``; ``Rules(sms_window="7-22")``
    is accepted and fails at the first send with ``AttributeError``.

    Fix: ``refuse``: ``detail=_clip(str(detail)) if detail else None``;
    ``Rules.__post_init__``: check ``keep_for`` is an int or float (not bool) before comparing,
    and ``sms_window``/``call_window`` are ``Window`` instances."""
    problems = []

    async def expect(what: str, call: object) -> None:
        try:
            if asyncio.iscoroutine(call):
                await call
            elif callable(call):
                call()
        except ValidationError:
            return
        except Exception as exc:
            problems.append(f"{what}: {type(exc).__name__}")
            return
        problems.append(f"{what}: accepted")

    await expect("refuse(detail=123)", guard.refuse(A, detail=123))  # type: ignore[arg-type]
    await expect("Rules(keep_for=str)", lambda: ad.Rules(advertiser="x", keep_for="1y"))  # type: ignore[arg-type]
    await expect("Rules(sms_window=str)", lambda: ad.Rules(advertiser="x", sms_window="7-22"))  # type: ignore[arg-type]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    ("to", "content", "options"),
    [
        (12345, AD, {}),
        (None, AD, {}),
        ({A: 1}, AD, {}),
        (A, None, {}),
        (A, b"[QC] bytes. TC", {}),
        (A, AD, {"purpose": None}),
        (A, AD, {"purpose": ["advertising"]}),
        (A, AD, {"purpose": "Advertising "}),
        (A, AD, {"at": "2026-12-01T10:00:00+07:00"}),
        (A, AD, {"at": 1764558000.0}),
        (A, AD, {"at": datetime(2026, 12, 1, 10)}),  # naive
    ],
    ids=[
        "to-int",
        "to-none",
        "to-dict",
        "content-none",
        "content-bytes",
        "purpose-none",
        "purpose-list",
        "purpose-unknown",
        "at-str",
        "at-float",
        "at-naive",
    ],
)
async def test_holds_bad_send_arguments_are_validation_errors_and_send_nothing(
    guard: ad.Guard,
    sms: SpeedSMS,
    sb: Sandbox,
    to: object,
    content: object,
    options: dict[str, Any],
) -> None:
    """holds: a wrong ``to``, ``content``, ``purpose`` or ``at`` is a ``ValidationError`` (no
    bare ``TypeError``/``KeyError``/``AttributeError``), nothing sent, nothing recorded."""
    options = {"purpose": "advertising", **options}
    with pytest.raises(ValidationError):
        await guard.send(sms, to, content, **options)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await guard.check(to, content, **options)  # type: ignore[arg-type]
    assert sent_to(sb) == []
    assert await kinds(guard, "sent") == []


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("consent", {"number": A, "how": "web"}),
        ("consent", {"number": A, "how": ["form"]}),
        ("consent", {"number": 912345678, "how": "form"}),
        ("consent", {"number": A, "how": "form", "channel": "email"}),
        ("consent", {"number": A, "how": "form", "at": "yesterday"}),
        ("refuse", {"number": None}),
        ("refuse", {"number": A, "channels": ("sms", "fax")}),
        ("check_channel", {"channel": None}),
        ("snapshot", {"snapshot": "30/11/2026"}),
        ("snapshot", {"snapshot": None}),
    ],
)
async def test_holds_bad_record_arguments_are_validation_errors(
    guard: ad.Guard, call: str, kwargs: dict[str, Any]
) -> None:
    """holds: wrong arguments to ``consent``, ``refuse``, ``check`` and the snapshot date are
    ``ValidationError``."""
    attempt: Awaitable[object]
    if call == "consent":
        attempt = guard.consent(**kwargs)
    elif call == "refuse":
        attempt = guard.refuse(**kwargs)
    elif call == "check_channel":
        attempt = guard.check(A, AD, purpose="advertising", **kwargs)
    else:
        attempt = guard.load_do_not_call([A], **kwargs)
    with pytest.raises(ValidationError):
        await attempt
    # The earlier snapshot (C) stays.
    assert (await guard.check(C, AD, purpose="advertising")).allowed == ()


# == brandname ================================================================================


async def test_advertising_never_leaves_without_the_rules_brandname(
    guard: ad.Guard, sb: Sandbox
) -> None:
    """BUG: ``Rules(brandname=...)`` is required, but the guard never looks at the sender the
    client sends under: through SpeedSMS ``sms_type=2`` (no sender at all, a random number)
    an advertisement leaves with no brandname (Art. 13(8)); with ``sender="OTHER"`` under
    someone else's. (The module's docstring says the guard checks "brandname".)

    Fix (``Guard.send``; ``Guard.run`` for a campaign's client(s) and options): read the
    sender the client will use (``options.get(client.sender_option)`` or the client's default:
    ``SpeedSMS.sender`` with ``sms_type`` 3/5, ``ESMS.brandname`` with ``sms_type`` 1/2,
    ``Fibo.sender``) and raise ``ComplianceError`` unless it equals ``rules.brandname``."""
    async with sb.client("speedsms", rate_limit=None, sms_type=2, sender=None) as plain:
        with pytest.raises(ad.ComplianceError):
            await guard.send(plain, A, AD, purpose="advertising")
    assert [(r.phone, r.sender) for r in sb.outbox] == [], "advertising left with no brandname"


# == campaigns ================================================================================


async def test_holds_a_campaign_with_concurrency_never_sends_after_22(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """holds: 8 batches in flight at once, the clock moving 10 minutes at every reading from
    21:00: every batch is checked as it leaves; none is counted (or sent) at 22:00-07:00."""
    numbers = [f"09{n:08d}" for n in range(1, 2001)]
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        for number in numbers:
            await guard.consent(number, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add(numbers, content=AD)
        clock.at(vn(1, 21))
        clock.step = 10 * 60.0
        report = await campaign.run(sms, guard=guard, concurrency=8)
        clock.step = 0.0
        sent = await kinds(guard, "sent")
    assert clock.slept
    assert all(7 <= datetime.fromtimestamp(e.at, ad.VIETNAM).hour < 22 for e in sent)
    assert report.accepted == len(sent) == 2000
    assert Counter(sent_to(sb)) == dict.fromkeys(numbers, 1)


async def test_holds_a_campaign_through_failover_pauses_at_22_and_goes_on_at_07(
    journal: smsvn.Journal, clock: Clock, sb: Sandbox
) -> None:
    """holds: a Failover campaign crossing 22:00: nothing is sent outside the hours, and
    everything is sent by the end of the run (the next morning)."""
    numbers = [f"09{n:08d}" for n in range(1, 401)]
    async with (
        sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as first,
        sb.client("fibo", rate_limit=None, retry=FAST_RETRY, sender="SMSVN") as second,
        ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard,
    ):
        await guard.load_do_not_call([], snapshot="2026-11-30")
        for number in numbers:
            await guard.consent(number, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add(numbers, content=AD)
        clock.at(vn(1, 21, 30))
        clock.step = 10 * 60.0
        await campaign.run(smsvn.Failover(first, second), guard=guard, concurrency=2)
        clock.step = 0.0
        sent = await kinds(guard, "sent")
    assert all(7 <= datetime.fromtimestamp(e.at, ad.VIETNAM).hour < 22 for e in sent)
    counts = await campaign.counts()
    assert counts.pending == 0 and counts.sent == 400, counts
    assert Counter(sent_to(sb)) == dict.fromkeys(numbers, 1)


async def test_an_esms_resend_is_screened_again(
    journal: smsvn.Journal, clock: Clock, esms: ESMS, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: a campaign batch whose request may have been lost (eSMS: resent later under its
    ``RequestId``) skips every per-number check when it is resent (``Guard.screen``:
    ``if resend: return await send(numbers)``). If the first request never arrived, the
    resend is a first delivery, and it goes to a number that refused (or was put on the
    Do-Not-Call list) meanwhile.

    Fix (``Guard.screen``): screen a resend too, without taking the cap again (it was taken
    when the batch first left and kept, the outcome being unknown): run ``_screen`` on the
    numbers and, when any is kept, send nothing and report them blocked (the provider's
    deduplication makes a resend of the same request safe, not a resend of a changed one);
    only the cap is skipped::

        if resend:
            allowed, blocked = await self._screen(numbers, purpose, "sms", when)
            if blocked:
                return SendResult(provider=provider, message_id=None, recipients=(),
                                  invalid=tuple(blocked))  # or OutcomeUnknown: keep it unknown
            return await send(numbers)
    """
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add([A], content=AD)
        lost = sb.faults.add(Fault(kind="drop_before", provider="esms", route="send"))
        await campaign.run(esms, guard=guard)
        assert sent_to(sb) == []  # the requests never arrived
        sb.faults.remove(lost)
        clock.at(vn(1, 11))
        assert await guard.inbound(InboundSms(provider="esms", phone=A, content="TC"))
        await campaign.run(esms, guard=guard)
    assert sent_to(sb) == [], "an advertisement went to a number that had refused"


async def test_pruning_never_allows_a_second_registration_message(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: "one registration message per number, ever" (Art. 13(2), Circular 22 Art. 8) lasts
    a year: ``prune`` deletes the registration records with the rest, and the number can be
    asked again.

    Fix (``prune`` of every store, or ``Guard.prune`` passing kinds): never prune
    ``registration`` records (they are what "ever" is counted from; one row per number)::

        DELETE FROM smsvn_ad_events WHERE at < ? AND kind <> 'registration' ...
    """
    D = "0701234567"
    await guard.send(sms, D, REG, purpose="registration")
    clock.at(vn(1, 10) + timedelta(days=400))
    await guard.load_do_not_call([C], snapshot=guard.now().date())  # the list of that day
    await guard.prune()
    with pytest.raises(Blocked):
        await guard.send(sms, D, REG, purpose="registration")
    assert sent_to(sb) == [D], "a second registration message was sent"


async def test_pruning_never_lifts_a_refusal(clock: Clock, sms: SpeedSMS, sb: Sandbox) -> None:
    """BUG: a refusal is lifted only by a later consent (Art. 13(3)-(4)); but ``prune``
    deletes refusals older than a year, and with ``require_consent=False`` (a documented
    setting) advertising starts again to a number that refused.

    Fix (``prune``): keep a refusal while it is the latest of the number's consent/refusal
    records (prune only refusals superseded by a later consent), e.g. in SQL::

        DELETE ... WHERE at < ? AND NOT (kind = 'refusal' AND NOT EXISTS (
            SELECT 1 FROM smsvn_ad_events c WHERE c.advertiser = e.advertiser
            AND c.channel = e.channel AND c.phone = e.phone AND c.kind = 'consent'
            AND c.at > e.at))
    """
    rules = ad.Rules(advertiser="Shop ABC", brandname="SMSVN", require_consent=False)
    async with ad.Guard(rules, clock=clock) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.refuse(A)
        clock.at(vn(1, 10) + timedelta(days=400))
        await guard.load_do_not_call([], snapshot=guard.now().date())  # the list of that day
        await guard.prune()
        with pytest.raises(Blocked):
            await guard.send(sms, A, AD, purpose="advertising")
    assert sent_to(sb) == [], "advertising went to a number that refused (and never consented)"


async def test_holds_prune_keeps_a_year(guard: ad.Guard, clock: Clock, sms: SpeedSMS) -> None:
    """holds: nothing younger than ``keep_for`` (at least 365 days) is pruned."""
    await guard.send(sms, A, AD, purpose="advertising")
    before = [e async for e in guard.records()]
    clock.at(vn(1, 8) + timedelta(days=365) - timedelta(seconds=1))
    assert await guard.prune() == 0
    assert [e async for e in guard.records()] == before


async def test_records_of_a_send_name_its_message(
    guard: ad.Guard, sms: SpeedSMS, journal: smsvn.Journal, clock: Clock
) -> None:
    """BUG (records, Art. 11): ``AdEvent.detail`` is documented as "the campaign or message id
    of a send", but every ``sent`` record has ``detail=None`` (``_admit`` reserves with no
    detail and never adds the provider's message id): the records cannot be matched with the
    provider's or a campaign's.

    Fix: reserve with ``detail=campaign name`` in ``screen`` (``Guard.run`` knows it) and, after
    a send, record the message id (a ``Records.annotate(ids, detail)`` method, or reserve with
    the request id for eSMS)."""
    result = await guard.send(sms, A, AD, purpose="advertising")
    (event,) = await kinds(guard, "sent")
    assert event.detail is not None and str(result.message_id) in event.detail


async def test_holds_records_hold_every_kind_and_no_secret(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox, tmp_path: Path
) -> None:
    """holds: ``records``/``export_csv`` hold consents, sends, registrations, refusals and
    confirmations; no token appears in a record, a repr or an error."""
    D = "0701234567"
    await guard.send(sms, A, AD, purpose="advertising")
    await guard.send(sms, D, REG, purpose="registration")
    await guard.inbound(InboundSms(provider="speedsms", phone=B, content="stop"), sms)
    path = tmp_path / "records.csv"
    count = await guard.export_csv(path)
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == count
    assert {r["kind"] for r in rows} == {
        "consent",
        "sent",
        "registration",
        "refusal",
        "confirmation",
    }
    token = sb.client_options("speedsms")["token"]
    assert token not in path.read_text(encoding="utf-8")
    assert token not in repr(guard) and token not in repr(await kinds(guard, "sent"))
    async with sb.client("speedsms", token=token + "x", retry=FAST_RETRY) as wrong:
        with pytest.raises(SmsError) as caught:
            await guard.send(wrong, A, AD, purpose="advertising")
    assert token not in str(caught.value) and token not in repr(caught.value)


async def test_a_campaign_of_message_items_needs_a_do_not_call_snapshot(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: "no advertising without a loaded snapshot" is checked for a campaign's *shared*
    texts only (``Guard.run`` -> ``_check_message`` per ``campaign.texts()``); a campaign made
    of ``Message`` items has none, and each batch's screen checks the message but not the
    snapshot: with no Do-Not-Call list loaded at all, the advertisements go out.

    Fix (``Guard.screen``): check the snapshot there too (one read per batch, or once per
    run): call ``await self._check_message(content, purpose, "sms", when)`` in place of the
    bare ``message_problems``/``_check_hour`` pair."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.consent(A, how="form", at=vn(1, 8))  # no load_do_not_call
        campaign = await journal.campaign("items")
        await campaign.add([smsvn.Message(to=A, content=AD)])
        with contextlib.suppress(ad.ComplianceError):
            await campaign.run(sms, guard=guard)
    assert sent_to(sb) == [], "advertising left with no Do-Not-Call snapshot loaded"


async def test_a_campaign_send_date_outside_the_hours_is_refused(
    journal: smsvn.Journal, clock: Clock, esms: ESMS, sb: Sandbox
) -> None:
    """BUG: a guarded campaign passes ``send_date`` (eSMS's scheduled delivery) to every
    batch: checked at 10:00, delivered at 23:00. Fix: ``Guard.run`` refuses (or checks the hour
    of, and takes the cap at) a ``send_date`` option, as ``Guard.send`` should."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        campaign = await journal.campaign("scheduled")
        await campaign.add([A], content=AD)
        with contextlib.suppress(OutsideWindow, ValidationError):
            await campaign.run(esms, guard=guard, send_date=datetime(2026, 12, 1, 23, 0))
    assert sent_to(sb) == [], "an advertisement was scheduled for 23:00"


async def test_a_consent_dated_in_the_future_does_not_override_a_refusal(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: ``consent(at=...)`` takes any time, the future too (a date typo, a form's time in
    the wrong zone): a consent dated tomorrow beats a refusal made today, so the number that
    refused gets advertising until tomorrow (``_screen`` compares the times only).

    Fix (``Guard.consent`` / ``refuse``): a record's ``at`` may not be later than now (a
    second of slack): ``if at is not None and at.timestamp() > self._clock() + 1: raise
    ValidationError("a consent is recorded when it was given, not in the future")``."""
    D = "0701234567"
    try:
        await guard.consent(D, how="form", at=vn(2, 10))  # tomorrow
    except ValidationError:
        return  # refused: fixed
    assert await guard.inbound(InboundSms(provider="speedsms", phone=D, content="TC"))
    with pytest.raises(Blocked):
        await guard.send(sms, D, AD, purpose="advertising")
    assert sent_to(sb) == [], "a number that refused got advertising"


async def test_holds_registration_rules(
    guard: ad.Guard, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """holds: a registration message keeps the hours, never goes to a refusing or listed
    number, needs no consent, and goes once even when asked for at once from many tasks."""
    D, E = "0701234567", "0961234567"
    await guard.refuse(D)
    clock.at(vn(1, 22))
    with pytest.raises(OutsideWindow):
        await guard.send(sms, E, REG, purpose="registration")
    clock.at(vn(1, 12))
    with pytest.raises(Blocked) as caught:
        await guard.send(sms, [D, C], REG, purpose="registration")
    assert {n.rule for n in caught.value.blocked} == {Rule.REFUSED, Rule.DO_NOT_CALL}
    results = await asyncio.gather(
        *(guard.send(sms, E, REG, purpose="registration") for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert sent_to(sb) == [E]


async def test_holds_concurrent_refusals_are_confirmed_once(
    guard: ad.Guard, sms: SpeedSMS, sb: Sandbox
) -> None:
    """holds: the same refusal delivered five times at once (webhook retries) -> one
    confirmation."""
    reply = InboundSms(provider="speedsms", phone="+84 912 345 678", content="TC")
    assert all(await asyncio.gather(*(guard.inbound(reply, sms) for _ in range(5))))
    assert sent_to(sb) == [A]


async def test_a_guarded_run_with_claim_for_does_not_sleep_through_the_night(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG: ``claim_for`` promises a run that ends in about that time (a task queue's worker
    uses it), but a guarded run started outside the hours sleeps until 07:00 first
    (``Guard.run``: ``await self._sleep(wait)`` whatever ``claim_for`` is): a 60-second task
    started at 22:30 holds its worker for 8.5 hours.

    Fix (``Guard.run``): with ``claim_for``, sleep at most what is left of it, and end the run
    (a report with everything still pending) when the window does not open in time::

        if claim_for is not None:
            left = claim_for - (time.monotonic() - started)
            if wait >= left:
                break        # and return an empty report when ``parts`` is empty
    """
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add([A], content=AD)
        clock.at(vn(1, 22, 30))
        with contextlib.suppress(Exception):
            await campaign.run(sms, guard=guard, claim_for=60.0)
    assert sum(clock.slept) <= 60.0, f"a 60 s run waited {sum(clock.slept) / 3600:.1f} hours"


async def test_holds_an_esms_campaign_marked_ahead_never_sends_after_22(
    journal: smsvn.Journal, clock: Clock, esms: ESMS, sb: Sandbox
) -> None:
    """holds: eSMS marks batches in flight ahead of their slot; at 22:00 those are handed back
    unsent (their request ids forgotten) and sent from 07:00, each number once."""
    numbers = [f"09{n:08d}" for n in range(1, 121)]
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        for number in numbers:
            await guard.consent(number, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add(numbers, content=AD)
        clock.at(vn(1, 21))
        clock.step = 60.0
        await campaign.run(esms, guard=guard, concurrency=8)
        clock.step = 0.0
        sent = await kinds(guard, "sent")
    assert clock.slept
    assert all(7 <= datetime.fromtimestamp(e.at, ad.VIETNAM).hour < 22 for e in sent)
    assert Counter(sent_to(sb)) == dict.fromkeys(numbers, 1)
    assert (await campaign.counts()).sent == 120


async def test_a_resend_delivered_later_is_counted_when_it_was_delivered(
    journal: smsvn.Journal, clock: Clock, esms: ESMS, sb: Sandbox
) -> None:
    """BUG: a campaign batch whose request was lost (eSMS, outcome unknown) at 21:00 keeps its
    cap stamped 21:00; its resend under the same ``RequestId`` goes out the next morning at
    08:00, uncounted (``screen``: ``if resend: return await send(numbers)``). At 21:30 that
    day the 21:00 stamp is out of the 24 hours, and three more pass: 4 advertising SMS to one
    number between 08:00 and 21:30.

    Fix (``Guard.screen``): when a resend leaves, move its reservation to now (the message is
    delivered now, or was then: counting it at the later time is the safe side): a
    ``Records.restamp(advertiser, kind, channel, phones, at)`` that sets ``at`` of the
    numbers' latest unsettled reservation to ``max(at, now)``; or take a new reservation for
    the resend and forget the old one when the resend was accepted."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add([A], content=AD)
        clock.at(vn(1, 21))
        lost = sb.faults.add(Fault(kind="drop_before", provider="esms", route="send"))
        await campaign.run(esms, guard=guard)
        sb.faults.remove(lost)
        assert sent_to(sb) == []
        clock.at(vn(2, 8))
        await campaign.run(esms, guard=guard)  # the resend: delivered now
        assert sent_to(sb) == [A]
        clock.at(vn(2, 21, 30))
        for _ in range(3):
            with contextlib.suppress(Blocked):
                await guard.send(esms, A, AD, purpose="advertising")
    assert len(sent_to(sb)) <= 3, f"{len(sent_to(sb))} advertising SMS to {A} in 13.5 hours"


async def test_one_advertisers_prune_keeps_another_advertisers_records(
    journal: smsvn.Journal, clock: Clock
) -> None:
    """BUG: ``Guard.prune`` deletes every advertiser's records older than *its own*
    ``keep_for`` (``Records.prune(before)`` has no advertiser), so in a shared journal the
    guard of an advertiser keeping a year deletes the records another keeps for two (their
    consents, refusals, sends: Art. 11 records).

    Fix: ``Records.prune(before, advertiser=...)`` (``AND advertiser = ?`` in each store), and
    ``Guard.prune`` passes ``self.rules.advertiser``."""
    two_years = ad.Rules(advertiser="Shop XYZ", brandname="SHOPXYZ", keep_for=2 * YEAR)
    async with (
        ad.Guard(two_years, journal, clock=clock) as keeper,
        ad.Guard(RULES, journal, clock=clock) as other,
    ):
        await keeper.consent(A, how="form")
        await keeper.refuse(B)
        before = [e async for e in keeper.records()]
        clock.at(vn(1, 10) + timedelta(days=400))
        await other.prune()
        assert [e async for e in keeper.records()] == before, (
            "another advertiser's prune deleted them"
        )


async def test_a_campaign_cancelled_after_its_request_left_keeps_its_cap(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """BUG (as ``test_a_send_cancelled_after_its_request_left_keeps_its_cap``, campaign path):
    a guarded campaign cancelled while its request is out (the provider has it) gives the
    cap back; the message is delivered and uncounted, and the next send passes."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        for _ in range(2):
            await guard.send(sms, A, AD, purpose="advertising")
        campaign = await journal.campaign("promo")
        await campaign.add([A], content=AD)
        slow = sb.faults.add(Fault(kind="latency", provider="speedsms", route="send", seconds=0.5))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(campaign.run(sms, guard=guard), 0.2)
        await asyncio.sleep(0.6)
        sb.faults.remove(slow)
        assert sent_to(sb) == [A] * 3  # the campaign's request was delivered
        with contextlib.suppress(Blocked):
            await guard.send(sms, A, AD, purpose="advertising")
    assert len(sent_to(sb)) <= 3, f"{len(sent_to(sb))} advertising SMS to {A} in a day"


async def test_a_guard_on_a_journal_works_or_says_why_before_it_is_opened(
    journal: smsvn.Journal,
) -> None:
    """BUG (small): a guard on a journal used without ``async with`` (or ``open()``) fails with
    a bare ``sqlite3.OperationalError: no such table: smsvn_ad_events``.

    Fix (``Guard``): open the records on first use (an ``asyncio.Lock``-guarded
    ``_ensure_open()`` at the top of every public method), or raise
    ``ValidationError("open the guard first: async with Guard(...)")``."""
    guard = ad.Guard(RULES, journal)
    try:
        await guard.consent(A, how="form")
    except ValidationError:
        return
    assert [e.kind async for e in guard.records()] == ["consent"]


async def test_a_blocked_number_in_a_batch_of_unknown_outcome_is_not_recorded_unknown(
    journal: smsvn.Journal, clock: Clock, sms: SpeedSMS, sb: Sandbox
) -> None:
    """Was a bug (bookkeeping): a SpeedSMS campaign batch whose request ended
    ``OutcomeUnknown`` was settled ``unknown`` as a whole, the numbers the guard kept from it
    (Do-Not-Call, refused) included, though they certainly were not sent. Fixed: the screen
    raises ``bulk.Withheld`` naming them; they are recorded ``invalid`` with their reason."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([C], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add([A, C], content=AD)
        sb.faults.add(Fault(kind="drop_after", provider="speedsms", route="send", times=1))
        report = await campaign.run(sms, guard=guard)
    assert sent_to(sb) == [A]
    states = {r.phone: (r.state, r.error) async for r in campaign.recipients()}
    assert states[C] == ("invalid", "blocked: Do-Not-Call list (snapshot of 2026-11-30)")
    assert states[A][0] == "unknown"
    assert [str(n) for n in report.invalid] == [C]
    assert [n for numbers, _ in report.unknown for n in numbers] == [A]


async def test_holds_an_esms_resend_is_screened_again_and_sent_once(
    journal: smsvn.Journal, clock: Clock, esms: ESMS, sb: Sandbox
) -> None:
    """holds: an eSMS batch (one number each) whose answers were all lost goes back for a
    resend under its ``RequestId``; the next run screens it again, sends it once (eSMS
    deduplicates it), and the blocked number stays ``invalid``."""
    async with ad.Guard(RULES, journal, clock=clock, sleep=clock.sleep) as guard:
        await guard.load_do_not_call([C], snapshot="2026-11-30")
        await guard.consent(A, how="form", at=vn(1, 8))
        campaign = await journal.campaign("promo")
        await campaign.add([A, C], content=AD)
        lost = sb.faults.add(Fault(kind="drop_after", provider="esms", route="send"))
        await campaign.run(esms, guard=guard)  # every answer is lost: back for a resend
        sb.faults.remove(lost)
        states = {r.phone: r.state async for r in campaign.recipients()}
        assert states == {A: "pending", C: "invalid"}
        await campaign.run(esms, guard=guard)  # the resend, under the same RequestId
    states = {r.phone: r.state async for r in campaign.recipients()}
    assert states == {A: "sent", C: "invalid"}
    assert sent_to(sb) == [A]  # eSMS took the first request; the resend was deduplicated
