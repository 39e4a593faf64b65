"""Simulated eSMS: the SMS host (sends, balance, status, receivers, sent list, brandnames) and
the voice host (OTP, template and recording calls, call status), with both callback kinds.

Served under ``/esms/MainService.svc/json`` and ``/esms-voice/MainService.svc/json`` (``/esms``
and ``/esms-voice`` stand for the hosts ``rest.esms.vn`` and ``voiceapi.esms.vn``), answering
JSON as eSMS's WCF service does: codes are strings, query and form field names are matched
without regard to case (``CallbackUrl`` = ``CallBackUrl``, ``APIKEY`` = ``ApiKey``), JSON body
member names exactly. A body that is not a JSON object of scalars gets HTTP 400
``{"error":"Invalid request"}`` with no code.

Paths are matched without regard to case after the host's stand-in
(``/esms/mainservice.svc/JSON/getbalance/...`` is ``GetBalance``): eSMS is a WCF service on IIS
(``MainService.svc``), where IIS finds the ``.svc`` file and WCF's URI templates match their
literal segments ignoring case. Any other path on either host gets WCF's HTML "Endpoint not
found." (404), or "Method not allowed." (405) for a known path asked with the wrong method.

Sends come three ways, with the same fields and the same answers: ``POST
SendMultipleMessage_V4_post_json/`` (a JSON body), ``GET SendMultipleMessage_V4_get`` (the query
string), and ``POST SendMultipleMessage_V4_post/`` (an ``application/x-www-form-urlencoded``
body: the developer guide's "POST X-Form" and the official Python sample, which names the fields
``APIKEY``, ``SECRETKEY``, ``CONTENT``, ``SMSTYPE``, ``BRANDNAME``, ``PHONE``). The form is read
as UTF-8 unless its Content-Type names another charset; a body of another content type (JSON,
multipart) or one that cannot be decoded gets ``{"error":"Invalid request"}`` (HTTP 400), the
answer the developer guide lists for this endpoint besides the coded ones. Each send is checked
in this order: ApiKey/SecretKey (101); ``RequestId`` over 120 characters (159) or already
accepted during the sandbox's life (``{"CodeResult":"124","ErrorMessage":"Request exist"}``,
nothing recorded or charged again); ``SmsType`` 1, 2 or 8 (118); type 1 needs a registered
advertising brandname and type 2 a customer-care one (104); ``Phone`` (comma-separated) with no
valid number (108, eSMS's public code for a malformed number; invalid ones among valid ones are
dropped); type 1 needs 20 numbers (119) and at most 422 characters (131); empty content or an
unreadable ``SendDate`` (99); the balance (103). ``IsUnicode=1`` prices the content as UCS-2.
``Sandbox=1`` creates the message (outbox record with ``sandbox=True``, counted) but never
delivers or charges it. ``SendDate`` (``yyyy/MM/dd HH:mm:ss`` or ``yyyy-MM-dd HH:mm:ss``,
Vietnam time) delays delivery until then. The same number and content within 5 minutes is
accepted (eSMS's own 5-minute rule is not simulated, so tests can repeat themselves).

Status: ``GetSendStatus?RefId=`` answers ``SendStatus`` 2 while a scheduled send waits, 3 while
any recipient is pending, 5 once all are final (a sandbox message: 5 with nothing sent);
``TotalSent`` = recipients x segments. ``GetSmsReceiverStatus_get`` lists ``IsSent`` /
``SentResult`` per number. ``POST GetSmsSentData`` (``From``/``To`` ``MM/dd/yyyy``, Vietnam
days, inclusive; 140 when unreadable or reversed) answers ``{"CodeResult":"100","SentData":
[{"Content","Phone","SellPrice","SentStatus": bool,"SentTime":"/Date(ms+0700)/","SmsId",
"SmsType"}]}`` for the messages actually sent. Unknown ids are 105.

SMS callback: with a ``CallbackUrl`` (http or https), eSMS GETs it once per recipient when that
recipient's result is final, with ``SMSID, SendFailed, SendStatus (5), SendSuccess, TotalPrice,
TypeId, telcoid, phonenumber``, retrying up to 5 times (6 attempts) until HTTP 200. ``telcoid``:
1 Viettel, 2 MobiFone, 3 VinaPhone, 4 Vietnamobile, 5 Gmobile, 6 Itelecom, 7 Wintel.

Voice: ``VoiceOTP`` (``Code`` digits only), ``MakeCallTemplate_V2`` (``TemplateId`` registered,
else 104; ``VariableListStr`` split on ``||`` must give the template's variable count, else
105), ``MakeCallRecord_V2`` (``TemplateId`` = a registered recording, else 106). Checked: keys
(101), phone (107), ``Voice``/``Speed`` (105), ``SendDate`` (99), balance (103). Calls answer
``{"CodeResult":"100","SMSID":"<guid>"}``. A call ends ``delivery_delay`` after it starts:
numbers ending 0000 do not answer (``NOANSWERED`` in ``GetSendStatus``, ``NO ANSWER`` in the
callback, as the document writes each; 0 s), others answer (``ANSWERED``, 24 s, the
``Ivr`` key asked for, else "2"). ``GetSendStatus?ReferenceId=`` before the end answers
``callduration`` 0 and null ``callstatus``/``ivr``; unknown ids are 105. The call's
``CallbackUrl`` gets ``ReferenceId, CallDuration, CallStatus, Ivr, Price, SentResult, CID``
with the same retries.

With ``record_outbox=False`` no message is kept, so status queries answer 105.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from smsvn import phone
from smsvn.sandbox._base import (
    DELIVERED,
    FAILED,
    NOT_SENT,
    PENDING,
    VN,
    Batch,
    Handler,
    Route,
    any_case,
    json_number,
    national,
    number_text,
    same_route,
    segment_count,
    too_many_html,
    wcf_date,
)
from smsvn.sandbox._engine import Engine
from smsvn.sandbox._simulator import Settings

__all__ = [
    "AD_BRANDNAME",
    "API_KEY",
    "BRANDNAME",
    "CALLBACK_RETRIES",
    "CALL_RECORD_ID",
    "CALL_TEMPLATE_ID",
    "CALL_TEMPLATE_VARIABLES",
    "PREFIX",
    "SECRET_KEY",
    "VOICE_CID",
    "VOICE_PREFIX",
    "ESMSSimulator",
]

_ROOT: Final = "/esms"
"""The SMS host (``rest.esms.vn``) on the sandbox."""
_VOICE_ROOT: Final = "/esms-voice"
"""The voice host (``voiceapi.esms.vn``) on the sandbox."""
_SERVICE: Final = "/MainService.svc/json"
PREFIX: Final = _ROOT + _SERVICE
VOICE_PREFIX: Final = _VOICE_ROOT + _SERVICE
API_KEY: Final = "SANDBOXESMSAPIKEY"
"""The one ApiKey the simulator accepts."""
SECRET_KEY: Final = "SANDBOXESMSSECRET"
"""The one SecretKey the simulator accepts."""
BRANDNAME: Final = "SMSVN"
"""The registered customer-care brandname (``SmsType`` 2)."""
AD_BRANDNAME: Final = "SMSVN.QC"
"""The registered advertising brandname (``SmsType`` 1)."""
CALL_TEMPLATE_ID: Final = "1001"
"""The registered call template (2 variables)."""
CALL_TEMPLATE_VARIABLES: Final = 2
"""The variables ``CALL_TEMPLATE_ID`` takes (``VariableListStr`` split on ``||``)."""
CALL_RECORD_ID: Final = "2001"
"""The registered call recording."""
CALLBACK_RETRIES: Final = 5
"""Retries of a callback that did not get HTTP 200 (6 attempts in all)."""
VOICE_CID: Final = "02873005588"
"""The caller id a call shows when ``Sender`` does not name one."""
CALL_DURATION: Final = 24
"""Seconds an answered simulated call lasts."""
_MAX_REQUEST_ID: Final = 120
_MIN_ADVERTISING: Final = 20
_MAX_ADVERTISING_LENGTH: Final = 422
_SMS_TYPES: Final = frozenset({1, 2, 8})
_VOICES: Final = frozenset({"male", "female", "hatieumai", "ngoclam"})
_SPEEDS: Final = frozenset(str(n) for n in range(-3, 4))
_DATE_FORMATS: Final = ("%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S")
_TELCO: Final = {
    phone.Carrier.VIETTEL: "1",
    phone.Carrier.MOBIFONE: "2",
    phone.Carrier.VINAPHONE: "3",
    phone.Carrier.VIETNAMOBILE: "4",
    phone.Carrier.GMOBILE: "5",
    phone.Carrier.ITELECOM: "6",
    phone.Carrier.WINTEL: "7",
}

_JSON: Final = {"Content-Type": "application/json; charset=utf-8"}
_FORM: Final = "application/x-www-form-urlencoded"
_ENCODE = msgspec.json.encode
_INVALID_REQUEST: Final = _ENCODE({"error": "Invalid request"})
_NOT_FOUND_PAGE: Final = (
    b'<?xml version="1.0" encoding="utf-8"?><HTML><HEAD><TITLE>Service</TITLE></HEAD>'
    b"<BODY><P>Endpoint not found.</P></BODY></HTML>"
)
_NOT_ALLOWED_PAGE: Final = (
    b'<?xml version="1.0" encoding="utf-8"?><HTML><HEAD><TITLE>Service</TITLE></HEAD>'
    b"<BODY><P>Method not allowed.</P></BODY></HTML>"
)

Scalar = str | int | float | bool | None


class _SendJson(msgspec.Struct, rename="pascal"):
    """The JSON body of ``SendMultipleMessage_V4_post_json`` (member names as WCF's)."""

    api_key: Scalar = None
    secret_key: Scalar = None
    phone: Scalar = None
    content: Scalar = None
    is_unicode: Scalar = None
    brandname: Scalar = None
    sms_type: Scalar = None
    sandbox: Scalar = None
    request_id: Scalar = None
    send_date: Scalar = None
    callback_url: Scalar = msgspec.field(default=None, name="CallBackUrl")
    """As the document's send table spells it; ``CallbackUrl`` (its voice endpoints' and the
    newer developer guide's spelling) is read too."""
    callback_url_guide: Scalar = msgspec.field(default=None, name="CallbackUrl")


class _SentDataJson(msgspec.Struct, rename="pascal"):
    """The JSON body of ``GetSmsSentData``."""

    api_key: Scalar = None
    secret_key: Scalar = None
    from_: Scalar = msgspec.field(default=None, name="From")
    to: Scalar = None


_DECODE_SEND = msgspec.json.Decoder(_SendJson)
_DECODE_SENT_DATA = msgspec.json.Decoder(_SentDataJson)
_SEND_FIELDS: Final = tuple(
    (field.name, field.encode_name.lower())
    for field in msgspec.structs.fields(_SendJson)
    if field.name != "callback_url_guide"
)


class ESMSSimulator:
    """eSMS's two hosts, its account, its brandnames and its callbacks, over the engine."""

    provider: ClassVar[str] = "esms"
    default_balance: ClassVar[float] = 1_000_000_000.0
    """VND."""
    default_prices: ClassVar[Mapping[str, float]] = {"esms": 350.0, "esms_voice": 450.0}
    """One SMS segment, one call."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        # ``settings``: eSMS documents no rate limit, and its callbacks go to each request's
        # own CallbackUrl, so there is nothing in it for this simulator.
        self._engine = engine
        self._keys = (API_KEY, SECRET_KEY)
        self._brandnames = {BRANDNAME: 2, AD_BRANDNAME: 1}
        self._call_templates = {CALL_TEMPLATE_ID: CALL_TEMPLATE_VARIABLES}
        self._call_records = frozenset((CALL_RECORD_ID,))
        self._request_ids: set[str] = set()
        self._messages: dict[str, Batch] = {}
        self._calls: dict[str, tuple[Batch, str]] = {}
        self._endpoints: tuple[tuple[str, str, str, str, Handler], ...] = (
            ("POST", _ROOT, "/SendMultipleMessage_V4_post_json/", "send", self._send_post),
            ("POST", _ROOT, "/SendMultipleMessage_V4_post_json", "send", self._send_post),
            ("POST", _ROOT, "/SendMultipleMessage_V4_post/", "send", self._send_form),
            ("POST", _ROOT, "/SendMultipleMessage_V4_post", "send", self._send_form),
            ("GET", _ROOT, "/SendMultipleMessage_V4_get", "send", self._send_get),
            ("GET", _ROOT, "/GetBalance/{key}/{secret}", "balance", self._balance),
            ("GET", _ROOT, "/GetSendStatus", "status", self._status),
            ("GET", _ROOT, "/GetSmsReceiverStatus_get", "receivers", self._receivers),
            ("POST", _ROOT, "/GetSmsSentData", "sent_data", self._sent_data),
            ("GET", _ROOT, "/GetListBrandname/{key}/{secret}", "brandnames", self._brands),
            ("GET", _VOICE_ROOT, "/VoiceOTP", "voice_otp", self._voice_otp),
            ("GET", _VOICE_ROOT, "/MakeCallTemplate_V2", "call_template", self._template),
            ("GET", _VOICE_ROOT, "/MakeCallRecord_V2", "call_record", self._record),
            ("GET", _VOICE_ROOT, "/GetSendStatus", "call_status", self._call_status),
        )
        """(method, host stand-in, operation path after ``/MainService.svc/json``, fault route
        name, handler) of each endpoint."""

    def routes(self) -> list[Route]:
        """The SMS host's and the voice host's endpoints, by fault route name, each path
        matched without regard to case after its host's stand-in (``/esms``,
        ``/esms-voice``)."""
        return [
            Route(method, any_case(root, _SERVICE + path), name, handler)
            for method, root, path, name, handler in self._endpoints
        ]

    def fallbacks(self) -> list[tuple[str, str, Handler]]:
        """WCF's HTML "Endpoint not found." (404) or "Method not allowed." (405), for any other
        path on either host."""
        return [
            ("*", _ROOT + "/{tail:.*}", self._not_found),
            ("*", _VOICE_ROOT + "/{tail:.*}", self._not_found),
        ]

    def too_many(self, seconds: float) -> web.Response:
        """A forced HTTP 429 (eSMS documents no rate limit)."""
        return too_many_html(seconds)

    def client_options(self, root: str) -> dict[str, Any]:
        """``ESMS(api_key, secret_key, base_url=..., voice_base_url=..., rate_limit=None,
        sms_type=2, brandname=...)``: customer-care messages from the registered brandname."""
        return {
            "api_key": API_KEY,
            "secret_key": SECRET_KEY,
            "base_url": root + PREFIX,
            "voice_base_url": root + VOICE_PREFIX,
            "rate_limit": None,
            "sms_type": 2,
            "brandname": BRANDNAME,
        }

    def describe(self, root: str) -> list[str]:
        """Both base URLs, the keys, the brandnames and the registered call template and
        recording."""
        return [
            f"base_url={root}{PREFIX}",
            f"voice_base_url={root}{VOICE_PREFIX}",
            f"api_key={API_KEY}  secret_key={SECRET_KEY}",
            f"brandname={BRANDNAME} (advertising: {AD_BRANDNAME})  call template="
            f"{CALL_TEMPLATE_ID} ({CALL_TEMPLATE_VARIABLES} variables)  recording={CALL_RECORD_ID}",
        ]

    # -- SMS -------------------------------------------------------------------------------

    async def _send_post(self, request: web.Request) -> web.Response:
        """``POST SendMultipleMessage_V4_post_json/``: the fields from a JSON body."""
        try:
            body = _DECODE_SEND.decode(await request.read())
        except msgspec.DecodeError:
            return _invalid_request()
        params = {key: _text(getattr(body, name)) for name, key in _SEND_FIELDS}
        if not params["callbackurl"]:
            params["callbackurl"] = _text(body.callback_url_guide)
        return self._send(params)

    async def _send_form(self, request: web.Request) -> web.Response:
        """``POST SendMultipleMessage_V4_post/``: the fields from a form-encoded body, named
        without regard to case as in the query string (the official Python sample writes
        ``APIKEY``, the developer guide ``Apikey``)."""
        if request.content_type != _FORM:
            return _invalid_request()
        fields = _form(await request.read(), request.charset)
        if fields is None:
            return _invalid_request()
        return self._send(fields)

    async def _send_get(self, request: web.Request) -> web.Response:
        """``GET SendMultipleMessage_V4_get``: the fields from the query string."""
        return self._send(_query(request))

    def _send(self, p: Mapping[str, str | None]) -> web.Response:
        """Check and accept one send (see the module docstring for the order of checks)."""
        if not self._authorized(p):
            return _send_error("101", "Authorize Failed")
        request_id = p.get("requestid") or None
        if request_id is not None and len(request_id) > _MAX_REQUEST_ID:
            return _send_error("159", "RequestId is over 120 characters")
        engine = self._engine
        if request_id is not None and request_id in self._request_ids:
            engine.stats.duplicates += 1
            return _json({"CodeResult": "124", "ErrorMessage": "Request exist"})
        sms_type = _int(p.get("smstype"))
        if sms_type not in _SMS_TYPES:
            return _send_error("118", "SmsType is not valid")
        brandname = p.get("brandname") or None
        if sms_type in (1, 2) and (
            brandname is None or self._brandnames.get(brandname) != sms_type
        ):
            return _send_error("104", "Brandname is not registered")
        numbers = list(
            dict.fromkeys(
                n
                for n in (national(part.strip()) for part in (p.get("phone") or "").split(","))
                if n is not None
            )
        )
        if not numbers:
            return _send_error("108", "Phone number is not in correct format")
        content = p.get("content") or ""
        if sms_type == 1 and len(numbers) < _MIN_ADVERTISING:
            return _send_error("119", "Advertising brandname needs at least 20 phone numbers")
        if sms_type == 1 and len(content) > _MAX_ADVERTISING_LENGTH:
            return _send_error("131", "Advertising content is over 422 characters")
        if not content:
            return _send_error("99", "Content is empty")
        try:
            start = _send_date(p.get("senddate"))
        except ValueError:
            return _send_error("99", "SendDate is not valid")
        sandbox = p.get("sandbox") == "1"
        segments = segment_count(content, p.get("isunicode") == "1")
        unit = engine.prices["esms"] * segments
        if not sandbox and not engine.charge("esms", unit * len(numbers)):
            return _send_error("103", "Balance is not enough")
        sms_id = engine.guid()
        due, retry_at = engine.times(start)
        callback = p.get("callbackurl") or None
        batch = Batch(
            provider="esms",
            kind="sms",
            message_id=sms_id,
            numbers=numbers,
            content=content,
            accepted_at=time.time(),
            due=due,
            retry_at=retry_at,
            unit_price=unit,
            segments=segments,
            request_id=request_id,
            sender=brandname if sms_type in (1, 2) else None,
            sms_type=sms_type,
            sandbox=sandbox,
            callback=callback,
        )
        engine.accept(batch)
        if request_id is not None:
            self._request_ids.add(request_id)
        if engine.record_outbox:
            self._messages[sms_id] = batch
        if callback is not None and not sandbox and _is_http(callback):
            engine.schedule(due, partial(self._sms_callbacks, batch, callback))
        return _json({"CodeResult": "100", "CountRegenerate": 0, "SMSID": sms_id})

    async def _balance(self, request: web.Request) -> web.Response:
        """``GET GetBalance/{ApiKey}/{SecretKey}``: the balance in VND."""
        info = request.match_info
        if (info["key"], info["secret"]) != self._keys:
            return _json(
                {
                    "Balance": 0,
                    "CodeResponse": "101",
                    "ErrorMessage": "Authorize Failed",
                    "UserID": 0,
                }
            )
        balance = json_number(self._engine.balances["esms"])
        return _json({"Balance": balance, "CodeResponse": "100", "UserID": 1})

    async def _status(self, request: web.Request) -> web.Response:
        """``GET GetSendStatus?RefId=``: a message's status and receiver counts."""
        p = _query(request)
        if not self._authorized(p):
            return _json({"CodeResponse": "101", "ErrorMessage": "Authorize Failed"})
        sms_id = p.get("refid") or ""
        batch = self._messages.get(sms_id)
        if batch is None:
            return _json({"CodeResponse": "105", "ErrorMessage": "SMSID not found"})
        now = self._engine.now()
        success = failed = 0
        for packed in batch.numbers:
            state = batch.state(packed, now)
            success += state == DELIVERED
            failed += state == FAILED
        total = len(batch.numbers)
        if batch.sandbox:
            status, sent = 5, 0
        else:
            sent = total * batch.segments
            if now < batch.due - self._engine.delivery_delay:
                status = 2
            elif success + failed < total:
                status = 3
            else:
                status = 5
        return _json(
            {
                "CodeResponse": "100",
                "SMSID": sms_id,
                "SendFailed": failed,
                "SendStatus": status,
                "SendSuccess": success,
                "TotalReceiver": total,
                "TotalSent": sent,
            }
        )

    async def _receivers(self, request: web.Request) -> web.Response:
        """``GET GetSmsReceiverStatus_get?RefId=``: each recipient's result."""
        p = _query(request)
        if not self._authorized(p):
            return _json({"CodeResult": "101", "ErrorMessage": "Authorize Failed"})
        batch = self._messages.get(p.get("refid") or "")
        if batch is None:
            return _json({"CodeResult": "105", "ErrorMessage": "SMSID not found"})
        now = self._engine.now()
        receivers = []
        for packed in batch.numbers:
            state = batch.state(packed, now)
            receivers.append(
                {
                    "IsSent": state not in (PENDING, NOT_SENT),
                    "Phone": number_text(packed),
                    "SentResult": state == DELIVERED,
                }
            )
        return _json({"CodeResult": "100", "ReceiverList": receivers})

    async def _sent_data(self, request: web.Request) -> web.Response:
        """``POST GetSmsSentData``: the messages sent between two days."""
        try:
            body = _DECODE_SENT_DATA.decode(await request.read())
        except msgspec.DecodeError:
            return _invalid_request()
        p = {"apikey": _text(body.api_key), "secretkey": _text(body.secret_key)}
        if not self._authorized(p):
            return _json({"CodeResult": "101", "ErrorMessage": "Authorize Failed"})
        first, last = _day(_text(body.from_)), _day(_text(body.to))
        if first is None or last is None or last < first:
            return _json({"CodeResult": "140", "ErrorMessage": "Time range is not valid"})
        now = self._engine.now()
        rows = []
        for batch in self._messages.values():
            day = batch.accepted_date()
            if batch.sandbox or not first <= day <= last:
                continue
            sent_time = wcf_date(batch.accepted_at)
            for packed in batch.numbers:
                rows.append(
                    {
                        "Content": batch.content,
                        "Phone": number_text(packed),
                        "SellPrice": json_number(batch.unit_price),
                        "SentStatus": batch.state(packed, now) == DELIVERED,
                        "SentTime": sent_time,
                        "SmsId": batch.message_id,
                        "SmsType": batch.sms_type,
                    }
                )
        return _json({"CodeResult": "100", "SentData": rows})

    async def _brands(self, request: web.Request) -> web.Response:
        """``GET GetListBrandname/{ApiKey}/{SecretKey}``: the registered brandnames."""
        info = request.match_info
        if (info["key"], info["secret"]) != self._keys:
            return _json(
                {"CodeResult": "101", "ErrorMessage": "Authorize Failed", "ListBrandName": None}
            )
        names = [{"Brandname": name, "Type": kind} for name, kind in self._brandnames.items()]
        return _json({"CodeResponse": "100", "ListBrandName": names})

    async def _sms_callbacks(self, batch: Batch, url: str) -> None:
        """Report each recipient's final result; numbers ending 0001 one delay later."""
        later: list[int] = []
        for packed in batch.numbers:
            if packed % 10000 == 1 and batch.retry_at > batch.due:
                later.append(packed)
            else:
                await self._sms_callback(batch, url, packed)
        if later:
            await asyncio.sleep(max(0.0, batch.retry_at - self._engine.now()))
            for packed in later:
                await self._sms_callback(batch, url, packed)

    async def _sms_callback(self, batch: Batch, url: str, packed: int) -> None:
        """GET the CallbackUrl with one recipient's final result, retrying until 200."""
        failed = packed % 10000 == 0
        number = number_text(packed)
        params = {
            "SMSID": batch.message_id,
            "SendFailed": "1" if failed else "0",
            "SendStatus": "5",
            "SendSuccess": "0" if failed else "1",
            "TotalPrice": str(json_number(batch.unit_price)),
            "TypeId": str(batch.sms_type),
            "telcoid": _TELCO.get(phone.carrier(number), "0"),
            "phonenumber": number,
        }
        await self._engine.callback("GET", url, params=params, attempts=1 + CALLBACK_RETRIES)

    # -- voice -----------------------------------------------------------------------------

    async def _voice_otp(self, request: web.Request) -> web.Response:
        """``GET VoiceOTP``: call and read out a numeric code."""
        p = _query(request)
        code = p.get("code") or ""

        def check() -> web.Response | None:
            """The code must be digits (105 otherwise)."""
            if code.isascii() and code.isdigit():
                return None
            return _call_error("105", "Code is not valid")

        return self._call(p, check, content=code, ivr="2", sender=p.get("sender") or None)

    async def _template(self, request: web.Request) -> web.Response:
        """``GET MakeCallTemplate_V2``: call with a registered template and its variables."""
        p = _query(request)
        template = p.get("templateid") or ""
        raw = p.get("variableliststr") or ""

        def check() -> web.Response | None:
            """The template must exist (104) and get its number of variables (105)."""
            expected = self._call_templates.get(template)
            if expected is None:
                return _call_error("104", "Template does not exist")
            values = raw.split("||") if raw else []
            if len(values) != expected or not all(values):
                return _call_error("105", "Variable list is not valid")
            return None

        return self._call(p, check, content=f"template {template}: {raw}", ivr="2", sender=None)

    async def _record(self, request: web.Request) -> web.Response:
        """``GET MakeCallRecord_V2``: call and play a registered recording."""
        p = _query(request)
        record = p.get("templateid") or ""
        ivr = p.get("ivr") or ""

        def check() -> web.Response | None:
            """The recording must exist (106); ``Ivr`` must be one key (105)."""
            if record not in self._call_records:
                return _call_error("106", "Record file does not exist")
            if ivr and not (len(ivr) == 1 and ivr.isdigit()):
                return _call_error("105", "Ivr is not valid")
            return None

        return self._call(p, check, content=f"record {record}", ivr=ivr or "2", sender=None)

    def _call(
        self,
        p: Mapping[str, str | None],
        check: Callable[[], web.Response | None],
        *,
        content: str,
        ivr: str,
        sender: str | None,
    ) -> web.Response:
        """Place one call: keys (101), phone (107), the call's own ``check``, voice and speed
        (105), SendDate (99), balance (103)."""
        if not self._authorized(p):
            return _call_error("101", "Authorize Failed")
        number = national(p.get("phone") or "")
        if number is None:
            return _call_error("107", "Phone number is not valid")
        refused = check()
        if refused is not None:
            return refused
        voice, speed = p.get("voice"), p.get("speed")
        if (voice and voice not in _VOICES) or (speed and speed not in _SPEEDS):
            return _call_error("105", "Voice or Speed is not valid")
        try:
            start = _send_date(p.get("senddate"))
        except ValueError:
            return _call_error("99", "SendDate is not valid")
        engine = self._engine
        price = engine.prices["esms_voice"]
        if not engine.charge("esms", price):
            return _call_error("103", "Balance is not enough")
        reference = engine.guid()
        due, _ = engine.times(start)
        callback = p.get("callbackurl") or None
        batch = Batch(
            provider="esms",
            kind="voice",
            message_id=reference,
            numbers=[number],
            content=content,
            accepted_at=time.time(),
            due=due,
            retry_at=due,
            unit_price=price,
            segments=1,
            sender=sender,
            callback=callback,
        )
        engine.accept(batch)
        if engine.record_outbox:
            self._calls[reference] = (batch, ivr)
        if callback is not None and _is_http(callback):
            engine.schedule(due, partial(self._call_callback, batch, ivr, callback))
        return _json({"CodeResult": "100", "SMSID": reference})

    async def _call_status(self, request: web.Request) -> web.Response:
        """``GET GetSendStatus?ReferenceId=`` (voice host): how a call ended."""
        p = _query(request)
        if not self._authorized(p):
            return _json({"CodeResponse": "101", "ErrorMessage": "Authorize Failed"})
        found = self._calls.get(p.get("referenceid") or "")
        if found is None:
            return _json({"CodeResponse": "105", "ErrorMessage": "Call not found"})
        batch, ivr = found
        state = batch.state(batch.numbers[0], self._engine.now())
        if state == PENDING:
            answer: dict[str, Any] = {"callduration": 0, "callstatus": None, "ivr": None}
        elif state == FAILED:
            # The lookup's spelling (the document's table); the callback writes "NO ANSWER".
            answer = {"callduration": 0, "callstatus": "NOANSWERED", "ivr": ""}
        else:
            answer = {"callduration": CALL_DURATION, "callstatus": "ANSWERED", "ivr": ivr}
        return _json({"CodeResponse": "100", **answer})

    async def _call_callback(self, batch: Batch, ivr: str, url: str) -> None:
        """GET the call's CallbackUrl with its outcome, retrying until 200."""
        answered = batch.numbers[0] % 10000 != 0
        params = {
            "ReferenceId": batch.message_id,
            "CallDuration": str(CALL_DURATION if answered else 0),
            "CallStatus": "ANSWERED" if answered else "NO ANSWER",
            "Ivr": ivr if answered else "",
            "Price": str(json_number(batch.unit_price)),
            "SentResult": "1" if answered else "0",
            "CID": batch.sender or VOICE_CID,
        }
        await self._engine.callback("GET", url, params=params, attempts=1 + CALLBACK_RETRIES)

    # -- shared ----------------------------------------------------------------------------

    def _authorized(self, p: Mapping[str, str | None]) -> bool:
        """Whether the request carries the account's ApiKey and SecretKey."""
        return (p.get("apikey"), p.get("secretkey")) == self._keys

    async def _not_found(self, request: web.Request) -> web.Response:
        """WCF's answer for a path it has no operation for (405 for a wrong method)."""
        if any(
            same_route(root + _SERVICE + path, request.path)
            for _, root, path, _, _ in self._endpoints
        ):
            return web.Response(status=405, body=_NOT_ALLOWED_PAGE, content_type="text/html")
        return web.Response(status=404, body=_NOT_FOUND_PAGE, content_type="text/html")


def _json(payload: Mapping[str, Any]) -> web.Response:
    """A JSON answer as WCF writes it (application/json; charset=utf-8)."""
    return web.Response(body=_ENCODE(payload), headers=_JSON)


def _send_error(code: str, message: str) -> web.Response:
    """A refused send (with ``CountRegenerate`` 0, as eSMS writes it)."""
    return _json({"CodeResult": code, "CountRegenerate": 0, "ErrorMessage": message})


def _call_error(code: str, message: str) -> web.Response:
    """A refused call."""
    return _json({"CodeResult": code, "ErrorMessage": message})


def _invalid_request() -> web.Response:
    """What eSMS answers a body it cannot read: no code at all."""
    return web.Response(status=400, body=_INVALID_REQUEST, headers=_JSON)


def _query(request: web.Request) -> dict[str, str | None]:
    """Query parameters by lower-case name (WCF matches them without regard to case)."""
    return {key.lower(): value for key, value in request.query.items()}


def _form(raw: bytes, charset: str | None) -> dict[str, str | None] | None:
    """A form-encoded body's fields by lower-case name (the last of repeated names wins, as
    in ``_query``), percent-escapes decoded in the declared charset (UTF-8 when none); None
    when the body cannot be read in that charset."""
    encoding = charset or "utf-8"
    try:
        pairs = parse_qsl(
            raw.decode(encoding).rstrip(),
            keep_blank_values=True,
            encoding=encoding,
            errors="strict",
        )
    except (LookupError, ValueError):
        return None
    return {key.lower(): value for key, value in pairs}


def _text(value: Scalar) -> str | None:
    """A JSON scalar as the string WCF would bind it to."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(value: str | None) -> int | None:
    """A whole number written as text, or None."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _send_date(value: str | None) -> float | None:
    """A ``SendDate`` (Vietnam time) as a Unix time, None when absent; ValueError when
    unreadable."""
    if not value or not value.strip():
        return None
    for form in _DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), form).replace(tzinfo=VN).timestamp()
        except ValueError:
            continue
    raise ValueError("unreadable SendDate")


def _day(value: str | None) -> str | None:
    """An ``MM/dd/yyyy`` day as an ISO date string, or None."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%m/%d/%Y").date().isoformat()
    except ValueError:
        return None


def _is_http(url: str) -> bool:
    """Only http(s) callback URLs are called (the vendor's sample passes a bare word)."""
    return url.startswith(("http://", "https://"))
