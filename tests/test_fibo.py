"""Fibo client: ASMX answers in both wrapper forms, every code, the SOAP call, content encoding,
hostile bodies, redaction, and (over real sockets) no second send on a dead keep-alive connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import msgspec
import pytest
from aioresponses import CallbackResult, aioresponses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import smsvn
from smsvn import errors
from smsvn._redact import WITHHELD
from smsvn.limits import RateLimit
from smsvn.providers import fibo as fibo_module
from smsvn.providers.fibo import (
    DEFAULT_BALANCE_PATH,
    DEFAULT_RATE_LIMIT,
    MAX_BODY,
    MAX_SMS_GUID_LENGTH,
    Fibo,
)
from smsvn.transport import Response, Transport
from tests.conftest import FAST_RETRY, SENTINEL_PASS, sent_body, sent_type

BASE = "https://ha-api.fibosms.com"
SEND_PATH = "/SendMT/service.asmx/SendMaskedSMS"
BALANCE_PATH = "/SendMT/service.asmx/GetClientBalance"  # .asmx, not the document's .aspx
TOTALS_PATH = "/WebserivceFibo/PartnerMtTotal.asmx"
CLIENT_NO = "CL1609110001"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
TEMPURI = "http://tempuri.org/"
DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\r\n'


def url_re(base: str, path: str) -> re.Pattern[str]:
    """A matcher for ``base + path`` with any query string (aioresponses matches whole URLs)."""
    return re.compile(re.escape(base + path) + r"(\?.*)?$")


SEND = url_re(BASE, SEND_PATH)
BALANCE = url_re(BASE, BALANCE_PATH)
TOTALS = BASE + TOTALS_PATH


def sms(code: int | str, **fields: str) -> str:
    """Fibo's inner ``<SMS>`` document."""
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in fields.items())
    return f"<SMS><Code>{code}</Code>{inner}<Time></Time></SMS>"


def escaped(inner: str) -> bytes:
    """What the ASMX service really sends: the inner XML entity-escaped inside ``<string>``."""
    return f'{DECLARATION}<string xmlns="{TEMPURI}">{escape(inner)}</string>'.encode()


def literal(inner: str) -> bytes:
    """The other form the digest shows: the inner XML as child elements of ``<string>``."""
    return f'{DECLARATION}<string xmlns="{TEMPURI}">{inner}</string>'.encode()


def sent_ok() -> bytes:
    return escaped(sms(200, Message="Sending..."))


def soap(body: str) -> bytes:
    return (
        f'{DECLARATION}<soap:Envelope xmlns:soap="{SOAP_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def totals_ok(result: str) -> bytes:
    return soap(
        f'<GetTotalMtResponse xmlns="{TEMPURI}"><GetTotalMtResult>{result}</GetTotalMtResult>'
        "</GetTotalMtResponse>"
    )


def fault(code: str, reason: str) -> bytes:
    return soap(
        f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{escape(reason)}</faultstring>"
        "<detail /></soap:Fault>"
    )


def client(**kwargs: Any) -> Fibo:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("sender", "BRAND")
    return Fibo(CLIENT_NO, SENTINEL_PASS, **kwargs)


def calls(m: aioresponses, method: str, path: str) -> list[tuple[URL, Any]]:
    """Every request made to ``path`` (any query), as (URL with query, the recorded call)."""
    return [
        (url, call)
        for (verb, url), recorded in m.requests.items()
        if verb == method and url.path == path
        for call in recorded
    ]


def query(m: aioresponses, path: str, index: int = 0) -> dict[str, str]:
    return dict(calls(m, "GET", path)[index][0].query)


def transport() -> Transport:
    return Transport(provider="fibo", secrets=(SENTINEL_PASS,))


def response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, CIMultiDictProxy(CIMultiDict(headers or {})), body, 1)


# -- send ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        escaped(sms(200, Message="Sending...")),
        literal(sms(200, Message="Sending...")),
        sms(200, Message="Sending...").encode(),  # a bare <SMS> root
        f"{DECLARATION}{sms(200, Message='Sending...')}".encode(),
        b"<string><SMS> <Code>200</Code> <Message>Sending...</Message> <Time></Time></SMS>"
        b"</string>",
        escaped(f"{DECLARATION}{sms(200, Message='Sending...')}"),  # a declaration inside too
        escaped(sms(1, Message="OK")),  # older services answer 1
        literal(sms(" 1 ")),
    ],
    ids=["escaped", "literal", "bare", "bare-decl", "vendor-doc", "inner-decl", "code-1", "1-lit"],
)
async def test_send_success_in_every_wrapper_form(mocked: aioresponses, body: bytes) -> None:
    mocked.get(SEND, body=body)
    async with client() as fibo:
        res = await fibo.send("0912345678", "Ma OTP cua ban la 1234")
    assert res.provider == "fibo"
    assert res.recipients == ("0912345678",)
    assert res.invalid == ()
    assert res.segments == 1
    assert res.cost is None
    assert res.raw.code in (200, 1)
    assert query(mocked, SEND_PATH)["smsGUID"] == "0"  # the document's default
    assert res.message_id is None  # Fibo returns no id, and none was given


async def test_send_query_fields(mocked: aioresponses) -> None:
    mocked.get(SEND, body=sent_ok(), repeat=True)
    async with client() as fibo:
        first = await fibo.send(["+84 91 234 5678"], "Xin chao")
        second = await fibo.send("01626 123 456", "Xin chao", sender="OTHER", sms_guid="order-42")
    sent = query(mocked, SEND_PATH)
    assert sent == {
        "clientNo": CLIENT_NO,
        "clientPass": SENTINEL_PASS,
        "senderName": "BRAND",
        "phoneNumber": "0912345678",
        "smsMessage": "Xin chao",
        "smsGUID": "0",
        "serviceType": "0",
    }
    assert first.message_id is None
    again = query(mocked, SEND_PATH, 1)
    assert again["phoneNumber"] == "0326123456"  # the old 11-digit form, moved to 10 digits
    assert again["senderName"] == "OTHER"
    assert again["smsGUID"] == second.message_id == "order-42"  # the caller's own id
    assert second.recipients == ("0326123456",)


async def test_send_is_sent_once_on_a_timeout(mocked: aioresponses) -> None:
    mocked.get(SEND, exception=TimeoutError())
    mocked.get(SEND, body=sent_ok())
    async with client() as fibo:
        with pytest.raises(errors.OutcomeUnknown) as info:
            await fibo.send("0912345678", "hi")
    assert not isinstance(info.value, errors.MalformedResponse)
    assert info.value.endpoint == "SendMaskedSMS"
    assert len(calls(mocked, "GET", SEND_PATH)) == 1


async def test_send_429_waits_and_resends(mocked: aioresponses) -> None:
    mocked.get(SEND, status=429, body=b"Too Many Requests", headers={"Retry-After": "0"})
    mocked.get(SEND, body=sent_ok())
    async with client() as fibo:
        res = await fibo.send("0912345678", "hi", sms_guid="a1b2")
    sent = calls(mocked, "GET", SEND_PATH)
    assert len(sent) == 2
    assert res.message_id == dict(sent[1][0].query)["smsGUID"] == dict(sent[0][0].query)["smsGUID"]
    assert res.message_id == "a1b2"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"to": ["0912345678", "0987654321"]}, "send_bulk"),
        ({"to": []}, "no valid recipient"),
        ({"to": "12345"}, "no valid recipient"),
        ({"to": "024 3826 1234"}, "no valid recipient"),
        ({"content": ""}, "empty"),
        ({"sender": ""}, "sender"),
    ],
)
async def test_send_refused_locally(
    mocked: aioresponses, kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"to": "0912345678", "content": "hi", **kwargs}
    async with client() as fibo:
        with pytest.raises(errors.ValidationError, match=match) as info:
            await fibo.send(args.pop("to"), args.pop("content"), **args)
    assert info.value.provider == "fibo"
    assert not mocked.requests


@pytest.mark.parametrize(
    "guid",
    ["", "x" * (MAX_SMS_GUID_LENGTH + 1), "a b", "a&b=c", "id#1", "a%20", "mã", "a\nb", 0],
)
async def test_sms_guid_refused_locally(mocked: aioresponses, guid: Any) -> None:
    async with client() as fibo:
        with pytest.raises(errors.ValidationError, match="sms_guid") as info:
            await fibo.send("0912345678", "hi", sms_guid=guid)
    assert info.value.endpoint == "SendMaskedSMS"
    assert not mocked.requests


async def test_sms_guid_longest_allowed_goes_as_given(mocked: aioresponses) -> None:
    mocked.get(SEND, body=sent_ok())
    guid = "A-b_9." + "x" * (MAX_SMS_GUID_LENGTH - 6)
    async with client() as fibo:
        res = await fibo.send("0912345678", "hi", sms_guid=guid)
    assert query(mocked, SEND_PATH)["smsGUID"] == res.message_id == guid


async def test_send_needs_a_sender(mocked: aioresponses) -> None:
    async with client(sender=None) as fibo:
        with pytest.raises(errors.ValidationError, match="sender"):
            await fibo.send("0912345678", "hi")
    assert not mocked.requests


# -- content encoding ---------------------------------------------------------------------------

VIETNAMESE = "Mã OTP của bạn là 1234"
PLAIN = "Ma OTP cua ban la 1234"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"content": "hi\x00there"}, "control characters"),
        ({"content": "lone \udc00"}, "lone surrogates"),
        ({"sender": "BR\x07ND"}, "sender"),
    ],
)
async def test_unencodable_content_or_sender_refused_locally(
    mocked: aioresponses, kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"content": "hi", **kwargs}
    async with client() as fibo:
        with pytest.raises(errors.ValidationError, match=match):
            await fibo.send("0912345678", args.pop("content"), **args)
    assert not mocked.requests


async def test_send_bulk_one_request_a_number(mocked: aioresponses) -> None:
    mocked.get(SEND, body=sent_ok(), repeat=True)
    numbers = ["0912345678", "+84 98 765 4321", "12345", "0912345678"]
    async with client() as fibo:
        report = await fibo.send_bulk(numbers, VIETNAMESE, strip_diacritics=True)
    assert report.provider == "fibo"
    assert sorted(r.recipients[0] for r in report.sent) == ["0912345678", "0987654321"]
    assert list(report.invalid) == ["12345"]
    assert report.duplicates == 1
    sent = [dict(url.query) for url, _ in calls(mocked, "GET", SEND_PATH)]
    assert sorted(q["phoneNumber"] for q in sent) == ["0912345678", "0987654321"]
    assert {q["smsMessage"] for q in sent} == {PLAIN}
    assert {q["serviceType"] for q in sent} == {"0"}
    assert {q["smsGUID"] for q in sent} == {"0"}
    assert {r.message_id for r in report.sent} == {None}


async def test_send_bulk_checks_options_before_any_request(mocked: aioresponses) -> None:
    async with client() as fibo:
        with pytest.raises(errors.ValidationError, match="'ã'"):
            await fibo.send_bulk(["0912345678"], VIETNAMESE, unicode=False)
    async with client(sender=None) as fibo:
        with pytest.raises(errors.ValidationError, match="sender"):
            await fibo.send_bulk(["0912345678"], "hi")
    assert not mocked.requests


async def test_send_many_personalised(mocked: aioresponses) -> None:
    mocked.get(SEND, body=sent_ok(), repeat=True)
    messages = [smsvn.Message("0912345678", "Ma 1111"), smsvn.Message("0987654321", VIETNAMESE)]
    async with client() as fibo:
        report = await fibo.send_many(messages)
    assert len(report.sent) == 2
    queries = (dict(url.query) for url, _ in calls(mocked, "GET", SEND_PATH))
    sent = {q["phoneNumber"]: (q["smsMessage"], q["serviceType"]) for q in queries}
    assert sent == {"0912345678": ("Ma 1111", "0"), "0987654321": (VIETNAMESE, "1")}


@pytest.mark.parametrize(
    ("content", "kwargs", "service_type", "message", "segments"),
    [
        (PLAIN, {}, "0", PLAIN, 1),
        (VIETNAMESE, {}, "1", VIETNAMESE, 1),
        (VIETNAMESE, {"strip_diacritics": True}, "0", PLAIN, 1),
        (
            VIETNAMESE,
            {"strip_diacritics": True, "unicode": False},
            "0",
            "Ma OTP cua ban la 1234",
            1,
        ),
        (VIETNAMESE, {"unicode": True}, "1", VIETNAMESE, 1),
        ("Gia {100} [~]", {"unicode": False}, "0", "Gia {100} [~]", 1),
        ("Xin chào", {}, "1", "Xin chào", 1),  # à is GSM-7, but Fibo's plain mode has no accents
        ("x" * 100, {}, "0", "x" * 100, 1),
        ("x" * 100, {"unicode": True}, "1", "x" * 100, 2),  # 100 UCS-2 characters: 67 + 33
        ("ạ" * 71, {}, "1", "ạ" * 71, 2),
    ],
    ids=[
        "ascii",
        "vietnamese",
        "strip",
        "strip-plain",
        "forced",
        "gsm-ext",
        "accent",
        "100",
        "forced-2",
        "71",
    ],
)
async def test_service_type(
    mocked: aioresponses,
    content: str,
    kwargs: dict[str, Any],
    service_type: str,
    message: str,
    segments: int,
) -> None:
    mocked.get(SEND, body=sent_ok())
    async with client() as fibo:
        res = await fibo.send("0912345678", content, **kwargs)
    sent = query(mocked, SEND_PATH)
    assert sent["serviceType"] == service_type
    assert sent["smsMessage"] == message
    assert res.segments == segments


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        (VIETNAMESE, {"unicode": False}, "'ã', 'ủ', 'ạ'"),
        ("Giá 100€", {"unicode": False}, "'á', '€'"),
        ("Xin chào 😀", {"strip_diacritics": True}, "'😀'"),
        (VIETNAMESE, {"strip_diacritics": True, "unicode": True}, "cannot go with unicode=True"),
    ],
)
async def test_plain_text_that_cannot_be_carried_is_refused_locally(
    mocked: aioresponses, content: str, kwargs: dict[str, Any], match: str
) -> None:
    async with client() as fibo:
        with pytest.raises(errors.ValidationError, match=re.escape(match)) as info:
            await fibo.send("0912345678", content, **kwargs)
    assert info.value.endpoint == "SendMaskedSMS"
    assert not mocked.requests


# -- codes --------------------------------------------------------------------------------------

CODES: dict[int, type[errors.SmsError]] = {
    2: errors.ProviderUnavailable,
    3: errors.AuthenticationError,
    4: errors.AuthenticationError,
    5: errors.SenderNotRegistered,
    6: errors.InvalidRequest,
    7: errors.InvalidRecipient,
    8: errors.AuthenticationError,
    9: errors.InvalidRequest,
    10: errors.InvalidRecipient,
    11: errors.InvalidRequest,
    12: errors.AuthenticationError,
    13: errors.ProviderUnavailable,
    14: errors.InsufficientBalance,
    15: errors.AuthenticationError,
    16: errors.AuthenticationError,
    17: errors.InsufficientBalance,
    18: errors.InvalidRequest,
    19: errors.InvalidRequest,
    20: errors.InvalidRequest,
    21: errors.AuthenticationError,
    22: errors.AuthenticationError,
    23: errors.InvalidRequest,
    24: errors.ProviderUnavailable,
    25: errors.AuthenticationError,
    26: errors.AuthenticationError,
    27: errors.ProviderUnavailable,
    28: errors.InvalidRequest,
    29: errors.AuthenticationError,
    30: errors.InvalidRequest,
    31: errors.InvalidRecipient,
}


def test_code_table_covers_2_to_31_and_nothing_else() -> None:
    assert set(fibo_module._ERRORS) == set(range(2, 32)) == set(CODES)


@pytest.mark.parametrize("wrap", [escaped, literal], ids=["escaped", "literal"])
@pytest.mark.parametrize(("code", "cls"), sorted(CODES.items()))
async def test_every_error_code(
    mocked: aioresponses, wrap: Any, code: int, cls: type[errors.SmsError]
) -> None:
    mocked.get(SEND, body=wrap(sms(code, Message="Lỗi")))
    async with client() as fibo:
        with pytest.raises(errors.SmsError) as info:
            await fibo.send("0912345678", "hi")
    exc = info.value
    assert type(exc) is cls
    assert exc.provider == "fibo"
    assert exc.code == str(code)
    assert exc.endpoint == "SendMaskedSMS"
    assert exc.http_status == 200
    assert "Lỗi" in exc.message
    assert len(calls(mocked, "GET", SEND_PATH)) == 1  # a send is never resent on an error


async def test_code_13_says_the_message_was_not_sent(mocked: aioresponses) -> None:
    mocked.get(SEND, body=escaped(sms(13)))
    async with client() as fibo:
        with pytest.raises(errors.ProviderUnavailable, match="not sent"):
            await fibo.send("0912345678", "hi")


async def test_unknown_code_is_the_base_error(mocked: aioresponses) -> None:
    mocked.get(SEND, body=escaped(sms(99, Message="mystery")))
    async with client() as fibo:
        with pytest.raises(errors.SmsError) as info:
            await fibo.send("0912345678", "hi")
    assert type(info.value) is errors.SmsError
    assert info.value.code == "99"


# -- balance ------------------------------------------------------------------------------------


async def test_balance(mocked: aioresponses) -> None:
    mocked.get(BALANCE, body=escaped(sms(200, AccountBalance="1641060")))
    async with client() as fibo:
        bal = await fibo.balance()
    assert bal == smsvn.Balance(provider="fibo", amount=1641060.0, currency=None, raw=bal.raw)
    assert bal.raw.account_balance == "1641060"
    assert query(mocked, BALANCE_PATH) == {
        "clientNo": CLIENT_NO,
        "clientPass": SENTINEL_PASS,
        "serviceType": "1",
    }
    assert DEFAULT_BALANCE_PATH == BALANCE_PATH  # what real clients call, not the doc's .aspx


async def test_balance_literal_form_and_decimal(mocked: aioresponses) -> None:
    mocked.get(BALANCE, body=literal(sms(200, AccountBalance=" 2500.50 ")))
    async with client() as fibo:
        assert (await fibo.balance()).amount == 2500.5


@pytest.mark.parametrize("value", ["lots", "", "1e9", "NaN", "1,641,060"])
async def test_balance_not_a_number_is_malformed(mocked: aioresponses, value: str) -> None:
    mocked.get(BALANCE, body=escaped(sms(200, AccountBalance=value)), repeat=True)
    async with client() as fibo:
        with pytest.raises(errors.MalformedResponse) as info:
            await fibo.balance()
    assert info.value.endpoint == "GetClientBalance"
    assert "AccountBalance" in str(info.value)


async def test_balance_without_amount_is_malformed(mocked: aioresponses) -> None:
    mocked.get(BALANCE, body=escaped(sms(200)), repeat=True)
    async with client() as fibo:
        with pytest.raises(errors.MalformedResponse, match="AccountBalance is missing"):
            await fibo.balance()


async def test_balance_error_code_and_retry_of_system_error(mocked: aioresponses) -> None:
    mocked.get(BALANCE, body=escaped(sms(2)))
    mocked.get(BALANCE, body=escaped(sms(200, AccountBalance="7")))
    mocked.get(BALANCE, body=escaped(sms(3)))
    async with client() as fibo:
        assert (await fibo.balance()).amount == 7.0  # a read is retried after "system error"
        with pytest.raises(errors.AuthenticationError):
            await fibo.balance()


# -- daily totals (SOAP) ------------------------------------------------------------------------


async def test_daily_totals_envelope_and_answer(mocked: aioresponses) -> None:
    mocked.post(TOTALS, body=totals_ok("56|12|0"))
    async with client() as fibo:
        totals = await fibo.daily_totals()
    assert (totals.provider, totals.success, totals.failed, totals.pending) == ("fibo", 56, 12, 0)
    assert totals.raw.result == "56|12|0"
    ((_, call),) = calls(mocked, "POST", TOTALS_PATH)
    assert call.kwargs["headers"]["SOAPAction"] == '"http://tempuri.org/GetTotalMt"'
    assert sent_type(call) == "text/xml; charset=utf-8"
    body = sent_body(call)
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = etree.fromstring(body)
    assert root.tag == f"{{{SOAP_NS}}}Envelope"
    assert root.prefix == "soap"
    (soap_body,) = root
    assert soap_body.tag == f"{{{SOAP_NS}}}Body"
    (operation,) = soap_body
    assert operation.tag == f"{{{TEMPURI}}}GetTotalMt"
    assert operation.prefix is None  # <GetTotalMt xmlns="http://tempuri.org/">
    assert [(child.tag, child.text) for child in operation] == [
        (f"{{{TEMPURI}}}Username", CLIENT_NO),
        (f"{{{TEMPURI}}}Password", SENTINEL_PASS),
    ]


async def test_daily_totals_password_with_xml_characters() -> None:
    body = fibo_module._soap_request("CL<1>", "p&ss<w>'\"")
    operation = etree.fromstring(body)[0][0]
    assert [child.text for child in operation] == ["CL<1>", "p&ss<w>'\""]


def test_credentials_xml_cannot_carry_are_refused() -> None:
    with pytest.raises(errors.ValidationError) as info:
        Fibo(CLIENT_NO, "pass-SENTINEL-\x00")
    assert "SENTINEL" not in str(info.value)


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        ("soap:Client", "Server did not recognize the value of HTTP Header SOAPAction: x.", "req"),
        ("soap:Client", "Invalid Username or Password", "auth"),
        ("soap:Client", "Sai mật khẩu", "auth"),
        ("soap:Server", "Server was unable to process request. ---> Object reference", "down"),
        ("soap:VersionMismatch", "Possible SOAP version mismatch", "req"),
        ("q:Other", "something", "base"),
    ],
)
async def test_daily_totals_soap_faults(
    mocked: aioresponses, code: str, reason: str, cls: str
) -> None:
    classes: dict[str, type[errors.SmsError]] = {
        "req": errors.InvalidRequest,
        "auth": errors.AuthenticationError,
        "down": errors.ProviderUnavailable,
        "base": errors.SmsError,
    }
    mocked.post(TOTALS, status=500, body=fault(code, reason), repeat=True)
    async with client() as fibo:
        with pytest.raises(errors.SmsError) as info:
            await fibo.daily_totals()
    exc = info.value
    assert type(exc) is classes[cls]
    assert exc.endpoint == "GetTotalMt"
    assert exc.code == code
    assert exc.http_status == 500
    assert reason.split(" --->")[0][:60] in exc.message
    # A read: the provider's "try again" is retried, the rest is not.
    expected = 1 + FAST_RETRY.max_retries if cls == "down" else 1
    assert len(calls(mocked, "POST", TOTALS_PATH)) == expected


def test_soap_12_fault_is_understood() -> None:
    body = (
        b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>'
        b"<env:Fault><env:Code><env:Value>env:Receiver</env:Value></env:Code>"
        b"<env:Reason><env:Text>busy</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"
    )
    with pytest.raises(errors.ProviderUnavailable, match="busy"):
        fibo_module._parse_totals(response(body, 500), "GetTotalMt", transport())


@pytest.mark.parametrize(
    "body",
    [
        totals_ok("56|12"),
        totals_ok("a|b|c"),
        totals_ok("56|12|-1"),
        totals_ok(""),
        soap(""),
        soap("<Other/>"),
        b"<html><body>Service Unavailable</body></html>",
        b"",
        totals_ok("56|12|0")[:-20],
        sent_ok(),
    ],
    ids=["two", "letters", "negative", "empty-result", "empty-body", "other", "html", "empty",
         "truncated", "asmx"],
)  # fmt: skip
async def test_daily_totals_malformed(mocked: aioresponses, body: bytes) -> None:
    mocked.post(TOTALS, body=body, repeat=True)
    async with client() as fibo:
        with pytest.raises(errors.MalformedResponse) as info:
            await fibo.daily_totals()
    assert info.value.endpoint == "GetTotalMt"
    assert "GetTotalMt" in str(info.value)


# -- malformed ASMX answers ---------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b"<SMS><Code>200</Code><Message>&lol3;</Message></SMS>"
)
XXE = (
    b'<!DOCTYPE SMS [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<SMS><Code>200</Code><Message>&xxe;</Message></SMS>"
)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (sent_ok()[:-30], "not well-formed"),
        (b"", "empty body"),
        (b"  \r\n", "empty body"),
        (b"<html><head><title>502 Bad Gateway</title></head></html>", "no <SMS>"),
        (b'{"Code": 200, "Message": "Sending..."}', "not well-formed"),
        (escaped("<SMS><Message>Sending...</Message></SMS>"), "no Code"),
        (escaped(sms("abc")), "not an integer"),
        (escaped(sms("2.5")), "not an integer"),
        (escaped(sms("")), "not an integer"),
        (escaped(sms("２００")), "not an integer"),  # full-width digits
        (escaped("Sending..."), "no <SMS>"),
        (escaped("<SMS><Code>200</Code>"), "not well-formed"),  # truncated inside the wrapper
        (escaped("<Other><Code>200</Code></Other>"), "no <SMS>"),
        (b'<string xmlns="http://tempuri.org/" />', "no <SMS>"),
        (literal("<Answer><Code>200</Code></Answer>"), "no <SMS>"),
        (BILLION_LAUGHS, "DOCTYPE"),
        (XXE, "DOCTYPE"),
        (escaped(BILLION_LAUGHS.decode()), "DOCTYPE"),
        ('<!DOCTYPE SMS><SMS><Code>200</Code></SMS>'.encode("utf-16"), "DOCTYPE"),
        (escaped(sms(200, Message="x" * (MAX_BODY + 1))), "over 65536 bytes"),
    ],
    ids=["truncated", "empty", "blank", "html", "json", "no-code", "code-abc", "code-float",
         "code-empty", "code-fullwidth", "text", "inner-truncated", "inner-other", "nil",
         "literal-other", "billion-laughs", "xxe", "escaped-doctype", "utf16-doctype", "oversized"],
)  # fmt: skip
def test_malformed_answers(body: bytes, why: str) -> None:
    with pytest.raises(errors.MalformedResponse) as info:
        fibo_module._parse_answer(response(body, 200), "SendMaskedSMS", transport())
    assert why in str(info.value)
    assert info.value.endpoint == "SendMaskedSMS"
    assert info.value.provider == "fibo"


async def test_malformed_send_answer_is_not_resent(mocked: aioresponses) -> None:
    mocked.get(SEND, status=502, body=b"<html>Bad Gateway</html>")
    async with client() as fibo:
        with pytest.raises(errors.MalformedResponse) as info:
            await fibo.send("0912345678", "hi")
    assert info.value.http_status == 502
    assert "Bad Gateway" in str(info.value)
    assert len(calls(mocked, "GET", SEND_PATH)) == 1


async def test_asmx_missing_parameter_500(mocked: aioresponses) -> None:
    mocked.get(SEND, status=500, body=b"System.InvalidOperationException: Missing parameter: x.")
    async with client() as fibo:
        with pytest.raises(errors.MalformedResponse, match="Missing parameter"):
            await fibo.send("0912345678", "hi")


# -- settings -----------------------------------------------------------------------------------


async def test_base_url_and_paths_are_settings(mocked: aioresponses) -> None:
    base = "https://sms.example.vn/api/"
    mocked.get(url_re("https://sms.example.vn/api", "/v2/send"), body=sent_ok())
    mocked.get(
        url_re("https://sms.example.vn/api", "/SendMT/service.aspx/GetClientBalance"),
        body=escaped(sms(200, AccountBalance="3")),
    )
    mocked.post("https://soap.example.vn/Totals.asmx", body=totals_ok("1|2|3"))
    async with client(
        base_url=base,
        send_path="v2/send",
        balance_path="/SendMT/service.aspx/GetClientBalance",  # the document's spelling
        totals_path="https://soap.example.vn/Totals.asmx",
    ) as fibo:
        await fibo.send("0912345678", "hi")
        assert (await fibo.balance()).amount == 3.0
        assert (await fibo.daily_totals()).pending == 3
    assert len(mocked.requests) == 3


def test_defaults() -> None:
    assert RateLimit(requests=20, period=1.0, burst=5) == DEFAULT_RATE_LIMIT
    fibo = Fibo(CLIENT_NO, SENTINEL_PASS)
    assert fibo.base_url == BASE
    assert fibo._url_send == BASE + SEND_PATH
    assert fibo._url_balance == BASE + BALANCE_PATH
    assert fibo._url_totals == BASE + TOTALS_PATH
    assert fibo._transport.rate_limit == DEFAULT_RATE_LIMIT


@pytest.mark.parametrize(("number", "password"), [("", "x"), ("CL1", ""), ("", "")])
def test_empty_credentials_refused(number: str, password: str) -> None:
    with pytest.raises(errors.ValidationError):
        Fibo(number, password)


async def test_borrowed_session_is_not_closed(mocked: aioresponses) -> None:
    mocked.get(BALANCE, body=escaped(sms(200, AccountBalance="1")))
    async with aiohttp.ClientSession() as session:
        async with client(session=session) as fibo:
            await fibo.balance()
        await fibo.aclose()
        assert not session.closed


# -- redaction ----------------------------------------------------------------------------------


async def test_password_never_in_errors_reprs_logs_or_raw(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="smsvn")
    seen: list[str] = []

    def echo(url: URL, **kwargs: Any) -> CallbackResult:
        # A hostile proxy echoing the whole request URL (query string and all) as garbage.
        return CallbackResult(status=502, body=f"<html>bad gateway {url}</html>".encode())

    mocked.get(SEND, body=escaped(sms(200, Message=f"Sending for {SENTINEL_PASS}")))
    mocked.get(SEND, body=escaped(sms(3, Message=f"wrong password {SENTINEL_PASS}")))
    mocked.get(SEND, callback=echo)
    mocked.get(BALANCE, body=f"<SMS><Code>{SENTINEL_PASS}</Code></SMS>".encode(), repeat=True)
    mocked.post(TOTALS, status=500, body=fault("soap:Client", f"bad password {SENTINEL_PASS}"))
    mocked.post(TOTALS, status=500, body=fault(f"soap:{SENTINEL_PASS}", "x"))
    async with client() as fibo:
        seen.append(repr(fibo))
        res = await fibo.send("0912345678", "hi")
        seen += [repr(res), repr(res.raw), msgspec.json.encode(res.raw).decode()]
        for call in (
            fibo.send("0912345678", "hi"),
            fibo.send("0912345678", "hi"),
            fibo.balance(),
            fibo.daily_totals(),
            fibo.daily_totals(),
        ):
            with pytest.raises(errors.SmsError) as info:
                await call
            seen += [str(info.value), repr(info.value), repr(info.value.args)]
    async with client(base_url=f"http://127.0.0.1:{closed_port}") as fibo:
        with pytest.raises(errors.ConnectError) as connect:
            await fibo.send("0912345678", "hi")
        seen += [str(connect.value), repr(connect.value)]
    seen += [record.getMessage() for record in caplog.records]
    assert any(WITHHELD in text for text in seen)  # the echoes were there, and redacted
    for text in seen:
        assert "SENTINEL" not in text, text


async def test_password_with_special_characters_is_redacted_in_every_form(
    mocked: aioresponses,
) -> None:
    password = "p&ss w/rd<SENTINEL>+é"
    on_the_wire = str(URL(BASE + SEND_PATH).extend_query({"clientPass": password}))
    forms = (on_the_wire, escape(password), password)
    mocked.get(SEND, body=f"<html>{' '.join(forms)}</html>".encode(), repeat=True)
    async with Fibo(CLIENT_NO, password, sender="B", rate_limit=None) as fibo:
        with pytest.raises(errors.MalformedResponse) as info:
            await fibo.send("0912345678", "hi")
    assert "SENTINEL" not in str(info.value)


# -- hypothesis: the parsers raise only SmsError ------------------------------------------------


def _error_of(parse: Any, body: bytes, endpoint: str) -> errors.SmsError | None:
    """The SmsError ``parse`` raises on ``body`` (None on success); anything else escapes."""
    try:
        parse(response(body), endpoint, transport())
    except errors.SmsError as exc:
        return exc
    return None


def _only_sms_errors(body: bytes) -> None:
    for parse, endpoint in (
        (fibo_module._parse_answer, "SendMaskedSMS"),
        (fibo_module._parse_totals, "GetTotalMt"),
    ):
        exc = _error_of(parse, body, endpoint)
        if exc is not None:
            assert exc.endpoint == endpoint
            assert "SENTINEL" not in str(exc)


_FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(st.binary(max_size=2048))
def test_parsers_only_raise_sms_errors_on_any_bytes(body: bytes) -> None:
    _only_sms_errors(body)


@_FAST
@given(st.text(max_size=512), st.booleans())
def test_parsers_only_raise_sms_errors_on_any_wrapped_text(content: str, escape_it: bool) -> None:
    inner = escape(content) if escape_it else content
    data = f'{DECLARATION}<string xmlns="{TEMPURI}">{inner}</string>'
    _only_sms_errors(data.encode("utf-8", "surrogatepass"))
    _only_sms_errors(totals_ok(inner))
    _only_sms_errors(fault("soap:Client", content))


@_FAST
@given(
    st.one_of(st.integers(), st.text(max_size=20)),
    st.dictionaries(st.sampled_from(["Message", "AccountBalance", "Time", "Code"]), st.text()),
)
def test_parsers_only_raise_sms_errors_on_any_sms_fields(
    code: object, fields: dict[str, str]
) -> None:
    inner = sms(escape(str(code)), **{k: escape(v) for k, v in fields.items()})
    _only_sms_errors(escaped(inner))
    _only_sms_errors(literal(inner).decode().encode("utf-8", "surrogatepass"))


# -- real sockets: a dead keep-alive connection never causes a second send ---------------------


class KeepAliveServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers the first request on each connection
    (``Connection: keep-alive``), then reads and counts the second one and closes the socket
    without answering: a server dropping an idle keep-alive connection just as it is reused."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> KeepAliveServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            for served in range(2):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                path = request_line.split(" ")[1].split("?", 1)[0]
                length = 0
                for line in header_lines:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                self.requests[path] += 1
                if served == 1:
                    return  # the whole second request was read: close without a word
                body = (
                    escaped(sms(200, AccountBalance="1641060"))
                    if path == BALANCE_PATH
                    else sent_ok()
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)


async def test_control_plain_aiohttp_resends_a_get_on_a_dead_keep_alive_connection() -> None:
    async with KeepAliveServer() as server, aiohttp.ClientSession() as session:
        async with session.get(server.url + BALANCE_PATH) as resp:
            await resp.read()
        async with session.get(server.url + SEND_PATH) as resp:
            assert resp.status == 200
            await resp.read()
    # aiohttp silently sent the "send" again on a new connection: the risk this guards against.
    assert server.requests[SEND_PATH] == 2
    assert server.connections == 2


async def test_send_on_a_dead_keep_alive_connection_is_sent_exactly_once() -> None:
    async with KeepAliveServer() as server:
        async with client(base_url=server.url) as fibo:
            assert (await fibo.balance()).amount == 1641060.0  # warms the pooled connection
            with pytest.raises(errors.OutcomeUnknown) as info:
                await fibo.send("0912345678", "hi")
            await asyncio.sleep(0.05)  # room for any late resend to arrive
        assert server.requests[SEND_PATH] == 1
        assert server.connections == 1
    assert not isinstance(info.value, errors.MalformedResponse)
    assert info.value.attempts == 1
    assert info.value.endpoint == "SendMaskedSMS"
    assert "may have been processed" in str(info.value)


async def test_send_on_a_fresh_connection_succeeds() -> None:
    async with KeepAliveServer() as server:
        async with client(base_url=server.url) as fibo:
            res = await fibo.send("0912345678", "hi")
        assert res.recipients == ("0912345678",) and res.message_id is None
        assert server.requests[SEND_PATH] == 1


async def test_balance_on_a_dead_keep_alive_connection_is_retried() -> None:
    async with KeepAliveServer() as server:
        async with client(base_url=server.url) as fibo:
            await fibo.balance()
            assert (await fibo.balance()).amount == 1641060.0
        assert server.requests[BALANCE_PATH] == 3  # one, then the dropped one and its retry
        assert server.connections == 2
