"""Simulated Fibo: ``SendMaskedSMS`` and ``GetClientBalance`` (ASMX over HTTP GET) and the
``GetTotalMt`` SOAP 1.1 service.

Served under ``/fibo`` (the stand-in for the host): ``/SendMT/service.asmx/SendMaskedSMS`` and
``/SendMT/service.asmx/GetClientBalance`` (each also under ``service.aspx``, since Fibo's
document names both: it gives the balance at ``.aspx``, while every real client calls
``.asmx``), the older layout that every real client found still uses
(``/service.asmx/SendMaskedSMS``, ``/Service.asmx/GetClientBalance``, on
``center.fibosms.com`` in reality), and ``/WebserivceFibo/PartnerMtTotal.asmx``. Fibo runs ASP.NET
on IIS, so, as there, every path after ``/fibo`` is matched without regard to case
(``/fibo/SERVICE.ASMX/sendmaskedsms`` is a send) and so are the query parameter names (ASP.NET's
query collection ignores case; the values of a repeated name are joined with commas).

The ASMX answers are what .NET writes for a method returning a string: the provider's XML,
entity-escaped, inside ``<string xmlns="http://tempuri.org/">``::

    <?xml version="1.0" encoding="utf-8"?>
    <string xmlns="http://tempuri.org/">&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;...</string>

with ``Content-Type: text/xml; charset=utf-8``. The inner XML is the document's, element for
element: ``<SMS><Code>200</Code><Message>Sending...</Message><Time></Time></SMS>`` for an
accepted send, ``<SMS><Code>200</Code><AccountBalance>N</AccountBalance><Time></Time></SMS>``
for the balance. ``<Time>`` is always empty, as the document shows it: clients read the answer
loosely (one real client keeps only the digits of the ``<string>`` text and compares them with
"200"), so nothing but the code may carry digits in a success answer. A refusal is ``<SMS>``
with the error table's ``Code`` and its wording as ``Message``, and the same empty ``<Time>``.
Like any ASMX GET binding, a missing parameter is HTTP 500
``System.InvalidOperationException: Missing parameter: <name>.`` in plain text.

``SendMaskedSMS`` checks, in order: ``clientNo``/``clientPass`` (Code 3), ``senderName``
declared (5), ``serviceType`` 0 or 1 (11), an old 11-digit ``01xx`` number (31), a number that
is not a Vietnamese mobile one (10), empty content or, the simulator's documented choice,
``serviceType`` 0 (plain text) with content outside the GSM alphabet (23: the content must be
sent as Unicode with ``serviceType=1``), then the balance (14): price x segments, counted as
UCS-2 for ``serviceType`` 1. Accepted: Code 200 ``Sending...``. ``smsGUID`` is a string the
document gives as "0 (default)" and every sample sends as 0 (or 1): it is no message id, so it
is kept verbatim as the outbox record's ``request_id`` and never checked for repeats (ten sends
with ``smsGUID=0`` are ten messages). The message id is the simulator's own (Fibo returns none).

``GetTotalMt`` wants ``SOAPAction: "http://tempuri.org/GetTotalMt"`` and a SOAP 1.1 envelope
whose body is ``GetTotalMt`` (namespace ``http://tempuri.org/``) with ``Username`` and
``Password``. The envelope is parsed with a hardened lxml parser (no DTD, no entities, no
network, 64 KB at most). It answers ``GetTotalMtResult`` = ``success|failed|pending`` counted
over today's (Vietnam time) accepted messages at their simulated state (a number ending 0001
counts as pending until its retry delivers it). Anything wrong is a SOAP Fault with HTTP 500:
``soap:Client`` for a wrong SOAPAction, an unreadable envelope or a wrong username/password.
With ``record_outbox=False`` no message is kept, so the totals stay ``0|0|0``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree

from smsvn import text
from smsvn.sandbox._base import (
    DELIVERED,
    FAILED,
    Batch,
    Handler,
    Route,
    any_case,
    is_old_number,
    json_number,
    national,
    segment_count,
    too_many_html,
    vn_now,
)
from smsvn.sandbox._engine import Engine
from smsvn.sandbox._simulator import Settings

__all__ = [
    "BALANCE_PATH",
    "CLIENT_NO",
    "CLIENT_PASS",
    "LEGACY_BALANCE_PATH",
    "LEGACY_SEND_PATH",
    "PREFIX",
    "SENDER",
    "SEND_PATH",
    "TOTALS_PATH",
    "FiboSimulator",
]

PREFIX: Final = "/fibo"
CLIENT_NO: Final = "CL0000000001"
"""The one clientNo the simulator accepts (also the SOAP ``Username``)."""
CLIENT_PASS: Final = "sandbox-fibo-pass"
"""Its clientPass (also the SOAP ``Password``)."""
SENDER: Final = "SMSVN"
"""The one declared ``senderName``."""
SEND_PATH: Final = "/SendMT/service.asmx/SendMaskedSMS"
"""The document's send path (also served with ``service.aspx``)."""
BALANCE_PATH: Final = "/SendMT/service.asmx/GetClientBalance"
"""The balance path every real client calls (the document's ``service.aspx`` is served too)."""
LEGACY_SEND_PATH: Final = "/service.asmx/SendMaskedSMS"
"""The older layout's send path (``center.fibosms.com`` in reality), still used by clients."""
LEGACY_BALANCE_PATH: Final = "/Service.asmx/GetClientBalance"
"""The older layout's balance path, capitalised as its clients write it."""
TOTALS_PATH: Final = "/WebserivceFibo/PartnerMtTotal.asmx"
MAX_SOAP_BODY: Final = 64 * 1024
"""Bytes a SOAP request may have."""

_SOAP_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_TEMPURI: Final = "http://tempuri.org/"
_SOAP_ACTION: Final = "http://tempuri.org/GetTotalMt"
_XML: Final = {"Content-Type": "text/xml; charset=utf-8"}
_SEND_PARAMS: Final = (
    "clientNo",
    "clientPass",
    "senderName",
    "phoneNumber",
    "smsMessage",
    "smsGUID",
    "serviceType",
)
_BALANCE_PARAMS: Final = ("clientNo", "clientPass", "serviceType")
_MESSAGES: Final = {
    3: "Sai user hoặc mật khẩu",
    5: "Chưa khai báo brandname/dịch vụ",
    10: "Định dạng thuê bao không đúng",
    11: "Có tham số không hợp lệ",
    14: "Tài khoản không đủ",
    23: "Sai cú pháp tin nhắn",
    31: "Số điện thoại 11 số đã chuyển sang 10 số",
}
_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_pis=True,
    remove_comments=True,
)


class FiboSimulator:
    """Fibo's ASMX and SOAP services and its account, over the sandbox's engine."""

    provider: ClassVar[str] = "fibo"
    default_balance: ClassVar[float] = 10_000_000.0
    """Messages, not VND: enough for a million sends."""
    default_prices: ClassVar[Mapping[str, float]] = {"fibo": 1.0}
    """One SMS segment costs one message."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        # ``settings``: Fibo documents no rate limit and makes no callbacks.
        self._engine = engine
        self._credentials = (CLIENT_NO, CLIENT_PASS)
        self._senders = frozenset((SENDER,))
        self._sent: list[Batch] = []

    def routes(self) -> list[Route]:
        """``send`` and ``balance`` (each under ``/SendMT/service.asmx``,
        ``/SendMT/service.aspx`` and the older ``/service.asmx``) and ``totals``, every path
        matched without regard to case after ``/fibo``, as IIS matches them."""
        routes = []
        for service in ("/SendMT/service.asmx", "/SendMT/service.aspx", "/service.asmx"):
            routes.append(
                Route("GET", any_case(PREFIX, service + "/SendMaskedSMS"), "send", self._send)
            )
            routes.append(
                Route(
                    "GET", any_case(PREFIX, service + "/GetClientBalance"), "balance", self._balance
                )
            )
        routes.append(Route("POST", any_case(PREFIX, TOTALS_PATH), "totals", self._totals))
        return routes

    def fallbacks(self) -> list[tuple[str, str, Handler]]:
        """aiohttp's plain 404 serves unknown paths: Fibo's own pages are IIS defaults."""
        return []

    def too_many(self, seconds: float) -> web.Response:
        """A forced HTTP 429 (Fibo documents no rate limit)."""
        return too_many_html(seconds)

    def client_options(self, root: str) -> dict[str, Any]:
        """``Fibo(client_no, client_pass, base_url=..., rate_limit=None, sender=...)``."""
        return {
            "client_no": CLIENT_NO,
            "client_pass": CLIENT_PASS,
            "base_url": root + PREFIX,
            "rate_limit": None,
            "sender": SENDER,
        }

    def describe(self, root: str) -> list[str]:
        """The base URL, the credentials and the sender."""
        return [
            f"base_url={root}{PREFIX}",
            f"client_no={CLIENT_NO}  client_pass={CLIENT_PASS}  sender={SENDER}",
        ]

    # -- ASMX ------------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        """``GET SendMaskedSMS``: one message to one number (checks in the module's order)."""
        query = _parameters(request)
        missing = next((name for name in _SEND_PARAMS if name.lower() not in query), None)
        if missing is not None:
            return _missing(missing)
        if (query["clientno"], query["clientpass"]) != self._credentials:
            return _answer(3)
        sender = query["sendername"]
        if sender not in self._senders:
            return _answer(5)
        service_type = query["servicetype"].strip()
        if service_type not in ("0", "1"):
            return _answer(11)
        raw = query["phonenumber"].strip()
        if is_old_number(raw):
            return _answer(31)
        number = national(raw)
        if number is None:
            return _answer(10)
        content = query["smsmessage"]
        unicode = service_type == "1"
        if not content or (not unicode and text.needs_unicode(content)):
            return _answer(23)
        engine = self._engine
        segments = segment_count(content, unicode)
        price = engine.prices["fibo"] * segments
        if not engine.charge("fibo", price):
            return _answer(14)
        due, retry_at = engine.times()
        batch = Batch(
            provider="fibo",
            kind="sms",
            message_id=f"fibo-{engine.serial()}",
            numbers=[number],
            content=content,
            accepted_at=time.time(),
            due=due,
            retry_at=retry_at,
            unit_price=price,
            segments=segments,
            request_id=query["smsguid"],
            sender=sender,
            sms_type=int(service_type),
        )
        engine.accept(batch)
        if engine.record_outbox:
            self._sent.append(batch)
        return _answer(200, "Sending...")

    async def _balance(self, request: web.Request) -> web.Response:
        """``GET GetClientBalance``: messages (or VND) left on the account."""
        query = _parameters(request)
        missing = next((name for name in _BALANCE_PARAMS if name.lower() not in query), None)
        if missing is not None:
            return _missing(missing)
        if (query["clientno"], query["clientpass"]) != self._credentials:
            return _answer(3)
        balance = json_number(self._engine.balances["fibo"])
        return _wrap(
            f"<SMS><Code>200</Code><AccountBalance>{balance}</AccountBalance><Time></Time></SMS>"
        )

    # -- SOAP ------------------------------------------------------------------------------

    async def _totals(self, request: web.Request) -> web.Response:
        """SOAP ``GetTotalMt``: today's success|failed|pending counts."""
        action = (request.headers.get("SOAPAction") or "").strip().strip('"')
        if request.content_type != "text/xml":
            return web.Response(
                status=415,
                text=f"Unsupported Media Type: {request.content_type[:60]}",
            )
        if action != _SOAP_ACTION:
            return _fault(
                f"Server did not recognize the value of HTTP Header SOAPAction: {action}."
            )
        raw = await request.read()
        credentials = _read_envelope(raw)
        if credentials is None:
            return _fault(
                "Server was unable to read request. ---> There is an error in XML document."
            )
        if credentials != self._credentials:
            return _fault("Wrong Username or Password.")
        today = vn_now().date().isoformat()
        now = self._engine.now()
        success = failed = pending = 0
        for batch in self._sent:
            if batch.accepted_date() != today:
                continue
            for packed in batch.numbers:
                state = batch.state(packed, now)
                if state == DELIVERED:
                    success += 1
                elif state == FAILED:
                    failed += 1
                else:
                    pending += 1
        return web.Response(
            body=_envelope(
                f'<GetTotalMtResponse xmlns="{_TEMPURI}">'
                f"<GetTotalMtResult>{success}|{failed}|{pending}</GetTotalMtResult>"
                "</GetTotalMtResponse>"
            ),
            headers=_XML,
        )


def _read_envelope(raw: bytes) -> tuple[str, str] | None:
    """(Username, Password) of a well-formed ``GetTotalMt`` SOAP 1.1 request, else None."""
    if not raw.strip() or len(raw) > MAX_SOAP_BODY or b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return None
    try:
        root = etree.XML(raw, _PARSER)
    except (etree.LxmlError, ValueError):
        return None
    if root.tag != f"{{{_SOAP_NS}}}Envelope":
        return None
    body = root.find(f"{{{_SOAP_NS}}}Body")
    if body is None:
        return None
    call = next((child for child in body if isinstance(child.tag, str)), None)
    if call is None or call.tag != f"{{{_TEMPURI}}}GetTotalMt":
        return None
    username = call.find(f"{{{_TEMPURI}}}Username")
    password = call.find(f"{{{_TEMPURI}}}Password")
    if username is None or password is None:
        return None
    return (username.text or "", password.text or "")


def _parameters(request: web.Request) -> dict[str, str]:
    """The query string as ASP.NET reads it: names without regard to case, the values of a
    repeated name joined with commas."""
    values: dict[str, list[str]] = {}
    for name, value in request.query.items():
        values.setdefault(name.lower(), []).append(value)
    return {name: ",".join(parts) for name, parts in values.items()}


def _wrap(inner: str) -> web.Response:
    """The ASMX string answer: ``inner`` entity-escaped inside ``<string>``."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<string xmlns="{_TEMPURI}">{escape(inner)}</string>'
    )
    return web.Response(body=body.encode(), headers=_XML)


def _answer(code: int, message: str | None = None) -> web.Response:
    """A ``<SMS>`` answer with ``code`` and its message (the error table's wording)."""
    words = escape(message if message is not None else _MESSAGES.get(code, ""))
    return _wrap(f"<SMS><Code>{code}</Code><Message>{words}</Message><Time></Time></SMS>")


def _missing(name: str) -> web.Response:
    """What an ASMX GET binding answers when a method parameter is absent."""
    return web.Response(
        status=500,
        text=f"System.InvalidOperationException: Missing parameter: {name}.\r\n",
        content_type="text/plain",
    )


def _envelope(body: str) -> bytes:
    """A SOAP 1.1 envelope around ``body``."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{_SOAP_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def _fault(reason: str, code: str = "soap:Client") -> web.Response:
    """A SOAP 1.1 Fault, as ASMX sends it: HTTP 500."""
    return web.Response(
        status=500,
        body=_envelope(
            f"<soap:Fault><faultcode>{code}</faultcode>"
            f"<faultstring>{escape(reason)}</faultstring><detail /></soap:Fault>"
        ),
        headers=_XML,
    )
