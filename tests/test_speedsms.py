"""SpeedSMS client against mocked HTTP (aioresponses): every endpoint, code and failure mode."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

import smsvn
import smsvn.transport
from smsvn import errors
from smsvn._redact import WITHHELD
from smsvn.limits import RateLimit
from smsvn.providers.speedsms import MAX_RECIPIENTS, SpeedSMS
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY, SENTINEL_TOKEN, sent_body, sent_type

BASE = "https://api.speedsms.vn/index.php"
SEND = f"{BASE}/sms/send"
INFO = f"{BASE}/user/info"
VOICE = f"{BASE}/voice/otp"


def ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "code": "00", "data": data}


def err(code: str, message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {"status": "error", "code": code, "message": message, **extra}


def client(**kwargs: Any) -> SpeedSMS:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", FAST_RETRY)
    return SpeedSMS(SENTINEL_TOKEN, **kwargs)


def requests_to(m: aioresponses, method: str, url: str) -> list[Any]:
    return m.requests.get((method, URL(url)), [])


async def test_balance(mocked: aioresponses) -> None:
    mocked.get(INFO, payload=ok({"email": "a@b.vn", "balance": 100000.0, "currency": "VND"}))
    async with client() as sms:
        bal = await sms.balance()
    assert bal == smsvn.Balance(provider="speedsms", amount=100000.0, currency="VND", raw=bal.raw)
    call = requests_to(mocked, "GET", INFO)[0]
    expected = base64.b64encode(f"{SENTINEL_TOKEN}:x".encode()).decode()
    assert call.kwargs["headers"]["Authorization"] == f"Basic {expected}"


async def test_balance_as_numeric_string(mocked: aioresponses) -> None:
    mocked.get(INFO, payload=ok({"email": "a@b.vn", "balance": "2500.5", "currency": "VND"}))
    async with client() as sms:
        assert (await sms.balance()).amount == 2500.5


async def test_balance_not_a_number_is_malformed(mocked: aioresponses) -> None:
    mocked.get(INFO, payload=ok({"balance": "lots"}), repeat=True)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.balance()
    assert info.value.endpoint == "user/info"


async def test_send_success_uses_84_form_and_json(mocked: aioresponses) -> None:
    mocked.post(
        SEND,
        payload=ok({"tranId": 123456, "totalSMS": 2, "totalPrice": 500, "invalidPhone": []}),
    )
    async with client(sms_type=3, sender="BRAND") as sms:
        res = await sms.send(["0912345678", "+84 98 765 4321"], "Xin chao")
    assert res.provider == "speedsms"
    assert res.message_id == "123456"
    assert res.recipients == ("0912345678", "0987654321")
    assert res.invalid == ()
    assert res.segments == 2
    assert res.cost == 500.0
    call = requests_to(mocked, "POST", SEND)[0]
    assert json.loads(sent_body(call)) == {
        "to": ["84912345678", "84987654321"],
        "content": "Xin chao",
        "sms_type": 3,
        "sender": "BRAND",
    }
    assert sent_type(call) == "application/json"


@pytest.mark.parametrize("to", ["84912345678", "0912345678", "+84 912 345 678", ["0912345678"]])
async def test_one_number_goes_as_a_one_element_84_array(mocked: aioresponses, to: Any) -> None:
    """One number, however written (and a list of one), goes as ``["84..."]``: the single
    send's own path in ``_send`` and the batch path give the same body."""
    mocked.post(SEND, payload=ok({"tranId": 1, "totalSMS": 1, "totalPrice": 250}), repeat=True)
    async with client() as sms:
        result = await sms.send(to, "Ma OTP 123456")
        send_batch = sms.batch_sender(content="Ma OTP 123456")
        await send_batch(["0912345678"], "Ma OTP 123456", None)
    assert result.recipients == ("0912345678",)
    bodies = [json.loads(sent_body(call)) for call in requests_to(mocked, "POST", SEND)]
    assert [body["to"] for body in bodies] == [["84912345678"], ["84912345678"]]


async def test_send_reports_local_and_provider_invalid_numbers(mocked: aioresponses) -> None:
    mocked.post(
        SEND,
        payload=ok(
            {"tranId": "77", "totalSMS": 1, "totalPrice": 250, "invalidPhone": ["84987654321"]}
        ),
    )
    async with client() as sms:
        res = await sms.send(["0912345678", "12345", "0987654321", "0912345678"], "hi")
    assert res.recipients == ("0912345678",)
    assert list(res.invalid) == ["12345", "0987654321"]
    assert res.invalid[0].reason
    assert res.invalid[1].reason == "refused by SpeedSMS"
    sent = json.loads(sent_body(requests_to(mocked, "POST", SEND)[0]))
    assert sent["to"] == ["84912345678", "84987654321"]  # duplicate dropped, invalid not sent


async def test_send_refuses_more_than_100_before_any_request(mocked: aioresponses) -> None:
    numbers = [f"0912{i:06d}" for i in range(MAX_RECIPIENTS + 1)]
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match="at most 100"):
            await sms.send(numbers, "hi")
    assert not mocked.requests


async def test_send_with_no_valid_number_is_refused_locally(mocked: aioresponses) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match="no valid recipient"):
            await sms.send(["123", "024 3826 1234"], "hi")
    assert not mocked.requests


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sms_type": 7}, "sms_type 7"),
        ({"sms_type": 3}, "needs a sender"),
        ({"sms_type": 5}, "needs a sender"),
    ],
)
async def test_send_type_checks(kwargs: dict[str, Any], match: str) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match=match):
            await sms.send("0912345678", "hi", **kwargs)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("007", errors.AuthenticationError),
        ("008", errors.AuthenticationError),
        ("009", errors.AuthenticationError),
        ("101", errors.InvalidRequest),
        ("105", errors.InvalidRecipient),
        ("110", errors.InvalidRequest),
        ("113", errors.InvalidRequest),
        ("300", errors.InsufficientBalance),
        ("500", errors.ProviderUnavailable),
        ("601", errors.InvalidRequest),
        (7, errors.AuthenticationError),
        ("999", errors.SmsError),
    ],
)
async def test_every_error_code(mocked: aioresponses, code: Any, cls: type[Exception]) -> None:
    mocked.post(SEND, payload=err(code, "described"))
    async with client() as sms:
        with pytest.raises(cls) as info:
            await sms.send("0912345678", "hi")
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, errors.SmsError)
    assert exc.provider == "speedsms"
    assert exc.code == str(code).zfill(3)
    assert exc.http_status == 200
    assert exc.endpoint == "sms/send"
    assert len(requests_to(mocked, "POST", SEND)) == 1  # a send is never retried on an error


@pytest.mark.parametrize(
    "message",
    [
        "Invalid parameters: sender is not registered",
        "Brandname is not valid",
        "Invalid brand name",
        "Invalid or missing parameters: SENDER",
    ],
)
async def test_101_about_the_sender_is_sender_not_registered(
    mocked: aioresponses, message: str
) -> None:
    mocked.post(SEND, payload=err("101", message))
    async with client(sms_type=3, sender="UNKNOWN") as sms:
        with pytest.raises(errors.SenderNotRegistered) as info:
            await sms.send("0912345678", "hi")
    assert info.value.code == "101"
    assert message in str(info.value)


@pytest.mark.parametrize("message", ["Invalid or missing parameters", "content", None])
async def test_other_101_stays_invalid_request(mocked: aioresponses, message: str | None) -> None:
    body = err("101")
    body["message"] = message
    mocked.post(SEND, payload=body)
    async with client(sms_type=3, sender="BRAND") as sms:
        with pytest.raises(errors.InvalidRequest) as info:
            await sms.send("0912345678", "hi")
    assert info.value.code == "101"


@pytest.mark.parametrize(("sms_type", "wire"), [(2, ""), (3, "BRAND"), (4, ""), (5, "BRAND")])
async def test_sender_goes_only_with_the_types_that_use_it(
    mocked: aioresponses, sms_type: int, wire: str
) -> None:
    mocked.post(SEND, payload=ok({"tranId": 1, "totalSMS": 1, "totalPrice": 250}), repeat=True)
    async with client(sms_type=sms_type, sender="BRAND") as sms:
        await sms.send("0912345678", "hi")
        await sms.send(["0912345678", "0987654321"], "hi")
        await sms.send_bulk(["0912345678"], "hi")
        await sms.send("0912345678", "hi", sms_type=2, sender="OTHER")
    bodies = [json.loads(sent_body(call)) for call in requests_to(mocked, "POST", SEND)]
    assert [b["sender"] for b in bodies] == [wire, wire, wire, ""]
    assert [b["sms_type"] for b in bodies] == [sms_type] * 3 + [2]


async def test_error_lists_invalid_phones(mocked: aioresponses) -> None:
    mocked.post(SEND, payload=err("105", "Phone number invalid", invalidPhone=["8412"]))
    async with client() as sms:
        with pytest.raises(errors.InvalidRecipient, match="8412"):
            await sms.send("0912345678", "hi")


async def test_429_waits_for_reset_then_resends(mocked: aioresponses) -> None:
    limited = {"name": "Too Many Requests", "message": "Rate limit exceeded.", "code": 0}
    mocked.post(
        SEND,
        status=429,
        payload={**limited, "status": 429},
        headers={"X-Rate-Limit-Reset": "0.2", "X-Rate-Limit-Remaining": "0"},
    )
    mocked.post(SEND, payload=ok({"tranId": 9, "totalSMS": 1, "totalPrice": 250}))
    async with client(rate_limit=RateLimit(requests=100, period=1.0, burst=100)) as sms:
        loop = asyncio.get_running_loop()
        started = loop.time()
        res = await sms.send("0912345678", "hi")
        elapsed = loop.time() - started
        limiter = sms._transport.limiter
    assert res.message_id == "9"
    assert len(requests_to(mocked, "POST", SEND)) == 2
    assert limiter is not None and limiter.pauses == 1
    assert elapsed >= 0.19  # the whole account paused for the reset hint


async def test_429_beyond_the_wait_budget_raises_rate_limited(mocked: aioresponses) -> None:
    mocked.post(SEND, status=429, body=b"{}", headers={"X-Rate-Limit-Reset": "600"})
    retry = FAST_RETRY.__class__(max_retries=2, max_rate_limit_wait=30.0)
    async with client(retry=retry) as sms:
        with pytest.raises(errors.RateLimited) as info:
            await sms.send("0912345678", "hi")
    assert info.value.retry_after == 600.0
    assert info.value.http_status == 429


async def test_401_is_authentication_error(mocked: aioresponses) -> None:
    body = {"name": "Unauthorized", "message": "invalid credentials", "code": 0, "status": 401}
    mocked.get(INFO, status=401, payload=body)
    async with client() as sms:
        with pytest.raises(errors.AuthenticationError):
            await sms.balance()
    assert len(requests_to(mocked, "GET", INFO)) == 1


async def test_timeout_after_sending_is_outcome_unknown_and_not_resent(
    mocked: aioresponses,
) -> None:
    mocked.post(SEND, exception=TimeoutError())
    mocked.post(SEND, payload=ok({"tranId": 1}))
    async with client() as sms:
        with pytest.raises(errors.OutcomeUnknown) as info:
            await sms.send("0912345678", "hi")
    assert not isinstance(info.value, errors.MalformedResponse)
    assert info.value.attempts == 1
    assert len(requests_to(mocked, "POST", SEND)) == 1


async def test_dropped_connection_on_send_is_outcome_unknown(mocked: aioresponses) -> None:
    mocked.post(SEND, exception=aiohttp.ServerDisconnectedError())
    async with client() as sms:
        with pytest.raises(errors.OutcomeUnknown):
            await sms.send("0912345678", "hi")
    assert len(requests_to(mocked, "POST", SEND)) == 1


async def test_read_is_retried_after_an_unknown_outcome(mocked: aioresponses) -> None:
    mocked.get(INFO, exception=TimeoutError())
    mocked.get(INFO, payload=ok({"balance": 5.0}))
    async with client() as sms:
        assert (await sms.balance()).amount == 5.0
    assert len(requests_to(mocked, "GET", INFO)) == 2


async def test_connection_refused_is_connect_error_after_retries(closed_port: int) -> None:
    attempts: list[int] = []
    hooks = smsvn.transport.Hooks(on_request=lambda info: attempts.append(info.attempt))
    async with client(base_url=f"http://127.0.0.1:{closed_port}", hooks=hooks) as sms:
        with pytest.raises(errors.ConnectError) as info:
            await sms.send("0912345678", "hi")
    assert info.value.attempts == 3  # one try and DEFAULT_MAX_RETRIES retries: it never left
    assert attempts == [1, 2, 3]
    assert "not sent" in str(info.value)


async def test_garbage_body_is_malformed_with_redacted_excerpt(mocked: aioresponses) -> None:
    mocked.post(SEND, status=502, body=f"<html>bad gateway {SENTINEL_TOKEN}</html>".encode())
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.send("0912345678", "hi")
    text = str(info.value)
    assert "sms/send" in text and "HTTP 502" in text and "unexpected answer" in text
    assert "SENTINEL" not in text and WITHHELD in text
    assert info.value.http_status == 502
    assert len(requests_to(mocked, "POST", SEND)) == 1


async def test_an_answer_nested_thousands_deep_is_malformed(mocked: aioresponses) -> None:
    """msgspec skips a member it does not know by recursing: a hostile answer with a few
    thousand nested brackets in one raised a bare ``RecursionError`` out of ``send``."""
    deep = b'{"status":"success","code":"00","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    mocked.post(SEND, body=deep)
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse, match="nested too deeply"):
            await sms.send("0912345678", "hi")


async def test_success_envelope_without_data_is_malformed(mocked: aioresponses) -> None:
    mocked.post(SEND, payload={"status": "success", "code": "00"})
    async with client() as sms:
        with pytest.raises(errors.MalformedResponse):
            await sms.send("0912345678", "hi")


async def test_voice_otp(mocked: aioresponses) -> None:
    mocked.post(VOICE, payload=ok({"tranId": "abc", "totalPrice": 400}))
    async with client() as sms:
        res = await sms.voice_otp("+84912345678", "1234")
    assert res.message_id == "abc"
    assert res.cost == 400.0
    assert res.recipients == ("0912345678",)
    call = requests_to(mocked, "POST", VOICE)[0]
    # The voice document's "09x" form (its example: 0912345678), not the SMS send's 84 form.
    assert json.loads(sent_body(call)) == {"to": "0912345678", "content": "1234"}


@pytest.mark.parametrize("code", ["12a4", "", "１２３", "12 34", "-123"])
async def test_voice_otp_digits_only(mocked: aioresponses, code: str) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match="digits"):
            await sms.voice_otp("0912345678", code)
    assert not mocked.requests


async def test_voice_otp_code_601(mocked: aioresponses) -> None:
    mocked.post(VOICE, payload=err("601", "OTP number is not valid"))
    async with client() as sms:
        with pytest.raises(errors.InvalidRequest) as info:
            await sms.voice_otp("0912345678", "1234")
    assert info.value.code == "601"


async def test_token_never_appears_in_errors_reprs_or_logs(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="smsvn")
    seen: list[str] = []

    def echo(url: URL, **kwargs: Any) -> CallbackResult:
        # A hostile proxy echoing the Authorization header back into the body.
        return CallbackResult(status=500, body=json.dumps(dict(kwargs["headers"])).encode())

    mocked.post(SEND, callback=echo)
    mocked.get(INFO, payload=err("007", f"IP locked for {SENTINEL_TOKEN}"), repeat=True)
    async with client() as sms:
        seen.append(repr(sms))
        for call in (sms.send("0912345678", "hi"), sms.balance()):
            with pytest.raises(errors.SmsError) as info:
                await call
            seen += [str(info.value), repr(info.value), repr(info.value.args)]
    async with client(base_url=f"http://127.0.0.1:{closed_port}") as sms:
        with pytest.raises(errors.ConnectError) as info:
            await sms.balance()
        seen += [str(info.value), repr(info.value)]
    seen += [r.getMessage() for r in caplog.records]
    auth = base64.b64encode(f"{SENTINEL_TOKEN}:x".encode()).decode()
    for text in seen:
        assert "SENTINEL" not in text
        assert auth not in text


async def test_borrowed_session_is_not_closed(mocked: aioresponses) -> None:
    mocked.get(INFO, payload=ok({"balance": 1.0}))
    async with aiohttp.ClientSession() as session:
        async with client(session=session) as sms:
            await sms.balance()
        assert not session.closed
        await sms.aclose()  # twice is fine
        assert not session.closed


async def test_aclose_twice_and_use_after_close() -> None:
    sms = client()
    await sms.aclose()
    await sms.aclose()
    with pytest.raises(errors.ValidationError, match="closed"):
        await sms.balance()


def test_empty_token_refused() -> None:
    with pytest.raises(errors.ValidationError):
        SpeedSMS("")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ("a\x00b", "110"),
        ("bad \ud800 surrogate", "110"),
        ("Chúc mừng 🎉", "110"),
        ("x" * 766, "113"),
        ("ạ" * 336, "113"),
    ],
)
async def test_content_speedsms_would_refuse_is_refused_locally(
    mocked: aioresponses, content: str, match: str
) -> None:
    async with client() as sms:
        with pytest.raises(errors.ValidationError, match=match):
            await sms.send("0912345678", content)
        with pytest.raises(errors.ValidationError, match=match):
            await sms.send_bulk(["0912345678"], content)
    assert not mocked.requests


async def test_longest_allowed_content_goes_out(mocked: aioresponses) -> None:
    mocked.post(SEND, payload=ok({"tranId": 1, "totalSMS": 5}), repeat=True)
    async with client() as sms:
        await sms.send("0912345678", "x" * 765)
        await sms.send("0912345678", "ạ" * 335)
    assert len(requests_to(mocked, "POST", SEND)) == 2


async def test_strip_diacritics_sends_the_plain_form(mocked: aioresponses) -> None:
    mocked.post(SEND, payload=ok({"tranId": 1, "totalSMS": 1}), repeat=True)
    async with client() as sms:
        await sms.send("0912345678", "Mã OTP của bạn là 123456", strip_diacritics=True)
        await sms.send_bulk(["0912345678"], "Chào bạn", strip_diacritics=True)
    sent = [json.loads(sent_body(c))["content"] for c in requests_to(mocked, "POST", SEND)]
    assert sent == ["Ma OTP cua ban la 123456", "Chao ban"]


async def test_send_many_refuses_one_bad_message_and_sends_the_rest(mocked: aioresponses) -> None:
    mocked.post(SEND, payload=ok({"tranId": 1, "totalSMS": 1}), repeat=True)
    messages = [smsvn.Message("0912345678", "OTP 1"), smsvn.Message("0912345679", "x" * 900)]
    async with client() as sms:
        report = await sms.send_many(messages)
    assert report.accepted == 1
    assert report.failed_count == 1
    assert isinstance(report.failed[0][1], errors.ValidationError)
    assert len(requests_to(mocked, "POST", SEND)) == 1


async def test_an_int_enum_sms_type_goes_under_the_clients_sender() -> None:
    """Review finding: ``send(sms_type=SmsType.BRANDNAME)`` (an ``IntEnum``, 3) with the
    client's default sender was refused "needs a sender": the type was checked before the
    default sender was filled in."""

    class SmsType(enum.IntEnum):
        BRANDNAME = 3

    async with Sandbox() as sb, sb.client("speedsms", sms_type=2) as sms:
        assert sms.sender
        result = await sms.send("0912345678", "Xin chao", sms_type=SmsType.BRANDNAME)
    assert result.recipients == ("0912345678",)
