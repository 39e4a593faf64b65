"""Simulated SpeedSMS: ``/user/info``, ``/sms/send``, ``/voice/otp``, the rate limit and webhooks.

Served under ``/speedsms/index.php``. Wire format as SpeedSMS (a Yii2 application) answers:

- HTTP Basic auth, the access token as user name (any password), or the token as the
  ``access-token`` query parameter (see "Beyond the documents" below); a wrong token (by either
  way, even beside a right one) or none gets HTTP 401 ``{"name":"Unauthorized","message":"Your
  request was made with invalid credentials.","code":0,"status":401}`` with
  ``WWW-Authenticate: Basic realm="api"`` (the challenge .NET's ``WebClient`` waits for before
  it sends its credentials).
- A sliding window of ``rate_limit.requests`` per ``rate_limit.period`` seconds per token over
  every route; past it HTTP 429 ``{"name":"Too Many Requests","message":"Rate limit
  exceeded.","code":0,"status":429}``. Every answer carries ``X-Rate-Limit-Limit``,
  ``-Remaining`` and ``-Reset`` (seconds to wait: whole seconds for windows of 10 s and more,
  fractional in compressed ones). A refused request does not count against the window.
- Answers ``{"status":"success","code":"00","data":{...}}`` or ``{"status":"error",
  "code":"<3 digits>","message":...}``; a body that is not JSON gets Yii's HTTP 400.
- Paths are matched with their case, as Yii routes them (its route ids are lower-case, so
  ``SMS/send`` is Yii's JSON 404, and ``index.php`` is a file name on a case-sensitive host).

``POST /sms/send`` takes ``to`` (1-100 numbers, ``84...`` or ``0...``), ``content``,
``sms_type`` (2, 3, 4, 5) and ``sender`` (type 3: a registered brandname, else 101; type 5: a
device id). ``type`` and ``brandname`` are the same fields under the names SpeedSMS's own Java,
C# and Node samples send (``{"to":[...],"content":...,"type":2,"brandname":""}``); where both
names are given, the documented one wins. A send that names no type at all (an older official
PHP sample sends only ``to`` and ``content``) is type 2 (``DEFAULT_SMS_TYPE``): SpeedSMS's
documents state no default, but its official PHP library falls back to 2 (``SMS_TYPE_CSKH``)
when given none, and 2 is the one type that needs no sender; an omitted sender is none. Invalid
numbers are listed in ``data.invalidPhone`` and the rest are sent (repeats once); none valid is
error 105 with ``invalidPhone``. Content outside the Basic Multilingual Plane (emoji) is 110,
over 5 segments 113 (the limit the client applies too). The price is ``price x segments`` per
recipient (300 when the balance is short). ``tranId`` is an integer.

``/voice/otp`` (POST JSON or GET query) takes ``to`` and ``content`` (digits only, else 601).
``to`` may be national (``0912345678``: the voice document's "09x" form and example) or
international (``84912345678``: the form the SMS document's PHP sample passes to ``sendVoice``);
an old 11-digit ``01x`` number (the voice document names it) is read as its 10-digit successor.

Beyond the documents, what clients in the wild send, decided as follows:

- ``?access-token=<token>`` is accepted on every route, alone or beside Basic auth. The 401 and
  429 bodies above are Yii2's own (``yii\filters\auth`` and ``RateLimiter``), Yii2's query
  authenticator reads exactly the parameter ``access-token``, and independent clients use that
  Yii-specific name, alone, against ``/user/info`` and ``/sms/send``: the real service most
  plausibly accepts it. Its answers are the documented ones, nothing new.
- ``GET /sms/send?to=&content=&type=&sender=`` (the same fields, ``sms_type`` and
  ``brandname`` too; ``to`` one number or several joined with commas) is accepted as the same
  send, with the same answers: many independent clients send exactly these parameters, which
  points at an older form SpeedSMS once showed. Its answers are the documented POST answers.
- ``GET /sms/status/{tranId}`` is not served: it answers Yii's JSON 404 like any unknown path.
  No SpeedSMS document shows what it returns, and the clients that call it disagree (one reads
  ``status == 1``, another a list under ``data``), so any answer would be invented; a loud 404
  is better than a made-up status a program might trust. Delivery results come by webhook.

Delivery reports: with ``webhook_url`` set, each recipient's report is POSTed as
``{"type":"report","tranId":<int>,"phone":"0912345678","status":S}`` when its delivery is
attempted: 0 delivered, 69 failed (numbers ending 0000), 1 then 0 one delivery delay later
(numbers ending 0001). One attempt each, as nothing says SpeedSMS retries. Voice calls get no
report. ``inbound`` POSTs ``{"type":"sms","phone":...,"content":...}``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar, Final

import msgspec
from aiohttp import web

from smsvn import text
from smsvn.limits import RateLimit
from smsvn.sandbox._base import (
    Batch,
    Handler,
    Route,
    basic_token,
    format_seconds,
    json_number,
    national,
    number_text,
)
from smsvn.sandbox._engine import Engine
from smsvn.sandbox._simulator import Settings

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_SMS_TYPE",
    "MAX_RECIPIENTS",
    "MAX_SEGMENTS",
    "PREFIX",
    "SENDER",
    "TOKEN",
    "SpeedSMSSimulator",
]

PREFIX: Final = "/speedsms/index.php"
TOKEN: Final = "sandbox-speedsms-token"
"""The one access token the simulator accepts."""
SENDER: Final = "SMSVN"
"""The one registered brandname (``sms_type`` 3)."""
DEFAULT_RATE_LIMIT: Final = RateLimit(requests=60, period=60.0)
"""SpeedSMS's documented limit: 60 requests in any 60 seconds per access token."""
MAX_RECIPIENTS: Final = 100
"""Numbers one ``/sms/send`` may carry (more is error 101)."""
MAX_SEGMENTS: Final = 5
"""Segments a content may take (more is error 113)."""
_SMS_TYPES: Final = frozenset({2, 3, 4, 5})
DEFAULT_SMS_TYPE: Final = 2
"""The type of a send that names none (see the module docstring)."""
_QUERY_TOKEN: Final = "access-token"
_FAILED_STATUS: Final = 69
_TEMPORARY_STATUS: Final = 1
_EMAIL: Final = "demo@smsvn.test"

_JSON: Final = "application/json; charset=UTF-8"
_ENCODE = msgspec.json.encode
_UNAUTHORIZED: Final = _ENCODE(
    {
        "name": "Unauthorized",
        "message": "Your request was made with invalid credentials.",
        "code": 0,
        "status": 401,
    }
)
_TOO_MANY: Final = _ENCODE(
    {"name": "Too Many Requests", "message": "Rate limit exceeded.", "code": 0, "status": 429}
)
_BAD_JSON: Final = _ENCODE(
    {
        "name": "Bad Request",
        "message": "Invalid JSON data in request body: Syntax error.",
        "code": 0,
        "status": 400,
    }
)
_NOT_FOUND: Final = _ENCODE(
    {"name": "Not Found", "message": "Page not found.", "code": 0, "status": 404}
)
_NOT_ALLOWED: Final = _ENCODE(
    {
        "name": "Method Not Allowed",
        "message": "Method Not Allowed. This URL can only handle the following request methods: "
        "{methods}.",
        "code": 0,
        "status": 405,
    }
)


class _SendBody(msgspec.Struct):
    """``POST /sms/send``: types are checked by hand to answer 101 the way SpeedSMS does.
    ``type`` and ``brandname`` are the names SpeedSMS's own Java, C# and Node samples give
    ``sms_type`` and ``sender``."""

    to: Any = None
    content: Any = None
    sms_type: Any = None
    sender: Any = None
    type: Any = None
    brandname: Any = None


class _VoiceBody(msgspec.Struct):
    """``POST /voice/otp``."""

    to: Any = None
    content: Any = None


_DECODE_SEND = msgspec.json.Decoder(_SendBody)
_DECODE_VOICE = msgspec.json.Decoder(_VoiceBody)


class _Window:
    """A sliding window of at most ``limit`` requests in any ``period`` seconds, per key."""

    __slots__ = ("_hits", "limit", "period", "whole")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit.requests
        self.period = limit.period
        self.whole = limit.period >= 10
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, now: float) -> float | None:
        """Count one request at ``now``; None if allowed, else the seconds until it would be."""
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        cutoff = now - self.period
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.period - now
        hits.append(now)
        return None

    def headers(self, key: str, now: float, wait: float | None = None) -> dict[str, str]:
        """``X-Rate-Limit-*`` for ``key``'s window at ``now``."""
        hits = self._hits.get(key) or deque()
        if wait is None:
            wait = hits[0] + self.period - now if hits else 0.0
        return {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": str(max(0, self.limit - len(hits))),
            "X-Rate-Limit-Reset": format_seconds(wait, self.whole) if wait > 0 else "0",
        }


class SpeedSMSSimulator:
    """SpeedSMS's API, its account and its webhook, over the sandbox's engine."""

    provider: ClassVar[str] = "speedsms"
    default_balance: ClassVar[float] = 1_000_000_000.0
    """VND."""
    default_prices: ClassVar[Mapping[str, float]] = {"speedsms": 250.0, "speedsms_voice": 400.0}
    """One SMS segment, one OTP call."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._token = TOKEN
        self._auth = "Basic " + base64.b64encode(f"{TOKEN}:x".encode()).decode()
        self._senders = frozenset((SENDER,))
        self.rate_limit = settings.rate_limit
        """The limit enforced per token (None: none); fixed once built."""
        self._window = None if settings.rate_limit is None else _Window(settings.rate_limit)
        self.webhook_url = settings.webhook_url
        """Where delivery reports and inbound SMS are POSTed (None: nowhere); settable."""

    def client_options(self, root: str) -> dict[str, Any]:
        """``SpeedSMS(token, base_url=..., rate_limit=<the enforced one>, sms_type=3,
        sender=...)``: brandname messages from the registered sender."""
        return {
            "token": TOKEN,
            "base_url": root + PREFIX,
            "rate_limit": self.rate_limit,
            "sms_type": 3,
            "sender": SENDER,
        }

    def describe(self, root: str) -> list[str]:
        """The base URL, the token, the sender and the rate limit."""
        limit = self.rate_limit
        rate = "off" if limit is None else f"{limit.requests} requests / {limit.period:g} s"
        return [
            f"base_url={root}{PREFIX}",
            f"token={TOKEN}  sender={SENDER}  rate limit: {rate}",
        ]

    def routes(self) -> list[Route]:
        """``user/info`` (balance), ``sms/send`` (send: POST JSON or GET query), ``voice/otp``
        (voice: likewise)."""
        return [
            Route("GET", PREFIX + "/user/info", "balance", self._user_info),
            Route("POST", PREFIX + "/sms/send", "send", self._send_post),
            Route("GET", PREFIX + "/sms/send", "send", self._send_get),
            Route("POST", PREFIX + "/voice/otp", "voice", self._voice_post),
            Route("GET", PREFIX + "/voice/otp", "voice", self._voice_get),
        ]

    def fallbacks(self) -> list[tuple[str, str, Handler]]:
        """Yii's JSON 404 (and 405 for a known path with the wrong method)."""
        return [("*", PREFIX + "/{tail:.*}", self._not_found)]

    def too_many(self, seconds: float) -> web.Response:
        """SpeedSMS's own 429 with its headers, as a forced fault."""
        limit = self._window.limit if self._window is not None else 60
        return web.Response(
            status=429,
            body=_TOO_MANY,
            headers={
                "Content-Type": _JSON,
                "X-Rate-Limit-Limit": str(limit),
                "X-Rate-Limit-Remaining": "0",
                "X-Rate-Limit-Reset": format_seconds(seconds, whole=False),
            },
        )

    # -- gate and answers ------------------------------------------------------------------

    def _gate(self, request: web.Request) -> web.Response | dict[str, str] | None:
        """Authenticate and rate-limit: an error answer, or the rate headers to send (None
        when there is no limit)."""
        header = request.headers.get("Authorization")
        basic = self._token if header == self._auth else basic_token(header)
        if not self._authenticated(basic, request.query.get(_QUERY_TOKEN)):
            return web.Response(
                status=401,
                body=_UNAUTHORIZED,
                headers={"Content-Type": _JSON, "WWW-Authenticate": 'Basic realm="api"'},
            )
        window = self._window
        if window is None:
            return None
        now = self._engine.now()
        wait = window.hit(self._token, now)
        if wait is None:
            return window.headers(self._token, now)
        self._engine.stats.rate_limited += 1
        headers = window.headers(self._token, now, wait)
        headers["Content-Type"] = _JSON
        return web.Response(status=429, body=_TOO_MANY, headers=headers)

    def _authenticated(self, basic: str | None, query: str | None) -> bool:
        """Whether the credentials given (the Basic user name, the ``access-token`` query
        parameter; None when not given) are the account's: at least one, and none wrong, as
        Yii's auth methods fail on a credential given but wrong."""
        given = [token for token in (basic, query) if token is not None]
        return bool(given) and all(token == self._token for token in given)

    @staticmethod
    def _answer(payload: Mapping[str, Any], headers: dict[str, str] | None) -> web.Response:
        """A JSON answer with the rate headers, if any."""
        if headers is None:
            return web.Response(body=_ENCODE(payload), headers={"Content-Type": _JSON})
        headers["Content-Type"] = _JSON
        return web.Response(body=_ENCODE(payload), headers=headers)

    @classmethod
    def _ok(cls, data: Mapping[str, Any], headers: dict[str, str] | None) -> web.Response:
        """The success envelope around ``data``."""
        return cls._answer({"status": "success", "code": "00", "data": data}, headers)

    @classmethod
    def _error(
        cls,
        code: str,
        message: str,
        headers: dict[str, str] | None,
        invalid: list[str] | None = None,
    ) -> web.Response:
        """The error envelope, with ``invalidPhone`` when numbers were refused."""
        payload: dict[str, Any] = {"status": "error", "code": code, "message": message}
        if invalid is not None:
            payload["invalidPhone"] = invalid
        return cls._answer(payload, headers)

    # -- routes ----------------------------------------------------------------------------

    async def _user_info(self, request: web.Request) -> web.Response:
        """``GET /user/info``: e-mail, balance and currency."""
        gate = self._gate(request)
        if isinstance(gate, web.Response):
            return gate
        balance = self._engine.balances["speedsms"]
        return self._ok({"email": _EMAIL, "balance": balance, "currency": "VND"}, gate)

    async def _send_post(self, request: web.Request) -> web.Response:
        """``POST /sms/send`` with a JSON body (see the module docstring)."""
        gate = self._gate(request)
        if isinstance(gate, web.Response):
            return gate
        raw = await request.read()
        try:
            body = _DECODE_SEND.decode(raw) if raw.strip() else _SendBody()
        except msgspec.ValidationError:
            return self._error("101", "Invalid or missing parameters", gate)
        except msgspec.DecodeError:
            return _bad_json(gate)
        return self._send(
            body.to,
            body.content,
            _either(body.sms_type, body.type),
            _either(body.sender, body.brandname),
            gate,
        )

    async def _send_get(self, request: web.Request) -> web.Response:
        """``GET /sms/send?to=&content=&type=&sender=``: the same send from the query string,
        ``to`` one number or several joined with commas."""
        gate = self._gate(request)
        if isinstance(gate, web.Response):
            return gate
        query = request.query
        numbers = [
            part.strip()
            for value in query.getall("to", ())
            for part in value.split(",")
            if part.strip()
        ]
        return self._send(
            numbers or None,
            query.get("content"),
            _either(query.get("sms_type"), query.get("type")),
            _either(query.get("sender"), query.get("brandname")),
            gate,
        )

    def _send(
        self,
        numbers: object,
        content: object,
        raw_type: object,
        sender: object,
        gate: dict[str, str] | None,
    ) -> web.Response:
        """One content to 1-100 numbers, checked in the module docstring's order; an omitted
        type is ``DEFAULT_SMS_TYPE``."""
        if not isinstance(numbers, list) or not numbers:
            return self._error("101", "Invalid or missing parameters: to", gate)
        if len(numbers) > MAX_RECIPIENTS:
            return self._error(
                "101", f"Invalid parameters: at most {MAX_RECIPIENTS} phone numbers", gate
            )
        if not isinstance(content, str) or not content:
            return self._error("101", "Invalid or missing parameters: content", gate)
        sms_type = DEFAULT_SMS_TYPE if raw_type is None else _int(raw_type)
        if sms_type not in _SMS_TYPES:
            return self._error("101", "Invalid or missing parameters: sms_type", gate)
        if sender is not None and not isinstance(sender, str):
            return self._error("101", "Invalid parameters: sender", gate)
        brand = sender if isinstance(sender, str) else None
        if sms_type == 3 and brand not in self._senders:
            return self._error("101", "Invalid parameters: sender is not registered", gate)
        if sms_type == 5 and not brand:
            return self._error("101", "Invalid or missing parameters: sender", gate)
        if any(char > "\uffff" for char in content):
            return self._error("110", "Not support sms content encoding", gate)
        segments = text.segments(content).segments
        if segments > MAX_SEGMENTS:
            return self._error("113", "Sms content too long", gate)
        valid: dict[str, None] = {}
        invalid: list[str] = []
        for number in numbers:
            canonical = national(number)
            if canonical is None:
                invalid.append(str(number))
            else:
                valid[canonical] = None
        if not valid:
            return self._error("105", "Phone number invalid", gate, invalid)
        engine = self._engine
        total_sms = segments * len(valid)
        unit = engine.prices["speedsms"] * segments
        price = unit * len(valid)
        if not engine.charge("speedsms", price):
            return self._error("300", "Your account balance not enough to send sms", gate)
        tran_id = engine.serial()
        due, retry_at = engine.times()
        batch = Batch(
            provider="speedsms",
            kind="sms",
            message_id=str(tran_id),
            numbers=list(valid),
            content=content,
            accepted_at=time.time(),
            due=due,
            retry_at=retry_at,
            unit_price=unit,
            segments=segments,
            sender=brand if sms_type in (3, 5) else None,
            sms_type=sms_type,
        )
        engine.accept(batch)
        url = self.webhook_url
        if url:
            engine.schedule(due, partial(self._report, batch, tran_id, url))
        return self._ok(
            {
                "tranId": tran_id,
                "totalSMS": total_sms,
                "totalPrice": json_number(price),
                "invalidPhone": invalid,
            },
            gate,
        )

    async def _voice_post(self, request: web.Request) -> web.Response:
        """``POST /voice/otp`` with a JSON body."""
        gate = self._gate(request)
        if isinstance(gate, web.Response):
            return gate
        raw = await request.read()
        try:
            body = _DECODE_VOICE.decode(raw) if raw.strip() else _VoiceBody()
        except msgspec.ValidationError:
            return self._error("101", "Invalid or missing parameters", gate)
        except msgspec.DecodeError:
            return _bad_json(gate)
        return self._voice(body.to, body.content, gate)

    async def _voice_get(self, request: web.Request) -> web.Response:
        """``GET /voice/otp?to=&content=``."""
        gate = self._gate(request)
        if isinstance(gate, web.Response):
            return gate
        return self._voice(request.query.get("to"), request.query.get("content"), gate)

    def _voice(self, to: object, content: object, gate: dict[str, str] | None) -> web.Response:
        """Place one OTP call: ``to`` a number, ``content`` digits only."""
        if not isinstance(to, str | int) or isinstance(to, bool) or to == "":
            return self._error("101", "Invalid or missing parameters: to", gate)
        if not isinstance(content, str) or not content:
            return self._error("101", "Invalid or missing parameters: content", gate)
        number = national(to)
        if number is None:
            return self._error("105", "Phone number invalid", gate, [str(to)])
        if not (content.isascii() and content.isdigit()):
            return self._error("601", "OTP number is not valid", gate)
        engine = self._engine
        price = engine.prices["speedsms_voice"]
        if not engine.charge("speedsms", price):
            return self._error("300", "Your account balance not enough", gate)
        tran_id = engine.serial()
        due, retry_at = engine.times()
        engine.accept(
            Batch(
                provider="speedsms",
                kind="voice",
                message_id=str(tran_id),
                numbers=[number],
                content=content,
                accepted_at=time.time(),
                due=due,
                retry_at=retry_at,
                unit_price=price,
                segments=1,
            )
        )
        return self._ok({"tranId": tran_id, "totalPrice": json_number(price)}, gate)

    async def _not_found(self, request: web.Request) -> web.Response:
        """Yii's JSON 404, or 405 for a known path with the wrong method."""
        known = {r.path: r.method for r in self.routes()}
        allowed = sorted({r.method for r in self.routes() if r.path == request.path})
        if request.path in known:
            body = _NOT_ALLOWED.replace(b"{methods}", ", ".join(allowed).encode())
            return web.Response(
                status=405, body=body, headers={"Content-Type": _JSON, "Allow": ", ".join(allowed)}
            )
        return web.Response(status=404, body=_NOT_FOUND, headers={"Content-Type": _JSON})

    # -- webhooks --------------------------------------------------------------------------

    async def _report(self, batch: Batch, tran_id: int, url: str) -> None:
        """POST each recipient's delivery report; numbers ending 0001 get a second one."""
        engine = self._engine
        again: list[int] = []
        for packed in batch.numbers:
            ending = packed % 10000
            if ending == 0:
                status = _FAILED_STATUS
            elif ending == 1 and batch.retry_at > batch.due:
                status = _TEMPORARY_STATUS
                again.append(packed)
            else:
                status = 0
            await engine.callback("POST", url, body=_report_body(tran_id, packed, status))
        if again:
            await asyncio.sleep(max(0.0, batch.retry_at - engine.now()))
            for packed in again:
                await engine.callback("POST", url, body=_report_body(tran_id, packed, 0))

    async def inbound(self, phone: str, content: str) -> int:
        """POST an inbound SMS to the webhook; the HTTP status, or 0 if unreachable."""
        url = self.webhook_url
        if not url:
            raise RuntimeError("no SpeedSMS webhook URL is set (speedsms_webhook_url)")
        body = _ENCODE({"type": "sms", "phone": phone, "content": content})
        return await self._engine.call("POST", url, body=body)


def _report_body(tran_id: int, packed: int, status: int) -> bytes:
    """One delivery report as SpeedSMS POSTs it."""
    return _ENCODE(
        {"type": "report", "tranId": tran_id, "phone": number_text(packed), "status": status}
    )


def _bad_json(headers: dict[str, str] | None) -> web.Response:
    """Yii's answer to a body that is not JSON."""
    out = dict(headers or {})
    out["Content-Type"] = _JSON
    return web.Response(status=400, body=_BAD_JSON, headers=out)


def _either(documented: object, alias: object) -> object:
    """A field by its documented name, else by the name the vendor's samples use (None when
    neither is given)."""
    return alias if documented is None else documented


def _int(value: object) -> int | None:
    """An integer given as a JSON number or a numeric string (PHP clients send either)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
