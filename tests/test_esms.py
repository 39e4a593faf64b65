"""eSMS client against mocked HTTP (aioresponses): every endpoint, both code tables, RequestId
deduplication, local refusals and the secrecy of ApiKey and SecretKey."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

import smsvn
from smsvn import errors
from smsvn.models import (
    Brandname,
    BrandnameType,
    CallStatus,
    MessageStatus,
    ReceiverStatus,
    SendStatus,
)
from smsvn.providers.esms import DEFAULT_RATE_LIMIT, ESMS, MAX_REQUEST_ID_LENGTH
from tests.conftest import (
    FAST_RETRY,
    SENTINEL_KEY,
    SENTINEL_SECRET,
    payload_bytes,
    sent_body,
    sent_type,
)

BASE = "https://rest.esms.vn/MainService.svc/json"
VOICE = "https://voiceapi.esms.vn/MainService.svc/json"
SEND_POST = f"{BASE}/SendMultipleMessage_V4_post_json/"
SEND_GET = f"{BASE}/SendMultipleMessage_V4_get"
BALANCE = f"{BASE}/GetBalance/{SENTINEL_KEY}/{SENTINEL_SECRET}"
STATUS = f"{BASE}/GetSendStatus"
RECEIVERS = f"{BASE}/GetSmsReceiverStatus_get"
SENT_DATA = f"{BASE}/GetSmsSentData"
BRANDNAMES = f"{BASE}/GetListBrandname/{SENTINEL_KEY}/{SENTINEL_SECRET}"
VOICE_OTP = f"{VOICE}/VoiceOTP"
CALL_TEMPLATE = f"{VOICE}/MakeCallTemplate_V2"
CALL_RECORD = f"{VOICE}/MakeCallRecord_V2"
CALL_STATUS = f"{VOICE}/GetSendStatus"

NUMBERS_20 = [f"0912{i:06d}" for i in range(20)]


def at(url: str) -> re.Pattern[str]:
    """Match ``url`` with any query string (GET endpoints carry their fields in it)."""
    return re.compile("^" + re.escape(url) + r"(\?.*)?$")


def ok(**fields: Any) -> dict[str, Any]:
    return {"CodeResult": "100", **fields}


def client(**kwargs: Any) -> ESMS:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("brandname", "BRAND")
    return ESMS(SENTINEL_KEY, SENTINEL_SECRET, **kwargs)


def sent(m: aioresponses, method: str, url: str) -> list[tuple[URL, Any]]:
    """Every request made to ``url`` (query ignored), in order, with its recorded call."""
    target = URL(url)
    return [
        (key_url, call)
        for (key_method, key_url), calls in m.requests.items()
        if key_method == method and key_url.with_query(None) == target
        for call in calls
    ]


def body_of(call: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sent_body(call))
    return data


# -- send ----------------------------------------------------------------------------------------


async def test_send_post_fields_are_strings_in_a_json_body(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="0aac72e0-ba9b-4348-8530-d18d105778db18"))
    async with client() as sms:
        res = await sms.send("+84 912 345 678", "Xin chao", request_id="order-42")
    assert res.provider == "esms"
    assert res.message_id == "0aac72e0-ba9b-4348-8530-d18d105778db18"
    assert res.recipients == ("0912345678",)
    assert res.invalid == ()
    assert res.segments == 1
    assert res.cost is None
    assert res.request_id == "order-42"
    [(url, call)] = sent(mocked, "POST", SEND_POST)
    assert body_of(call) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "Phone": "0912345678",
        "Content": "Xin chao",
        "IsUnicode": "0",
        "SmsType": "2",
        "Sandbox": "0",
        "RequestId": "order-42",
        "Brandname": "BRAND",
    }
    assert sent_type(call) == "application/json"
    assert not url.query
    assert "SENTINEL" not in str(url)


async def test_send_get_puts_every_field_in_the_query(mocked: aioresponses) -> None:
    mocked.get(at(SEND_GET), payload={"CodeResult": 100, "SMSID": 24342680, "CountRegenerate": "0"})
    when = datetime(2024, 1, 2, 3, 4, 5)
    async with client() as sms:
        res = await sms.send(
            ["0912345678"],
            "Ma OTP cua ban la 1234",
            method="GET",
            sandbox=True,
            send_date=when,
            callback_url="https://example.vn/cb?x=1",
            request_id="r1",
        )
    assert res.message_id == "24342680"
    [(url, call)] = sent(mocked, "GET", SEND_GET)
    assert call.kwargs["params"] == dict(url.query)
    assert dict(url.query) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "Phone": "0912345678",
        "Content": "Ma OTP cua ban la 1234",
        "IsUnicode": "0",
        "SmsType": "2",
        "Sandbox": "1",
        "RequestId": "r1",
        "Brandname": "BRAND",
        "SendDate": "2024/01/02 03:04:05",
        "CallbackUrl": "https://example.vn/cb?x=1",
    }


async def test_send_date_aware_is_converted_to_vietnam_time(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="1"))
    async with client() as sms:
        await sms.send("0912345678", "hi", send_date=datetime(2024, 1, 1, 20, 0, tzinfo=UTC))
    [(_, call)] = sent(mocked, "POST", SEND_POST)
    assert body_of(call)["SendDate"] == "2024/01/02 03:00:00"


async def test_send_type_8_omits_brandname(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="8"))
    async with client() as sms:
        await sms.send("0912345678", "Ma OTP cua ban la 1234", sms_type=8)
    [(_, call)] = sent(mocked, "POST", SEND_POST)
    body = body_of(call)
    assert body["SmsType"] == "8"
    assert "Brandname" not in body
    assert "SendDate" not in body and "CallbackUrl" not in body


async def test_send_generates_a_request_id(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="1"))
    async with client() as sms:
        res = await sms.send("0912345678", "hi")
    [(_, call)] = sent(mocked, "POST", SEND_POST)
    request_id = body_of(call)["RequestId"]
    assert res.request_id == request_id
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert len(request_id) <= MAX_REQUEST_ID_LENGTH  # a generated id always fits the cap


async def test_send_advertising_joins_numbers_and_reports_invalid(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="ad"))
    numbers = [*NUMBERS_20, "12345", NUMBERS_20[0]]
    async with client() as sms:
        res = await sms.send(numbers, "Khuyen mai 50%", sms_type=1)
    assert res.recipients == tuple(NUMBERS_20)
    assert list(res.invalid) == ["12345"]
    assert res.segments == 20
    [(_, call)] = sent(mocked, "POST", SEND_POST)
    body = body_of(call)
    assert body["Phone"] == ",".join(NUMBERS_20)
    assert body["SmsType"] == "1"
    assert body["Brandname"] == "BRAND"


async def test_send_segments_count_content_and_recipients(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="1"))
    async with client() as sms:
        res = await sms.send("0912345678", "a" * 200)
    assert res.segments == 2


@pytest.mark.parametrize(
    ("content", "kwargs", "is_unicode", "sent_content"),
    [
        ("Xin chao 1234", {}, "0", "Xin chao 1234"),
        ("Mã OTP của bạn là 1234", {}, "1", "Mã OTP của bạn là 1234"),
        ("Mã OTP của bạn là 1234", {"strip_diacritics": True}, "0", "Ma OTP cua ban la 1234"),
        ("Xin chao", {"unicode": True}, "1", "Xin chao"),
        ("Xin chào", {"unicode": False}, "0", "Xin chào"),
    ],
)
async def test_unicode_choice(
    mocked: aioresponses,
    content: str,
    kwargs: dict[str, Any],
    is_unicode: str,
    sent_content: str,
) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="1"))
    async with client() as sms:
        await sms.send("0912345678", content, **kwargs)
    [(_, call)] = sent(mocked, "POST", SEND_POST)
    body = body_of(call)
    assert body["IsUnicode"] == is_unicode
    assert body["Content"] == sent_content


@pytest.mark.parametrize(
    ("to", "kwargs", "match"),
    [
        ("0912345678", {"brandname": ""}, "needs a brandname"),
        (NUMBERS_20, {"sms_type": 1, "brandname": ""}, "needs a brandname"),
        (["0912345678", "0987654321"], {}, "send_bulk"),
        (["0912345678", "0987654321"], {"sms_type": 8}, "send_bulk"),
        (NUMBERS_20[:19], {"sms_type": 1}, "at least 20"),
        ([*NUMBERS_20[:19], "123"], {"sms_type": 1}, "at least 20"),
        (NUMBERS_20, {"sms_type": 1, "content": "x" * 423}, "at most 422"),
        ("0912345678", {"request_id": "r" * 51}, "request_id"),
        ("0912345678", {"request_id": "r" * 120}, "request_id"),  # the older document's cap
        ("0912345678", {"request_id": ""}, "request_id"),
        ("0912345678", {"sms_type": 3}, "sms_type 3"),
        ("0912345678", {"content": ""}, "content is empty"),
        ("0912345678", {"method": "PUT"}, "method"),
        ("123", {}, "no valid recipient"),
    ],
)
async def test_send_local_refusals_make_no_request(
    mocked: aioresponses, to: Any, kwargs: dict[str, Any], match: str
) -> None:
    content = kwargs.pop("content", "hi")
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match=match) as info:
            await sms.send(to, content, **kwargs)
    assert info.value.provider == "esms"
    assert not mocked.requests


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        ("Mã OTP", {"unicode": False}, "unicode=False"),
        ("Mã OTP 😀", {"strip_diacritics": True}, "strip_diacritics=True"),
        ("Mã OTP", {"strip_diacritics": True, "unicode": True}, "cannot go with unicode"),
        ("bad \x00 byte", {}, "no SMS encoding"),
        ("lone \ud800 surrogate", {}, "no SMS encoding"),
    ],
)
async def test_content_that_cannot_go_as_asked_is_refused(
    mocked: aioresponses, content: str, kwargs: dict[str, Any], match: str
) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match=match):
            await sms.send("0912345678", content, **kwargs)
    assert not mocked.requests


@pytest.mark.parametrize(
    ("content", "unicode", "segments"),
    [
        ("a" * 160, None, 1),
        ("a" * 161, None, 2),
        ("a" * 70, True, 1),
        ("a" * 100, True, 2),
        ("ạ" * 70, None, 1),
        ("ạ" * 71, None, 2),
    ],
)
async def test_segments_follow_the_encoding_sent(
    mocked: aioresponses, content: str, unicode: bool | None, segments: int
) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="1"))
    async with client() as sms:
        res = await sms.send("0912345678", content, unicode=unicode)
    assert res.segments == segments


async def test_send_advertising_at_limits_is_accepted(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="1"))
    async with client() as sms:
        res = await sms.send(NUMBERS_20, "x" * 422, sms_type=1, request_id="r" * 50)
    assert res.request_id == "r" * 50


# -- never send twice --------------------------------------------------------------------------


async def test_resend_after_timeout_reuses_the_request_id(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, exception=TimeoutError())
    mocked.post(SEND_POST, payload=ok(SMSID="42"))
    async with client() as sms:
        res = await sms.send("0912345678", "hi")
    calls = sent(mocked, "POST", SEND_POST)
    assert len(calls) == 2
    first, second = (body_of(call) for _, call in calls)
    assert first == second
    assert first["RequestId"] == res.request_id
    assert res.message_id == "42"


async def test_resend_after_timeout_reuses_the_request_id_on_get(mocked: aioresponses) -> None:
    mocked.get(at(SEND_GET), exception=TimeoutError())
    mocked.get(at(SEND_GET), payload=ok(SMSID="42"))
    async with client() as sms:
        res = await sms.send("0912345678", "hi", method="GET")
    calls = sent(mocked, "GET", SEND_GET)
    assert len(calls) == 2
    assert calls[0][0].query["RequestId"] == calls[1][0].query["RequestId"] == res.request_id


@pytest.mark.parametrize(("answer", "message_id"), [({}, None), ({"SMSID": "77"}, "77")])
async def test_124_to_a_resend_means_the_first_attempt_was_accepted(
    mocked: aioresponses, answer: dict[str, Any], message_id: str | None
) -> None:
    mocked.post(SEND_POST, exception=TimeoutError())
    mocked.post(SEND_POST, payload={"CodeResult": "124", "ErrorMessage": "Request exist", **answer})
    async with client() as sms:
        res = await sms.send("0912345678", "hi", request_id="abc")
    assert isinstance(res, smsvn.SendResult)
    assert res.message_id == message_id
    assert res.request_id == "abc"
    assert res.recipients == ("0912345678",)
    assert len(sent(mocked, "POST", SEND_POST)) == 2


async def test_124_on_the_first_attempt_is_invalid_request(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload={"CodeResult": "124", "ErrorMessage": "Request exist"})
    async with client() as sms:
        with pytest.raises(errors.InvalidRequest) as info:
            await sms.send("0912345678", "hi", request_id="abc")
    assert info.value.code == "124"
    assert "already accepted" in info.value.message
    assert len(sent(mocked, "POST", SEND_POST)) == 1


async def test_99_then_100_is_one_result_under_one_request_id(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload={"CodeResult": "99", "ErrorMessage": "Unknown error"})
    mocked.post(SEND_POST, payload=ok(SMSID="5"))
    async with client() as sms:
        res = await sms.send("0912345678", "hi")
    calls = sent(mocked, "POST", SEND_POST)
    assert len(calls) == 2
    ids = {body_of(call)["RequestId"] for _, call in calls}
    assert ids == {res.request_id}
    assert res.message_id == "5"


async def test_send_error_is_not_resent(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload={"CodeResult": "103"})
    async with client() as sms:
        with pytest.raises(errors.InsufficientBalance):
            await sms.send("0912345678", "hi")
    assert len(sent(mocked, "POST", SEND_POST)) == 1


@pytest.mark.parametrize(
    ("url", "call"),
    [
        (VOICE_OTP, lambda sms: sms.voice_otp("0912345678", "1234")),
        (CALL_TEMPLATE, lambda sms: sms.call_template("0912345678", "T1", ["a"])),
        (CALL_RECORD, lambda sms: sms.call_record("0912345678", "R1")),
    ],
)
async def test_voice_calls_are_never_resent_after_a_timeout(
    mocked: aioresponses, url: str, call: Any
) -> None:
    mocked.get(at(url), exception=TimeoutError())
    mocked.get(at(url), payload=ok(SMSID="x"))
    async with client() as sms:
        with pytest.raises(errors.OutcomeUnknown) as info:
            await call(sms)
    assert not isinstance(info.value, errors.MalformedResponse)
    assert info.value.attempts == 1
    assert len(sent(mocked, "GET", url)) == 1


async def test_voice_call_99_is_not_resent(mocked: aioresponses) -> None:
    mocked.get(at(VOICE_OTP), payload={"CodeResult": "99"}, repeat=True)
    async with client() as sms:
        with pytest.raises(errors.ProviderUnavailable):
            await sms.voice_otp("0912345678", "1234")
    assert len(sent(mocked, "GET", VOICE_OTP)) == 1


# -- result codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("99", errors.ProviderUnavailable),
        ("101", errors.AuthenticationError),
        ("102", errors.AuthenticationError),
        ("103", errors.InsufficientBalance),
        ("104", errors.SenderNotRegistered),
        ("105", errors.InvalidRequest),
        ("108", errors.InvalidRecipient),
        ("118", errors.InvalidRequest),
        ("119", errors.InvalidRequest),
        ("124", errors.InvalidRequest),
        ("131", errors.InvalidRequest),
        ("132", errors.SenderNotRegistered),
        ("140", errors.AuthenticationError),
        ("145", errors.InvalidRequest),
        ("146", errors.InvalidRequest),
        ("159", errors.InvalidRequest),
        ("177", errors.SenderNotRegistered),
        (101, errors.AuthenticationError),
        (177, errors.SenderNotRegistered),
        ("555", errors.SmsError),
    ],
)
async def test_every_sms_code(mocked: aioresponses, code: Any, cls: type[errors.SmsError]) -> None:
    mocked.post(SEND_POST, payload={"CodeResult": code, "ErrorMessage": "described"}, repeat=True)
    async with client() as sms:
        with pytest.raises(cls) as info:
            await sms.send("0912345678", "hi")
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, errors.SmsError)
    assert exc.provider == "esms"
    assert exc.code == str(code)
    assert exc.http_status == 200
    assert exc.endpoint == "SendMultipleMessage_V4_post_json"
    expected = 3 if cls is errors.ProviderUnavailable else 1  # 99 is resent under its RequestId
    assert len(sent(mocked, "POST", SEND_POST)) == expected


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("99", errors.ProviderUnavailable),
        ("101", errors.AuthenticationError),
        ("102", errors.InvalidRequest),
        ("103", errors.InsufficientBalance),
        ("104", errors.InvalidRequest),
        ("105", errors.InvalidRequest),
        ("106", errors.InvalidRequest),
        ("107", errors.InvalidRecipient),
        (107, errors.InvalidRecipient),
        ("108", errors.SmsError),
    ],
)
async def test_every_voice_code(
    mocked: aioresponses, code: Any, cls: type[errors.SmsError]
) -> None:
    mocked.get(at(CALL_TEMPLATE), payload={"CodeResult": code})
    async with client() as sms:
        with pytest.raises(cls) as info:
            await sms.call_template("0912345678", 12, ["Trung", "20000"])
    exc = info.value
    assert type(exc) is cls
    assert exc.provider == "esms"
    assert exc.code == str(code)
    assert exc.endpoint == "MakeCallTemplate_V2"


async def test_same_number_means_different_things_in_sms_and_voice(
    mocked: aioresponses,
) -> None:
    mocked.get(at(STATUS), payload={"CodeResponse": "102"})
    mocked.get(at(VOICE_OTP), payload={"CodeResult": "102"})
    async with client() as sms:
        with pytest.raises(errors.AuthenticationError):
            await sms.status("1")
        with pytest.raises(errors.InvalidRequest):
            await sms.voice_otp("0912345678", "1")


async def test_140_is_a_bad_time_range_for_sent_data(mocked: aioresponses) -> None:
    mocked.post(SENT_DATA, payload={"CodeResult": "140", "ErrorMessage": "Invalid time"})
    async with client() as sms:
        with pytest.raises(errors.InvalidRequest) as info:
            await sms.sent_messages(date(2024, 1, 1), date(2024, 1, 2))
    assert info.value.code == "140"
    assert "time range" in info.value.message


async def test_105_is_call_not_found_for_call_status(mocked: aioresponses) -> None:
    mocked.get(at(CALL_STATUS), payload={"CodeResponse": "105"})
    async with client() as sms:
        with pytest.raises(errors.InvalidRequest, match="call not found") as info:
            await sms.call_status("ref")
    assert info.value.code == "105"


@pytest.mark.parametrize(
    "answer",
    [
        {"CodeResult": "101"},
        {"CodeResult": 101},
        {"CodeResponse": "101"},
        {"CodeResponse": 101},
        {"CodeResponse": " 101 ", "ErrorMessage": "Authorize Failed."},
    ],
)
async def test_code_under_either_key_as_string_or_number(
    mocked: aioresponses, answer: dict[str, Any]
) -> None:
    mocked.get(at(BALANCE), payload=answer)
    async with client() as sms:
        with pytest.raises(errors.AuthenticationError) as info:
            await sms.balance()
    assert info.value.code == "101"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"error": "Invalid request"}', "no CodeResult or CodeResponse"),
        (b'{"CodeResult": ""}', "no CodeResult or CodeResponse"),
        (b"<html><body>Service Unavailable</body></html>", "JSON"),
        (b"", "truncated"),
        (b"[1, 2]", "object"),
        (b'{"CodeResult": 100.5}', "CodeResult"),
    ],
)
async def test_answers_without_a_code_are_malformed(
    mocked: aioresponses, body: bytes, why: str
) -> None:
    mocked.get(at(STATUS), body=body, repeat=True)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.status("1")
    assert info.value.endpoint == "GetSendStatus"
    assert "GetSendStatus" in str(info.value)
    assert why in str(info.value)
    assert len(sent(mocked, "GET", STATUS)) == 3  # a read is retried


async def test_an_answer_nested_thousands_deep_is_malformed(mocked: aioresponses) -> None:
    """A hostile answer with a few thousand nested brackets in a member msgspec skips: a
    ``MalformedResponse``, not a bare ``RecursionError``."""
    deep = b'{"CodeResult":"100","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    mocked.get(at(STATUS), body=deep, repeat=True)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse, match="nested too deeply"):
            await sms.status("1")


async def test_invalid_request_answer_to_a_send_is_malformed(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload={"error": "Invalid request"}, repeat=True)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.send("0912345678", "hi")
    assert info.value.endpoint == "SendMultipleMessage_V4_post_json"
    assert "Invalid request" in str(info.value)


async def test_non_json_voice_answer_is_malformed_and_not_resent(mocked: aioresponses) -> None:
    mocked.get(at(VOICE_OTP), status=502, body=b"Bad Gateway", repeat=True)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.voice_otp("0912345678", "1234")
    assert info.value.endpoint == "VoiceOTP"
    assert info.value.http_status == 502
    assert len(sent(mocked, "GET", VOICE_OTP)) == 1


async def test_429_pauses_and_resends(mocked: aioresponses) -> None:
    mocked.get(at(BALANCE), status=429, body=b"", headers={"Retry-After": "0"})
    mocked.get(at(BALANCE), payload={"CodeResponse": "100", "Balance": 5})
    async with client() as sms:
        assert (await sms.balance()).amount == 5.0
    assert len(sent(mocked, "GET", BALANCE)) == 2


# -- lookups -----------------------------------------------------------------------------------


async def test_balance(mocked: aioresponses) -> None:
    mocked.get(at(BALANCE), payload={"Balance": 7527430, "CodeResponse": "100", "UserID": 1})
    async with client() as sms:
        bal = await sms.balance()
    assert bal == smsvn.Balance(provider="esms", amount=7527430.0, currency="VND", raw=bal.raw)
    [(url, call)] = sent(mocked, "GET", BALANCE)
    assert not url.query
    assert not call.kwargs.get("params")


async def test_balance_percent_encodes_keys_in_the_path(mocked: aioresponses) -> None:
    key, secret = "k/SENTINEL+1", "s?SENTINEL#2 x"
    mocked.get(
        re.compile(r"^https://rest\.esms\.vn/.*GetBalance/.*$"),
        payload={"Balance": "12.5", "CodeResponse": "100"},
    )
    async with ESMS(key, secret, rate_limit=None) as sms:
        bal = await sms.balance()
    assert bal.amount == 12.5
    [(url, _)] = [(u, c) for (m, u), cs in mocked.requests.items() if m == "GET" for c in cs]
    assert url.raw_path == (
        "/MainService.svc/json/GetBalance/k%2FSENTINEL%2B1/s%3FSENTINEL%232%20x"
    )
    assert not url.query


async def test_balance_without_balance_is_malformed(mocked: aioresponses) -> None:
    mocked.get(at(BALANCE), payload={"CodeResponse": "100"}, repeat=True)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse, match="Balance"):
            await sms.balance()


async def test_status(mocked: aioresponses) -> None:
    mocked.get(
        at(STATUS),
        payload={
            "CodeResponse": "100",
            "SMSID": "24312210",
            "SendFailed": 0,
            "SendStatus": 5,
            "SendSuccess": 1,
            "TotalReceiver": 1,
            "TotalSent": "1",
        },
    )
    async with client() as sms:
        st = await sms.status("24312210")
    assert st == MessageStatus(
        provider="esms",
        message_id="24312210",
        status=SendStatus.SENT,
        total_receivers=1,
        total_sent=1,
        succeeded=1,
        failed=0,
        raw=st.raw,
    )
    [(url, _)] = sent(mocked, "GET", STATUS)
    assert dict(url.query) == {
        "RefId": "24312210",
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
    }


async def test_status_undocumented_send_status_is_none(mocked: aioresponses) -> None:
    mocked.get(at(STATUS), payload={"CodeResponse": "100", "SendStatus": 7})
    async with client() as sms:
        st = await sms.status("abc")
    assert st.status is None
    assert st.message_id == "abc"
    assert st.raw.send_status == 7


async def test_status_105_is_id_not_found(mocked: aioresponses) -> None:
    mocked.get(at(STATUS), payload={"CodeResponse": "105"})
    async with client() as sms:
        with pytest.raises(errors.InvalidRequest, match="id not found"):
            await sms.status("nope")


async def test_receivers(mocked: aioresponses) -> None:
    mocked.get(
        at(RECEIVERS),
        payload={
            "CodeResult": "100",
            "ReceiverList": [
                {"IsSent": True, "Phone": "84912345678", "SentResult": True},
                {"IsSent": False, "Phone": "0987654321", "SentResult": None},
                {"IsSent": "true", "Phone": "xyz", "SentResult": "false"},
            ],
        },
    )
    async with client() as sms:
        got = await sms.receivers("24342680")
    assert got == [
        ReceiverStatus(phone="0912345678", is_sent=True, succeeded=True),
        ReceiverStatus(phone="0987654321", is_sent=False, succeeded=None),
        ReceiverStatus(phone="xyz", is_sent=True, succeeded=False),
    ]
    [(url, _)] = sent(mocked, "GET", RECEIVERS)
    assert dict(url.query) == {
        "RefId": "24342680",
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
    }


async def test_sent_messages_decode_wcf_dates(mocked: aioresponses) -> None:
    item = {"Phone": "0901888484", "Content": "Cam on", "SmsType": 2, "SentStatus": True}
    mocked.post(
        SENT_DATA,
        payload={
            "CodeResult": "100",
            "ErrorMessage": "",
            "SentData": [
                {**item, "SmsId": 29028845, "SentTime": "/Date(1705484048995+0700)/"},
                {**item, "SmsId": "a-1", "SentTime": "/Date(1705484048995)/"},
                {**item, "SmsId": 3, "SentTime": "/Date(-86400000-0530)/", "SentStatus": 0},
                {**item, "SmsId": 4, "SentTime": None, "SentStatus": None, "Phone": "+8491"},
            ],
        },
    )
    async with client() as sms:
        got = await sms.sent_messages(date(2024, 1, 17), datetime(2024, 1, 18, 23, 0))
    [(_, call)] = sent(mocked, "POST", SENT_DATA)
    assert body_of(call) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "From": "01/17/2024",
        "To": "01/18/2024",
    }
    first, second, third, fourth = got
    assert first.message_id == "29028845"
    assert first.phone == "0901888484"
    assert first.content == "Cam on"
    assert first.sms_type == 2
    assert first.status == "true"
    assert first.sent_at == datetime(2024, 1, 17, 9, 34, 8, 995000, tzinfo=UTC)
    assert first.sent_at is not None and first.sent_at.utcoffset() == timedelta(hours=7)
    assert first.sent_at.hour == 16
    assert second.sent_at == first.sent_at
    assert second.sent_at is not None and second.sent_at.utcoffset() == timedelta(0)
    assert second.message_id == "a-1"
    offset = timezone(-timedelta(hours=5, minutes=30))
    assert third.sent_at == datetime(1969, 12, 31, tzinfo=UTC)
    assert third.sent_at is not None and third.sent_at.tzinfo == offset
    assert third.sent_at.hour == 18 and third.sent_at.minute == 30
    assert third.status == "0"
    assert fourth.sent_at is None and fourth.status is None and fourth.phone == "+8491"


async def test_sent_messages_aware_datetimes_use_vietnam_days(mocked: aioresponses) -> None:
    mocked.post(SENT_DATA, payload={"CodeResult": "100", "SentData": None})
    start = datetime(2024, 1, 31, 18, 0, tzinfo=UTC)  # 01:00 on 1 February in Vietnam
    async with client() as sms:
        assert await sms.sent_messages(start, start) == []
    [(_, call)] = sent(mocked, "POST", SENT_DATA)
    assert body_of(call)["From"] == body_of(call)["To"] == "02/01/2024"


@pytest.mark.parametrize(
    "when",
    [
        "2024-01-17 16:34:08",
        "/Date(abc)/",
        "/Date(1705484048995+07)/",
        "/Date(1705484048995+2500)/",
        "/Date(99999999999999999999)/",
    ],
)
async def test_malformed_wcf_date_is_malformed_response(mocked: aioresponses, when: str) -> None:
    mocked.post(
        SENT_DATA,
        payload={"CodeResult": "100", "SentData": [{"SmsId": 1, "Phone": "1", "SentTime": when}]},
        repeat=True,
    )
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.sent_messages(date(2024, 1, 1), date(2024, 1, 2))
    assert info.value.endpoint == "GetSmsSentData"


async def test_sent_messages_end_before_start_is_refused_locally(mocked: aioresponses) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match="before start"):
            await sms.sent_messages(date(2024, 1, 2), date(2024, 1, 1))
    assert not mocked.requests


async def test_brandnames_success_uses_code_response(mocked: aioresponses) -> None:
    mocked.get(
        at(BRANDNAMES),
        payload={
            "CodeResponse": "100",
            "ListBrandName": [
                {"Brandname": "Test_Sang", "Type": 2},
                {"Brandname": "Promo", "Type": 1},
                {"Brandname": "Odd", "Type": 9},
            ],
        },
    )
    async with client() as sms:
        got = await sms.brandnames()
    assert got == [
        Brandname(name="Test_Sang", type=BrandnameType.CUSTOMER_CARE),
        Brandname(name="Promo", type=BrandnameType.ADVERTISING),
        Brandname(name="Odd", type=None),
    ]
    [(url, _)] = sent(mocked, "GET", BRANDNAMES)
    assert not url.query


async def test_brandnames_error_uses_code_result(mocked: aioresponses) -> None:
    mocked.get(at(BRANDNAMES), payload={"CodeResult": "101", "ErrorMessage": "Sai Api"})
    async with client() as sms:
        with pytest.raises(errors.AuthenticationError) as info:
            await sms.brandnames()
    assert info.value.code == "101"
    assert info.value.endpoint == "GetListBrandname"
    assert "Sai Api" in info.value.message


async def test_reads_are_retried_after_99(mocked: aioresponses) -> None:
    mocked.get(at(BRANDNAMES), payload={"CodeResponse": "99"})
    mocked.get(at(BRANDNAMES), payload={"CodeResponse": "100", "ListBrandName": []})
    async with client() as sms:
        assert await sms.brandnames() == []
    assert len(sent(mocked, "GET", BRANDNAMES)) == 2


# -- voice -------------------------------------------------------------------------------------


async def test_voice_otp(mocked: aioresponses) -> None:
    mocked.get(at(VOICE_OTP), payload=ok(SMSID="8eb2af6d-fb4c-4814-b9cc-4c0e3ed32edf "))
    async with client() as sms:
        res = await sms.voice_otp(
            "84842090998",
            "123456",
            voice="hatieumai",
            speed=-3,
            sender="voice_otp_repeat",
            callback_url="https://example.vn/call",
        )
    assert res.message_id == "8eb2af6d-fb4c-4814-b9cc-4c0e3ed32edf"
    assert res.recipients == ("0842090998",)
    assert res.segments is None and res.cost is None
    [(url, call)] = sent(mocked, "GET", VOICE_OTP)
    assert dict(url.query) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "Phone": "0842090998",
        "Code": "123456",
        "Voice": "hatieumai",
        "Speed": "-3",
        "Sender": "voice_otp_repeat",
        "CallbackUrl": "https://example.vn/call",
    }
    assert call.kwargs["middlewares"]  # aiohttp may not silently resend this GET


async def test_voice_otp_minimal_fields(mocked: aioresponses) -> None:
    mocked.get(at(VOICE_OTP), payload=ok(SMSID="x"))
    async with client() as sms:
        await sms.voice_otp("0912345678", "0000", speed=0)
    [(url, _)] = sent(mocked, "GET", VOICE_OTP)
    assert dict(url.query) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "Phone": "0912345678",
        "Code": "0000",
        "Speed": "0",
    }


async def test_call_template_joins_variables_with_double_bars(mocked: aioresponses) -> None:
    mocked.get(at(CALL_TEMPLATE), payload=ok(SMSID="t"))
    async with client() as sms:
        res = await sms.call_template(
            "0912345678",
            "T-9",
            ["Trung", "20000", "a|b"],
            send_date=datetime(2017, 12, 12, 14, 0),
            voice="female",
            speed=1,
            callback_url="https://example.vn/cb",
        )
    assert res.message_id == "t"
    [(url, _)] = sent(mocked, "GET", CALL_TEMPLATE)
    assert dict(url.query) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "TemplateId": "T-9",
        "Phone": "0912345678",
        "VariableListStr": "Trung||20000||a|b",
        "SendDate": "2017/12/12 14:00:00",
        "Voice": "female",
        "Speed": "1",
        "CallbackUrl": "https://example.vn/cb",
    }


async def test_call_template_without_variables_and_one_string(mocked: aioresponses) -> None:
    mocked.get(at(CALL_TEMPLATE), payload=ok(SMSID="t"), repeat=True)
    async with client() as sms:
        await sms.call_template("0912345678", 7)
        await sms.call_template("0912345678", 7, "Trung")
    (url1, _), (url2, _) = sent(mocked, "GET", CALL_TEMPLATE)
    assert "VariableListStr" not in url1.query
    assert url1.query["TemplateId"] == "7"
    assert url2.query["VariableListStr"] == "Trung"


async def test_call_record(mocked: aioresponses) -> None:
    mocked.get(at(CALL_RECORD), payload=ok(SMSID="r"))
    async with client() as sms:
        res = await sms.call_record(
            "0912345678",
            "REC1",
            send_date=datetime(2017, 12, 12, 14, 0),
            forward_number="1900 1234",
            max_repeat=2,
            max_retry=1,
            ivr=5,
            wait_for_ivr=10,
            retry_wait=60,
            callback_url="https://example.vn/cb",
        )
    assert res.message_id == "r"
    [(url, _)] = sent(mocked, "GET", CALL_RECORD)
    assert url.path == "/MainService.svc/json/MakeCallRecord_V2"
    assert dict(url.query) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "TemplateId": "REC1",
        "Phone": "0912345678",
        "SendDate": "2017/12/12 14:00:00",
        "NumberForward": "19001234",
        "MaxRepeat": "2",
        "MaxRetry": "1",
        "Ivr": "5",
        "TimeWaitToIvr": "10",
        "WaitRetry": "60",
        "CallbackUrl": "https://example.vn/cb",
    }


async def test_call_record_forward_mobile_is_national(mocked: aioresponses) -> None:
    mocked.get(at(CALL_RECORD), payload=ok(SMSID="r"))
    async with client() as sms:
        await sms.call_record("0912345678", "REC1", forward_number="+84 98 765 4321", ivr="0")
    [(url, _)] = sent(mocked, "GET", CALL_RECORD)
    assert url.query["NumberForward"] == "0987654321"
    assert url.query["Ivr"] == "0"


@pytest.mark.parametrize(
    ("callstatus", "expected"),
    [
        ("ANSWERED", CallStatus.ANSWERED),
        ("NO ANSWER", CallStatus.NO_ANSWER),
        ("NOANSWERED", CallStatus.NO_ANSWER),
        ("answered", CallStatus.ANSWERED),
        ("", CallStatus.PENDING),
        (None, CallStatus.PENDING),
        ("BUSY", CallStatus.UNKNOWN),
    ],
)
async def test_call_status(
    mocked: aioresponses, callstatus: str | None, expected: CallStatus
) -> None:
    mocked.get(
        at(CALL_STATUS),
        payload={"CodeResponse": "100", "callduration": 24, "callstatus": callstatus, "ivr": "2"},
    )
    async with client() as sms:
        res = await sms.call_status("ref-1")
    assert res.provider == "esms"
    assert res.reference_id == "ref-1"
    assert res.status is expected
    assert res.duration == 24
    assert res.ivr == "2"
    [(url, _)] = sent(mocked, "GET", CALL_STATUS)
    assert dict(url.query) == {
        "ApiKey": SENTINEL_KEY,
        "SecretKey": SENTINEL_SECRET,
        "ReferenceId": "ref-1",
    }


async def test_call_status_string_fields(mocked: aioresponses) -> None:
    mocked.get(
        at(CALL_STATUS),
        payload={"CodeResponse": 100, "callduration": "", "callstatus": "", "ivr": 3},
    )
    async with client() as sms:
        res = await sms.call_status("ref-1")
    assert res.duration is None
    assert res.ivr == "3"


async def test_call_status_bad_duration_is_malformed(mocked: aioresponses) -> None:
    mocked.get(
        at(CALL_STATUS), payload={"CodeResponse": "100", "callduration": "long"}, repeat=True
    )
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse, match="callduration"):
            await sms.call_status("ref-1")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda sms: sms.voice_otp("0912345678", "12a4"), "digits"),
        (lambda sms: sms.voice_otp("0912345678", ""), "digits"),
        (lambda sms: sms.voice_otp("0912345678", "１２３"), "digits"),
        (lambda sms: sms.voice_otp("0912345678", "-123"), "digits"),
        (lambda sms: sms.voice_otp("0912345678", "1234", voice="robot"), "voice"),
        (lambda sms: sms.voice_otp("0912345678", "1234", speed=4), "speed"),
        (lambda sms: sms.voice_otp("0912345678", "1234", speed=-4), "speed"),
        (lambda sms: sms.voice_otp("12345", "1234"), "no valid recipient"),
        (lambda sms: sms.call_template("0912345678", "T", ["a||b"]), r"\|\|"),
        (lambda sms: sms.call_template("0912345678", "T", ["a|", "b"]), r"\|\|"),
        (lambda sms: sms.call_template("0912345678", "T", ["|b"]), r"\|\|"),
        (lambda sms: sms.call_template("0912345678", "T", ["a\ud800"]), "surrogates"),
        (lambda sms: sms.call_template("0912345678", "", ["a"]), "template_id"),
        (lambda sms: sms.call_template("0912345678", "T", voice="x"), "voice"),
        (lambda sms: sms.call_template("0912345678", "T", speed=7), "speed"),
        (lambda sms: sms.call_record("0912345678", "R", ivr=10), "ivr"),
        (lambda sms: sms.call_record("0912345678", "R", ivr="*"), "ivr"),
        (lambda sms: sms.call_record("0912345678", "R", max_retry=-1), "max_retry"),
        (lambda sms: sms.call_record("0912345678", "R", forward_number="call me"), "forward"),
        (lambda sms: sms.call_record("0912345678", ""), "record_id"),
        (lambda sms: sms.call_status(""), "reference_id"),
        (lambda sms: sms.status(""), "sms_id"),
        (lambda sms: sms.receivers(""), "sms_id"),
    ],
)
async def test_voice_and_lookup_local_refusals_make_no_request(
    mocked: aioresponses, call: Any, match: str
) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match=match):
            await call(sms)
    assert not mocked.requests


# -- bulk ----------------------------------------------------------------------------------------


async def test_send_bulk_sends_one_number_a_request_each_with_its_own_request_id(
    mocked: aioresponses,
) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="b"), repeat=True)
    async with client() as sms:
        report = await sms.send_bulk(
            ["0912345678", "12345", "+84987654321", "0912345678"], "Mã OTP", sandbox=True
        )
    assert report.accepted == 2
    assert list(report.invalid) == ["12345"]
    assert report.duplicates == 1
    bodies = [body_of(call) for _, call in sent(mocked, "POST", SEND_POST)]
    assert sorted(b["Phone"] for b in bodies) == ["0912345678", "0987654321"]
    assert {b["IsUnicode"] for b in bodies} == {"1"}
    assert {b["Sandbox"] for b in bodies} == {"1"}
    assert {b["Brandname"] for b in bodies} == {"BRAND"}
    assert len({b["RequestId"] for b in bodies}) == 2
    assert {r.request_id for r in report.sent} == {b["RequestId"] for b in bodies}


async def test_send_many_uses_each_message_request_id(mocked: aioresponses) -> None:
    mocked.post(SEND_POST, payload=ok(SMSID="m"), repeat=True)
    messages = [
        smsvn.Message("0912345678", "Ma OTP 1111", request_id="otp-1"),
        smsvn.Message("0987654321", "Ma OTP 2222"),
    ]
    async with client() as sms:
        report = await sms.send_many(messages, sms_type=8)
    assert report.accepted == 2
    bodies = {b["Phone"]: b for b in (body_of(c) for _, c in sent(mocked, "POST", SEND_POST))}
    assert bodies["0912345678"]["RequestId"] == "otp-1"
    assert bodies["0912345678"]["Content"] == "Ma OTP 1111"
    assert re.fullmatch(r"[0-9a-f]{32}", bodies["0987654321"]["RequestId"])
    assert "Brandname" not in bodies["0987654321"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sms_type": 1}, "advertising"),
        ({"brandname": ""}, "needs a brandname"),
        ({"unicode": False, "content": "Mã"}, "unicode=False"),
        ({"method": "PUT"}, "method"),
    ],
)
async def test_send_bulk_checks_options_before_any_request(
    mocked: aioresponses, kwargs: dict[str, Any], match: str
) -> None:
    content = kwargs.pop("content", "hi")
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match=match):
            await sms.send_bulk(NUMBERS_20, content, **kwargs)
    assert not mocked.requests


# -- construction, lifecycle and secrecy -------------------------------------------------------


@pytest.mark.parametrize(("key", "secret"), [("", "s"), ("k", ""), ("", "")])
def test_empty_keys_refused(key: str, secret: str) -> None:
    with pytest.raises(errors.ValidationError):
        ESMS(key, secret)


def test_unknown_default_sms_type_refused() -> None:
    with pytest.raises(errors.ValidationError, match="sms_type 5"):
        ESMS("k", "s", sms_type=5)


def test_default_rate_limit_is_conservative() -> None:
    assert DEFAULT_RATE_LIMIT.requests == 20
    assert DEFAULT_RATE_LIMIT.period == 1.0
    assert DEFAULT_RATE_LIMIT.burst == 5


async def test_one_pool_serves_both_hosts(mocked: aioresponses) -> None:
    mocked.get(at(BALANCE), payload={"CodeResponse": "100", "Balance": 1})
    mocked.get(at(CALL_STATUS), payload={"CodeResponse": "100", "callstatus": "ANSWERED"})
    async with client() as sms:
        await sms.balance()
        session = sms._transport.session()
        await sms.call_status("r")
        assert sms._transport.session() is session


async def test_borrowed_session_is_not_closed(mocked: aioresponses) -> None:
    mocked.get(at(BALANCE), payload={"CodeResponse": "100", "Balance": 1})
    async with aiohttp.ClientSession() as session:
        async with client(session=session) as sms:
            await sms.balance()
        assert not session.closed
        await sms.aclose()
        assert not session.closed


async def test_keys_never_appear_in_errors_reprs_logs_or_raw(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="smsvn")
    seen: list[str] = []
    bodies: list[str] = []

    def echo(url: URL, **kwargs: Any) -> CallbackResult:
        # A hostile proxy echoing the request (URL, query and body) back into its answer.
        data = kwargs.get("data")
        body = payload_bytes(data).decode() if data is not None else ""
        bodies.append(body)
        echoed = f"{url} {kwargs.get('params')} {body}"
        return CallbackResult(status=500, body=echoed.encode())

    def echo_ok(url: URL, **kwargs: Any) -> CallbackResult:
        # A success whose every string field echoes the credentials.
        both = f"{SENTINEL_KEY} {SENTINEL_SECRET} {url}"
        payload = {"CodeResult": "100", "SMSID": both, "ErrorMessage": both}
        return CallbackResult(status=200, payload=payload)

    mocked.post(SEND_POST, callback=echo, repeat=True)
    mocked.get(at(SEND_GET), callback=echo, repeat=True)
    mocked.get(at(VOICE_OTP), callback=echo)
    mocked.get(at(BALANCE), payload={"CodeResponse": "101", "ErrorMessage": BALANCE}, repeat=True)
    mocked.get(
        at(STATUS),
        payload={"CodeResponse": "102", "ErrorMessage": f"{SENTINEL_KEY}:{SENTINEL_SECRET}"},
        repeat=True,
    )
    mocked.get(at(CALL_TEMPLATE), callback=echo_ok)
    mocked.get(
        at(BRANDNAMES),
        payload={
            "CodeResponse": "100",
            "ErrorMessage": SENTINEL_SECRET,
            "ListBrandName": [{"Brandname": SENTINEL_KEY, "Type": 2}],
        },
    )
    async with client() as sms:
        seen.append(repr(sms))
        for call in (
            sms.send("0912345678", "hi"),
            sms.send("0912345678", "hi", method="GET"),
            sms.voice_otp("0912345678", "1234"),
            sms.balance(),
            sms.status("1"),
        ):
            with pytest.raises(errors.SmsError) as info:
                await call
            seen += [str(info.value), repr(info.value), repr(info.value.args)]
        res = await sms.call_template("0912345678", "T")
        seen += [repr(res), repr(res.raw), msgspec.json.encode(res.raw).decode()]
        names = await sms.brandnames()
        seen.append(repr(names))
    assert sum("***" in text for text in seen) >= 5
    # The POST's echo carried both keys back (the test is not vacuous): they came out masked.
    assert any(SENTINEL_KEY in b and SENTINEL_SECRET in b for b in bodies), bodies
    async with client(base_url=f"http://127.0.0.1:{closed_port}") as sms:
        for lookup in (sms.balance(), sms.brandnames(), sms.status("1")):
            with pytest.raises(errors.ConnectError) as conn:
                await lookup
            seen += [str(conn.value), repr(conn.value)]
        seen.append(repr(sms))
    seen += [r.getMessage() for r in caplog.records]
    seen += [repr(r.args) for r in caplog.records]
    for text in seen:
        assert "SENTINEL" not in text, text


async def test_keys_with_url_and_json_special_characters_are_redacted(
    mocked: aioresponses,
) -> None:
    key, secret = "k/SENTINEL+1", 's?SENTINEL#2 x"'

    def echo(url: URL, **kwargs: Any) -> CallbackResult:
        return CallbackResult(status=502, body=f"{url} {url.raw_path} {url.path}".encode())

    wcf_json = 'k\\/SENTINEL+1 s?SENTINEL#2 x\\"'  # how WCF would write both keys
    body = '{"CodeResponse": "100", "Balance": 1, "ErrorMessage": "' + wcf_json + '"}'
    mocked.get(re.compile(r"^https://rest\.esms\.vn/.*GetBalance/.*$"), body=body.encode())
    mocked.get(re.compile(r"^https://rest\.esms\.vn/.*$"), callback=echo, repeat=True)
    async with ESMS(key, secret, rate_limit=None, retry=FAST_RETRY) as sms:
        bal = await sms.balance()
        assert "SENTINEL" not in repr(bal.raw)
        assert "SENTINEL" not in msgspec.json.encode(bal.raw).decode()
        for call in (sms.balance(), sms.brandnames(), sms.status("1")):
            with pytest.raises(errors.MalformedResponse) as info:
                await call
            assert "SENTINEL" not in str(info.value)
            assert "SENTINEL" not in repr(info.value)
