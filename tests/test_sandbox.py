"""The simulator on its own, over real loopback sockets with plain aiohttp requests: each
provider's wire format, codes, accounts, delivery rules, callbacks, faults and shutdown."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from smsvn import providers
from smsvn.errors import AuthenticationError
from smsvn.limits import RateLimit
from smsvn.providers import Provider
from smsvn.sandbox import DEFAULT_BALANCES, DEFAULT_PRICES, Fault, Sandbox, serve
from smsvn.sandbox._base import any_case, same_route
from tests import toy_provider

TOKEN = Sandbox.speedsms_token
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:x".encode()).decode()}
ESMS_KEYS = {"ApiKey": Sandbox.esms_api_key, "SecretKey": Sandbox.esms_secret_key}
FIBO_KEYS = {"clientNo": Sandbox.fibo_client_no, "clientPass": Sandbox.fibo_client_pass}
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _quiet_server(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The server must log no error or warning, whatever the faults do to connections."""
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    noisy = [
        r
        for r in records
        if r.name.startswith(("aiohttp", "asyncio")) and r.levelno >= logging.WARNING
    ]
    assert not noisy, [r.getMessage() for r in noisy]


DELAY = 0.2
"""Delivery delay of the ``sb`` fixture: wide enough to see pending states on a slow machine."""


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=DELAY) as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@dataclass
class Receiver:
    """A callback endpoint on 127.0.0.1 that records what it is sent."""

    url: str = ""
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    failures_left: int = 0
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    def queries(self) -> list[dict[str, str]]:
        return [query for _, query, _ in self.calls]

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.calls]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        rec.calls.append((request.method, dict(request.query), body))
        rec.seen.set()
        if rec.failures_left > 0:
            rec.failures_left -= 1
            return web.Response(status=500, text="try again")
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


async def get_json(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.get(url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def post_json(
    http: aiohttp.ClientSession, url: str, payload: Any, **kwargs: Any
) -> tuple[int, Any]:
    async with http.post(url, data=json.dumps(payload).encode(), **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def speedsms_send(
    http: aiohttp.ClientSession, sb: Sandbox, to: list[Any], content: str = "Xin chao", **extra: Any
) -> tuple[int, Any]:
    payload = {"to": to, "content": content, "sms_type": 2, "sender": "", **extra}
    return await post_json(http, f"{sb.speedsms_url}/sms/send", payload, headers=AUTH)


# -- SpeedSMS -----------------------------------------------------------------------------------


async def test_speedsms_user_info(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sb.speedsms_url}/user/info", headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body == {
        "status": "success",
        "code": "00",
        "data": {"email": "demo@smsvn.test", "balance": 1e9, "currency": "VND"},
    }


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Basic " + base64.b64encode(b"wrong:x").decode()},
        {"Authorization": "Bearer " + TOKEN},
        {},
    ],
)
async def test_speedsms_bad_token_is_yii_401(
    sb: Sandbox, http: aiohttp.ClientSession, header: dict[str, str]
) -> None:
    async with http.get(f"{sb.speedsms_url}/user/info", headers=header) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="api"'
        body = await resp.json()
    assert body == {
        "name": "Unauthorized",
        "message": "Your request was made with invalid credentials.",
        "code": 0,
        "status": 401,
    }


async def test_speedsms_any_password_is_accepted(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    header = {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:secret".encode()).decode()}
    status, _ = await get_json(http, f"{sb.speedsms_url}/user/info", headers=header)
    assert status == 200


async def test_speedsms_send_wire_format(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    status, body = await speedsms_send(
        http, sb, ["84912345678", "0987654321", "12345", 84901234567, "0912345678"]
    )
    assert status == 200
    assert body["status"] == "success" and body["code"] == "00"
    data = body["data"]
    assert isinstance(data["tranId"], int)
    assert data == {
        "tranId": data["tranId"],
        "totalSMS": 3,
        "totalPrice": 750,
        "invalidPhone": ["12345"],
    }
    assert [r.phone for r in sb.outbox] == ["0912345678", "0987654321", "0901234567"]
    record = sb.outbox[0]
    assert record.provider == "speedsms"
    assert record.message_id == str(data["tranId"])
    assert record.request_id is None and record.kind == "sms" and not record.sandbox
    assert sb.balance("speedsms") == 1e9 - 750


async def test_speedsms_prices_by_segment(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    _, body = await speedsms_send(http, sb, ["0912345678"], content="Chào bạn " * 10)
    assert body["data"]["totalSMS"] == 2  # 90 UCS-2 characters: two segments
    assert body["data"]["totalPrice"] == 500


async def test_speedsms_all_invalid_is_105(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    _, body = await speedsms_send(http, sb, ["123", "0212345678"])
    assert body == {
        "status": "error",
        "code": "105",
        "message": "Phone number invalid",
        "invalidPhone": ["123", "0212345678"],
    }
    assert len(sb.outbox) == 0


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"to": [f"0912{i:06d}" for i in range(101)], "sms_type": 2}, "101"),
        ({"to": [], "sms_type": 2}, "101"),
        ({"to": "0912345678", "sms_type": 2}, "101"),
        ({"to": ["0912345678"], "sms_type": 7}, "101"),
        ({"to": ["0912345678"], "sms_type": 3, "sender": "NOBODY"}, "101"),
        ({"to": ["0912345678"], "sms_type": 5, "sender": ""}, "101"),
        ({"to": ["0912345678"], "sms_type": 2, "content": ""}, "101"),
        ({"to": ["0912345678"], "sms_type": 2, "content": "hi 😀"}, "110"),
        ({"to": ["0912345678"], "sms_type": 2, "content": "x" * 1600}, "113"),
    ],
)
async def test_speedsms_send_refusals(
    sb: Sandbox, http: aiohttp.ClientSession, payload: dict[str, Any], code: str
) -> None:
    payload = {"content": "Xin chao", "sender": "", **payload}
    _, body = await post_json(http, f"{sb.speedsms_url}/sms/send", payload, headers=AUTH)
    assert body["status"] == "error" and body["code"] == code
    assert len(sb.outbox) == 0


async def test_speedsms_registered_sender_and_numeric_string_type(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    _, body = await speedsms_send(http, sb, ["0912345678"], sms_type="3", sender="SMSVN")
    assert body["code"] == "00"
    assert sb.outbox[0].sender == "SMSVN"


async def test_speedsms_bad_json_is_yii_400(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sb.speedsms_url}/sms/send", data=b"{nope", headers=AUTH) as resp:
        assert resp.status == 400
        assert (await resp.json())["name"] == "Bad Request"


async def test_speedsms_voice_otp(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.speedsms_url}/voice/otp"
    _, body = await post_json(http, url, {"to": "0912345678", "content": "1234"}, headers=AUTH)
    assert body["code"] == "00"
    assert set(body["data"]) == {"tranId", "totalPrice"}
    assert body["data"]["totalPrice"] == 400
    _, body = await get_json(http, url, params={"to": "84912345679", "content": "99"}, headers=AUTH)
    assert body["code"] == "00"
    _, body = await get_json(http, url, params={"to": "0912345678", "content": "12a"}, headers=AUTH)
    assert body["code"] == "601"
    _, body = await get_json(http, url, params={"to": "999", "content": "12"}, headers=AUTH)
    assert body["code"] == "105" and body["invalidPhone"] == ["999"]
    assert [(r.phone, r.kind, r.content) for r in sb.outbox] == [
        ("0912345678", "voice", "1234"),
        ("0912345679", "voice", "99"),
    ]


async def test_speedsms_rate_limit_sliding_window(http: aiohttp.ClientSession) -> None:
    async with Sandbox(speedsms_rate_limit=RateLimit(requests=3, period=0.4)) as sb:
        url = f"{sb.speedsms_url}/user/info"
        for left in (2, 1, 0):
            async with http.get(url, headers=AUTH) as resp:
                assert resp.status == 200
                assert resp.headers["X-Rate-Limit-Remaining"] == str(left)
        async with http.get(url, headers={}) as resp:  # a 401 is not counted
            assert resp.status == 401
        async with http.get(url, headers=AUTH) as resp:
            assert resp.status == 429
            body = await resp.json()
            reset = float(resp.headers["X-Rate-Limit-Reset"])
            assert resp.headers["X-Rate-Limit-Limit"] == "3"
            assert resp.headers["X-Rate-Limit-Remaining"] == "0"
        assert body == {
            "name": "Too Many Requests",
            "message": "Rate limit exceeded.",
            "code": 0,
            "status": 429,
        }
        assert 0 < reset <= 0.4
        assert sb.stats.rate_limited == 1
        await asyncio.sleep(reset + 0.01)
        async with http.get(url, headers=AUTH) as resp:
            assert resp.status == 200


async def test_speedsms_reset_is_whole_seconds_in_long_windows(
    http: aiohttp.ClientSession,
) -> None:
    async with Sandbox(speedsms_rate_limit=RateLimit(requests=1, period=60.0)) as sb:
        url = f"{sb.speedsms_url}/user/info"
        async with http.get(url, headers=AUTH) as resp:
            assert resp.status == 200
        async with http.get(url, headers=AUTH) as resp:
            assert resp.status == 429
            assert resp.headers["X-Rate-Limit-Reset"] in ("59", "60")


async def test_speedsms_balance_runs_out(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.set_balance("speedsms", 300)
    _, body = await speedsms_send(http, sb, ["0912345678"])
    assert body["code"] == "00"
    _, body = await speedsms_send(http, sb, ["0912345679"])
    assert body == {
        "status": "error",
        "code": "300",
        "message": "Your account balance not enough to send sms",
    }
    assert sb.balance("speedsms") == 50
    assert [r.phone for r in sb.outbox] == ["0912345678"]


async def test_speedsms_not_found_and_method(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    status, body = await get_json(http, f"{sb.speedsms_url}/nothing", headers=AUTH)
    assert status == 404 and body["name"] == "Not Found"
    async with http.post(f"{sb.speedsms_url}/user/info", headers=AUTH) as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "GET"
        assert (await resp.json())["status"] == 405
    async with http.delete(f"{sb.speedsms_url}/sms/send", headers=AUTH) as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "GET, POST"


async def test_speedsms_delivery_reports(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with Sandbox(
        speedsms_rate_limit=None, delivery_delay=0.02, speedsms_webhook_url=receiver.url
    ) as sb:
        _, body = await speedsms_send(http, sb, ["0912345678", "0912340000", "0912340001"])
        tran_id = body["data"]["tranId"]
        await sb.settle()
        assert receiver.bodies() == [
            {"type": "report", "tranId": tran_id, "phone": "0912345678", "status": 0},
            {"type": "report", "tranId": tran_id, "phone": "0912340000", "status": 69},
            {"type": "report", "tranId": tran_id, "phone": "0912340001", "status": 1},
            {"type": "report", "tranId": tran_id, "phone": "0912340001", "status": 0},
        ]
        assert {m for m, _, _ in receiver.calls} == {"POST"}
        assert sb.stats.callback_attempts == 4 and sb.stats.callbacks_delivered == 4
        assert await sb.inbound_sms("0912345678", "Cam on") == 200
        assert receiver.bodies()[-1] == {"type": "sms", "phone": "0912345678", "content": "Cam on"}


async def test_inbound_sms_needs_a_webhook(sb: Sandbox) -> None:
    with pytest.raises(RuntimeError):
        await sb.inbound_sms("0912345678", "hi")


# -- eSMS ---------------------------------------------------------------------------------------


def esms_body(**fields: str) -> dict[str, str]:
    base = {
        **ESMS_KEYS,
        "Phone": "0912345678",
        "Content": "Ma OTP cua ban la 1234",
        "SmsType": "2",
        "Brandname": Sandbox.esms_brandname,
        "IsUnicode": "0",
        "Sandbox": "0",
    }
    return {**base, **fields}


async def esms_send(http: aiohttp.ClientSession, sb: Sandbox, **fields: str) -> dict[str, Any]:
    url = f"{sb.esms_url}/SendMultipleMessage_V4_post_json/"
    _, body = await post_json(http, url, esms_body(**fields))
    assert isinstance(body, dict)
    return body


async def test_esms_send_post_wire_format(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.esms_url}/SendMultipleMessage_V4_post_json/"
    async with http.post(url, data=json.dumps(esms_body(RequestId="r-1")).encode()) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body == {"CodeResult": "100", "CountRegenerate": 0, "SMSID": body["SMSID"]}
    assert isinstance(body["SMSID"], str) and len(body["SMSID"]) == 36
    (record,) = sb.outbox
    assert (record.provider, record.phone, record.request_id, record.message_id) == (
        "esms",
        "0912345678",
        "r-1",
        body["SMSID"],
    )
    assert record.sender == Sandbox.esms_brandname
    assert sb.balance("esms") == 1e9 - 350


async def test_esms_send_get_query_names_ignore_case(
    sb: Sandbox, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    params = {
        "phone": "84912345678",
        "CONTENT": "Xin chao",
        "apikey": Sandbox.esms_api_key,
        "SecretKey": Sandbox.esms_secret_key,
        "SmsType": "8",
        "CallBackUrl": receiver.url,
    }
    _, body = await get_json(http, f"{sb.esms_url}/SendMultipleMessage_V4_get", params=params)
    assert body["CodeResult"] == "100"
    await sb.settle()
    assert len(receiver.calls) == 1


async def test_esms_request_id_dedup(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    first = await esms_send(http, sb, RequestId="same-id")
    balance = sb.balance("esms")
    again = await esms_send(http, sb, RequestId="same-id", Phone="0987654321")
    assert first["CodeResult"] == "100"
    assert again == {"CodeResult": "124", "ErrorMessage": "Request exist"}
    assert len(sb.outbox) == 1 and sb.balance("esms") == balance
    assert sb.stats.duplicates == 1
    refused = await esms_send(http, sb, RequestId="x" * 121)
    assert refused["CodeResult"] == "159"


async def test_esms_refused_request_id_may_be_used_again(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.set_balance("esms", 0)
    assert (await esms_send(http, sb, RequestId="retry-me"))["CodeResult"] == "103"
    sb.set_balance("esms", 1000)
    assert (await esms_send(http, sb, RequestId="retry-me"))["CodeResult"] == "100"


async def test_esms_sandbox_flag_creates_but_never_delivers(
    sb: Sandbox, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    body = await esms_send(http, sb, Sandbox="1", CallbackUrl=receiver.url)
    assert body["CodeResult"] == "100"
    assert sb.balance("esms") == 1e9
    (record,) = sb.outbox
    assert record.sandbox
    await asyncio.sleep(DELAY * 1.5)
    params = {**ESMS_KEYS, "RefId": body["SMSID"]}
    _, status = await get_json(http, f"{sb.esms_url}/GetSendStatus", params=params)
    assert status["SendStatus"] == 5 and status["TotalSent"] == 0 and status["SendSuccess"] == 0
    assert receiver.calls == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"ApiKey": "wrong"}, "101"),
        ({"SmsType": "3"}, "118"),
        ({"SmsType": ""}, "118"),
        ({"Brandname": "NOBODY"}, "104"),
        ({"SmsType": "1"}, "104"),  # a customer-care brandname cannot advertise
        ({"SmsType": "1", "Brandname": Sandbox.esms_ad_brandname}, "119"),
        ({"Phone": "123,0212345678"}, "108"),
        ({"Content": ""}, "99"),
        ({"SendDate": "tomorrow"}, "99"),
    ],
)
async def test_esms_send_refusals(
    sb: Sandbox, http: aiohttp.ClientSession, fields: dict[str, str], code: str
) -> None:
    body = await esms_send(http, sb, **fields)
    assert body["CodeResult"] == code
    assert body["CountRegenerate"] == 0 and body["ErrorMessage"]
    assert len(sb.outbox) == 0


async def test_esms_advertising(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    phones = ",".join(f"09123{i:05d}" for i in range(20))
    ad = {"SmsType": "1", "Brandname": Sandbox.esms_ad_brandname, "Phone": phones}
    assert (await esms_send(http, sb, **ad, Content="x" * 423))["CodeResult"] == "131"
    assert (await esms_send(http, sb, **ad, Content="Khuyen mai"))["CodeResult"] == "100"
    assert len(sb.outbox) == 20


async def test_esms_unicode_is_priced_as_ucs2(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    await esms_send(http, sb, Content="x" * 100, IsUnicode="1")
    assert sb.balance("esms") == 1e9 - 2 * 350


async def test_esms_malformed_body_has_no_code(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.esms_url}/SendMultipleMessage_V4_post_json/"
    for raw in (b"{not json", b"[1, 2]", b'{"Phone": {"a": 1}}'):
        async with http.post(url, data=raw) as resp:
            assert resp.status == 400
            assert await resp.json() == {"error": "Invalid request"}
    # Numbers where strings are declared are bound as text, as WCF does.
    payload = {**esms_body(), "SmsType": 2, "Sandbox": 0}
    _, body = await post_json(http, url, payload)
    assert body["CodeResult"] == "100"


async def test_esms_balance(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    key, secret = Sandbox.esms_api_key, Sandbox.esms_secret_key
    _, body = await get_json(http, f"{sb.esms_url}/GetBalance/{key}/{secret}")
    assert body == {"Balance": 1000000000, "CodeResponse": "100", "UserID": 1}
    _, body = await get_json(http, f"{sb.esms_url}/GetBalance/{key}/wrong")
    assert body["CodeResponse"] == "101"
    sb.set_balance("esms", 100)
    assert (await esms_send(http, sb))["CodeResult"] == "103"


async def test_esms_status_and_receivers_follow_delivery(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    phones = "0912345678,0912340000,0912340001"
    sent_at = time.monotonic()
    sms_id = (await esms_send(http, sb, Phone=phones))["SMSID"]
    params = {**ESMS_KEYS, "RefId": sms_id}
    status_url = f"{sb.esms_url}/GetSendStatus"
    receivers_url = f"{sb.esms_url}/GetSmsReceiverStatus_get"
    _, status = await get_json(http, status_url, params=params)
    assert status == {
        "CodeResponse": "100",
        "SMSID": sms_id,
        "SendFailed": 0,
        "SendStatus": 3,
        "SendSuccess": 0,
        "TotalReceiver": 3,
        "TotalSent": 3,
    }
    _, pending = await get_json(http, receivers_url, params=params)
    assert all(not r["IsSent"] for r in pending["ReceiverList"])
    # After the first attempt (DELAY) and before the retry (2 x DELAY): 0001 failed once.
    await asyncio.sleep(sent_at + DELAY * 1.4 - time.monotonic())
    _, status = await get_json(http, status_url, params=params)
    assert (status["SendStatus"], status["SendSuccess"], status["SendFailed"]) == (3, 1, 1)
    await sb.settle()
    _, status = await get_json(http, status_url, params=params)
    assert (status["SendStatus"], status["SendSuccess"], status["SendFailed"]) == (5, 2, 1)
    _, receivers = await get_json(http, receivers_url, params=params)
    assert receivers == {
        "CodeResult": "100",
        "ReceiverList": [
            {"IsSent": True, "Phone": "0912345678", "SentResult": True},
            {"IsSent": True, "Phone": "0912340000", "SentResult": False},
            {"IsSent": True, "Phone": "0912340001", "SentResult": True},
        ],
    }
    _, missing = await get_json(http, status_url, params={**ESMS_KEYS, "RefId": "nope"})
    assert missing["CodeResponse"] == "105"
    _, missing = await get_json(http, receivers_url, params={**ESMS_KEYS, "RefId": "nope"})
    assert missing["CodeResult"] == "105"
    _, refused = await get_json(http, status_url, params={"RefId": sms_id})
    assert refused["CodeResponse"] == "101"


async def test_esms_scheduled_send_waits(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sms_id = (await esms_send(http, sb, SendDate="2999/01/01 08:00:00"))["SMSID"]
    params = {**ESMS_KEYS, "RefId": sms_id}
    _, status = await get_json(http, f"{sb.esms_url}/GetSendStatus", params=params)
    assert status["SendStatus"] == 2


async def test_esms_sent_data(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sms_id = (await esms_send(http, sb, Phone="0912345678,0912340000"))["SMSID"]
    await esms_send(http, sb, Sandbox="1")
    await sb.settle()
    today = date.today()
    url = f"{sb.esms_url}/GetSmsSentData"
    day = today.strftime("%m/%d/%Y")
    _, body = await post_json(http, url, {**ESMS_KEYS, "From": "01/01/2000", "To": "12/31/2999"})
    assert body["CodeResult"] == "100"
    rows = body["SentData"]
    assert [(r["Phone"], r["SentStatus"], r["SmsId"], r["SmsType"]) for r in rows] == [
        ("0912345678", True, sms_id, 2),
        ("0912340000", False, sms_id, 2),
    ]
    assert rows[0]["SentTime"].startswith("/Date(") and rows[0]["SentTime"].endswith("+0700)/")
    assert rows[0]["Content"] == "Ma OTP cua ban la 1234" and rows[0]["SellPrice"] == 350
    _, body = await post_json(http, url, {**ESMS_KEYS, "From": day, "To": "01/01/2000"})
    assert body["CodeResult"] == "140"
    _, body = await post_json(http, url, {**ESMS_KEYS, "From": "2024-01-01", "To": day})
    assert body["CodeResult"] == "140"
    _, body = await post_json(http, url, {"From": day, "To": day})
    assert body["CodeResult"] == "101"


async def test_esms_brandnames(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    key, secret = Sandbox.esms_api_key, Sandbox.esms_secret_key
    _, body = await get_json(http, f"{sb.esms_url}/GetListBrandname/{key}/{secret}")
    assert body == {
        "CodeResponse": "100",
        "ListBrandName": [{"Brandname": "SMSVN", "Type": 2}, {"Brandname": "SMSVN.QC", "Type": 1}],
    }
    _, body = await get_json(http, f"{sb.esms_url}/GetListBrandname/{key}/nope")
    assert body["CodeResult"] == "101" and "CodeResponse" not in body


async def test_esms_unknown_endpoint(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sb.esms_url}/Nothing") as resp:
        assert resp.status == 404
        assert b"Endpoint not found." in await resp.read()
    async with http.get(f"{sb.esms_url}/GetSmsSentData") as resp:
        assert resp.status == 405


async def test_esms_callback_per_recipient_with_retries(
    sb: Sandbox, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.failures_left = 2
    phones = "0912345678,0912340000"
    sms_id = (await esms_send(http, sb, Phone=phones, CallbackUrl=receiver.url + "?k=v"))["SMSID"]
    await sb.settle()
    queries = receiver.queries()
    assert len(queries) == 4  # two failures, then each recipient once
    assert {m for m, _, _ in receiver.calls} == {"GET"}
    delivered, failed = queries[2], queries[3]
    assert delivered == {
        "k": "v",
        "SMSID": sms_id,
        "SendFailed": "0",
        "SendStatus": "5",
        "SendSuccess": "1",
        "TotalPrice": "350",
        "TypeId": "2",
        "telcoid": "3",
        "phonenumber": "0912345678",
    }
    assert (failed["SendFailed"], failed["SendSuccess"], failed["phonenumber"]) == (
        "1",
        "0",
        "0912340000",
    )
    assert sb.stats.callback_attempts == 4
    assert sb.stats.callback_failures == 2 and sb.stats.callbacks_delivered == 2


async def test_esms_callback_gives_up_after_five_retries(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.failures_left = 100
    async with Sandbox(delivery_delay=0.0, callback_retry_delay=0.001) as sb:
        await esms_send(http, sb, CallbackUrl=receiver.url)
        await sb.settle()
        assert len(receiver.calls) == 6
        assert sb.stats.callback_failures == 6 and sb.stats.callbacks_delivered == 0


async def test_esms_voice_otp_and_call_status(
    sb: Sandbox, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    url = f"{sb.esms_voice_url}/VoiceOTP"
    params = {**ESMS_KEYS, "Phone": "0912345678", "Code": "123456", "CallbackUrl": receiver.url}
    _, body = await get_json(http, url, params={**params, "Voice": "hatieumai", "Speed": "-3"})
    assert body == {"CodeResult": "100", "SMSID": body["SMSID"]}
    reference = body["SMSID"]
    status_url = f"{sb.esms_voice_url}/GetSendStatus"
    query = {**ESMS_KEYS, "ReferenceId": reference}
    _, status = await get_json(http, status_url, params=query)
    assert status == {"CodeResponse": "100", "callduration": 0, "callstatus": None, "ivr": None}
    await sb.settle()
    _, status = await get_json(http, status_url, params=query)
    assert status == {
        "CodeResponse": "100",
        "callduration": 24,
        "callstatus": "ANSWERED",
        "ivr": "2",
    }
    assert receiver.queries() == [
        {
            "ReferenceId": reference,
            "CallDuration": "24",
            "CallStatus": "ANSWERED",
            "Ivr": "2",
            "Price": "450",
            "SentResult": "1",
            "CID": "02873005588",
        }
    ]
    (record,) = sb.outbox
    assert (record.kind, record.content, record.message_id) == ("voice", "123456", reference)
    _, status = await get_json(http, status_url, params={**ESMS_KEYS, "ReferenceId": "nope"})
    assert status["CodeResponse"] == "105"


async def test_esms_unanswered_call(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    params = {**ESMS_KEYS, "Phone": "0912340000", "Code": "1234"}
    _, body = await get_json(http, f"{sb.esms_voice_url}/VoiceOTP", params=params)
    await sb.settle()
    query = {**ESMS_KEYS, "ReferenceId": body["SMSID"]}
    _, status = await get_json(http, f"{sb.esms_voice_url}/GetSendStatus", params=query)
    # The lookup's table writes NOANSWERED (the callback's query "NO ANSWER").
    assert (status["callstatus"], status["callduration"]) == ("NOANSWERED", 0)


@pytest.mark.parametrize(
    ("endpoint", "params", "code"),
    [
        ("VoiceOTP", {"Phone": "0912345678", "Code": "12a"}, "105"),
        ("VoiceOTP", {"Phone": "12345", "Code": "12"}, "107"),
        ("VoiceOTP", {"Phone": "0912345678", "Code": "12", "Voice": "robot"}, "105"),
        ("VoiceOTP", {"Phone": "0912345678", "Code": "12", "Speed": "4"}, "105"),
        ("VoiceOTP", {"Phone": "0912345678", "Code": "12", "ApiKey": "x"}, "101"),
        ("MakeCallTemplate_V2", {"Phone": "0912345678", "TemplateId": "9"}, "104"),
        ("MakeCallTemplate_V2", {"Phone": "0912345678", "TemplateId": "1001"}, "105"),
        (
            "MakeCallTemplate_V2",
            {"Phone": "0912345678", "TemplateId": "1001", "VariableListStr": "a||b||c"},
            "105",
        ),
        (
            "MakeCallTemplate_V2",
            {"Phone": "0912345678", "TemplateId": "1001", "VariableListStr": "Trung||20000"},
            "100",
        ),
        ("MakeCallRecord_V2", {"Phone": "0912345678", "TemplateId": "9"}, "106"),
        ("MakeCallRecord_V2", {"Phone": "0912345678", "TemplateId": "2001", "Ivr": "12"}, "105"),
        ("MakeCallRecord_V2", {"Phone": "0912345678", "TemplateId": "2001", "Ivr": "5"}, "100"),
    ],
)
async def test_esms_call_codes(
    sb: Sandbox, http: aiohttp.ClientSession, endpoint: str, params: dict[str, str], code: str
) -> None:
    url = f"{sb.esms_voice_url}/{endpoint}"
    _, body = await get_json(http, url, params={**ESMS_KEYS, **params})
    assert body["CodeResult"] == code
    assert len(sb.outbox) == (1 if code == "100" else 0)


async def test_esms_call_record_reports_the_ivr_key(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    params = {**ESMS_KEYS, "Phone": "0912345678", "TemplateId": "2001", "Ivr": "7"}
    _, body = await get_json(http, f"{sb.esms_voice_url}/MakeCallRecord_V2", params=params)
    await sb.settle()
    query = {**ESMS_KEYS, "ReferenceId": body["SMSID"]}
    _, status = await get_json(http, f"{sb.esms_voice_url}/GetSendStatus", params=query)
    assert status["ivr"] == "7"
    sb.set_balance("esms", 0)
    _, body = await get_json(http, f"{sb.esms_voice_url}/MakeCallRecord_V2", params=params)
    assert body["CodeResult"] == "103"


# -- Fibo ---------------------------------------------------------------------------------------


def fibo_send_params(**fields: str) -> dict[str, str]:
    base = {
        **FIBO_KEYS,
        "senderName": Sandbox.fibo_sender,
        "phoneNumber": "0912345678",
        "smsMessage": "Xin chao",
        "smsGUID": "guid-1",
        "serviceType": "0",
    }
    return {**base, **fields}


def inner_sms(body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    assert root.tag == "{http://tempuri.org/}string"
    assert len(root) == 0  # the inner XML is escaped text, not elements
    return etree.fromstring((root.text or "").encode())


async def test_fibo_send_wire_format(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    async with http.get(url, params=fibo_send_params()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
        raw = await resp.read()
    assert raw == (
        b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">'
        b"&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;Message&gt;Sending...&lt;/Message&gt;"
        b"&lt;Time&gt;&lt;/Time&gt;&lt;/SMS&gt;</string>"
    )
    (record,) = sb.outbox
    assert (record.provider, record.phone, record.request_id, record.sender) == (
        "fibo",
        "0912345678",
        "guid-1",
        "SMSVN",
    )
    assert sb.balance("fibo") == 10_000_000 - 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"clientPass": "wrong"}, "3"),
        ({"senderName": "NOBODY"}, "5"),
        ({"serviceType": "2"}, "11"),
        ({"phoneNumber": "01623456789"}, "31"),
        ({"phoneNumber": "0212345678"}, "10"),
        ({"phoneNumber": "abc"}, "10"),
        ({"smsMessage": "Chào bạn"}, "23"),
        ({"smsMessage": ""}, "23"),
    ],
)
async def test_fibo_send_codes(
    sb: Sandbox, http: aiohttp.ClientSession, fields: dict[str, str], code: str
) -> None:
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    async with http.get(url, params=fibo_send_params(**fields)) as resp:
        sms = inner_sms(await resp.read())
    assert sms.findtext("Code") == code
    assert sms.findtext("Message")
    assert sms.findtext("Time") == ""  # empty, as the document shows it
    assert len(sb.outbox) == 0


async def test_fibo_unicode_and_balance(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    sb.set_balance("fibo", 2)
    long_text = "Chào bạn " * 10  # 90 UCS-2 characters: 2 messages
    async with http.get(url, params=fibo_send_params(smsMessage=long_text, serviceType="1")) as r:
        assert inner_sms(await r.read()).findtext("Code") == "200"
    async with http.get(url, params=fibo_send_params()) as resp:
        assert inner_sms(await resp.read()).findtext("Code") == "14"
    balance_url = f"{sb.fibo_url}/SendMT/service.aspx/GetClientBalance"
    async with http.get(balance_url, params={**FIBO_KEYS, "serviceType": "1"}) as resp:
        sms = inner_sms(await resp.read())
    assert (sms.findtext("Code"), sms.findtext("AccountBalance")) == ("200", "0")


async def test_fibo_missing_parameter_is_asmx_500(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    params = fibo_send_params()
    del params["smsGUID"]
    async with http.get(url, params=params) as resp:
        assert resp.status == 500
        assert "Missing parameter: smsGUID." in await resp.text()


def soap_request(username: str, password: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{doctype}'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
        '<GetTotalMt xmlns="http://tempuri.org/">'
        f"<Username>{username}</Username><Password>{password}</Password>"
        "</GetTotalMt></soap:Body></soap:Envelope>"
    ).encode()


SOAP_HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": '"http://tempuri.org/GetTotalMt"',
}


async def soap_totals(
    http: aiohttp.ClientSession, sb: Sandbox, body: bytes, headers: dict[str, str] = SOAP_HEADERS
) -> tuple[int, etree._Element]:
    url = f"{sb.fibo_url}/WebserivceFibo/PartnerMtTotal.asmx"
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, etree.fromstring(await resp.read())


async def test_fibo_totals_soap(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    for number in ("0912345678", "0912340000", "0912340001"):
        async with http.get(url, params=fibo_send_params(phoneNumber=number)) as resp:
            await resp.read()
    good = soap_request(Sandbox.fibo_client_no, Sandbox.fibo_client_pass)
    status, envelope = await soap_totals(http, sb, good)
    assert status == 200
    result = envelope.find(f"{{{SOAP_NS}}}Body/{{http://tempuri.org/}}GetTotalMtResponse")
    assert result is not None
    assert result.findtext("{http://tempuri.org/}GetTotalMtResult") == "0|0|3"
    await sb.settle()
    _, envelope = await soap_totals(http, sb, good)
    assert envelope.findtext(".//{http://tempuri.org/}GetTotalMtResult") == "2|1|0"


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (soap_request(Sandbox.fibo_client_no, "wrong"), SOAP_HEADERS, "Password"),
        (
            soap_request(Sandbox.fibo_client_no, Sandbox.fibo_client_pass),
            {**SOAP_HEADERS, "SOAPAction": '"http://tempuri.org/Other"'},
            "SOAPAction",
        ),
        (b"not xml at all", SOAP_HEADERS, "unable to read"),
        (
            soap_request(
                Sandbox.fibo_client_no, "&x;", '<!DOCTYPE d [<!ENTITY x "' + "a" * 10 + '">]>'
            ),
            SOAP_HEADERS,
            "unable to read",
        ),
    ],
)
async def test_fibo_totals_faults(
    sb: Sandbox, http: aiohttp.ClientSession, body: bytes, headers: dict[str, str], reason: str
) -> None:
    status, envelope = await soap_totals(http, sb, body, headers)
    assert status == 500
    fault = envelope.find(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "soap:Client"
    assert reason in (fault.findtext("faultstring") or "")


# -- faults -------------------------------------------------------------------------------------


async def test_fault_drop_before_is_not_processed(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="drop_before", provider="speedsms", route="send", times=1))
    with pytest.raises(aiohttp.ClientError):
        await speedsms_send(http, sb, ["0912345678"])
    assert len(sb.outbox) == 0
    _, body = await speedsms_send(http, sb, ["0912345678"])
    assert body["code"] == "00"
    assert len(sb.outbox) == 1 and sb.stats.faults["drop_before"] == 1
    assert len(sb.faults) == 0


async def test_fault_drop_after_is_processed(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=1))
    with pytest.raises(aiohttp.ClientError):
        await esms_send(http, sb, RequestId="dropped")
    assert [r.request_id for r in sb.outbox] == ["dropped"]
    assert (await esms_send(http, sb, RequestId="dropped"))["CodeResult"] == "124"
    assert len(sb.outbox) == 1


async def test_fault_status_5xx(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="status_5xx", provider="fibo", times=1))
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    async with http.get(url, params=fibo_send_params()) as resp:
        assert resp.status == 503
        assert resp.content_type == "text/html"
        assert b"Service Unavailable" in await resp.read()
    assert len(sb.outbox) == 0


@pytest.mark.parametrize("kind", ["garbage", "empty"])
async def test_fault_bad_bodies_are_processed(
    sb: Sandbox, http: aiohttp.ClientSession, kind: Any
) -> None:
    sb.faults.add(Fault(kind=kind, provider="speedsms", route="send", times=1))
    url = f"{sb.speedsms_url}/sms/send"
    payload = {"to": ["0912345678"], "content": "hi", "sms_type": 2, "sender": ""}
    async with http.post(url, data=json.dumps(payload).encode(), headers=AUTH) as resp:
        assert resp.status == 200
        raw = await resp.read()
    if kind == "empty":
        assert raw == b""
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
    assert len(sb.outbox) == 1


async def test_fault_truncate(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="truncate", route="balance", times=1))
    with pytest.raises(aiohttp.ClientPayloadError):
        await get_json(http, f"{sb.speedsms_url}/user/info", headers=AUTH)
    status, _ = await get_json(http, f"{sb.speedsms_url}/user/info", headers=AUTH)
    assert status == 200


async def test_fault_rate_limit(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="rate_limit", provider="speedsms", times=1, seconds=0.25))
    sb.faults.add(Fault(kind="rate_limit", provider="esms", times=1, seconds=0.25))
    async with http.get(f"{sb.speedsms_url}/user/info", headers=AUTH) as resp:
        assert resp.status == 429
        assert resp.headers["X-Rate-Limit-Reset"] == "0.25"
        assert (await resp.json())["message"] == "Rate limit exceeded."
    key, secret = Sandbox.esms_api_key, Sandbox.esms_secret_key
    async with http.get(f"{sb.esms_url}/GetBalance/{key}/{secret}") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert resp.headers["X-Rate-Limit-Reset"] == "0.25"
    assert sb.stats.rate_limited == 2


async def test_fault_hang_until_the_client_gives_up(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.faults.add(Fault(kind="hang", provider="fibo", route="send", times=1))
    url = f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS"
    with pytest.raises(TimeoutError):
        async with http.get(
            url, params=fibo_send_params(), timeout=aiohttp.ClientTimeout(total=0.2)
        ) as resp:
            await resp.read()
    assert len(sb.outbox) == 0
    async with http.get(url, params=fibo_send_params()) as resp:
        assert inner_sms(await resp.read()).findtext("Code") == "200"


async def test_fault_dribble(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="dribble", provider="speedsms", times=1, seconds=0.002))
    started = time.perf_counter()
    status, body = await get_json(http, f"{sb.speedsms_url}/user/info", headers=AUTH)
    elapsed = time.perf_counter() - started
    assert status == 200 and body["data"]["currency"] == "VND"
    assert elapsed >= 0.002 * 20  # ~90 bytes, 4 at a time


async def test_fault_latency_and_global_latency(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.add(Fault(kind="latency", provider="esms", seconds=0.1, times=1))
    key, secret = Sandbox.esms_api_key, Sandbox.esms_secret_key
    started = time.perf_counter()
    await get_json(http, f"{sb.esms_url}/GetBalance/{key}/{secret}")
    assert time.perf_counter() - started >= 0.1
    sb.latency = 0.05
    started = time.perf_counter()
    await get_json(http, f"{sb.speedsms_url}/user/info", headers=AUTH)
    assert time.perf_counter() - started >= 0.05


async def test_fault_probability_is_reproducible(http: aiohttp.ClientSession) -> None:
    async def pattern() -> list[int]:
        async with Sandbox(speedsms_rate_limit=None, seed=42) as sb:
            sb.faults.add(Fault(kind="status_5xx", provider="speedsms", probability=0.5))
            statuses = []
            for _ in range(20):
                async with http.get(f"{sb.speedsms_url}/user/info", headers=AUTH) as resp:
                    statuses.append(resp.status)
            return statuses

    first, second = await pattern(), await pattern()
    assert first == second
    assert set(first) == {200, 503}


async def test_fault_validation(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown route"):
        sb.faults.add(Fault(kind="empty", provider="fibo", route="voice"))
    with pytest.raises(ValueError, match="unknown provider"):
        sb.faults.add(Fault(kind="empty", provider="twilio"))
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault(kind="empty", times=0)
    with pytest.raises(ValueError, match="probability"):
        Fault(kind="empty", probability=2.0)
    fault = sb.faults.add(Fault(kind="empty", route="send"))
    assert list(sb.faults) == [fault]
    sb.faults.remove(fault)
    assert not sb.faults
    sb.faults.add(fault)
    sb.faults.clear()
    assert len(sb.faults) == 0


# -- the sandbox itself -------------------------------------------------------------------------


async def test_requests_are_counted_per_route(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    await get_json(http, f"{sb.speedsms_url}/user/info", headers=AUTH)
    await speedsms_send(http, sb, ["0912345678"])
    await speedsms_send(http, sb, ["0912345678"])
    assert sb.requests[("speedsms", "balance")] == 1
    assert sb.requests[("speedsms", "send")] == 2
    assert sb.stats.accepted["speedsms"] == 2


async def test_record_outbox_off_keeps_counters(http: aiohttp.ClientSession) -> None:
    async with Sandbox(speedsms_rate_limit=None, record_outbox=False) as sb:
        await speedsms_send(http, sb, ["0912345678", "0912345679"])
        sms_id = (await esms_send(http, sb))["SMSID"]
        assert len(sb.outbox) == 0
        assert sb.stats.accepted == {"speedsms": 2, "esms": 1}
        params = {**ESMS_KEYS, "RefId": sms_id}
        _, status = await get_json(http, f"{sb.esms_url}/GetSendStatus", params=params)
        assert status["CodeResponse"] == "105"


async def test_outbox_is_a_sequence(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    await speedsms_send(http, sb, ["0912345678", "0912345679"])
    await speedsms_send(http, sb, ["0912345670"])
    outbox = sb.outbox
    assert len(outbox) == 3
    assert outbox[-1].phone == "0912345670" and outbox[1].phone == "0912345679"
    assert [r.phone for r in outbox[1:]] == ["0912345679", "0912345670"]
    assert outbox.phones("speedsms") == ["0912345678", "0912345679", "0912345670"]
    assert len(outbox.for_provider("speedsms", kind="sms")) == 3
    with pytest.raises(IndexError):
        outbox[3]
    outbox.clear()
    assert len(outbox) == 0


async def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown balance"):
        Sandbox(balances={"twilio": 1})
    with pytest.raises(ValueError, match="negative"):
        Sandbox(delivery_delay=-1)
    sb = Sandbox()
    with pytest.raises(ValueError, match="unknown provider"):
        sb.set_balance("twilio", 1)
    with pytest.raises(ValueError, match="unknown provider"):
        sb.client("twilio")


async def test_clean_shutdown_with_timers_and_hung_requests(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sb = Sandbox(speedsms_rate_limit=None, delivery_delay=30, speedsms_webhook_url=receiver.url)
    await sb.start()
    await speedsms_send(http, sb, ["0912345678"])
    sb.faults.add(Fault(kind="hang", route="balance"))
    hung = asyncio.create_task(get_json(http, f"{sb.speedsms_url}/user/info", headers=AUTH))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await sb.close()
    assert time.perf_counter() - started < 1.0
    with pytest.raises(aiohttp.ClientError):
        await hung
    assert receiver.calls == []
    await sb.close()  # twice is fine
    with pytest.raises(RuntimeError):
        await sb.start()


async def test_settle_times_out_on_far_schedules(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    await esms_send(http, sb, SendDate="2999/01/01 08:00:00")
    with pytest.raises(TimeoutError):
        await sb.settle(within=0.05)


async def test_client_factory(sb: Sandbox) -> None:
    async with sb.client("speedsms") as speedsms:
        assert speedsms.base_url == sb.speedsms_url and speedsms.sender == "SMSVN"
        assert speedsms._transport.rate_limit is None
    limit = RateLimit(requests=5, period=1.0)
    async with (
        Sandbox(speedsms_rate_limit=limit) as other,
        other.client("speedsms", sms_type=2) as c,
    ):
        assert c._transport.rate_limit == limit
        assert c.sms_type == 2
    async with sb.client("fibo", sender="OTHER") as fibo:
        assert fibo.sender == "OTHER" and fibo._transport.rate_limit is None


async def test_serve_prints_urls_and_runs_until_cancelled(http: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    task = asyncio.create_task(serve(0, out=out, speedsms_rate_limit=None))
    for _ in range(200):
        if out.getvalue():
            break
        await asyncio.sleep(0.01)
    text = out.getvalue()
    assert "smsvn sandbox listening on http://127.0.0.1:" in text
    assert Sandbox.speedsms_token in text and Sandbox.fibo_client_pass in text
    url = text.split("SpeedSMS  base_url=", 1)[1].split()[0]
    status, _ = await get_json(http, f"{url}/user/info", headers=AUTH)
    assert status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_client_options_and_describe_come_from_the_simulators(sb: Sandbox) -> None:
    assert sb.client_options("esms") == {
        "api_key": Sandbox.esms_api_key,
        "secret_key": Sandbox.esms_secret_key,
        "base_url": sb.esms_url,
        "voice_base_url": sb.esms_voice_url,
        "rate_limit": None,
        "sms_type": 2,
        "brandname": Sandbox.esms_brandname,
    }
    assert sb.base_url("fibo") == sb.fibo_url == f"{sb.url}/fibo"
    assert sb.client_options("speedsms")["token"] == Sandbox.speedsms_token
    assert {name: sb.balance(name) for name in DEFAULT_BALANCES} == DEFAULT_BALANCES
    assert set(DEFAULT_PRICES) == {"speedsms", "speedsms_voice", "esms", "esms_voice", "fibo"}
    lines = sb.describe().splitlines()
    assert lines[:2] == [f"smsvn sandbox listening on {sb.url}", ""]
    assert lines[2:11] == [
        f"SpeedSMS  base_url={sb.speedsms_url}",
        f"          token={Sandbox.speedsms_token}  sender=SMSVN  rate limit: off",
        f"eSMS      base_url={sb.esms_url}",
        f"          voice_base_url={sb.esms_voice_url}",
        f"          api_key={Sandbox.esms_api_key}  secret_key={Sandbox.esms_secret_key}",
        "          brandname=SMSVN (advertising: SMSVN.QC)  call template=1001 (2 variables)"
        "  recording=2001",
        f"Fibo      base_url={sb.fibo_url}",
        f"          client_no={Sandbox.fibo_client_no}  client_pass={Sandbox.fibo_client_pass}"
        "  sender=SMSVN",
        "",
    ]
    assert lines[11].startswith(f"Delivery after {DELAY:g} s")
    with pytest.raises(ValueError, match="unknown provider"):
        sb.client_options("toy")


def test_any_case_routes_match_literal_segments_in_any_case() -> None:
    pattern = any_case("/esms", "/MainService.svc/json/GetBalance/{key}/{secret}")
    assert pattern.startswith("/esms/{_c0:(?i:MainService\\.svc)}/")
    assert pattern.endswith("/{key}/{secret}")
    assert any_case("/esms", "/A/b/") == "/esms/{_c0:(?i:A)}/{_c1:(?i:b)}/"
    with pytest.raises(ValueError, match="starts with"):
        any_case("/fibo", "service.asmx")
    template = "/esms/MainService.svc/json/GetBalance/{key}/{secret}"
    assert same_route(template, "/esms/mainservice.SVC/JSON/getbalance/K/S")
    assert not same_route(template, "/esms/MainService.svc/json/GetBalance/K/")
    assert not same_route(template, "/esms/MainService.svc/json/GetBalance/K")
    assert not same_route(template, "/esms/MainService.svc/json/GetBalanceX/K/S")


# -- a fourth provider, through the registry alone ---------------------------------------------


@pytest.fixture
def toy() -> Iterator[Provider]:
    """The toy provider registered for one test."""
    providers.register(toy_provider.PROVIDER)
    try:
        yield toy_provider.PROVIDER
    finally:
        providers.unregister(toy_provider.PROVIDER.name)


async def test_a_registered_provider_is_served(toy: Provider, http: aiohttp.ClientSession) -> None:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb:
        async with sb.client(toy.name) as client:
            assert isinstance(client, toy_provider.Toy)
            assert client.base_url == sb.base_url("toy") == f"{sb.url}/toy"
            result = await client.send(["0912345678", "84912345679", "nope"], "Xin chao")
            balance = await client.balance()
        assert result.recipients == ("0912345678", "0912345679")
        assert result.invalid == ("nope",)
        assert [(r.provider, r.phone, r.content) for r in sb.outbox] == [
            ("toy", "0912345678", "Xin chao"),
            ("toy", "0912345679", "Xin chao"),
        ]
        assert balance.amount == sb.balance("toy") == 1_000.0 - 2 * 10.0
        assert sb.requests[("toy", "send")] == 1 and sb.stats.accepted["toy"] == 2
        text = sb.describe()
        assert f"Toy       base_url={sb.url}/toy\n          key={toy_provider.KEY}\n" in text
        assert text.index("Fibo ") < text.index("Toy ")
        async with sb.client(toy.name, key="wrong") as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.balance()
        sb.faults.add(Fault(kind="status_5xx", provider="toy", route="send", times=1))
        payload = {"to": ["0912345670"], "content": "hi"}
        headers = {"X-Toy-Key": toy_provider.KEY}
        async with http.post(f"{sb.url}/toy/send", json=payload, headers=headers) as resp:
            assert resp.status == 503
        assert len(sb.outbox) == 2 and sb.stats.faults["status_5xx"] == 1
        sb.set_balance("toy", 5.0)
        assert sb.balance("toy") == 5.0
        await sb.settle()
    providers.unregister(toy.name)
    with pytest.raises(ValueError, match="unknown provider 'toy'"):
        Sandbox().client(toy.name)


async def test_a_sandbox_knows_the_providers_registered_when_it_was_made(toy: Provider) -> None:
    providers.unregister(toy.name)
    before = Sandbox()
    providers.register(toy)
    with pytest.raises(ValueError, match="unknown provider"):
        before.balance(toy.name)
    assert Sandbox(balances={"toy": 7.0}).balance(toy.name) == 7.0
    with pytest.raises(ValueError, match="unknown balance or price keys"):
        Sandbox(prices={"toy_voice": 1.0})


@pytest.mark.parametrize(
    ("simulator", "error"),
    [
        ("tests.toy_provider", "module:Class"),
        ("tests.toy_provider:Nothing", "names no class"),
        ("smsvn.sandbox.fibo:FiboSimulator", "simulates 'fibo', not 'toy'"),
    ],
)
def test_a_wrong_simulator_name_is_refused(toy: Provider, simulator: str, error: str) -> None:
    providers.unregister(toy.name)
    providers.register(dataclasses.replace(toy, simulator=simulator))
    with pytest.raises(ValueError, match=error):
        Sandbox()
