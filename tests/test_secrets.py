"""Secrets stay secret: every client, through success and every kind of failure, with sentinel
credentials, and nothing the library shows anyone holds them.

Searched: every log record at DEBUG (message, arguments, formatted traceback), every error's
``str``, ``repr`` and formatted traceback with its whole ``__cause__`` / ``__context__`` chain,
every result's ``repr`` and its ``raw`` (repr and JSON), bulk reports, hook ``AttemptInfo``s and
the clients' ``repr``. The credentials carry characters that URLs, JSON and XML each write their
own way (``+ & = < > ' " é`` and spaces), so every written form must be redacted, not just one.
The webhook receiver's secret path segment gets the same treatment (access log included).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import unquote, unquote_plus
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
        chained: BaseException | None = exc
        depth = 0
        while chained is not None and depth < 10:  # the whole chain, suppressed or not
            self.add(f"{where} chain[{depth}]", f"{chained!r} {chained}")
            if isinstance(chained, SmsError):
                self.add(f"{where} chain[{depth}] fields", repr(vars(chained)))
            chained = chained.__cause__ or chained.__context__
            depth += 1

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
        return [f"{where}: {text[:300]}" for where, text in self.texts if MARK in text]


def _hooks(seen: Seen) -> Hooks:
    def record(info: AttemptInfo) -> None:
        seen.add("hook", repr(info))

    return Hooks(on_request=record, on_response=record, on_retry=record)


Op = Callable[[Any], Awaitable[Any]]

OPERATIONS: dict[str, list[tuple[str, str, Op]]] = {
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
        ("sent_messages", "sent_data", lambda c: c.sent_messages(date.today(), date.today())),
        ("brandnames", "brandnames", lambda c: c.brandnames()),
        ("voice_otp", "voice_otp", lambda c: c.voice_otp(NUMBER, "1234")),
        ("call_template", "call_template", lambda c: c.call_template(NUMBER, "1001", ["a", "b"])),
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
    or a debugging gateway may do. The library must redact every form of every secret."""

    def __init__(self) -> None:
        self.mode = "refusal"
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

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        auth = request.headers.get("Authorization", "")
        decoded_auth = ""
        if auth.startswith("Basic "):
            decoded_auth = base64.b64decode(auth[6:]).decode("utf-8", "replace")
        echo = " | ".join(
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
        path = request.path
        if self.mode == "garbage":  # not the provider's format at all: an excerpt is shown
            return web.Response(status=502, text="proxy error: " + echo)
        if self.mode == "429":
            headers = {"Retry-After": "60", "X-Rate-Limit-Reset": "60"}
            return web.Response(status=429, text=echo, headers=headers)
        if path.startswith("/speedsms"):
            if self.mode == "refusal":
                payload: Any = {"status": "error", "code": "101", "message": echo}
            elif "/user/info" in path:
                payload = {"status": "success", "code": "00", "data": {"email": echo, "balance": 1}}
            else:
                data = {"tranId": 1, "totalSMS": 1, "totalPrice": 1, "invalidPhone": []}
                payload = {"status": "success", "code": "00", "data": data}
            return web.json_response(payload)
        if path.startswith("/esms"):
            if self.mode == "refusal":
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
            return web.json_response(payload)
        # Fibo: the ASMX <string> wrapper with the <SMS> answer escaped inside it.
        if "PartnerMtTotal" in path:
            if self.mode == "refusal":
                fault = (
                    f"<soap:Fault><faultcode>soap:Client</faultcode>"
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
            return web.Response(text=text, content_type="text/xml")
        code = "3" if self.mode == "refusal" else "200"
        inner = (
            f"<SMS><Code>{code}</Code><Message>{xml_escape(echo)}</Message>"
            f"<AccountBalance>5</AccountBalance><Time>{xml_escape(echo)}</Time></SMS>"
        )
        text = f'<string xmlns="http://tempuri.org/">{xml_escape(inner)}</string>'
        return web.Response(text=text, content_type="text/xml")


def _echo_client(server: EchoServer, provider: str, seen: Seen) -> Any:
    common: dict[str, Any] = {
        "rate_limit": None,
        "retry": RETRY,
        "timeout": 2.0,
        "hooks": _hooks(seen),
    }
    if provider == "speedsms":
        return SpeedSMS(TOKEN, base_url=server.url + "/speedsms", sms_type=2, **common)
    if provider == "esms":
        return ESMS(
            API_KEY,
            SECRET_KEY,
            base_url=server.url + "/esms",
            voice_base_url=server.url + "/esms-voice",
            brandname="BRAND",
            **common,
        )
    return Fibo(
        "CL0000000001", CLIENT_PASS, base_url=server.url + "/fibo", sender="BRAND", **common
    )


ECHO_CASES = [
    pytest.param(mode, provider, id=f"{mode}-{provider}")
    for mode in ("refusal", "success", "garbage", "429")
    for provider in OPERATIONS
]


@pytest.mark.parametrize(("mode", "provider"), ECHO_CASES)
async def test_no_secret_when_the_provider_echoes_the_request(
    provider: str, mode: str, seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    async with EchoServer() as server, _echo_client(server, provider, seen) as client:
        server.mode = mode
        for name, _, op in OPERATIONS[provider]:
            await seen.run(f"{provider} {name} {mode}", op(client))
    _logs(caplog, seen)
    leaks = seen.leaks()
    assert not leaks, "\n".join(leaks[:6])
