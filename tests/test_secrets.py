"""Secrets stay secret: every client, through success and every kind of failure, with sentinel
credentials, and nothing the library shows anyone holds them.

Searched: every log record at DEBUG (message, arguments, formatted traceback), every error's
``str``, ``repr``, ``args``, every attribute and formatted traceback, for it and every exception
reachable by ``__cause__`` or ``__context__`` (suppressed or not), every result's ``repr`` and its
``raw`` (repr and JSON), bulk reports, hook ``AttemptInfo``s and the clients' ``repr``; a text
shows a secret when "SENTINEL" is in it in any case, or once percent, entity, backslash or
full-width encodings are undone. The credentials carry characters that URLs, JSON, XML and HTML
each write their own way (``+ & = < > ' " / ? # é €`` and spaces), and a provider echoes them in
the forms real servers write (.NET, PHP, System.Text.Json, twice-escaped XML, a Latin-1 body,
mojibake, unaccented Vietnamese), so no written form may get through, not just one.
The webhook receiver's secret path segment gets the same treatment (access log included).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import logging
import traceback
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import quote, unquote, unquote_plus
from xml.sax.saxutils import escape as xml_escape

import aiohttp
import msgspec
import pytest
from aiohttp import web

from smsvn import webhooks
from smsvn.errors import SmsError
from smsvn.failover import Failover
from smsvn.models import DeliveryReport
from smsvn.providers.esms import ESMS
from smsvn.providers.fibo import Fibo
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import AttemptInfo, Hooks, RetryPolicy
from tests.conftest import PROVIDERS, per_provider
from tests.test_redact import ENCODINGS

MARK = "SENTINEL"
TOKEN = "tok SENTINEL+&=é'1"
API_KEY = "key-SENTINEL+1 é"
SECRET_KEY = "sec&SENTINEL=2'x"
CLIENT_PASS = "pass<SENTINEL>&'\"+ é"
WEBHOOK_SECRET = "whsec-SENTINEL-0123456789abcdef"
NUMBER = "0912345678"
RETRY = RetryPolicy(max_retries=1, backoff_base=0.001, backoff_max=0.002, max_rate_limit_wait=1)


class SentinelSandbox(Sandbox):
    """The simulator, expecting the sentinel credentials."""

    speedsms_token = TOKEN  # type: ignore[misc]
    esms_api_key = API_KEY  # type: ignore[misc]
    esms_secret_key = SECRET_KEY  # type: ignore[misc]
    fibo_client_pass = CLIENT_PASS  # type: ignore[misc]


class Seen:
    """Everything the library let out, as text."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def error(self, where: str, exc: BaseException) -> None:
        self.add(where + " str", str(exc))
        self.add(where + " repr", repr(exc))
        self.add(where + " traceback", "".join(traceback.format_exception(exc)))
        for depth, chained in enumerate(_chain(exc)):
            what = f"{where} chain[{depth}] {type(chained).__name__}"
            self.add(what, f"{chained!r} {chained} {chained.args!r}")
            for name, attribute in vars(chained).items():
                self.add(f"{what}.{name}", f"{attribute} {attribute!r}")

    def result(self, where: str, value: Any) -> None:
        self.add(where + " repr", repr(value))
        raw = getattr(value, "raw", None)
        if raw is not None:
            self.add(where + " raw", repr(raw))
            with contextlib.suppress(TypeError, msgspec.EncodeError):
                self.add(where + " raw json", msgspec.json.encode(raw).decode())
        for part in ("sent", "failed", "unknown", "invalid"):
            items = getattr(value, part, None)
            if not isinstance(items, list | tuple):
                continue
            for item in items:
                self.add(f"{where} {part}", repr(item))
                if isinstance(item, tuple) and isinstance(item[-1], BaseException):
                    self.error(f"{where} {part} error", item[-1])

    async def run(self, where: str, call: Awaitable[Any]) -> bool:
        """Await ``call`` and record what it gave; True when it succeeded."""
        try:
            self.result(where, await call)
        except SmsError as exc:
            self.error(where, exc)
            return False
        return True

    def leaks(self) -> list[str]:
        return [f"{where}: {text[:300]}" for where, text in self.texts if _shows_mark(text)]


def _shows_mark(text: str) -> bool:
    """Whether ``text`` shows the sentinel to a reader who undoes the usual encodings once or
    twice (percent, entities, backslash escapes, full-width letters), in any case."""
    readings = [text, unquote_plus(text), unquote_plus(unquote_plus(text))]
    readings += [html.unescape(html.unescape(r)) for r in readings]
    with contextlib.suppress(UnicodeDecodeError):
        readings.append(text.encode("latin-1", "backslashreplace").decode("unicode_escape"))
    mark = MARK.casefold()
    return any(mark in unicodedata.normalize("NFKC", r).casefold() for r in readings)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception reachable from it by ``__cause__`` or ``__context__``,
    suppressed or not, and the members of an exception group (a logger, a debugger or an error
    tracker shows them all)."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
    return found


def test_the_search_sees_suppressed_contexts_attributes_and_encodings() -> None:
    """The search itself: an aiohttp error carrying the URL, chained under ``from None``, is
    found, and so is an encoded echo; a clean error is not (else the tests above prove nothing)."""
    seen = Seen()
    try:
        try:
            raise aiohttp.InvalidURL(f"http://h/send?ApiKey={quote(API_KEY)}")
        except aiohttp.InvalidURL:
            raise SmsError("the base URL is not valid", provider="esms") from None
    except SmsError as exc:
        seen.error("chained", exc)
    assert [leak for leak in seen.leaks() if "InvalidURL" in leak]
    for shown in (quote(TOKEN), "&#83;&#69;&#78;&#84;&#73;&#78;&#69;&#76;", "\\u0053ENTINEL"):
        assert _shows_mark(f"x {shown} y"), shown
    assert not _shows_mark(str(SmsError("refused", provider="esms", code="101")))


def _hooks(seen: Seen) -> Hooks:
    def record(info: AttemptInfo) -> None:
        seen.add("hook", repr(info))

    return Hooks(on_request=record, on_response=record, on_retry=record)


Op = Callable[[Any], Awaitable[Any]]

OPERATIONS: dict[str, list[tuple[str, str, Op]]] = dict(
    per_provider(
        {
            "speedsms": [
                ("balance", "balance", lambda c: c.balance()),
                ("send", "send", lambda c: c.send([NUMBER, "0987654321", "bad"], "hi")),
                ("voice_otp", "voice", lambda c: c.voice_otp(NUMBER, "1234")),
                ("send_bulk", "send", lambda c: c.send_bulk([NUMBER, "0987654321", "bad"], "hi")),
            ],
            "esms": [
                ("send", "send", lambda c: c.send(NUMBER, "hi")),
                ("send GET", "send", lambda c: c.send(NUMBER, "hi", method="GET")),
                ("balance", "balance", lambda c: c.balance()),
                ("status", "status", lambda c: c.status("no-such-id")),
                ("receivers", "receivers", lambda c: c.receivers("no-such-id")),
                (
                    "sent_messages",
                    "sent_data",
                    lambda c: c.sent_messages(date.today(), date.today()),
                ),
                ("brandnames", "brandnames", lambda c: c.brandnames()),
                ("voice_otp", "voice_otp", lambda c: c.voice_otp(NUMBER, "1234")),
                (
                    "call_template",
                    "call_template",
                    lambda c: c.call_template(NUMBER, "1001", ["a", "b"]),
                ),
                ("call_record", "call_record", lambda c: c.call_record(NUMBER, "2001")),
                ("call_status", "call_status", lambda c: c.call_status("no-such-call")),
                ("send_bulk", "send", lambda c: c.send_bulk([NUMBER, "0987654321", "bad"], "hi")),
            ],
            "fibo": [
                ("send", "send", lambda c: c.send(NUMBER, "hi")),
                ("balance", "balance", lambda c: c.balance()),
                ("daily_totals", "totals", lambda c: c.daily_totals()),
                ("send_bulk", "send", lambda c: c.send_bulk([NUMBER, "0987654321", "bad"], "hi")),
            ],
        }
    )
)
FAULTS = [
    "drop_before",
    "drop_after",
    "hang",
    "truncate",
    "status_5xx",
    "garbage",
    "empty",
    "rate_limit",
    "dribble",
]


@pytest.fixture
async def sb() -> AsyncIterator[SentinelSandbox]:
    async with SentinelSandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sandbox:
        yield sandbox


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture) -> Seen:
    caplog.set_level(logging.DEBUG)
    return Seen()


def _logs(caplog: pytest.LogCaptureFixture, seen: Seen) -> None:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        if record.name.startswith(("aiohttp.server", "aiohttp.web", "aiohttp.access")):
            continue  # the test's own servers (the simulator, the echo server), not the library
        seen.add(f"log {record.name}", formatter.format(record) + repr(record.args))


def _client(sb: Sandbox, provider: str, seen: Seen, **overrides: Any) -> Any:
    options = {"retry": RETRY, "timeout": 0.25, "hooks": _hooks(seen), **overrides}
    client = sb.client(provider, **options)  # type: ignore[call-overload]
    seen.add(f"{provider} client repr", repr(client))
    return client


@pytest.mark.parametrize("provider", list(OPERATIONS))
async def test_no_secret_in_anything_the_library_shows(
    provider: str,
    sb: SentinelSandbox,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
    closed_port: int,
) -> None:
    operations = OPERATIONS[provider]
    # Success, and the provider's refusals of a valid request.
    async with _client(sb, provider, seen) as client:
        succeeded = [
            await seen.run(f"{provider} {name} ok", op(client)) for name, _, op in operations
        ]
        # The sentinels did authenticate: all but the lookups of made-up ids succeeded.
        assert sum(succeeded) >= len(operations) - 3, succeeded
        sb.set_balance(provider, 0)
        for name, _, op in operations:
            await seen.run(f"{provider} {name} no balance", op(client))
        sb.set_balance(provider, 1e9)
        await seen.run(f"{provider} invalid number", client.send("12345", "hi"))
    # Every fault on every route (the operations of one fault at once: hangs cost a timeout).
    for kind in FAULTS:
        sb.faults.clear()
        sb.faults.add(Fault(kind=kind, provider=provider, seconds=5.0))  # type: ignore[arg-type]
        async with _client(sb, provider, seen) as client:
            await asyncio.gather(
                *(seen.run(f"{provider} {name} {kind}", op(client)) for name, _, op in operations)
            )
    sb.faults.clear()
    # Wrong credentials (the sandbox then refuses the sentinel ones it sees).
    wrong = {
        "speedsms": {"token": "other SENTINEL token"},
        "esms": {"api_key": "other-SENTINEL-key", "secret_key": SECRET_KEY},
        "fibo": {"client_pass": "other SENTINEL pass"},
    }[provider]
    async with _client(sb, provider, seen, **wrong) as client:
        for name, _, op in operations:
            await seen.run(f"{provider} {name} wrong credentials", op(client))
    # Connection refused.
    dead = f"http://127.0.0.1:{closed_port}/x"
    extra = {"voice_base_url": dead} if provider == "esms" else {}
    async with _client(sb, provider, seen, base_url=dead, **extra) as client:
        for name, _, op in operations:
            await seen.run(f"{provider} {name} refused", op(client))
    _logs(caplog, seen)
    assert len(seen.texts) > 50
    leaks = seen.leaks()
    assert not leaks, "\n".join(leaks[:10])


async def test_failover_reports_show_no_secret(
    sb: SentinelSandbox, seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    sb.faults.add(Fault(kind="status_5xx", provider="esms", route="send", times=2))
    async with Failover(
        _client(sb, "esms", seen, api_key="other-SENTINEL-key"),
        _client(sb, "fibo", seen),
        _client(sb, "speedsms", seen),
    ) as failover:
        seen.add("failover repr", repr(failover))
        await seen.run("failover send", failover.send(NUMBER, "hi"))
        await seen.run("failover bulk", failover.send_bulk([NUMBER, "0987654321"], "hi"))
    _logs(caplog, seen)
    assert not seen.leaks(), "\n".join(seen.leaks()[:10])


# -- the webhook receiver --------------------------------------------------------------------------


async def test_webhook_secret_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def handler(event: webhooks.Event) -> None:
        if isinstance(event, DeliveryReport) and event.message_id == "boom":
            raise RuntimeError("handler failed")

    application = webhooks.app(handler, secret=WEBHOOK_SECRET)
    runner = web.AppRunner(application, access_log_class=webhooks.MaskedAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    report = b'{"type":"report","tranId":%s,"phone":"0912345678","status":0}'
    try:
        async with aiohttp.ClientSession() as http:
            requests = [
                ("POST", f"/speedsms/{WEBHOOK_SECRET}", report % b"1"),
                ("POST", f"/speedsms/{WEBHOOK_SECRET}", report % b'"boom"'),
                ("POST", f"/speedsms/{WEBHOOK_SECRET}", b"not json"),
                ("GET", f"/speedsms/{WEBHOOK_SECRET}", None),
                ("POST", f"/speedsms/{WEBHOOK_SECRET}x", report % b"2"),
                (
                    "GET",
                    f"/esms/{WEBHOOK_SECRET}?SMSID=1&SendStatus=5&phonenumber=0912345678",
                    None,
                ),
                ("GET", f"/esms/{WEBHOOK_SECRET}?nothing=here", None),
                ("PUT", f"/esms/{WEBHOOK_SECRET}", b"x"),
            ]
            for method, path, body in requests:
                async with http.request(method, base + path, data=body) as resp:
                    text = await resp.text()
                    assert MARK not in text
                    assert MARK not in repr(resp.headers)
        await asyncio.sleep(0.05)  # let the access log lines be written
    finally:
        await runner.cleanup()
    formatter = logging.Formatter("%(name)s %(message)s")
    lines = [formatter.format(r) + repr(r.args) + repr(r.__dict__) for r in caplog.records]
    assert any("/speedsms/***" in line for line in lines), "the access log was not captured"
    leaked = [line for line in lines if MARK in line]
    assert not leaked, "\n".join(leaked[:5])


# -- a provider that echoes what it was sent -------------------------------------------------------


class EchoServer:
    """Answers every request in the provider's own shape, with the request as it arrived (the
    raw path and query, the body, the Authorization header, and their decoded forms) echoed in
    a text field or as the whole body: what a provider's error message, a proxy's error page
    or a debugging gateway may do. ``encode`` writes the echo as some server would (see
    ``tests.test_redact.ENCODINGS``) and ``charset`` is the body's. The library must show no
    form of any secret."""

    def __init__(self) -> None:
        self.mode = "refusal"
        self.encode: Callable[[str], str] = str
        self.charset = "utf-8"
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> EchoServer:
        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", self._answer)
        self.runner = web.AppRunner(application)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def _text(self, text: str, content_type: str, status: int = 200, **kw: Any) -> web.Response:
        body = text.encode(self.charset, "replace")
        return web.Response(
            status=status, body=body, content_type=content_type, charset=self.charset, **kw
        )

    def _json(self, payload: Any) -> web.Response:
        # A UTF-8 server escapes non-ASCII (as json_response does); any other writes it raw.
        text = json.dumps(payload, ensure_ascii=self.charset == "utf-8")
        return self._text(text, "application/json")

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        auth = request.headers.get("Authorization", "")
        decoded_auth = ""
        if auth.startswith("Basic "):
            decoded_auth = base64.b64decode(auth[6:]).decode("utf-8", "replace")
        echo = self.encode(
            " | ".join(
                (
                    request.raw_path,
                    request.path_qs,
                    unquote(request.raw_path),
                    unquote_plus(request.query_string),
                    body.decode("utf-8", "replace"),
                    auth,
                    decoded_auth,
                )
            )
        )
        path = request.path
        if self.mode == "garbage":  # not the provider's format at all: an excerpt is shown
            return self._text("proxy error: " + echo, "text/plain", status=502)
        if self.mode == "429":
            headers = {"Retry-After": "60", "X-Rate-Limit-Reset": "60"}
            return self._text(echo, "text/plain", status=429, headers=headers)
        refused = self.mode in ("refusal", "code")
        if path.startswith("/speedsms"):
            if self.mode == "code":  # the echo where the error code belongs
                payload: Any = {"status": "error", "code": echo, "message": "refused"}
            elif refused:
                payload = {"status": "error", "code": "101", "message": echo}
            elif "/user/info" in path:
                payload = {"status": "success", "code": "00", "data": {"email": echo, "balance": 1}}
            else:
                data = {"tranId": 1, "totalSMS": 1, "totalPrice": 1, "invalidPhone": []}
                payload = {"status": "success", "code": "00", "data": data}
            return self._json(payload)
        if path.startswith("/esms"):
            if self.mode == "code":
                payload = {"CodeResult": echo, "CodeResponse": echo, "ErrorMessage": "refused"}
            elif refused:
                payload = {"CodeResult": "101", "ErrorMessage": echo}
            else:
                payload = {
                    "CodeResult": "100",
                    "CodeResponse": "100",
                    "SMSID": echo,
                    "ErrorMessage": echo,
                    "Balance": 1,
                    "ListBrandName": [{"Brandname": echo, "Type": 2}],
                    "callstatus": echo,
                }
            return self._json(payload)
        # Fibo: the ASMX <string> wrapper with the <SMS> answer escaped inside it.
        if "PartnerMtTotal" in path:
            if refused:
                code = echo if self.mode == "code" else "soap:Client"
                fault = (
                    f"<soap:Fault><faultcode>{xml_escape(code)}</faultcode>"
                    f"<faultstring>{xml_escape(echo)}</faultstring></soap:Fault>"
                )
            else:
                fault = (
                    '<GetTotalMtResponse xmlns="http://tempuri.org/"><GetTotalMtResult>'
                    "1|2|3</GetTotalMtResult></GetTotalMtResponse>"
                )
            text = (
                '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
                f"<soap:Body>{fault}</soap:Body></soap:Envelope>"
            )
            return self._text(text, "text/xml")
        code = {"refusal": "3", "code": echo}.get(self.mode, "200")
        inner = (
            f"<SMS><Code>{xml_escape(code)}</Code><Message>{xml_escape(echo)}</Message>"
            f"<AccountBalance>5</AccountBalance><Time>{xml_escape(echo)}</Time></SMS>"
        )
        text = f'<string xmlns="http://tempuri.org/">{xml_escape(inner)}</string>'
        return self._text(text, "text/xml")


SECRET_SETS: dict[str, dict[str, str]] = {
    # Each credential with characters that URLs, JSON, XML and HTML each write their own way.
    "set1": {
        "token": TOKEN,
        "api_key": API_KEY,
        "secret_key": SECRET_KEY,
        "client_pass": CLIENT_PASS,
    },
    "set2": {
        "token": "SENTINEL/with?query=1#frag",
        "api_key": "mật khẩu SENTINEL+€",
        "secret_key": 'pass<SENTINEL>&"x',
        "client_pass": "tok SENTINEL+&=é'1 <x>&",
    },
}
# How the echo is written, and the charset of the answer it is in.
ECHOES: dict[str, tuple[Callable[[str], str], str]] = {
    **{
        name: (ENCODINGS[name], "utf-8")
        for name in (
            "as is",
            ".NET UrlEncode",
            "quote twice",
            "percent, letters too",
            "PHP htmlspecialchars",
            ".NET HtmlEncode",
            "decimal references, letters too",
            "XML escaped twice",
            "System.Text.Json",
            "\\u everywhere",
            "mojibake cp1252",
            "without diacritics",
            "full width",
            "UrlEncode inside XML twice",
        )
    },
    "Latin-1 body": (str, "latin-1"),
    ".NET UrlEncode, cp1252 body": (ENCODINGS[".NET UrlEncode"], "cp1252"),
}


def _echo_client(server: EchoServer, provider: str, seen: Seen, secrets: dict[str, str]) -> Any:
    common: dict[str, Any] = {
        "rate_limit": None,
        "retry": RETRY,
        "timeout": 2.0,
        "hooks": _hooks(seen),
    }
    if provider == "speedsms":
        return SpeedSMS(secrets["token"], base_url=server.url + "/speedsms", sms_type=2, **common)
    if provider == "esms":
        return ESMS(
            secrets["api_key"],
            secrets["secret_key"],
            base_url=server.url + "/esms",
            voice_base_url=server.url + "/esms-voice",
            brandname="BRAND",
            **common,
        )
    return Fibo(
        "CL0000000001",
        secrets["client_pass"],
        base_url=server.url + "/fibo",
        sender="BRAND",
        **common,
    )


@pytest.mark.parametrize("echo", list(ECHOES))
@pytest.mark.parametrize("secrets", list(SECRET_SETS))
@pytest.mark.parametrize("provider", list(OPERATIONS))
async def test_no_secret_when_the_provider_echoes_the_request(
    provider: str, secrets: str, echo: str, seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    async with EchoServer() as server:
        server.encode, server.charset = ECHOES[echo]
        async with _echo_client(server, provider, seen, SECRET_SETS[secrets]) as client:
            for mode in ("refusal", "success", "garbage", "429"):
                server.mode = mode
                for name, _, op in OPERATIONS[provider]:
                    await seen.run(f"{provider} {name} {mode}", op(client))
    _logs(caplog, seen)
    leaks = seen.leaks()
    assert not leaks, "\n".join(leaks[:6])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("secrets", list(SECRET_SETS))
async def test_no_secret_when_the_provider_echoes_it_as_the_error_code(
    provider: str, secrets: str, seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    async with EchoServer() as server:
        server.mode = "code"
        async with _echo_client(server, provider, seen, SECRET_SETS[secrets]) as client:
            for name, _, op in OPERATIONS[provider]:
                await seen.run(f"{provider} {name} code", op(client))
    _logs(caplog, seen)
    leaks = seen.leaks()
    assert not leaks, "\n".join(leaks[:6])
