"""Red-team tests of the public entry points with wrong types and hostile values.

The rule under test (DESIGN.md, principle 5): bad input gets a clear, typed error
(``smsvn.errors.ValidationError``, which is also a ``ValueError``, or another ``SmsError``) and
loses nothing; never a bare ``TypeError``, ``AttributeError``, ``OverflowError``,
``UnicodeError`` or a store's (sqlite3, asyncpg, redis) own exception. Each test names what it
raised when it was written (each failed until its fix), where it came from, and the fix. A test
marked "passes: regression guard" pins a probe that held.

Not repeated here: what ``test_bounds``, ``test_fuzz_parsers``, ``test_bulk_attacks``,
``test_otp_attacks`` and ``test_advertising_attacks`` already try.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smsvn
from smsvn import ESMS, Hooks, Message, RateLimit, RetryPolicy, SpeedSMS, otp, webhooks
from smsvn import advertising as ad
from smsvn.errors import SmsError, ValidationError
from smsvn.sandbox import Sandbox
from tests.test_advertising import AD, RULES, A, B, C, Clock, vn

N = "0912345678"
SECRET = "s3cret-key-for-the-otp-hmac-0123456789"
WEBHOOK_SECRET = "a" * 32


class Text(str):
    """A ``str`` subclass (an ORM's or a validation library's string type)."""


def _sent(sb: Sandbox) -> int:
    return sum(sb.requests.values())


async def _outcome(call: Callable[[], object]) -> str | None:
    """None when ``call`` raised an ``SmsError``; otherwise what it did instead."""
    try:
        result = call()
        if isinstance(result, Awaitable):
            await result
    except SmsError:
        return None
    except Exception as exc:
        return f"{type(exc).__module__}.{type(exc).__name__}: {exc!r}"[:300]
    return "accepted"


# == Journal URLs ================================================================================


def _sqlite_paths(tmp: Path) -> dict[str, str]:
    return {
        "a-directory": str(tmp),
        "nul-in-path": str(tmp / "a\x00b.db"),
        "nul-in-url": "sqlite:///" + str(tmp / "a\x00b.db"),
        "lone-surrogate": str(tmp / "\ud800.db"),  # not even surrogateescape can encode it
    }


@pytest.mark.parametrize("case", ["a-directory", "nul-in-path", "nul-in-url", "lone-surrogate"])
async def test_a_journal_path_sqlite_cannot_open_is_a_validation_error(
    case: str, tmp_path: Path
) -> None:
    """BUG: ``Journal(<a directory>)`` raises ``sqlite3.OperationalError: unable to open database
    file`` at open; a NUL in the path a bare ``ValueError: embedded null byte``; a lone surrogate
    that no file system encoding takes (``\\ud800``) ``UnicodeEncodeError``. All from
    ``smsvn/journal/_sqlite.py:318`` (``_connect``: ``sqlite3.connect(path)``).

    Fix: in ``_open_store`` refuse a path with NUL or one that does not encode as UTF-8
    (``path.encode("utf-8")`` in a try), and in ``_connect`` refuse an existing directory and
    turn ``sqlite3.OperationalError`` from ``connect`` into ``ValidationError(f"cannot open the
    journal file {path!r}")``."""
    url = _sqlite_paths(tmp_path)[case]
    with pytest.raises(ValidationError):
        async with smsvn.Journal(url) as journal:
            await journal.campaign("x")


def _pg(dsn: str, **parts: str) -> str:
    """``dsn`` with its port or database replaced."""
    from urllib.parse import urlsplit, urlunsplit

    split = urlsplit(dsn)
    netloc = split.netloc
    if "port" in parts:
        netloc = netloc.rsplit(":", 1)[0] + ":" + parts["port"]
    path = "/" + parts["db"] if "db" in parts else split.path
    return urlunsplit((split.scheme, netloc, path, split.query, split.fragment))


@pytest.mark.parametrize("case", ["port-out-of-range", "surrogate-in-db", "nul-in-db"])
async def test_a_postgres_url_asyncpg_chokes_on_is_a_validation_error(
    case: str, postgres_dsn: str
) -> None:
    """BUG: a PostgreSQL journal URL with port 99999 raises ``OverflowError: connect(): port
    must be 0-65535``; a lone surrogate in the database name ``AttributeError: 'Protocol' object
    has no attribute '_on_error'`` (asyncpg's internals); a NUL asyncpg's
    ``ProtocolViolationError``. From ``smsvn/journal/_postgres.py:275``
    (``asyncpg.create_pool``), which turns only ``ValueError`` into ``ValidationError``.

    Fix: check the URL before connecting (``urllib.parse.urlsplit(url).port`` inside a try,
    which raises ``ValueError`` for a port out of range; refuse NUL and text that does not
    encode as UTF-8), and catch ``OverflowError`` with ``ValueError`` around ``create_pool``."""
    url = {
        "port-out-of-range": _pg(postgres_dsn, port="99999"),
        "surrogate-in-db": _pg(postgres_dsn, db="te\ud800st"),
        "nul-in-db": _pg(postgres_dsn, db="test\x00"),
    }[case]
    with pytest.raises(ValidationError):
        async with smsvn.Journal(url) as journal:
            await journal.campaign("x")


# == Campaign.add ================================================================================


@pytest.fixture(params=["sqlite", "postgres"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[smsvn.Journal]:
    if request.param == "sqlite":
        url = str(tmp_path / "journal.db")
    else:
        url = request.getfixturevalue("postgres_dsn")
    async with smsvn.Journal(url) as opened:
        yield opened


async def _fresh(journal: smsvn.Journal) -> smsvn.journal.Campaign:
    return await journal.campaign(f"redteam-{uuid.uuid4().hex}")


@pytest.mark.parametrize(
    ("items", "content"),
    [
        ([A, "09\ud800", B], "hi"),
        ([Message(A, "hi"), Message("\ud800", "hi"), Message(B, "hi")], None),
        ([Message(A, "hi"), Message(C, "hi", "\ud800"), Message(B, "hi")], None),
    ],
    ids=["number", "message-to", "message-request-id"],
)
async def test_one_input_with_a_lone_surrogate_loses_its_whole_chunk(
    journal: smsvn.Journal, items: list[object], content: str | None
) -> None:
    """BUG: one input holding a lone surrogate (JSON's ``"\\ud800"`` decodes to one; so does a
    non-UTF-8 byte read with ``surrogateescape``) makes ``campaign.add`` raise
    ``UnicodeEncodeError`` and adds *nothing* of its chunk (up to 20,000 rows): the good numbers
    beside it are lost too. The invalid row's ``given`` text (``_clip(item)``,
    ``smsvn/journal/_intake.py:131`` / ``_shown`` for a ``Message``) is written as is:
    ``smsvn/journal/_sqlite.py:933`` (``executemany``) / asyncpg's encoder fail on it.

    Fix: in ``_intake``, make every text stored for an invalid row encodable
    (``value.encode("utf-8", "backslashreplace").decode()`` in ``_clip``), and refuse a
    ``request_id`` that does not encode as UTF-8 as an invalid row."""
    campaign = await _fresh(journal)
    added = await campaign.add(items, content=content)
    counts = await campaign.counts()
    assert (counts.pending, counts.invalid) == (2, 1), added


@pytest.mark.parametrize(
    ("items", "content"),
    [
        ([A, N[:-1] + "7\x00", B], "hi"),
        ([Message(A, "hi"), Message(C, "hi", "id\x00"), Message(B, "hi")], None),
    ],
    ids=["number", "message-request-id"],
)
async def test_postgres_a_nul_in_one_input_loses_its_whole_chunk(
    postgres_dsn: str, items: list[object], content: str | None
) -> None:
    """BUG (PostgreSQL): an input with a NUL (``"0912345677\\x00"``, refused as invalid by
    SQLite) raises asyncpg's ``CharacterNotInRepertoireError`` (PostgreSQL text cannot hold
    NUL) and adds nothing of its chunk; a ``Message.request_id`` with a NUL is even accepted as
    pending on SQLite. From ``smsvn/journal/_postgres.py`` (the chunk's ``copy``/``executemany``).

    Fix: in ``_intake``, replace NUL in every stored text of an invalid row (``_clip``), and
    refuse a ``request_id`` with control characters (``text.is_encodable`` is the check that
    content already gets)."""
    async with smsvn.Journal(postgres_dsn) as journal:
        campaign = await _fresh(journal)
        added = await campaign.add(items, content=content)
        counts = await campaign.counts()
    assert (counts.pending, counts.invalid) == (2, 1), added


async def test_a_str_subclass_number_is_refused_as_having_no_text(
    journal: smsvn.Journal,
) -> None:
    """BUG: ``campaign.add([Text("0912345678")], content="hi")`` (a ``str`` subclass: what
    pydantic, Django or an ORM cursor may hand over) records the number as *invalid* with the
    wrong reason "a number needs the campaign's text", though the text is right there; the
    clients send to it fine. ``smsvn/journal/_intake.py:150`` takes numbers only when
    ``type(item) is str``; ``_other`` (``:205``) then takes any other ``str`` for a number
    without content.

    Fix: in ``Intake._other``, when ``self.content is not None`` and ``isinstance(item, str)``,
    handle it as a plain number (``str(item)``)."""
    campaign = await _fresh(journal)
    await campaign.add([Text(A)], content="hi")
    rows = [r async for r in campaign.recipients()]
    assert [(r.phone, r.state) for r in rows] == [(A, "pending")], rows


async def test_a_campaign_name_with_a_lone_surrogate_is_a_validation_error(
    journal: smsvn.Journal,
) -> None:
    """BUG: ``journal.campaign("\\ud800")`` raises ``UnicodeEncodeError`` (SQLite,
    ``smsvn/journal/_sqlite.py:429``) or asyncpg's ``DataError`` (PostgreSQL). ``check_name``
    (``smsvn/journal/_campaign.py:145``) checks only type and length.

    Fix: in ``check_name`` refuse text that does not encode as UTF-8 and control characters
    (``text.is_encodable(name)``)."""
    with pytest.raises(ValidationError):
        await journal.campaign("\ud800")


async def test_postgres_a_campaign_name_with_a_nul_is_a_validation_error(
    postgres_dsn: str,
) -> None:
    """BUG (PostgreSQL): ``journal.campaign("a\\x00b")`` raises asyncpg's
    ``CharacterNotInRepertoireError`` (SQLite takes the name: one name, two behaviours).

    Fix: the same ``check_name`` check (refuse control characters)."""
    async with smsvn.Journal(postgres_dsn) as journal:
        with pytest.raises(ValidationError):
            await journal.campaign("a\x00b")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=14),
            st.sampled_from([A, B, C, "+84 912 345 678"]),
            st.builds(Text, st.sampled_from([A, B])),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_every_string_input_of_add_is_accounted_for(tmp_path: Path, items: list[str]) -> None:
    """BUG (property): whatever strings ``campaign.add`` is given, each is one row (pending,
    invalid or duplicate), nothing raises, and every valid number is pending or a duplicate.
    Hypothesis finds a lone surrogate (``UnicodeEncodeError``, the chunk lost) and a ``str``
    subclass (refused as "needs the campaign's text") at once; see the two tests above."""

    async def attempt() -> tuple[smsvn.journal.Counts, int]:
        async with smsvn.Journal(str(tmp_path / f"{uuid.uuid4().hex}.db")) as journal:
            campaign = await journal.campaign("c")
            await campaign.add(items, content="hi")
            valid = 0
            for item in items:
                try:
                    smsvn.phone.normalize(str(item))
                    valid += 1
                except ValidationError:
                    pass
            return await campaign.counts(), valid

    counts, valid = asyncio.run(attempt())
    assert counts.pending + counts.invalid + counts.duplicate == len(items)
    assert counts.pending + counts.duplicate == valid


# == Campaign.run / resolve / reconcile ==========================================================


@pytest.fixture
async def sqlite_journal(tmp_path: Path) -> AsyncIterator[smsvn.Journal]:
    async with smsvn.Journal(str(tmp_path / "journal.db")) as opened:
        yield opened


@pytest.mark.parametrize(
    "options",
    [
        {"claim_for": 10**400},
        {"guard": "not a guard"},
        {"on_progress": "not callable"},
        {"on_result": 5},
        {"bogus_option": 1},
    ],
    ids=["claim_for-huge-int", "guard-str", "on_progress-str", "on_result-int", "unknown-option"],
)
async def test_bad_run_arguments_are_validation_errors_before_anything_is_sent(
    sqlite_journal: smsvn.Journal, sb: Sandbox, options: dict[str, Any]
) -> None:
    """BUG: ``campaign.run(client, ...)`` with

    - ``claim_for=10**400``: ``OverflowError`` (``check_claim_for``,
      ``smsvn/journal/_runner.py:519``: ``math.isfinite`` of a huge int);
    - ``guard="..."``: ``AttributeError: 'str' object has no attribute 'run'``
      (``smsvn/journal/_campaign.py:319``);
    - ``on_progress``/``on_result`` not callable: the batch is *sent*, then the run stops with
      ``TypeError: 'str' object is not callable`` and the caller gets no report;
    - an unknown send option: ``TypeError: SpeedSMS.batch_sender() got an unexpected keyword
      argument`` (an internal name).

    Fix: ``check_claim_for``: compare before ``math.isfinite`` (``not 0 < claim_for <
    CLAIM_FOR_MAX`` first) or catch ``OverflowError``; ``run``: ``guard`` must have a callable
    ``run``, ``on_progress``/``on_result`` must be callable or None; ``Source.prepare``: turn
    the ``TypeError`` of ``batch_sender(**options)`` into ``ValidationError`` naming the
    option."""
    campaign = await sqlite_journal.campaign("c")
    await campaign.add([N], content="hi")
    async with sb.client("speedsms") as sms:
        with pytest.raises(ValidationError):
            await campaign.run(sms, **options)
    assert _sent(sb) == 0
    assert (await campaign.counts()).pending == 1


@pytest.mark.parametrize("note", [5, "\ud800", b"note"], ids=["int", "surrogate", "bytes"])
async def test_a_bad_resolve_note_is_a_validation_error(
    journal: smsvn.Journal, note: object
) -> None:
    """BUG: ``campaign.resolve("sent", note="\\ud800")`` raises ``UnicodeEncodeError``
    (SQLite) / asyncpg ``DataError`` (PostgreSQL); ``note=5`` is asyncpg's ``DataError: expected
    str, got int`` on PostgreSQL and stored as the text ``'5'`` on SQLite (one input, two
    behaviours). ``smsvn/journal/_campaign.py:488`` passes ``note`` on unchecked.

    Fix: ``if note is not None and (not isinstance(note, str) or not text.is_encodable(note)):
    raise ValidationError("note must be a str")`` (and clip it, as ``detail`` is elsewhere)."""
    campaign = await _fresh(journal)
    await campaign.add([N], content="hi")
    with pytest.raises(ValidationError):
        await campaign.resolve("sent", note=note)  # type: ignore[arg-type]


@pytest.mark.parametrize("client", [None, "esms", 5], ids=["None", "str", "int"])
async def test_reconcile_with_something_that_is_not_a_client(
    sqlite_journal: smsvn.Journal, client: object
) -> None:
    """BUG: ``campaign.reconcile(None)`` raises ``AttributeError: 'NoneType' object has no
    attribute 'provider'``: the error message itself reads ``client.provider``
    (``smsvn/journal/_campaign.py:417``).

    Fix: ``getattr(client, "provider", type(client).__name__)`` in the message."""
    campaign = await sqlite_journal.campaign("c")
    with pytest.raises(ValidationError):
        await campaign.reconcile(client)  # type: ignore[arg-type]


# == client constructors ==========================================================================


@pytest.mark.parametrize(
    "build",
    [
        lambda: SpeedSMS("tok", timeout=10**400),
        lambda: SpeedSMS("tok", max_wait=10**400),
        lambda: SpeedSMS("tok", deadline=10**400),
        lambda: SpeedSMS("\ud800"),
        lambda: SpeedSMS("tok", sms_type=[2]),  # type: ignore[arg-type]
        lambda: ESMS("key", "secret", sms_type=[2]),  # type: ignore[arg-type]
        lambda: ESMS("key", "secret", sms_type=True),
        lambda: SpeedSMS("tok", max_connections=True),
        lambda: SpeedSMS("tok", base_url="http://[::1"),
        lambda: SpeedSMS("tok", retry="fast"),  # type: ignore[arg-type]
        lambda: SpeedSMS("tok", hooks="x"),  # type: ignore[arg-type]
        lambda: SpeedSMS("tok", hooks=Hooks(on_request="x")),  # type: ignore[arg-type]
        lambda: SpeedSMS("tok", session="x"),  # type: ignore[arg-type]
        lambda: RateLimit(requests=1, period=10**400),
        lambda: RateLimit(requests=10**400, period=1.0),
        lambda: RetryPolicy(max_retries="2"),  # type: ignore[arg-type]
        lambda: RetryPolicy(max_retries=True),
        lambda: RetryPolicy(backoff_base=float("nan")),
        lambda: RetryPolicy(max_rate_limit_wait=float("nan")),
    ],
    ids=[
        "timeout-huge-int",
        "max_wait-huge-int",
        "deadline-huge-int",
        "token-surrogate",
        "speedsms-sms_type-list",
        "esms-sms_type-list",
        "esms-sms_type-bool",
        "max_connections-bool",
        "base_url-bad-ipv6",
        "retry-str",
        "hooks-str",
        "hooks-callback-str",
        "session-str",
        "ratelimit-period-huge-int",
        "ratelimit-requests-huge-int",
        "retrypolicy-max_retries-str",
        "retrypolicy-max_retries-bool",
        "retrypolicy-backoff-nan",
        "retrypolicy-max_rate_limit_wait-nan",
    ],
)
def test_bad_construction_is_a_validation_error(build: Callable[[], object]) -> None:
    """BUG: each of these is accepted, or fails with a bare error, instead of a
    ``ValidationError`` at construction:

    - a duration of ``10**400``: ``OverflowError`` from ``math.isfinite``
      (``checked_seconds``, ``smsvn/providers/_base.py:479``; ``RateLimit.__post_init__``,
      ``smsvn/limits.py:66``). ``RateLimit(requests=10**400)`` is accepted and every send then
      raises ``OverflowError`` in the limiter;
    - ``SpeedSMS("\\ud800")``: ``UnicodeEncodeError`` (the account digest);
    - ``sms_type=[2]``: ``TypeError: unhashable type`` (``_check_type``: ``sms_type not in
      SMS_TYPES``, ``speedsms.py:477``, ``esms.py:961``); ``ESMS(sms_type=True)`` is taken as
      type 1 (advertising) and sent as JSON ``true``; ``max_connections=True`` as 1;
    - ``base_url="http://[::1"``: a bare ``ValueError: Invalid IPv6 URL`` from ``urlsplit``
      (``checked_url``, ``_base.py:489``);
    - ``retry``/``hooks``/``session`` of the wrong type are accepted, then fail mid-call:
      ``retry="fast"`` raises ``AttributeError: 'str' object has no attribute
      'max_rate_limit_wait'`` *after the request left* (on a 429), ``hooks="x"`` and
      ``session="x"`` an ``AttributeError`` at the first call;
    - ``RetryPolicy`` checks nothing: ``max_retries="2"`` fails at the first retry
      (``TypeError``), ``max_rate_limit_wait=nan`` turns the cap on waiting for 429s off
      (``waited + hint > nan`` is never true).

    Fix: ``checked_seconds``/``RateLimit``: compare before ``math.isfinite`` (or catch
    ``OverflowError``) and bound ``requests``; ``_check_type``: ``isinstance(sms_type, int) and
    not isinstance(sms_type, bool)`` first; ``max_connections``: refuse bool; ``checked_url``:
    ``urlsplit`` inside ``try/except ValueError``; check ``retry`` is a ``RetryPolicy``,
    ``hooks`` a ``Hooks`` with callable-or-None fields, ``session`` an
    ``aiohttp.ClientSession``; give ``RetryPolicy`` and ``Hooks`` a ``__post_init__`` that
    checks types and finiteness."""
    with pytest.raises(ValidationError):
        build()


# == per-send options ===========================================================================


_SEND_CASES: dict[str, tuple[str, Callable[[Any], Awaitable[object]]]] = {
    "speedsms-sms_type-list": ("speedsms", lambda c: c.send(N, "hi", sms_type=[2])),
    "speedsms-sender-surrogate": (
        "speedsms",
        lambda c: c.send(N, "hi", sms_type=3, sender="\ud800"),
    ),
    "speedsms-voice-code-int": ("speedsms", lambda c: c.voice_otp(N, 1234)),
    "esms-sms_type-list": ("esms", lambda c: c.send(N, "hi", sms_type=[2])),
    "esms-brandname-surrogate": ("esms", lambda c: c.send(N, "hi", brandname="\ud800")),
    "esms-request_id-int": ("esms", lambda c: c.send(N, "hi", request_id=5)),
    "esms-request_id-surrogate": ("esms", lambda c: c.send(N, "hi", request_id="\ud800")),
    "esms-request_id-bytes": ("esms", lambda c: c.send(N, "hi", request_id=b"order-1")),
    "esms-request_id-list": ("esms", lambda c: c.send(N, "hi", request_id=["order-1"])),
    "esms-send_date-max-aware": (
        "esms",
        lambda c: c.send(N, "hi", send_date=datetime.max.replace(tzinfo=UTC)),
    ),
    "esms-send_date-min-aware": (
        "esms",
        lambda c: c.send(
            N, "hi", send_date=datetime.min.replace(tzinfo=timezone(timedelta(hours=8)))
        ),
    ),
    "esms-callback_url-int": ("esms", lambda c: c.send(N, "hi", callback_url=5)),
    "esms-callback_url-surrogate": (
        "esms",
        lambda c: c.send(N, "hi", callback_url="https://\ud800/x"),
    ),
    "esms-voice-code-int": ("esms", lambda c: c.voice_otp(N, 1234)),
    "esms-voice-voice-list": ("esms", lambda c: c.voice_otp(N, "1234", voice=["x"])),
    "esms-voice-callback_url-int": ("esms", lambda c: c.voice_otp(N, "1234", callback_url=5)),
    "esms-call_template-variables-ints": ("esms", lambda c: c.call_template(N, "1001", [1, 2])),
    "esms-call_template-variables-None": ("esms", lambda c: c.call_template(N, "1001", None)),
    "esms-call_record-max_repeat-str": ("esms", lambda c: c.call_record(N, "2001", max_repeat="3")),
    "esms-call_record-forward_number-int": (
        "esms",
        lambda c: c.call_record(N, "2001", forward_number=5),
    ),
    "esms-sent_messages-str": ("esms", lambda c: c.sent_messages("2026-01-01", "2026-01-02")),
    "esms-sent_messages-None": ("esms", lambda c: c.sent_messages(None, None)),
    "esms-sent_messages-max-aware": (
        "esms",
        lambda c: c.sent_messages(
            datetime.max.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        ),
    ),
    "fibo-sender-int": ("fibo", lambda c: c.send(N, "hi", sender=5)),
    "speedsms-bulk-on_progress-str": (
        "speedsms",
        lambda c: c.send_bulk([N], "hi", on_progress="x"),
    ),
    "speedsms-bulk-unknown-option": ("speedsms", lambda c: c.send_bulk([N], "hi", bogus=1)),
}


@pytest.mark.parametrize("case", list(_SEND_CASES))
async def test_bad_send_options_are_validation_errors_and_send_nothing(
    case: str, sb: Sandbox
) -> None:
    """BUG: each per-call option here escapes as a bare error (or leaves): what it raised when
    written, and where:

    - ``sms_type=[2]``: ``TypeError: unhashable type`` (``_check_type``, ``speedsms.py:477``,
      ``esms.py:961``);
    - a lone surrogate in ``sender``/``brandname``/``request_id``/``callback_url``:
      ``UnicodeEncodeError`` from the JSON encoder (``speedsms.py:319``; eSMS's body); Fibo
      already refuses it (``ValidationError``);
    - ``voice_otp(to, 1234)``: ``AttributeError: 'int' object has no attribute 'isascii'``
      (``speedsms.py:369``, ``esms.py:718``);
    - ``request_id=5``: ``TypeError: object of type 'int' has no len()``
      (``_check_request_id``, ``esms.py:971``); ``b"order-1"`` is *sent* (msgspec base64-encodes
      bytes: another RequestId than the caller's); ``["order-1"]`` is sent three times and ends
      as ``MalformedResponse`` (HTTP 400);
    - ``send_date=datetime.max`` (aware): ``OverflowError`` (``_send_date``,
      ``esms.py:1077``: ``astimezone``); ``sent_messages`` likewise (``_day``, ``esms.py:1085``),
      and ``AttributeError``/``TypeError`` for a str or None;
    - ``callback_url=5``: ``AttributeError: 'int' object has no attribute 'decode'``;
    - ``voice=["x"]``: ``TypeError: unhashable type`` (``_check_voice``, ``esms.py:1023``);
    - ``call_template(variables=[1, 2] | None)``, ``call_record(max_repeat="3",
      forward_number=5)``: ``TypeError``;
    - Fibo ``sender=5``: ``TypeError: expected string or bytes-like object``;
    - ``send_bulk(on_progress="x")``: the batch is *sent*, then ``TypeError: 'str' object is
      not callable`` and no report; an unknown option: ``TypeError`` naming
      ``batch_sender()``.

    Fix: check each option's type where its value is checked (``isinstance(x, str)`` and
    ``text.is_encodable`` for text options; ``str(x)`` for ``str`` subclasses before encoding;
    bool-free ``int`` for numbers; ``try: when.astimezone(...) except OverflowError`` for
    dates; ``callable`` for callbacks) and raise ``ValidationError`` naming the option."""
    provider, call = _SEND_CASES[case]
    async with sb.client(provider) as client:
        outcome = await _outcome(lambda: call(client))
        if outcome is None:
            with pytest.raises(ValidationError):
                await call(client)
    assert outcome is None, outcome
    assert _sent(sb) == 0, "a request left for an argument that is bad on its face"


async def test_a_str_subclass_option_goes_as_the_text_it_holds(sb: Sandbox) -> None:
    """A ``str`` subclass (a web framework's safe string) as content or request id raised
    msgspec's ``TypeError: Encoding objects of type Text is unsupported`` (SpeedSMS, eSMS) while
    Fibo took it: every client now sends the plain text it holds."""
    for provider in ("speedsms", "esms", "fibo"):
        async with sb.client(provider) as client:
            await client.send(N, Text("hi there"))
    assert [r.content for r in sb.outbox] == ["hi there"] * 3
    async with sb.client("esms") as esms:
        result = await esms.send(N, "hi", request_id=Text("order-1"))
    assert result.request_id == "order-1" and result.request_id.__class__ is str


# == OTP ==========================================================================================


class _FakeSms:
    provider = "fake"

    async def send(self, to: str, content: str) -> smsvn.SendResult:
        return smsvn.SendResult(provider="fake", message_id="1", recipients=(to,), invalid=())


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 10**400},
        {"resend_after": 10**400},
        {"max_wait": 10**400},
        {"deadline": 10**400},
        {"secret": "\ud800" * 16},
    ],
    ids=["ttl", "resend_after", "max_wait", "deadline", "secret-surrogates"],
)
def test_verifier_options_that_overflow_or_cannot_encode(options: dict[str, Any]) -> None:
    """BUG: a duration of ``10**400`` (an int: ``test_otp_attacks`` tries the float ``1e17``)
    raises ``OverflowError: int too large to convert to float`` (``_seconds``,
    ``smsvn/otp/_verifier.py:578``: ``math.isfinite``); a ``secret`` str of lone surrogates
    ``UnicodeEncodeError`` (``_Key``, ``_verifier.py:165``: ``secret.encode()``).

    Fix: ``_seconds``: ``value > _MAX_SECONDS`` before ``math.isfinite`` (or catch
    ``OverflowError``); ``_Key``: ``try: secret.encode() except UnicodeEncodeError: raise
    ValidationError("secret must be text that encodes as UTF-8")``."""
    kwargs: dict[str, Any] = {"secret": SECRET, **options}
    with pytest.raises(ValidationError):
        otp.Verifier(_FakeSms(), store=otp.MemoryStore(), template="Ma: {code}", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "options"),
    [
        (5, {}),
        (None, {}),
        ("redis", {"timeout": float("nan")}),
        ("redis", {"timeout": "1"}),
        ("redis", {"timeout": -1}),
        ("redis", {"prefix": "\ud800"}),
    ],
    ids=[
        "client-int",
        "client-None",
        "timeout-nan",
        "timeout-str",
        "timeout-negative",
        "prefix-surrogate",
    ],
)
def test_redis_store_and_limiter_check_their_options(
    source: object, options: dict[str, Any], redis_url: str
) -> None:
    """BUG: ``otp.RedisStore(5)`` / ``RedisStore(None)`` and ``smsvn.RedisLimiter(5)`` are
    accepted and fail at the first use with ``AttributeError: 'int' object has no attribute
    'evalsha'``; ``timeout=nan`` / ``"1"`` / ``-1`` are accepted (then redis-py's
    ``TimeoutError: Timed out closing connection after nan``, a ``TypeError``, or a timeout at
    once); ``prefix="\\ud800"`` is accepted and every call raises ``UnicodeEncodeError``
    (``smsvn/otp/_redis.py:227``, ``smsvn/_shared_limits.py:373``).

    Fix: in both constructors, a client must have ``evalsha``/``eval`` (or be a
    ``redis.asyncio.Redis``); ``timeout`` a positive finite number (``checked_seconds``);
    ``prefix`` a str that encodes as UTF-8."""
    url_or_client = redis_url if source == "redis" else source
    problems = []
    for build in (otp.RedisStore, smsvn.RedisLimiter):
        try:
            built = build(url_or_client, **options)
        except ValidationError:
            continue
        except Exception as exc:
            problems.append(f"{build.__name__}: {type(exc).__name__}: {exc}")
            continue
        problems.append(f"{build.__name__}: accepted")
        if isinstance(url_or_client, str):
            asyncio.run(built.aclose())
    assert problems == [], problems


@pytest.mark.parametrize(
    "options",
    [{"fallback_share": "x"}, {"margin": "x"}, {"prefix": 5}],
    ids=["fallback_share-str", "margin-str", "prefix-int"],
)
def test_redis_limiter_checks_types_before_comparing(options: dict[str, Any]) -> None:
    """BUG: ``smsvn.RedisLimiter(url, fallback_share="x")`` raises ``TypeError: '<' not
    supported between instances of 'float' and 'str'``; ``margin="x"`` likewise; ``prefix=5``
    ``TypeError: argument of type 'int' is not iterable`` (``smsvn/_shared_limits.py:367-373``:
    comparisons before any type check; ``test_redis_limiter`` tries only values of the right
    type).

    Fix: ``isinstance(x, int | float) and not isinstance(x, bool)`` before each comparison;
    ``isinstance(prefix, str)``."""
    with pytest.raises(ValidationError):
        smsvn.RedisLimiter("redis://127.0.0.1:6379/0", **options)


# == advertising ==================================================================================


@pytest.fixture
def clock() -> Clock:
    return Clock(vn(1, 10))


@pytest.fixture
async def guard(clock: Clock) -> AsyncIterator[ad.Guard]:
    async with ad.Guard(RULES, clock=clock, sleep=clock.sleep) as g:
        await g.load_do_not_call([C], snapshot="2026-11-30")
        await g.consent(A, how="form", at=vn(1, 8))
        yield g


async def test_export_csv_to_an_int_writes_to_and_closes_that_file_descriptor(
    guard: ad.Guard, tmp_path: Path
) -> None:
    """BUG: ``guard.export_csv(5)`` is ``open(5, "w")``: it writes the CSV into whatever file
    descriptor 5 is (in a real process, often the event loop's self-pipe or a socket) and then
    *closes* it; the run where this was found ended with ``OSError: [Errno 9] Bad file
    descriptor`` from the event loop. ``smsvn/advertising/_guard.py:578``.

    Fix: ``if not isinstance(path, str | os.PathLike): raise ValidationError("export_csv takes
    a file path")`` (and refuse NUL: ``export_csv("a\\x00")`` is a bare ``ValueError``)."""
    victim = tmp_path / "someone-elses-file"
    fd = os.open(victim, os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(ValidationError):
            await guard.export_csv(fd)  # type: ignore[arg-type]
        os.fstat(fd)  # still open
        assert victim.read_bytes() == b"", "the records went into another file"
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    with pytest.raises(ValidationError):
        await guard.export_csv(str(tmp_path / "a\x00b.csv"))


_FAR = datetime.max.replace(tzinfo=UTC)
_EARLY = datetime.min.replace(tzinfo=timezone(timedelta(hours=8)))


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.consent(B, how="form", at=_FAR),
        lambda g: g.consent(B, how="form", at=_EARLY),
        lambda g: g.check(A, AD, purpose="advertising", at=_FAR),
        lambda g: g.check(A, AD, purpose="advertising", at=_EARLY),
        lambda g: g.refuse(B, channels=None),
    ],
    ids=[
        "consent-at-max",
        "consent-at-min",
        "check-at-max",
        "check-at-min",
        "refuse-channels-None",
    ],
)
async def test_guard_dates_at_the_edges_and_none_channels(
    guard: ad.Guard, call: Callable[[ad.Guard], Awaitable[object]]
) -> None:
    """BUG: an aware ``at`` of ``datetime.max`` (UTC) or ``datetime.min`` (UTC+8) raises
    ``OverflowError: date value out of range`` from ``at.astimezone(VIETNAM)``
    (``Guard._when``, ``smsvn/advertising/_guard.py:613``); ``refuse(number, channels=None)``
    ``TypeError: 'NoneType' object is not iterable`` (``_guard.py:455``).

    Fix: ``_when``: ``try: return at.astimezone(VIETNAM) except OverflowError: raise
    ValidationError("at is out of range")``; ``refuse``: ``channels`` must be a str or a
    non-empty sequence of them."""
    with pytest.raises(ValidationError):
        await call(guard)


# == webhooks =====================================================================================


async def _ignore(event: object) -> None:
    return None


@pytest.mark.parametrize(
    "options",
    [
        {"secret": 5},
        {"secret": None},
        {"dedup_window": "60"},
        {"dedup_window": None},
        {"dedup_window": timedelta(minutes=1)},
        {"dedup_window": 10**400},
        {"store": "not a tracker"},
    ],
    ids=[
        "secret-int",
        "secret-None",
        "dedup-str",
        "dedup-None",
        "dedup-timedelta",
        "dedup-huge-int",
        "store-str",
    ],
)
def test_webhook_app_options_are_validation_errors(options: dict[str, Any]) -> None:
    """BUG: ``webhooks.app(handler, secret=5)`` raises ``TypeError: 'int' object is not
    iterable`` (``_check_secrets``, ``smsvn/webhooks.py:458``: ``tuple(secret)``);
    ``dedup_window="60"`` / None / a ``timedelta`` ``TypeError: must be real number``, and
    ``10**400`` ``OverflowError`` (``webhooks.py:304``: ``math.isfinite`` before any type
    check); ``store="..."`` is accepted, and then every delivery report is answered 500 *after*
    the handler ran (``tracker.record`` raises ``AttributeError``), so the provider retries and
    the handler sees it again and again.

    Fix: ``_check_secrets``: refuse anything but a str or a list/tuple of str;
    ``dedup_window``: an int or float, not bool, checked before ``math.isfinite``; ``store``: a
    ``DeliveryTracker`` (or anything with a callable ``record``)."""
    kwargs: dict[str, Any] = {"secret": WEBHOOK_SECRET, **options}
    with pytest.raises(ValidationError):
        webhooks.app(_ignore, **kwargs)


async def test_a_webhook_body_that_does_not_decompress_is_a_400() -> None:
    """BUG: a callback with ``Content-Encoding: gzip`` whose body is not gzip is answered 500
    "Server got itself in trouble" with aiohttp's traceback in the log: ``_read_capped``
    (``smsvn/webhooks.py:406``) lets ``aiohttp.web_protocol.RequestPayloadError`` out. A 500
    tells the provider to retry the same broken request forever (a deflate bomb is a 413, as it
    should be).

    Fix: in ``receive``, ``except aiohttp.web.RequestPayloadError`` (``aiohttp.
    ClientPayloadError`` family) around ``_read_capped``: answer 400 "malformed body"."""
    seen: list[object] = []

    async def handler(event: object) -> None:
        seen.append(event)

    app = webhooks.app(handler, secret=WEBHOOK_SECRET)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        bad = await client.post(
            f"/speedsms/{WEBHOOK_SECRET}", data=b"not gzip", headers={"Content-Encoding": "gzip"}
        )
        good = await client.post(
            f"/speedsms/{WEBHOOK_SECRET}",
            data=gzip.compress(b'{"type":"report","tranId":7,"phone":"0912345678","status":0}'),
            headers={"Content-Encoding": "gzip"},
        )
    assert good.status == 200 and len(seen) == 1, "passes: a gzip body is read"
    assert bad.status == 400


# == the CLI ======================================================================================


def _cli(*argv: str | bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SMSVN_") or key.startswith("SMSVN_TEST_")
    }
    environ.update(
        SMSVN_SPEEDSMS_TOKEN="tok",
        SMSVN_ESMS_API_KEY="key",
        SMSVN_ESMS_SECRET_KEY="secret",
        SMSVN_FIBO_CLIENT_NO="no",
        SMSVN_FIBO_CLIENT_PASS="pass",
    )
    try:
        return subprocess.run(
            [sys.executable, "-m", "smsvn", *argv],
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"smsvn {argv!r} did not end: the bad value was accepted")


_DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing leaves the machine
_HUGE = "9" * 400


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text(N + "\n")
    return path


def _cli_cases(tmp: Path, numbers: Path) -> dict[str, list[str | bytes]]:
    run = [
        "campaign",
        "run",
        "-p",
        "speedsms",
        "--base-url",
        _DEAD,
        "--journal",
        str(tmp / "j.db"),
        "--name",
        "c",
        "-m",
        "hi",
        "-f",
        str(numbers),
    ]
    return {
        "base-url-bad-ipv6": [
            "send",
            "-p",
            "speedsms",
            "--base-url",
            "http://[::1",
            "--to",
            N,
            "-m",
            "hi",
        ],
        "journal-a-directory": ["campaign", "status", "--journal", str(tmp)],
        "journal-postgres-port": [
            "campaign",
            "status",
            "--journal",
            "postgresql://postgres@127.0.0.1:99999/test",
        ],
        "name-not-utf8": [
            "campaign",
            "status",
            "--journal",
            str(tmp / "k.db"),
            "--name",
            b"\xff",
        ],
        "rate-limit-huge": [*run, "--rate-limit", f"{_HUGE}/1"],
        "redis-prefix-not-utf8": [
            *run,
            "--redis",
            "redis://127.0.0.1:6379/0",
            "--redis-prefix",
            b"\xff",
        ],
        "sandbox-port-out-of-range": ["sandbox", "--port", "99999"],
        "sandbox-latency-negative": ["sandbox", "--latency", "-1"],
    }


@pytest.mark.parametrize(
    "case",
    [
        "base-url-bad-ipv6",
        "journal-a-directory",
        "journal-postgres-port",
        "name-not-utf8",
        "rate-limit-huge",
        "redis-prefix-not-utf8",
        "sandbox-port-out-of-range",
        "sandbox-latency-negative",
    ],
)
def test_cli_odd_flag_values_are_one_line_usage_errors(
    case: str, tmp_path: Path, numbers: Path
) -> None:
    """BUG: each of these ends with exit code 1 and a Python traceback instead of exit code 2
    and one ``smsvn: error: ...`` line:

    - ``--base-url http://[::1``: ``ValueError: Invalid IPv6 URL`` (``checked_url``);
    - ``campaign status --journal <a directory>``: ``sqlite3.OperationalError``;
    - ``--journal postgresql://...:99999/test``: ``OverflowError`` (asyncpg's connect);
    - ``--name $'\\xff'`` (argv's surrogate escape): ``UnicodeEncodeError`` from sqlite3;
    - ``--rate-limit 999...9/1``: accepted (``smsvn/cli.py``'s parser checks ``> 0`` only),
      then the limiter's ``OverflowError``, logged with its traceback, exit 1;
    - ``--redis-prefix $'\\xff'``: accepted, then ``UnicodeEncodeError`` logged with its
      traceback, exit 1;
    - ``sandbox --port 99999``: ``OverflowError: bind(): port must be 0-65535``;
    - ``sandbox --latency -1``: ``ValueError: delays must not be negative``.

    Fix: the library fixes above (``Journal``, ``RateLimit``, ``checked_url``, ``RedisLimiter``
    prefix) make most of these ``ValidationError``, which ``main`` already prints as a usage
    error; ``sandbox``: an argparse ``type=`` that checks 0-65535 and a non-negative finite
    latency."""
    argv = _cli_cases(tmp_path, numbers)[case]
    done = _cli(*argv, cwd=tmp_path)
    stderr = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr[-800:]
    assert done.returncode == 2, stderr[-800:]
    assert "smsvn: error:" in stderr


# == probes that held (kept where nothing else covers them) =======================================


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 2.0},
        {"concurrency": True},
        {"lease": float("nan")},
        {"lease": timedelta(seconds=5)},
        {"claim_for": float("inf")},
        {"purpose": ["otp"]},
    ],
    ids=[
        "concurrency-float",
        "concurrency-bool",
        "lease-nan",
        "lease-timedelta",
        "claim_for-inf",
        "purpose-list",
    ],
)
async def test_run_number_options_are_checked(
    sqlite_journal: smsvn.Journal, sb: Sandbox, options: dict[str, Any]
) -> None:
    """passes: regression guard. ``campaign.run`` refuses a float or bool ``concurrency``, a
    NaN or ``timedelta`` lease, an infinite ``claim_for`` and an unknown ``purpose`` before
    anything is claimed or sent."""
    campaign = await sqlite_journal.campaign("c")
    await campaign.add([N], content="hi")
    async with sb.client("speedsms") as sms:
        with pytest.raises(ValidationError):
            await campaign.run(sms, **options)
    assert _sent(sb) == 0 and (await campaign.counts()).pending == 1


def _raising() -> Iterator[str]:
    yield A
    raise KeyError("the cursor broke")


async def test_an_input_that_raises_midway_keeps_what_it_gave(
    sqlite_journal: smsvn.Journal,
) -> None:
    """passes: regression guard. A generator that raises after one number: the number is
    added, the caller gets the generator's own exception (documented), nothing else."""
    campaign = await sqlite_journal.campaign("c")
    with pytest.raises(KeyError):
        await campaign.add(_raising(), content="hi")
    assert (await campaign.counts()).pending == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: ad.Window("07:00", "22:00"),  # type: ignore[arg-type]
        lambda: ad.Window(None, None),  # type: ignore[arg-type]
        lambda: ad.Rules(advertiser="x", snapshot_max_age=10**400),
        lambda: ad.Rules(advertiser="x", labels="[QC]"),  # type: ignore[arg-type]
        lambda: ad.Rules(advertiser="x", refusal_words="TC"),  # type: ignore[arg-type]
        lambda: ad.Guard(RULES, "campaigns.db"),
    ],
    ids=[
        "window-str",
        "window-None",
        "snapshot_max_age-huge",
        "labels-str",
        "refusal-str",
        "guard-records-str",
    ],
)
def test_advertising_constructors_refuse_wrong_types(build: Callable[[], object]) -> None:
    """passes: regression guard. ``Window`` of strs or None, a huge ``snapshot_max_age``,
    labels or refusal words given as one str, and records given as a path are
    ``ValidationError``."""
    with pytest.raises(ValidationError):
        build()


async def test_otp_start_and_check_take_str_subclasses_and_refuse_other_types() -> None:
    """passes: regression guard. ``start``/``check`` take ``str`` subclasses for the number and
    the code, and refuse an int or bytes code and a list channel with ``ValidationError``."""
    verifier = otp.Verifier(
        _FakeSms(), store=otp.MemoryStore(), secret=SECRET, template="Ma: {code}"
    )
    started = await verifier.start(Text(N), channel=Text("sms"))  # type: ignore[arg-type]
    assert started.to == N
    checked = await verifier.check(Text(N), Text("000000"))
    assert not checked.approved
    for bad in (verifier.check(N, 123456), verifier.check(N, b"123456")):  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await bad
    with pytest.raises(ValidationError):
        await verifier.start(N, channel=["sms"])  # type: ignore[arg-type]


async def test_hostile_webhook_requests_are_4xx_never_500() -> None:
    """passes: regression guard. Over HTTP (not only the parsers): non-UTF-8 and truncated
    JSON, a number past any range, a NUL status, a huge declared Content-Length, a deflate bomb,
    a repeated eSMS query key and percent-encoded garbage are answered 4xx (or 200 for what is
    a valid report), and the receiver stays up."""
    app = webhooks.app(_ignore, secret=WEBHOOK_SECRET)
    import zlib

    bomb = zlib.compress(b"{}" * 1_000_000)
    path = f"/speedsms/{WEBHOOK_SECRET}"
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answers = [
            (await client.post(path, data=b"\xff\xfe")).status,
            (await client.post(path, data=b'{"type":"report","tranId":1e400}')).status,
            (
                await client.post(
                    path,
                    data=b'{"type":"report","tranId":"1","phone":"0912345678","status":"\\u0000"}',
                )
            ).status,
            (await client.post(path, data=bomb, headers={"Content-Encoding": "deflate"})).status,
            (await client.get(f"/esms/{WEBHOOK_SECRET}?SMSID=%00&SendStatus=%00&Phone=%00")).status,
        ]
        repeated = await client.get(
            f"/esms/{WEBHOOK_SECRET}?SMSID=1&SMSID=2&SendStatus=5&Phone=0912345678"
        )
    assert all(400 <= status < 500 for status in answers), answers
    assert repeated.status == 200


@pytest.mark.parametrize("provider", ["speedsms", "esms", "fibo"])
def test_a_misspelt_client_option_is_refused_not_dropped(provider: str) -> None:
    """``rate_limits=None`` (for ``rate_limit``) was dropped in silence: the client sent at the
    provider's default limit. Now a ``ValidationError`` (a ``TypeError`` too, as Python's own
    for an unexpected keyword) naming it and the options there are."""
    from smsvn import providers

    entry = providers.get(provider)
    credentials = {c.name: "SENTINEL-credential-0123456789" for c in entry.credentials}
    with pytest.raises(ValidationError, match="unknown option rate_limits") as info:
        entry.client(**credentials, rate_limits=None)
    assert isinstance(info.value, TypeError)
    assert "rate_limit," in str(info.value) and "SENTINEL" not in str(info.value)
