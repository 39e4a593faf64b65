"""Red-team pass on secrets: paths that ``tests/test_secrets.py``, ``tests/test_redact.py`` and
``tests/test_otp_attacks.py`` do not walk.

Each test is a finding (its docstring says what leaked): it failed on the code before its fix,
unless its docstring says "passes: regression guard" (a probe that did not leak, kept because
nothing else covers it). Only 127.0.0.1 is contacted: echo servers of the tests' own, the Redis
and PostgreSQL of ``tests.services``, and closed ports.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import smsvn
from smsvn import cli, otp
from smsvn.errors import SmsError
from smsvn.models import SendResult
from smsvn.providers.esms import ESMS
from smsvn.providers.speedsms import SpeedSMS
from smsvn.transport import RetryPolicy
from tests.conftest import http_server
from tests.test_secrets import _chain

SECRET = "S3cr3t-XYZ-123"
WEBHOOK_SECRET = f"whsec-{SECRET}-hookhookhook"
OTP_KEY = "otp-hmac-key-0123456789abcdef"
PHONE = "0912345678"
CODE = "7391462850"  # the code every verifier below draws (length 10, randbelow patched)
TEMPLATE = "Ma xac thuc cua ban la {code}"
NO_RETRY = RetryPolicy(max_retries=0)
# The clients' own credentials: no run of eight letters or digits in common with anything the
# tests search for (a phone number, the code, the webhook secret), or the client's redactor
# would withhold an echo for their sake and hide the finding.
TOKEN = "tok-QwErTyUiOp-zxcvbnm"
API_KEY = "key-AsDfGhJkL-mnbvcxz"
SECRET_KEY = "sec-PoIuYtReW-lkjhgfd"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- what the library shows ------------------------------------------------------------------


def _shown(exc: BaseException) -> str:
    """Everything an error shows: its formatted traceback (chain and group members included),
    and the str, repr, args and attributes of every exception reachable from it."""
    texts = ["".join(traceback.format_exception(exc))]
    for chained in _chain(exc):
        texts.append(f"{chained!s} {chained!r} {chained.args!r}")
        texts.extend(f"{name}={value!s} {value!r}" for name, value in vars(chained).items())
    return "\n".join(texts)


def _caught(call: Callable[[], object]) -> BaseException:
    """The exception ``call`` raises (any type: which one is not the point)."""
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


async def _acaught(call: Awaitable[object]) -> BaseException:
    try:
        await call
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record of the library's loggers, formatted, with its arguments and traceback."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(
        formatter.format(r) + repr(r.args)
        for r in caplog.records
        if r.name == "smsvn" or r.name.startswith("smsvn.")
    )


@pytest.fixture
def fixed_code(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every verifier draws ``CODE`` (distinctive, so that a search for it finds only it)."""
    monkeypatch.setattr("smsvn.otp._verifier.secrets.randbelow", lambda n: int(CODE))
    return CODE


def _verifier(sender: Any) -> otp.Verifier:
    return otp.Verifier(
        sender, store=otp.MemoryStore(), secret=OTP_KEY, template=TEMPLATE, length=len(CODE)
    )


# -- Redis URLs --------------------------------------------------------------------------------


def test_otp_redis_store_refuses_a_malformed_url_without_quoting_its_password() -> None:
    """Finding: ``otp.RedisStore(url)`` lets redis-py's parse error through, and redis-py
    quotes the head of a password with an unencoded "/" as the "port"
    (``ValueError: Port could not be cast to integer value as 'S3cr3t-XYZ-123'``).
    ``RedisLimiter`` refuses the same URL with a ValidationError of its own
    (``tests/test_redis_limiter.py::test_a_malformed_url_is_refused_without_quoting_it``)."""
    for url in (
        f"redis://:{SECRET}/tail@127.0.0.1:6379/0",
        f"redis://app:{SECRET}/tail@127.0.0.1:6379/0",
    ):
        error = _caught(functools.partial(otp.RedisStore, url))
        assert isinstance(error, ValueError), repr(error)  # ValidationError is a ValueError
        assert SECRET not in _shown(error)


async def test_unreachable_redis_with_a_password_shows_no_password(
    closed_port: int, redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Passes: regression guard. A limiter (``on_unavailable="raise"``) and an OTP store on
    a Redis with a password in its URL that refuses the connection: ``LimiterUnavailable``,
    ``StoreError`` (their chains, tracebacks) and the DEBUG log show no password."""
    caplog.set_level(logging.DEBUG)
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port}/0"
    shown: list[str] = []
    async with smsvn.RedisLimiter(url, prefix=redis_prefix, on_unavailable="raise") as limiter:
        shown.append(repr(limiter))
        sms = SpeedSMS(
            TOKEN,
            base_url=f"http://127.0.0.1:{closed_port}/speedsms",
            limiter=limiter,
            retry=NO_RETRY,
        )
        async with sms:
            error = await _acaught(sms.send(PHONE, "hi"))
            assert isinstance(error, smsvn.errors.LimiterUnavailable), repr(error)
            shown.append(_shown(error))
    async with otp.RedisStore(url, prefix=redis_prefix, timeout=0.5) as store:
        shown.append(repr(store))
        verifier = otp.Verifier(
            SpeedSMS(TOKEN, base_url=f"http://127.0.0.1:{closed_port}/x"),
            store=store,
            secret=OTP_KEY,
            template=TEMPLATE,
        )
        error = await _acaught(verifier.start(PHONE))
        assert isinstance(error, otp.StoreError), repr(error)
        shown.append(_shown(error))
    logged = _logged(caplog)
    assert "Redis is unreachable" in logged  # the outage was logged, with redis-py's words
    shown.append(logged)
    assert not [text for text in shown if SECRET in text]


# -- PostgreSQL URLs ---------------------------------------------------------------------------


async def test_a_journal_that_cannot_connect_shows_no_password(
    closed_port: int, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Passes: regression guard. A PostgreSQL journal URL with a password, on a port that
    refuses, and on the test server with a database that does not exist (asyncpg's own error
    from the server): the error, its chain and traceback, the journal's repr and the log show no
    password (``tests/test_journal.py`` covers only malformed URLs)."""
    caplog.set_level(logging.DEBUG)
    missing = f"smsvn_rt_absent_{uuid.uuid4().hex[:8]}"  # never created: nothing to clean up
    urls = [
        f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port}/test",
        f"postgresql://postgres:{SECRET}@127.0.0.1:5432/{missing}",
        f"postgresql://postgres@127.0.0.1:{closed_port}/test?password={SECRET}",
    ]
    shown: list[str] = []
    for url in urls:
        journal = smsvn.Journal(url)
        shown.append(repr(journal))

        async def open_it(journal: smsvn.Journal = journal) -> None:
            async with journal:
                pass

        shown.append(_shown(await _acaught(open_it())))
    shown.append(_logged(caplog))
    assert not [text for text in shown if SECRET in text]


# -- OTP codes ---------------------------------------------------------------------------------


async def test_otp_code_echoed_in_the_provider_s_error_code_is_masked(
    fixed_code: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: a provider that echoes the request in its error's ``code`` field (what
    ``Transport._scrub`` guards credentials against: "a server may put anything in its code
    field") puts the OTP in ``SmsError.code``; ``Verifier.start``'s ``_scrubbed`` masks the code
    in ``message``, ``args`` and notes only, and ``SmsError.__str__`` prints ``code``:
    ``speedsms.sms/send: refused (code {"to":[...],"content":"Ma xac thuc ... 7391462850"...``."""
    caplog.set_level(logging.DEBUG)
    received: list[bytes] = []

    async def refuse(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(body)
        return web.json_response({"status": "error", "code": body.decode(), "message": "refused"})

    async with http_server(refuse) as base:
        sms = SpeedSMS(
            TOKEN,
            base_url=base + "/speedsms",
            sms_type=2,
            rate_limit=None,
            retry=NO_RETRY,
        )
        async with sms:
            error = await _acaught(_verifier(sms).start(PHONE))
    assert received and fixed_code.encode() in received[0]  # the code did go out
    assert isinstance(error, SmsError), repr(error)
    assert fixed_code not in _shown(error)
    assert fixed_code not in _logged(caplog)


class _GroupSender:
    """An SMS sender that sends through a task group (an SDK that fans out, a sender that
    posts to two gateways at once): its failure is an ``ExceptionGroup``."""

    provider = "group"

    async def send(self, to: str, content: str) -> SendResult:
        async def post() -> None:
            raise RuntimeError(f"gateway refused the body {content!r}")

        async with asyncio.TaskGroup() as group:
            group.create_task(post())
        raise AssertionError("unreachable")


async def test_otp_code_inside_an_exception_group_from_the_sender_is_masked(
    fixed_code: str,
) -> None:
    """Finding: ``_scrubbed`` walks ``__cause__`` and ``__context__`` but not an exception
    group's members, so the code a member echoes leaves ``Verifier.start`` in clear, in the
    group's ``exceptions`` and in its formatted traceback (``| RuntimeError: gateway refused
    the body 'Ma xac thuc cua ban la 7391462850'``), along with the sender's frames."""
    error = await _acaught(_verifier(_GroupSender()).start(PHONE))
    assert isinstance(error, BaseExceptionGroup), repr(error)
    assert fixed_code not in _shown(error)


class _HttpSender:
    """An SMS sender on aiohttp with ``raise_for_status``: the gateway's 400 is a
    ``ClientResponseError`` whose text is built from its attributes (the request's URL, which
    carries the message in its query), not from ``args``."""

    provider = "http"

    async def send(self, to: str, content: str) -> SendResult:
        url = URL("http://127.0.0.1/sms/send").with_query(to=to, text=content)
        info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
        raise aiohttp.ClientResponseError(info, (), status=400, message="Bad Request")


async def test_otp_code_in_an_exception_s_attributes_is_masked(fixed_code: str) -> None:
    """Finding: ``_scrubbed`` rewrites a plain exception's ``args``, but an exception that
    builds its text from attributes keeps the code: aiohttp's ``ClientResponseError`` (args:
    the request info and history) shows ``url='http://127.0.0.1/sms/send?...&text=Ma+xac+thuc+
    cua+ban+la+7391462850'`` in its ``str`` and in the traceback."""
    error = await _acaught(_verifier(_HttpSender()).start(PHONE))
    assert fixed_code not in _shown(error)


# -- the webhook secret in eSMS's callback_url -------------------------------------------------


async def test_esms_callback_url_secret_stays_out_of_errors_raw_and_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: eSMS's ``callback_url`` carries the webhook secret (``smsvn.workers`` refuses
    it in a task for that reason), but the client's redactor knows only the API and secret
    keys. A provider that echoes the callback URL (in ``ErrorMessage``, the way it echoes a bad
    parameter) puts the webhook secret in the SmsError's message, in ``SendResult.raw`` on
    success, in the journal's stored detail of every input of a campaign run with it, and so
    in ``smsvn campaign export``'s CSV."""
    caplog.set_level(logging.DEBUG)
    callback = f"http://127.0.0.1:9/esms/{WEBHOOK_SECRET}"
    mode = {"accept": False}

    async def echo(request: web.Request) -> web.Response:
        sent = json.loads(await request.read())
        echoed = f"CallbackUrl {sent.get('CallbackUrl')} is not reachable"
        if mode["accept"]:
            return web.json_response(
                {"CodeResult": "100", "SMSID": "sms-1", "ErrorMessage": echoed}
            )
        return web.json_response({"CodeResult": "99", "ErrorMessage": echoed})

    leaks: list[str] = []
    path = str(tmp_path / "callback.db")
    async with http_server(echo) as base:
        client = ESMS(
            API_KEY,
            SECRET_KEY,
            base_url=base + "/esms",
            brandname="BRAND",
            rate_limit=None,
            retry=NO_RETRY,
        )
        async with client:
            error = await _acaught(client.send(PHONE, "hi", callback_url=callback))
            if WEBHOOK_SECRET in _shown(error):
                leaks.append(f"error: {error}")
            mode["accept"] = True
            result = await client.send(PHONE, "hi", callback_url=callback)
            if WEBHOOK_SECRET in repr(result) + repr(result.raw):
                leaks.append(f"SendResult.raw: {result.raw!r}")
            mode["accept"] = False
            async with smsvn.Journal(path) as journal:
                campaign = await journal.campaign("callback")
                await campaign.add([PHONE, "0987654321"], content="hi")
                await campaign.run(client, callback_url=callback)
                details = [r.error or "" async for r in campaign.recipients()]
                leaks += [f"journal: {d}" for d in details if WEBHOOK_SECRET in d]
    if WEBHOOK_SECRET in _logged(caplog):
        leaks.append("log")
    capsys.readouterr()
    argv = ["campaign", "export", "--journal", path, "--name", "callback"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    exported = capsys.readouterr()
    if WEBHOOK_SECRET in exported.out + exported.err:
        leaks.append(f"export: {exported.out}")
    assert not leaks, "\n".join(leaks)


# -- the CLI's usage errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        # A journal URL given to bulk (only campaign run takes one).
        ["bulk", "--sandbox", "-m", "hi", "--journal", f"postgresql://sms:{SECRET}@db/sms"],
        # The shared limiter's URL given to a step that takes none.
        ["campaign", "status", "--journal", "c.db", "--redis", f"redis://:{SECRET}@r:6379/0"],
        # A credential flag given to a step that takes none (a script that adds it everywhere).
        ["campaign", "export", "--journal", "c.db", "--name", "promo", "--token", SECRET],
        # A credential flag misspelt.
        ["balance", "-p", "speedsms", "--tokn", SECRET],
    ],
    ids=["journal-on-bulk", "redis-on-status", "token-on-export", "misspelt-token"],
)
def test_a_usage_error_does_not_echo_a_secret(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: argparse's "unrecognized arguments" error quotes every argument it did not
    take, values included, on stderr: ``smsvn: error: unrecognized arguments: --redis
    redis://:S3cr3t-XYZ-123@r:6379/0``. The CLI masks passwords everywhere else it prints a URL
    (the Redis that does not answer, the resume command)."""
    for variable in ("SMSVN_JOURNAL", "SMSVN_REDIS_URL", "SMSVN_PROVIDER"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    shown = capsys.readouterr()
    assert "unrecognized arguments" in shown.err  # the error this is about
    assert SECRET not in shown.out + shown.err


# -- a base URL with a password ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda url: SpeedSMS(TOKEN, base_url=url),
        lambda url: ESMS(API_KEY, SECRET_KEY, base_url=url),
        lambda url: ESMS(API_KEY, SECRET_KEY, voice_base_url=url),
        lambda url: smsvn.Fibo("client-no", "client-pass-QwErTy", base_url=url),
    ],
    ids=["speedsms", "esms", "esms-voice", "fibo"],
)
def test_a_base_url_with_a_password_is_refused_without_showing_it(
    make: Callable[[str], object],
) -> None:
    """Finding: a base URL carrying ``user:password@`` was taken as is and shown by the
    client's ``repr`` (and by the CLI's resume command); SpeedSMS's requests then failed in
    aiohttp before leaving, filed as "may have been sent"."""
    error = _caught(lambda: make(f"http://gateway:{SECRET}@127.0.0.1:9/api"))
    assert isinstance(error, SmsError), error
    assert "user or password" in str(error)
    assert SECRET not in _shown(error)


async def test_a_refusal_whose_numbers_hold_the_code_keeps_its_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review finding: the scrub replaced any error still showing the code by a
    ``RuntimeError`` ("may have been sent"), looking at numbers too: a ``RateLimited`` whose
    ``retry_after`` (0.2731458) holds a 4-digit code's digits by chance became one, although
    nothing was sent and the grant was undone. An smsvn error keeps its type; its text is its
    masked string fields."""
    monkeypatch.setattr("smsvn.otp._verifier.secrets.randbelow", lambda n: 3145)

    class Limited:
        provider = "fake"

        async def send(self, to: str, content: str) -> SendResult:
            raise smsvn.errors.RateLimited("no turn within max_wait", retry_after=0.2731458)

    verifier = otp.Verifier(
        Limited(), store=otp.MemoryStore(), secret=OTP_KEY, template=TEMPLATE, length=4
    )
    error = await _acaught(verifier.start(PHONE))
    assert isinstance(error, smsvn.errors.RateLimited), error
